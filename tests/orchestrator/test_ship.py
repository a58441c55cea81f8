"""``shipyard ship`` end to end: the example service in a real git repository, released and
deployed by the CLI (in the test's process, or a real one where a test kills it) to staging and
then, after the soak, to a production canary judged by its analysis behind the real router,
under steady load where it matters.

A good version reaches production; a bad one (failing a fifth of its requests in production
only) is stopped at the canary with exit 1 and the stable version serving; Ctrl-C during the
soak is continued by ``--resume`` without a second release, and so is a ship killed during the
canary; an approval or a canary that waits for a person is exit 3 until the person acts and
``--resume`` follows it to the end.

Soaks and pauses are waited for in real time: a second or two each, longer only where a
signal must come during one whatever the machine's load.
"""

from __future__ import annotations

import json
import os
import pty
import queue
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cd.deploysupport import copy_example
from cd.test_deploy import Site, _free_port, shut_down
from loadsupport import Load
from support import git

pytestmark = pytest.mark.slow  # real processes end to end: started first (conftest)

CONFIG = """project: webapp
release:
  version_files: [VERSION]
service:
  command: python3 -m app --port {{port}}
  instances: 1
  health: {{http: /healthz, timeout: 15s, interval: 100ms}}
  stop: {{signal: TERM, grace: 5s}}
environments:
  staging:
    strategy: {{blue_green: {{rollback_window: 10m}}}}
    router: {{port: {staging_port}}}
  production:
    promote_from: {{env: staging, soak: {soak}}}
    router: {{port: {production_port}}}
    strategy: {{canary: {{steps: [{steps}]}}}}
{production_env}    analysis:
      interval: 1s
      failure_limit: 0
      inconclusive_limit: 30
      metrics:
        - {{name: error_rate, provider: builtin, max: 0.05, min_requests: 10}}
"""

STEPS = "{weight: 50, pause: 3s}, {weight: 100}"


class ShipSite(Site):
    """The example service with staging and a production canary that promotes from it."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.production_port = _free_port()

    def configure(
        self,
        *,
        soak: str = "1s",
        steps: str = STEPS,
        fail_rate: str = "",
        approval: str = "",
        extra: str = "",
    ) -> None:
        """Write shipyard.yaml; ``fail_rate`` makes production's instances fail that share,
        ``approval`` is production's approval rule, ``extra`` is added at the end."""
        production_env = f"    env: {{APP_FAIL_RATE: '{fail_rate}'}}\n" if fail_rate else ""
        if approval:
            production_env += f"    approval: {approval}\n"
        (self.path / "shipyard.yaml").write_text(
            CONFIG.format(
                staging_port=self.staging_port,
                production_port=self.production_port,
                soak=soak,
                steps=steps,
                production_env=production_env,
            )
            + extra
        )

    def commit(self, message: str) -> str:
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return git(self.path, "rev-parse", "HEAD").strip()

    def ship(self, *args: str) -> dict[str, Any]:
        """``shipyard ship --json``: its outcome, with the exit code as ``code``."""
        result = self.cli("ship", "--json", *args)
        try:
            outcome = json.loads(result.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"not JSON (exit {result.code}): {result.output}") from None
        assert isinstance(outcome, dict)
        return {**outcome, "code": result.code, "stderr": result.stderr}

    def json(self, *args: str) -> Any:
        shown = self.cli(*args, "--json")
        assert shown.code == 0, shown.output
        return json.loads(shown.stdout)

    def production_url(self) -> str:
        return f"http://127.0.0.1:{self.production_port}/"


