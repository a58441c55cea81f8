"""The test harness itself: an in-process ``shipyard`` leaves the test's process as it found it
and prints what a real process would."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from support import run_cli, run_cli_process


def test_in_process_and_real_process_print_and_exit_alike(repo: Path) -> None:
    for args in (("--version",), ("frobnicate",), ("audit", "verify", "--json")):
        inside = run_cli(*args, cwd=repo)
        real = run_cli_process(*args, cwd=repo)
        assert (inside.code, inside.stdout) == (real.code, real.stdout), args
        assert inside.stderr.splitlines()[:1] == real.stderr.splitlines()[:1], args


def test_an_in_process_command_leaves_cwd_environment_and_streams_as_they_were(
    repo: Path, tmp_path: Path
) -> None:
    before = (Path.cwd(), dict(os.environ), sys.stdout, sys.stderr, sys.stdin)
    handlers = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)}
    result = run_cli("--debug", "audit", "verify", cwd=repo, env={"SHIPYARD_USER": "x@y.z"})
    assert result.code == 0, result.output
    assert (Path.cwd(), dict(os.environ), sys.stdout, sys.stderr, sys.stdin) == before
    assert {n: signal.getsignal(n) for n in handlers} == handlers
    assert "SHIPYARD_DEBUG" not in os.environ  # --debug sets it in the command's process only
