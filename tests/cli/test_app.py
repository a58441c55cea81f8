"""The command line as users meet it: help, version, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support import run_cli


def test_help_lists_the_command_groups(tmp_path: Path) -> None:
    result = run_cli("--help", cwd=tmp_path)
    assert result.code == 0
    for group in ("init", "validate", "db", "audit"):
        assert group in result.stdout


def test_version(tmp_path: Path) -> None:
    result = run_cli("--version", cwd=tmp_path)
    assert result.code == 0
    assert result.stdout.startswith("shipyard ")


def test_an_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("frobnicate", cwd=tmp_path)
    assert result.code == 2
    assert "Traceback" not in result.output


def test_outside_a_repository_says_how_to_fix_it(tmp_path: Path) -> None:
    result = run_cli("audit", "list", cwd=tmp_path)
    assert result.code == 2
    assert "not inside a git repository" in result.stderr
    assert "SHIPYARD_HOME" in result.stderr
    assert "Traceback" not in result.output


def test_errors_in_json_mode_are_json(tmp_path: Path) -> None:
    result = run_cli("audit", "list", "--json", cwd=tmp_path)
    assert result.code == 2
    error = json.loads(result.stdout)["error"]
    assert "not inside a git repository" in error["message"]
    assert error["kind"] == "StateDirError"


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run_cli("--debug", "audit", "list", cwd=tmp_path)
    assert result.code == 2
    assert "Traceback" in result.stderr


def test_an_unreachable_database_is_a_clear_error(repo: Path) -> None:
    url = "postgresql+psycopg://postgres:pa55word-xyz@127.0.0.1:1/none"
    result = run_cli("audit", "list", cwd=repo, env={"SHIPYARD_DATABASE_URL": url})
    assert result.code == 2
    assert "127.0.0.1:1" in result.stderr
    assert "pa55word-xyz" not in result.output
    assert "Traceback" not in result.output


def test_a_command_works_with_the_garbage_collector_on(repo: Path) -> None:
    # Start-up turns the collector off while it imports; a long command (a run, a deployment,
    # the router) that did not get it back would grow without bound.
    probe = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('collector on:', gc.isenabled()))\n"
        "from shipyard.cli.app import main\n"
        "sys.argv = ['shipyard', 'audit', 'verify']\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=repo, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "collector on: True" in result.stdout