@pytest.fixture
def shipsite(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ShipSite]:
    """The example service in a repository with a signing key; nothing released yet."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SHIPYARD_USER", "shipper@example.com")
    copy_example(repo)
    site = ShipSite(repo)
    site.configure()
    assert site.cli("keys", "generate").code == 0
    site.commit("feat: the service")
    try:
        yield site
    finally:
        shut_down(repo)


def _stages(outcome: dict[str, Any]) -> dict[str, str]:
    return {stage["name"]: stage["status"] for stage in outcome["stages"]}


def _deployments(site: ShipSite) -> list[dict[str, Any]]:
    found = site.json("deployments", "list")
    assert isinstance(found, list)
    return found


def _production(site: ShipSite, version: str) -> list[dict[str, Any]]:
    return [
        d for d in _deployments(site) if (d["environment"], d["version"]) == ("production", version)
    ]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _notify(port: int) -> str:
    """Notifications to ``port``, where nobody answers: the agent retries, and runs all the same."""
    return (
        f"notifications:\n  - {{url: 'http://127.0.0.1:{port}/hook', on: [deployment.succeeded]}}\n"
    )


def test_ship_takes_a_commit_to_a_production_canary_and_stops_one_that_fails_under_traffic(
    shipsite: ShipSite,
) -> None:
    shipsite.configure(soak="2s")
    shipsite.commit("chore: a soak of 2s")
    first = shipsite.ship()
    assert first["code"] == 0, first
    assert first["status"] == "shipped" and first["version"] == "0.1.0"
    assert first["released"] is True
    assert first["reached"] == ["staging", "production"]
    assert _stages(first) == {
        "release": "passed",
        "deploy staging": "passed",
        "soak production": "passed",
        "deploy production": "passed",
    }
    assert shipsite.state("staging")["active_version"] == "0.1.0"
    assert shipsite.state("production")["active_version"] == "0.1.0"
    production, staging = _deployments(shipsite)
    assert (staging["environment"], production["environment"]) == ("staging", "production")
    # Production was asked for only once 0.1.0 had run healthy in staging for the soak (2s).
    assert _at(production["created_at"]) >= _at(staging["finished_at"]) + timedelta(seconds=2)

    # A ship starts the notification agent as a deploy does.
    shipsite.configure(extra=_notify(_free_port()))
    second = shipsite.commit("feat: a second feature")
    to_staging = shipsite.ship("--to", "staging")
    assert to_staging["code"] == 0, to_staging
    assert to_staging["reached"] == ["staging"] and to_staging["version"] == "0.2.0"
    assert shipsite.state("production")["active_version"] == "0.1.0"
    assert shipsite.json("agent", "status")["state"] == "RUNNING"

    with Load(shipsite.production_url(), workers=2, rate=100) as load:
        onward = shipsite.ship(second)
    assert onward["code"] == 0, onward
    assert onward["version"] == "0.2.0" and onward["released"] is False  # released already
    assert _stages(onward)["release"] == "skipped"
    assert _stages(onward)["deploy staging"] == "skipped"  # it runs 0.2.0 already
    assert _stages(onward)["deploy production"] == "passed"
    assert shipsite.state("production")["weights"] == {"0.2.0": 100}
    canary = onward["deployments"]["production"]
    looks = shipsite.json("analysis", "show", str(canary))["metrics"][0]["measurements"]
    assert "pass" in {look["verdict"] for look in looks} <= {"pass", "inconclusive"}
    assert [r["version"] for r in shipsite.json("releases", "list")] == ["0.2.0", "0.1.0"]
    assert load.count(status=500) == 0 and load.errors == []

    # A version that fails under traffic stops at the canary, the stable version serving.
    shipsite.configure(fail_rate="0.2")  # production only: staging does not show it
    shipsite.commit("feat: a release that fails under traffic")
    with Load(shipsite.production_url(), workers=2, rate=100) as load:
        stopped = shipsite.cli("ship")
        after = load.count()
        load.wait_for(lambda: load.count() >= after + 50)  # served on after the rollback
    assert stopped.code == 1, stopped.output
    assert "stopped at deploy production" in stopped.stderr
    assert "was rolled back" in stopped.stderr and "> max 0.05" in stopped.stderr
    assert "traffic is back on the stable version, 0.2.0" in stopped.stderr
    assert "Traceback" not in stopped.output
    canary = _deployments(shipsite)[0]
    assert (canary["environment"], canary["version"]) == ("production", "0.3.0")
    assert canary["status"] == "rolled_back"
    assert shipsite.state("production")["weights"] == {"0.2.0": 100}
    assert shipsite.state("staging")["active_version"] == "0.3.0"
    assert load.count(version="0.2.0", status=500) == 0 and load.errors == []
    again = shipsite.cli("ship", "--resume")
    assert again.code == 2, again.output  # a failed ship is over: a fixed commit ships anew
    assert "failed at deploy production" in again.stderr


def _lines(process: subprocess.Popen[str]) -> queue.Queue[str]:
    """The process's stdout, line by line, as it comes (read by a thread)."""
    found: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            found.put(line)

    threading.Thread(target=read, daemon=True).start()
    return found


def _wait_for_line(lines: queue.Queue[str], text: str, timeout: float = 180) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            seen.append(lines.get(timeout=left))
        except queue.Empty:
            break
        if text in seen[-1]:
            return seen
    raise AssertionError(f"no line with {text!r} within {timeout:g}s; seen: {seen}")


