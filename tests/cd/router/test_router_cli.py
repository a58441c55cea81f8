"""``shipyard router`` end to end: a real CLI process running a real router, which the other
``shipyard router`` commands (in the test's process) inspect and steer."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil

from cd.router.router_support import PATIENCE, UpstreamServer, request, table, wait_for
from shipyard.cd.router.client import RouterClient
from shipyard.cd.router.state import RouterFiles
from support import run_cli

# Routers are named <project>-<env>: the environments come from shipyard.yaml.
CONFIG = "project: demo\nservice: {command: 'run --port {port}'}\nenvironments: {staging: {}}\n"


def test_running_needs_an_environment_and_a_port(repo: Path) -> None:
    (repo / "shipyard.yaml").write_text(CONFIG)
    # Real processes (as run_cli runs ``router`` without a subcommand): were one accepted, it
    # would replace its process with a router.
    result = run_cli("router", cwd=repo, timeout=PATIENCE)
    assert result.code == 2
    assert "needs --env" in result.stderr
    no_port = run_cli("router", "--env", "staging", cwd=repo, timeout=PATIENCE)
    assert no_port.code == 2
    assert "needs --port" in no_port.stderr
    bad = run_cli("router", "--env", "../etc", "--port", "0", cwd=repo, timeout=PATIENCE)
    assert bad.code == 2
    assert "no environment '../etc'" in bad.stderr


def test_status_of_a_router_that_never_ran_says_how_to_start_it(repo: Path) -> None:
    (repo / "shipyard.yaml").write_text(CONFIG)
    result = run_cli("router", "status", "--env", "staging", cwd=repo)
    assert result.code == 2
    assert "shipyard router --env staging --port" in result.stderr


def test_run_then_inspect_and_steer_a_router(
    repo: Path, upstream: Callable[[str], UpstreamServer]
) -> None:
    blue, green = upstream("blue"), upstream("green")
    (repo / "shipyard.yaml").write_text(CONFIG)
    process = subprocess.Popen(
        [sys.executable, "-m", "shipyard", "router", "--env", "staging", "--port", "0"],
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "CI": "1"},
    )
    try:
        state = repo / ".shipyard"
        files = RouterFiles.at(state, "demo-staging")

        def announced() -> bool:
            try:
                return files.read_address().pid == process.pid
            except Exception:  # noqa: BLE001 - not written yet
                return process.poll() is not None

        assert wait_for(announced) and process.poll() is None
        # The CLI replaced itself with the isolated router entry point.
        assert "shipyard.cd.router" in psutil.Process(process.pid).cmdline()
        client = RouterClient.for_environment(state, "demo-staging")
        client.set_routes(table({"blue": (100, [blue.address]), "green": (0, [green.address])}))

        status = run_cli("router", "status", "--env", "staging", "--json", cwd=repo)
        assert status.code == 0, status.output
        shown = json.loads(status.stdout)
        assert shown["status"] == "ok"
        assert shown["routes"]["versions"][0]["name"] == "blue"

        changed = run_cli("router", "weights", "--env", "staging", "blue=10", "green=90", cwd=repo)
        assert changed.code == 0, changed.output
        assert "revision 2" in changed.stdout
        assert client.routes().table.weights == {"blue": 10, "green": 90}

        same = run_cli("router", "weights", "--env", "staging", "blue=10", cwd=repo)
        assert "revision 2" in same.stdout  # nothing changed, no new revision
        rejected = run_cli("router", "weights", "--env", "staging", "blue=20", cwd=repo)
        assert rejected.code == 2
        assert "add up to 110, not 100" in rejected.stderr
        malformed = run_cli("router", "weights", "--env", "staging", "blue:10", cwd=repo)
        assert malformed.code == 2

        public = files.read_address().public_port
        connection = http.client.HTTPConnection("127.0.0.1", public, timeout=PATIENCE)
        for _ in range(10):
            request(connection, "GET", "/", headers={"X-Shipyard-Version": "green"})
        stats = run_cli("router", "stats", "--env", "staging", "--json", cwd=repo)
        green_stats = json.loads(stats.stdout)["versions"]["green"]
        assert green_stats["pinned"]["requests"] == 10  # previews, apart from weighted traffic
        assert green_stats["requests"] == 0
        table_text = run_cli("router", "stats", "--env", "staging", cwd=repo)
        assert "green" in table_text.stdout
        assert "PINNED" in table_text.stdout
        green_row = next(line for line in table_text.stdout.splitlines() if "green" in line)
        assert green_row.split()[-1] == "10"  # the pinned column, last

        drained = run_cli("router", "drain", "--env", "staging", blue.address, cwd=repo)
        assert drained.code == 0, drained.output
        unknown = run_cli("router", "drain", "--env", "staging", "127.0.0.1:1", cwd=repo)
        assert unknown.code == 2
        assert "no instance at" in unknown.stderr
    finally:
        process.terminate()
        assert process.wait(PATIENCE) == 0
        assert process.stderr is not None
        assert b"stopped" in process.stderr.read()
