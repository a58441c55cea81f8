"""``shipyard run``, ``logs``, ``runs`` as users run them: real processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from shipyard.ci import runs
from shipyard.core import state as state_dir
from shipyard.core.store import open_store
from support import git, run_cli


def _commit(repo: Path, pipeline: str) -> None:
    (repo / "shipyard.yaml").write_text("project: demo\npipeline:\n" + pipeline)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "ci: pipeline")


def _start(repo: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "shipyard", *args],
        cwd=repo,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "CI": "1"},
    )


class _Follower:
    """``shipyard logs last --follow`` as a real process, its output in a file that can be
    read while it runs (it flushes each line)."""

    def __init__(self, repo: Path, folder: Path) -> None:
        self.out, self.err = folder / "follower.out", folder / "follower.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "shipyard", "logs", "last", "--follow"],
                cwd=repo,
                text=True,
                stdout=out,
                stderr=err,
                env={**os.environ, "CI": "1"},
            )

    def printed(self, text: str) -> bool:
        """Whether it has printed ``text`` so far."""
        return text in self.out.read_text()

    def communicate(self, timeout: float) -> tuple[str, str]:
        """Wait for it to end; what it printed on stdout and stderr."""
        self.process.wait(timeout)
        return self.out.read_text(), self.err.read_text()


def _wait_for(predicate: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_run_prints_progress_and_a_summary(repo: Path) -> None:
    _commit(
        repo, "  jobs:\n    lint: {run: echo linted}\n    test: {needs: [lint], run: echo tested}\n"
    )
    result = run_cli("run", cwd=repo, env={"CI": "1"})
    assert result.code == 0, result.output
    assert "▶ lint started" in result.stdout
    assert "✓ test passed" in result.stdout
    assert "run #1 passed" in result.stdout
    listed = json.loads(run_cli("runs", "list", "--json", cwd=repo).stdout)
    assert [r["status"] for r in listed] == ["passed"]
    shown = json.loads(run_cli("runs", "show", "last", "--json", cwd=repo).stdout)
    assert [j["job"] for j in shown["jobs"]] == ["lint", "test"]
    assert shown["jobs"][0]["attempts"][0]["status"] == "passed"
    logs = run_cli("logs", "1", "test", cwd=repo)
    assert "tested" in logs.stdout


def test_a_failing_run_exits_1_and_shows_the_end_of_the_log(repo: Path) -> None:
    _commit(repo, "  jobs:\n    broken: {run: 'echo the reason it broke; exit 4'}\n")
    result = run_cli("run", cwd=repo, env={"CI": "1"})
    assert result.code == 1
    assert "the reason it broke" in result.stdout
    assert "exit 4" in result.stdout
    as_json = run_cli("run", "--json", cwd=repo)
    assert as_json.code == 1
    assert json.loads(as_json.stdout)["status"] == "failed"


def test_bad_input_exits_2_and_records_nothing(repo: Path) -> None:
    _commit(repo, "  jobs:\n    x: {run: echo}\n")
    missing_ref = run_cli("run", "no-such-ref", cwd=repo)
    assert missing_ref.code == 2
    assert "no-such-ref" in missing_ref.stderr
    unknown_job = run_cli("run", "--job", "nope", cwd=repo)
    assert unknown_job.code == 2
    assert "the jobs are: x" in unknown_job.stderr
    assert json.loads(run_cli("runs", "list", "--json", cwd=repo).stdout) == []
    assert "Traceback" not in missing_ref.output + unknown_job.output


def _grandchild_job(tmp_path: Path) -> tuple[Path, Path]:
    pidfile = tmp_path / "grandchild.pid"
    child = tmp_path / "child.py"
    child.write_text(
        "import os, sys, time\nos.setsid()\n"
        "open(sys.argv[1], 'w').write(str(os.getpid()))\ntime.sleep(600)\n"
    )
    job = tmp_path / "job.sh"
    job.write_text(f"python3 {child} {pidfile} &\necho waiting\nsleep 600\n")
    return job, pidfile


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_ctrl_c_cancels_the_run_and_kills_every_process(repo: Path, tmp_path: Path) -> None:
    job, pidfile = _grandchild_job(tmp_path)
    _commit(
        repo, f"  jobs:\n    hang: {{run: 'bash {job}'}}\n    after: {{needs: [hang], run: echo}}\n"
    )
    process = _start(repo, "run")
    _wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
    grandchild = int(pidfile.read_text())
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert "Traceback" not in out + err
    _wait_for(lambda: _gone(grandchild), timeout=15)
    shown = json.loads(run_cli("runs", "show", "1", "--json", cwd=repo).stdout)
    assert shown["status"] == "cancelled"
    assert {j["job"]: j["status"] for j in shown["jobs"]} == {
        "hang": "cancelled",
        "after": "cancelled",
    }
    assert "worktrees" not in git(repo, "worktree", "list")
    assert git(repo, "worktree", "list").count("\n") == 1


def test_runs_cancel_from_another_terminal(repo: Path, tmp_path: Path) -> None:
    job, pidfile = _grandchild_job(tmp_path)
    _commit(repo, f"  jobs:\n    hang: {{run: 'bash {job}'}}\n")
    process = _start(repo, "run")
    _wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
    grandchild = int(pidfile.read_text())
    cancelled = run_cli("runs", "cancel", "last", cwd=repo)
    assert cancelled.code == 0, cancelled.output
    process.communicate(timeout=60)
    assert process.returncode == 1
    _wait_for(lambda: _gone(grandchild), timeout=15)
    shown = json.loads(run_cli("runs", "show", "last", "--json", cwd=repo).stdout)
    assert shown["status"] == "cancelled"


def test_logs_follow_a_live_run_from_a_second_process(repo: Path, tmp_path: Path) -> None:
    gate = tmp_path / "go"
    script = tmp_path / "talk.sh"
    script.write_text(
        f"for i in 1 2 3; do echo line $i; done\n"
        f"while [ ! -e {gate} ]; do sleep 0.05; done\necho after the gate\n"
    )
    _commit(
        repo,
        f"  jobs:\n    talk: {{run: 'bash {script}'}}\n"
        f"    next: {{needs: [talk], run: echo second job}}\n",
    )
    runner = _start(repo, "run")
    _wait_for(lambda: run_cli("runs", "list", "--json", cwd=repo).stdout.strip() not in ("", "[]"))
    follower = _Follower(repo, tmp_path)
    _wait_for(lambda: follower.printed("line 3"))  # it follows the run as it goes
    gate.write_text("open")
    out, err = follower.communicate(timeout=60)
    runner.communicate(timeout=60)
    assert follower.process.returncode == 0, err
    lines = out.splitlines()
    texts = [line.split(" ", 2)[-1] for line in lines]
    assert texts.index("line 1") < texts.index("line 3") < texts.index("after the gate")
    assert "second job" in texts
    assert any(line.split(" ")[1] == "[talk]" for line in lines)


# name -> (job, the key path named); "\\0" is YAML's escape for the NUL character.
NUL_BYTES: dict[str, tuple[str, str]] = {
    "command": ('{run: "echo a\\0b"}', "pipeline.jobs.t.run"),
    "step": ('{run: [echo ok, {name: two, run: "echo \\0"}]}', "pipeline.jobs.t.run[1].run"),
    "env value": ('{run: echo, env: {A: "x\\0y"}}', "pipeline.jobs.t.env.A"),
    "shell argument": ('{run: echo, shell: [bash, "-c\\0"]}', "pipeline.jobs.t.shell[1]"),
    "matrix value": ('{run: echo, matrix: {py: ["3\\0"]}}', "pipeline.jobs.t.matrix.py[0]"),
    "tool": ('{run: echo, tools: ["python3 --version\\0"]}', "pipeline.jobs.t.tools[0]"),
    "workdir": ('{run: echo, workdir: "src\\0"}', "pipeline.jobs.t.workdir"),
    "artifact": ('{run: echo, artifacts: ["dist/\\0*"]}', "pipeline.jobs.t.artifacts[0]"),
}


@pytest.mark.parametrize("name", sorted(NUL_BYTES))
def test_a_nul_byte_in_the_pipeline_is_a_configuration_error(repo: Path, name: str) -> None:
    job, at = NUL_BYTES[name]
    _commit(repo, f"  jobs:\n    t: {job}\n")
    ran = run_cli("run", cwd=repo, env={"CI": "1"})
    assert ran.code == 2, ran.output
    assert "internal error" not in ran.output
    assert at in ran.stderr
    assert "NUL" in ran.stderr
    assert json.loads(run_cli("runs", "list", "--json", cwd=repo).stdout) == []
    checked = run_cli("validate", cwd=repo)
    assert checked.code == 2, checked.output
    assert at in checked.stderr


def test_a_secret_with_a_nul_byte_is_refused_before_the_run_starts(repo: Path) -> None:
    _commit(repo, "  jobs:\n    t: {run: 'echo \"$TOKEN\"', secrets: [TOKEN]}\n")
    secrets = repo / ".shipyard" / "secrets"
    secrets.parent.mkdir(exist_ok=True)
    secrets.write_bytes(b"TOKEN=abcdefgh\0ijklmnop\n")
    secrets.chmod(0o600)
    ran = run_cli("run", cwd=repo, env={"CI": "1"})
    assert ran.code == 2, ran.output
    assert "internal error" not in ran.output
    assert "TOKEN" in ran.stderr
    assert "NUL" in ran.stderr
    assert "abcdefgh" not in ran.output
    assert "ijklmnop" not in ran.output
    assert json.loads(run_cli("runs", "list", "--json", cwd=repo).stdout) == []


def test_a_catastrophic_regex_in_if_is_evaluated_in_linear_time(repo: Path) -> None:
    # With a backtracking engine each of these takes longer than the universe is old.
    _commit(
        repo,
        "  jobs:\n"
        "    nested: {run: echo, if: \"matches(env.SUBJECT, '(a|aa)+')\"}\n"
        "    starred: {run: echo, if: \"matches(env.SUBJECT, '(a*)*c')\"}\n"
        "    fine: {run: echo, if: \"matches(env.SUBJECT, 'a+b')\"}\n",
    )
    result = run_cli("run", "--json", cwd=repo, env={"SUBJECT": "a" * 5000 + "b"}, timeout=90)
    assert result.code == 0, result.output
    status = {job["job"]: job["status"] for job in json.loads(result.stdout)["jobs"]}
    assert status == {"nested": "skipped", "starred": "skipped", "fine": "passed"}


def test_a_catastrophic_glob_in_changed_is_matched_in_linear_time(repo: Path) -> None:
    (repo / ("a" * 200)).write_text("x\n")
    _commit(
        repo,
        "  jobs:\n"
        "    stars: {run: echo, if: \"changed('*a*a*a*a*a*a*a*a*a*a*b')\"}\n"
        "    plain: {run: echo, if: \"changed('a*')\"}\n",
    )
    result = run_cli("run", "--json", cwd=repo, timeout=90)
    assert result.code == 0, result.output
    status = {job["job"]: job["status"] for job in json.loads(result.stdout)["jobs"]}
    assert status == {"stars": "skipped", "plain": "passed"}


def test_sigterm_cancels_the_run_records_it_and_exits(repo: Path, tmp_path: Path) -> None:
    job, pidfile = _grandchild_job(tmp_path)
    _commit(
        repo, f"  jobs:\n    hang: {{run: 'bash {job}'}}\n    after: {{needs: [hang], run: echo}}\n"
    )
    process = _start(repo, "run")
    _wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
    grandchild = int(pidfile.read_text())
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, out + err
    assert "Traceback" not in out + err
    _wait_for(lambda: _gone(grandchild), timeout=15)
    shown = json.loads(run_cli("runs", "show", "1", "--json", cwd=repo).stdout)
    assert shown["status"] == "cancelled"
    assert {j["job"]: j["status"] for j in shown["jobs"]} == {
        "hang": "cancelled",
        "after": "cancelled",
    }


def test_sigterm_stops_logs_follow(repo: Path, tmp_path: Path) -> None:
    job, pidfile = _grandchild_job(tmp_path)
    _commit(repo, f"  jobs:\n    hang: {{run: 'bash {job}'}}\n")
    runner = _start(repo, "run")
    try:
        _wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
        follower = _Follower(repo, tmp_path)
        _wait_for(lambda: follower.printed("waiting"))  # it is following
        follower.process.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=60)
        # Ended by the signal itself (the default action) or by exiting with 128 + 15.
        assert follower.process.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM), out + err
        assert "Traceback" not in err
    finally:
        runner.send_signal(signal.SIGTERM)
        runner.communicate(timeout=60)
    assert runner.returncode == 143


def test_a_run_whose_driver_was_killed_is_failed_driver_lost(repo: Path, tmp_path: Path) -> None:
    job, pidfile = _grandchild_job(tmp_path)
    _commit(
        repo, f"  jobs:\n    hang: {{run: 'bash {job}'}}\n    after: {{needs: [hang], run: echo}}\n"
    )
    driver = _start(repo, "run")
    try:
        _wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
    finally:
        driver.kill()
        driver.communicate(timeout=60)
    grandchild = int(pidfile.read_text())
    listed = json.loads(run_cli("runs", "list", "--json", cwd=repo).stdout)
    assert listed[0]["status"] == "failed", listed
    assert "driver lost" in listed[0]["message"]
    assert f"process {driver.pid}" in listed[0]["message"]
    # What the dead driver's jobs left running is stopped, not left to run for ever.
    _wait_for(lambda: _gone(grandchild), timeout=15)
    shown = json.loads(run_cli("runs", "show", "last", "--json", cwd=repo).stdout)
    jobs = {j["job"]: j for j in shown["jobs"]}
    assert jobs["hang"]["status"] == "failed"
    assert "driver lost" in jobs["hang"]["reason"]
    assert jobs["after"]["status"] == "cancelled"
    assert shown["jobs"][0]["attempts"][0]["status"] == "failed"
    cancelled = run_cli("runs", "cancel", "last", cwd=repo)
    assert cancelled.code == 0, cancelled.output
    assert "cancel requested" not in cancelled.stdout
    assert "failed" in cancelled.stdout
    assert "driver lost" in cancelled.stdout
    followed = run_cli("logs", "last", "--follow", cwd=repo, timeout=60)
    assert followed.code == 0, followed.output
    assert "waiting" in followed.stdout


def test_logs_follow_ends_when_the_driver_dies_under_it(repo: Path, tmp_path: Path) -> None:
    job, pidfile = _grandchild_job(tmp_path)
    _commit(repo, f"  jobs:\n    hang: {{run: 'bash {job}'}}\n")
    driver = _start(repo, "run")
    try:
        _wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
        follower = _Follower(repo, tmp_path)
        _wait_for(lambda: follower.printed("waiting"))  # it is following
    finally:
        driver.kill()
        driver.communicate(timeout=60)
    try:
        out, err = follower.communicate(timeout=60)
    finally:
        follower.process.kill()
    assert follower.process.returncode == 0, out + err
    assert "waiting" in out
    assert "driver lost" in out + err
    shown = json.loads(run_cli("runs", "show", "last", "--json", cwd=repo).stdout)
    assert shown["status"] == "failed"


def test_the_next_run_records_an_earlier_run_whose_driver_died(repo: Path, tmp_path: Path) -> None:
    job, pidfile = _grandchild_job(tmp_path)
    _commit(repo, f"  jobs:\n    hang: {{run: 'bash {job}', if: \"event == 'manual'\"}}\n")
    driver = _start(repo, "run")
    try:
        _wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
    finally:
        driver.kill()
        driver.communicate(timeout=60)
    again = run_cli("run", "--event", "push", "--json", cwd=repo, env={"CI": "1"})
    assert again.code == 0, again.output
    state = state_dir.locate(repo)
    store = open_store(state)
    try:
        first = runs.get_run(store, 1)
    finally:
        store.dispose()
    assert first.status == "failed"
    assert "driver lost" in (first.message or "")