def _start_ship(site: ShipSite) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    """``shipyard ship`` as a process of its own, its stdout read line by line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "shipyard", "ship"],
        cwd=site.path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_interruptible,
    )
    return process, _lines(process)


def _interruptible() -> None:
    """In the child: Ctrl-C acts as it does for a command typed at a terminal, also when the
    suite itself was started in the background with SIGINT ignored (which children inherit)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_a_ship_stopped_by_ctrl_c_in_the_soak_or_killed_in_the_canary_resumes_where_it_was(
    shipsite: ShipSite,
) -> None:
    # The soak is long enough for Ctrl-C to come during it whatever the machine's load.
    shipsite.configure(soak="6s")
    shipsite.commit("feat: a longer soak")
    process, lines = _start_ship(shipsite)
    try:
        seen = _wait_for_line(lines, "▶ soak production:")
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    finally:
        process.kill()
    assert process.stderr is not None
    err = process.stderr.read()
    assert process.returncode == 130, "".join(seen) + err
    assert "shipyard ship --resume" in err and "Traceback" not in err
    assert shipsite.state("staging")["active_version"] == "0.1.0"
    assert shipsite.state("production")["active_version"] is None
    assert [r["version"] for r in shipsite.json("releases", "list")] == ["0.1.0"]

    resumed = shipsite.ship("--resume")
    assert resumed["code"] == 0, resumed
    assert resumed["resumed"] is True and resumed["released"] is False
    assert resumed["reached"] == ["staging", "production"]
    assert _stages(resumed)["release"] == "skipped"
    assert [r["version"] for r in shipsite.json("releases", "list")] == ["0.1.0"]
    assert shipsite.state("production")["active_version"] == "0.1.0"
    assert [d["environment"] for d in _deployments(shipsite)] == ["production", "staging"]

    # Killed during the canary's first step (long enough for the kill to come during it), the
    # ship resumes the same deployment.
    shipsite.configure(steps="{weight: 50, pause: 6s}, {weight: 100}")
    shipsite.commit("feat: the second version, with a longer canary step")
    with Load(shipsite.production_url(), workers=2, rate=100) as load:
        process, lines = _start_ship(shipsite)
        try:
            _wait_for_line(lines, "progressing (canary): step 1 of 2 (50%)")
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
        finally:
            process.kill()
        [killed] = _production(shipsite, "0.2.0")
        assert killed["status"] == "progressing"  # nobody drives it now
        resumed = shipsite.ship("--resume")
    assert resumed["code"] == 0, resumed
    assert resumed["released"] is False and resumed["deployments"]["production"] == killed["id"]
    [finished] = _production(shipsite, "0.2.0")  # the same deployment, driven on
    assert (finished["id"], finished["status"]) == (killed["id"], "succeeded")
    assert [r["version"] for r in shipsite.json("releases", "list")] == ["0.2.0", "0.1.0"]
    assert shipsite.state("production")["weights"] == {"0.2.0": 100}
    assert load.count(status=500) == 0 and load.errors == []


WAITS_FOR_A_PERSON = "{weight: 50, pause: {}}, {weight: 100}"


def test_an_approval_or_a_canary_waiting_for_a_person_is_exit_3_and_resume_goes_on_after(
    shipsite: ShipSite,
) -> None:
    # Production asks for an approval.
    shipsite.configure(steps=WAITS_FOR_A_PERSON, approval="{required: 1, not_author: true}")
    shipsite.commit("feat: production asks for an approval")
    waiting = shipsite.ship()
    assert waiting["code"] == 3, waiting
    assert (waiting["status"], waiting["stopped_at"]) == ("waiting", "deploy production")
    assert waiting["reached"] == ["staging"]
    asked = waiting["deployments"]["production"]
    assert f"shipyard approve {asked}" in waiting["hint"]
    assert "shipyard ship --resume" in waiting["hint"]
    assert shipsite.state("production")["active_version"] is None
    assert shipsite.ship("--resume")["code"] == 3  # nobody approved yet
    approved = shipsite.cli(
        "approve", str(asked), "--json", env={"SHIPYARD_USER": "bob@example.com"}
    )
    assert approved.code == 0, approved.output  # it starts a driver by itself
    done = shipsite.ship("--resume")
    assert done["code"] == 0, done  # the first version: nothing to compare, all at once
    assert done["reached"] == ["staging", "production"]
    assert shipsite.state("production")["active_version"] == "0.1.0"

    # The canary of the next version waits for a person at its first step.
    shipsite.configure(steps=WAITS_FOR_A_PERSON)
    shipsite.commit("feat: the second version")
    waiting = shipsite.ship()
    assert waiting["code"] == 3, waiting
    assert waiting["status"] == "waiting" and waiting["stopped_at"] == "deploy production"
    canary = waiting["deployments"]["production"]
    assert f"shipyard deployments resume {canary}" in waiting["hint"]
    assert "shipyard ship --resume" in waiting["hint"]
    assert shipsite.state("production")["weights"] == {"0.1.0": 50, "0.2.0": 50}

    still = shipsite.ship("--resume")  # nobody resumed it: it still waits
    assert still["code"] == 3, still
    resumed = shipsite.cli("deployments", "resume", str(canary), "--json")
    assert resumed.code == 0, resumed.output  # a driver in the background carries it on
    followed = shipsite.ship("--resume")
    assert followed["code"] == 0, followed
    assert followed["reached"] == ["staging", "production"]
    assert shipsite.state("production")["weights"] == {"0.2.0": 100}
    assert _deployments(shipsite)[0]["status"] == "succeeded"


def _on_a_terminal(site: ShipSite, *args: str, timeout: float = 300) -> tuple[int, str]:
    """Run ``shipyard ARGS`` with a pseudo-terminal as its stdin, stdout and stderr; its exit
    code and what it drew, escape sequences removed."""
    main, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "shipyard", *args],
        cwd=site.path,
        stdin=child,
        stdout=child,
        stderr=child,
        env={**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"},
    )
    os.close(child)
    drawn = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the terminal closed: the process has ended
                break
            if not chunk:
                break
            drawn += chunk
        code = process.wait(timeout=60)
    finally:
        process.kill()
        os.close(main)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07", "", drawn.decode(errors="replace"))
    return code, text


def test_on_a_terminal_the_ship_is_drawn_with_its_stages_and_weights(shipsite: ShipSite) -> None:
    code, drawn = _on_a_terminal(shipsite, "ship")
    assert code == 0, drawn
    assert "shipping webapp" in drawn and "to staging → production" in drawn
    for stage in ("release", "deploy staging", "soak production", "deploy production"):
        assert f"✓  {stage}" in drawn, drawn
    assert "deployment 2 to production: succeeded" in drawn
    assert re.search(r"0\.1\.0 +█{20} +100% +new", drawn), drawn
    assert "shipped 0.1.0 to staging, production" in drawn
    assert "Traceback" not in drawn


PIPELINE_FAILS = """pipeline:
  jobs:
    test: {run: "echo checking && exit 3"}
"""


def test_a_failing_pipeline_stops_the_ship_before_anything_is_released(
    shipsite: ShipSite,
) -> None:
    config = shipsite.path / "shipyard.yaml"
    config.write_text(config.read_text() + PIPELINE_FAILS)
    shipsite.commit("feat: a pipeline that fails")
    stopped = shipsite.ship()
    assert stopped["code"] == 1, stopped
    assert stopped["status"] == "failed" and stopped["stopped_at"] == "release"
    assert "the pipeline failed" in stopped["message"]
    assert _stages(stopped) == {
        "release": "failed",
        "deploy staging": "pending",
        "soak production": "pending",
        "deploy production": "pending",
    }
    assert shipsite.json("releases", "list") == []
    assert _deployments(shipsite) == []


def test_mistakes_are_exit_2_with_what_to_do(shipsite: ShipSite) -> None:
    nothing = shipsite.cli("ship", "--resume")
    assert nothing.code == 2, nothing.output
    assert "no ship to resume" in nothing.stderr and "shipyard ship" in nothing.stderr
    both = shipsite.cli("ship", "HEAD", "--resume")
    assert both.code == 2 and "drop REF" in both.stderr
    unknown = shipsite.cli("ship", "--to", "qa")
    assert unknown.code == 2 and "staging → production" in unknown.stderr
    missing = shipsite.cli("ship", "no-such-branch")
    assert missing.code == 2 and "not a commit" in missing.stderr
    record = shipsite.path / ".shipyard" / "ships" / "project-webapp.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text("{not json")
    broken = shipsite.cli("ship", "--resume")
    assert broken.code == 2, broken.output
    assert str(record) in broken.stderr and "delete it" in broken.stderr
    for result in (nothing, both, unknown, missing, broken):
        assert "Traceback" not in result.output
    assert shipsite.json("releases", "list") == []
