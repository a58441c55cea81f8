"""Runs on real git repositories and real subprocesses: order, parallelism, conditions,
failures, retries, timeouts, cancels, secrets and logs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psutil
import pytest

from cisupport import Project
from shipyard.ci import drivers, runs
from shipyard.ci.runner import RunRequest, prepare_run
from shipyard.core.config import ConfigInvalid
from shipyard.core.errors import NotFoundError
from shipyard.core.secrets import SecretError
from support import git


def _order(store: runs.Store, run_id: int) -> list[str]:
    started = sorted(
        runs.jobs_of(store, run_id), key=lambda j: (j.started_at is None, j.started_at)
    )
    return [j.job_id for j in started if j.started_at is not None]


@pytest.mark.backends
def test_jobs_run_in_dependency_order(project: Project) -> None:
    project.commit("""
        jobs:
          package: {needs: [test], run: echo package}
          test: {needs: [lint], run: echo test}
          lint: {run: echo lint}
    """)
    run, jobs = project.run(concurrency=4)
    assert run.status == "passed"
    assert all(job.status == "passed" for job in jobs.values())
    lint, test, package = jobs["lint"], jobs["test"], jobs["package"]
    assert lint.finished_at is not None and test.started_at is not None
    assert lint.finished_at <= test.started_at
    assert test.finished_at is not None and package.started_at is not None
    assert test.finished_at <= package.started_at


def test_independent_jobs_overlap(project: Project, tmp_path: Path) -> None:
    # Each job announces itself and waits until it sees the other: only parallel jobs can pass.
    meet = tmp_path / "meet"
    meet.mkdir()
    wait = (
        f"touch {meet}/$SHIPYARD_JOB; for i in $(seq 1 300); do "
        f"[ -e {meet}/$OTHER ] && exit 0; sleep 0.05; done; exit 1"
    )
    project.commit(f"""
        jobs:
          left: {{run: '{wait}', env: {{OTHER: right}}}}
          right: {{run: '{wait}', env: {{OTHER: left}}}}
    """)
    run, jobs = project.run(concurrency=2)
    assert run.status == "passed", [j.reason for j in jobs.values()]


def test_concurrency_one_runs_jobs_one_at_a_time(project: Project, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    step = f"[ ! -e {busy} ] && touch {busy} && sleep 0.2 && rm {busy}"
    project.commit(f"""
        jobs:
          a: {{run: '{step}'}}
          b: {{run: '{step}'}}
          c: {{run: '{step}'}}
    """)
    run, _ = project.run(concurrency=1)
    assert run.status == "passed"


@pytest.mark.backends
def test_matrix_expands_and_jobs_see_their_values(project: Project) -> None:
    project.commit("""
        jobs:
          test:
            matrix:
              python: ["3.11", "3.12"]
              os: [linux, mac]
              exclude: [{python: "3.12", os: mac}]
              include: [{python: "3.13", os: linux}]
            run: echo "py=$SHIPYARD_MATRIX_PYTHON os=$SHIPYARD_MATRIX_OS job=$SHIPYARD_JOB"
          after: {needs: [test], run: echo done}
    """)
    run, jobs = project.run()
    assert run.status == "passed"
    assert set(jobs) == {
        "test[python=3.11,os=linux]",
        "test[python=3.11,os=mac]",
        "test[python=3.12,os=linux]",
        "test[python=3.13,os=linux]",
        "after",
    }
    log = project.log(run.id, "test[python=3.11,os=mac]")
    assert "py=3.11 os=mac job=test[python=3.11,os=mac]" in log
    after = jobs["after"]
    assert all(
        j.finished_at is not None
        and after.started_at is not None
        and j.finished_at <= after.started_at
        for k, j in jobs.items()
        if k != "after"
    )


def test_jobs_see_the_run_environment(project: Project) -> None:
    commit = project.commit("""
        jobs:
          show: {run: 'env | grep ^SHIPYARD_ | sort; echo "CI=$CI"'}
    """)
    run, _ = project.run()
    log = project.log(run.id, "show")
    assert f"SHIPYARD_RUN_ID={run.id}" in log
    assert "SHIPYARD_JOB=show" in log
    assert f"SHIPYARD_COMMIT={commit}" in log
    assert "SHIPYARD_BRANCH=main" in log
    assert "CI=true" in log


def test_the_run_uses_the_commit_not_the_dirty_tree(project: Project) -> None:
    project.commit("jobs:\n  show: {run: cat data.txt}\n", files={"data.txt": "committed\n"})
    (project.path / "data.txt").write_text("dirty\n")
    run, _ = project.run()
    assert "committed" in project.log(run.id, "show")
    in_place, _ = project.run(worktree=True)
    assert "dirty" in project.log(in_place.id, "show")
    assert git(project.path, "worktree", "list").count("\n") == 1  # the checkout is gone


def test_an_older_commit_runs_its_own_pipeline(project: Project) -> None:
    old = project.commit("jobs:\n  old: {run: echo old}\n")
    project.commit("jobs:\n  new: {run: echo new}\n")
    run, jobs = project.run(ref=old)
    assert list(jobs) == ["old"]
    assert run.commit == old


def test_if_conditions_and_changed(project: Project) -> None:
    project.commit("jobs:\n  base: {run: echo}\n", files={"src/app.py": "x = 1\n"})
    project.commit(
        """
        jobs:
          on-main: {if: "branch == 'main'", run: echo main}
          on-tag: {if: "tag != null", run: echo tag}
          docs: {if: "changed('docs/**')", run: echo docs}
          src: {if: "changed('src/**')", run: echo src}
          after-docs: {needs: [docs], run: echo after}
    """,
        files={"src/app.py": "x = 2\n"},
    )
    run, jobs = project.run()
    assert run.status == "passed"
    assert jobs["on-main"].status == "passed"
    assert jobs["on-tag"].status == "skipped"
    assert jobs["docs"].status == "skipped"
    assert "is false" in (jobs["docs"].reason or "")
    assert jobs["src"].status == "passed"
    assert jobs["after-docs"].status == "passed"  # a false condition does not block dependents


def test_changed_against_a_given_base(project: Project) -> None:
    base = project.commit("jobs:\n  x: {run: echo}\n", files={"docs/a.md": "a\n"})
    project.commit("jobs:\n  x: {run: echo}\n", files={"src/b.py": "b\n"})
    project.commit(
        "jobs:\n  docs: {if: \"changed('docs/**')\", run: echo}\n", files={"src/c.py": "c\n"}
    )
    _, jobs = project.run()
    assert jobs["docs"].status == "skipped"
    _, jobs = project.run(base=git(project.path, "rev-parse", f"{base}~1").strip())
    assert jobs["docs"].status == "passed"


@pytest.mark.backends
def test_a_failure_skips_dependents_and_fails_the_run(project: Project) -> None:
    project.commit("""
        jobs:
          broken: {run: "echo about to fail; exit 3"}
          after: {needs: [broken], run: echo never}
          unrelated: {run: echo fine}
          cleanup: {needs: [after], when: always, run: echo cleaning}
    """)
    run, jobs = project.run()
    assert run.status == "failed"
    assert jobs["broken"].status == "failed"
    assert "exit 3" in (jobs["broken"].reason or "")
    assert jobs["after"].status == "skipped"
    assert jobs["after"].reason == "broken failed"
    assert jobs["unrelated"].status == "passed"
    assert jobs["cleanup"].status == "passed"
    assert "cleaning" in project.log(run.id, "cleanup")


def test_allow_failure_keeps_the_run_green(project: Project) -> None:
    project.commit("""
        jobs:
          experimental: {run: "exit 1", allow_failure: true}
          after: {needs: [experimental], run: echo still runs}
    """)
    run, jobs = project.run()
    assert run.status == "passed"
    assert jobs["experimental"].status == "failed"
    assert "allowed to fail" in (jobs["experimental"].reason or "")
    assert jobs["after"].status == "passed"


def test_fail_fast_cancels_running_jobs(project: Project) -> None:
    project.commit("""
        jobs:
          fast-fail: {run: "sleep 0.3; exit 1"}
          slow: {run: "sleep 60"}
          later: {needs: [slow], run: echo}
          cleanup: {needs: [slow], when: always, run: echo cleaned}
    """)
    run, jobs = project.run(fail_fast=True, concurrency=4)
    assert run.status == "failed"
    assert jobs["slow"].status == "cancelled"
    assert jobs["later"].status == "cancelled"
    assert jobs["cleanup"].status == "passed"


def _tree_gone(marker_file: Path) -> bool:
    pid = int(marker_file.read_text())
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


SETSID_CHILD = (
    "import os, sys, time\n"
    "os.setsid()\n"
    "open(sys.argv[1], 'w').write(str(os.getpid()))\n"
    "time.sleep(600)\n"
)


def _script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def test_a_timeout_kills_the_whole_tree(project: Project, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    child = _script(tmp_path, "child.py", SETSID_CHILD)
    job = _script(tmp_path, "job.sh", f"python3 {child} {pidfile} &\nsleep 600\n")
    project.commit(f"""
        jobs:
          hang: {{run: "bash {job}", timeout: 2s}}
    """)
    run, jobs = project.run()
    assert run.status == "failed"
    assert jobs["hang"].reason == "timed out after 2s"
    assert _tree_gone(pidfile)
    attempt = runs.attempts_of(project.store, run.id, "hang")[0]
    assert attempt.status == "timed_out"
    assert attempt.failure_kind == "timeout"


def test_background_processes_do_not_outlive_their_job(project: Project, tmp_path: Path) -> None:
    pidfile = tmp_path / "orphan.pid"
    child = _script(tmp_path, "child.py", SETSID_CHILD)
    job = _script(
        tmp_path,
        "job.sh",
        f"python3 {child} {pidfile} &\n"
        f"while [ ! -s {pidfile} ]; do sleep 0.05; done\necho left one behind\n",
    )
    project.commit(f"""
        jobs:
          leaky: {{run: "bash {job}"}}
    """)
    run, _ = project.run()
    assert run.status == "passed"
    assert _tree_gone(pidfile)


def test_retry_by_failure_kind(project: Project, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    flaky = f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; [ $n -ge 2 ]"
    project.commit(f"""
        jobs:
          flaky: {{run: "{flaky}", retry: {{max: 3, on: [exit]}}}}
          slow: {{run: "sleep 5", timeout: 500ms, retry: {{max: 2, on: [exit]}}}}
    """)
    run, jobs = project.run()
    assert jobs["flaky"].status == "passed"
    assert jobs["flaky"].attempts == 3
    tried = runs.attempts_of(project.store, run.id, "flaky")
    assert [a.status for a in tried] == ["failed", "failed", "passed"]
    assert jobs["slow"].status == "failed"
    assert jobs["slow"].attempts == 1  # a timeout is not in retry.on


def test_the_log_cap_fails_the_job(project: Project) -> None:
    project.commit("""
        jobs:
          chatty: {run: "yes 'a line of output' | head -n 100000", log_limit: 64KiB}
    """)
    run, jobs = project.run()
    assert run.status == "failed"
    assert "log limit" in (jobs["chatty"].reason or "")
    attempt = runs.attempts_of(project.store, run.id, "chatty")[0]
    assert attempt.log_bytes < 80 * 1024
    assert "log limit of 64.0 KiB reached" in project.log(run.id, "chatty")


SECRET = "s3cr3t-Value/with+chars&more"


def test_secrets_are_masked_in_every_form(
    project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DEPLOY_TOKEN", SECRET)
    script = tmp_path / "leak.py"
    script.write_text(
        "import base64, json, os, sys, time, urllib.parse\n"
        "s = os.environ['DEPLOY_TOKEN']\n"
        "print('plain', s)\n"
        "print('b64', base64.b64encode(s.encode()).decode())\n"
        "print('url', urllib.parse.quote(s, safe=''))\n"
        "print('json', json.dumps({'token': s}))\n"
        "half = len(s) // 2\n"
        "sys.stdout.write('split ' + s[:half]); sys.stdout.flush(); time.sleep(0.3)\n"
        "sys.stdout.write(s[half:] + '\\n'); sys.stdout.flush()\n"
        "print('stderr', s, file=sys.stderr)\n"
    )
    project.commit(f"""
        jobs:
          leak: {{run: "python3 {script}", secrets: [DEPLOY_TOKEN]}}
          nosy: {{run: 'echo "token=[$DEPLOY_TOKEN]"'}}
    """)
    run, _ = project.run()
    log = project.log(run.id, "leak")
    assert log.count("***") >= 6, log
    import base64
    import urllib.parse

    for form in (
        SECRET,
        base64.b64encode(SECRET.encode()).decode(),
        urllib.parse.quote(SECRET, safe=""),
        json.dumps(SECRET)[1:-1],
    ):
        assert form not in log
    assert "token=[]" in project.log(run.id, "nosy")  # not declared: not given
    state_files = [p for p in project.state.root.rglob("*") if p.is_file()]
    for path in state_files:
        assert SECRET.encode() not in path.read_bytes(), path


def test_a_missing_secret_is_a_clear_error_before_anything_runs(project: Project) -> None:
    project.commit("jobs:\n  deploy: {run: echo, secrets: [NOT_SET_ANYWHERE]}\n")
    with pytest.raises(SecretError, match="NOT_SET_ANYWHERE is not set"):
        prepare_run(project.path, RunRequest(), project.state)
    assert runs.list_runs(project.store) == []


def test_a_short_secret_is_refused(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHORT_ONE", "abc")
    project.commit("jobs:\n  deploy: {run: echo, secrets: [SHORT_ONE]}\n")
    with pytest.raises(SecretError, match="too short") as caught:
        prepare_run(project.path, RunRequest(), project.state)
    assert "abc" not in str(caught.value)


def test_a_ref_that_does_not_exist_changes_nothing(project: Project) -> None:
    project.commit("jobs:\n  x: {run: echo}\n")
    with pytest.raises(NotFoundError, match="no-such-branch"):
        prepare_run(project.path, RunRequest(ref="no-such-branch"), project.state)
    assert runs.list_runs(project.store) == []


@pytest.mark.parametrize(
    "matrix, message",
    [
        ('{python: ["3.11"], exclude: [{python: "3.11"}]}', "no jobs at all"),
        (
            "{a: ["
            + ",".join(map(str, range(17)))
            + "], b: ["
            + ",".join(map(str, range(16)))
            + "]}",
            "272 jobs, more than 256",
        ),
    ],
)
def test_bad_matrices_are_configuration_errors(project: Project, matrix: str, message: str) -> None:
    project.commit(f"jobs:\n  t: {{run: echo, matrix: {matrix}}}\n")
    with pytest.raises(ConfigInvalid, match=message) as caught:
        prepare_run(project.path, RunRequest(), project.state)
    assert "pipeline.jobs.t.matrix" in str(caught.value)
    assert runs.list_runs(project.store) == []


def test_an_if_syntax_error_names_its_column(project: Project) -> None:
    project.commit("jobs:\n  t: {run: echo, if: \"branch == 'main' and\"}\n")
    with pytest.raises(ConfigInvalid) as caught:
        prepare_run(project.path, RunRequest(), project.state)
    text = str(caught.value)
    assert "pipeline.jobs.t.if" in text
    assert "column" in text


def test_an_unknown_command_fails_its_job_clearly(project: Project) -> None:
    project.commit("jobs:\n  t: {run: definitely-not-a-command --flag}\n")
    run, jobs = project.run()
    assert run.status == "failed"
    assert "command was not found" in (jobs["t"].reason or "")
    assert "definitely-not-a-command" in project.log(run.id, "t")


@pytest.mark.backends
def test_run_start_and_finish_are_audited(project: Project) -> None:
    from shipyard.core import audit

    project.commit("jobs:\n  x: {run: echo}\n")
    run, _ = project.run()
    with project.store.read() as conn:
        actions = [e.action for e in audit.events(conn, subject=f"run:{run.id}")]
        audit.verify(conn)
    assert actions == ["run.started", "run.finished"]


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.mark.backends
def test_only_the_drivers_host_judges_whether_its_driver_is_gone(project: Project) -> None:
    project.commit("jobs:\n  x: {run: echo}\n")
    pid = _dead_pid()
    recorded = {
        host: runs.create_run(
            project.store,
            project="demo",
            commit="0" * 40,
            ref="HEAD",
            branch="main",
            tag=None,
            event="manual",
            actor="tester",
            workspace="isolated",
            config_digest="",
            jobs=(),
            driver_pid=pid,
            driver_host=host,
        ).id
        for host in (drivers.this_host(), "another-host.example", None)
    }
    lost = drivers.reconcile(project.store, actor="tester")
    assert sorted(run.id for run in lost) == sorted(
        recorded[host] for host in (drivers.this_host(), None)
    )
    here = runs.get_run(project.store, recorded[drivers.this_host()])
    assert here.status == "failed"
    assert drivers.was_lost(here)
    assert runs.get_run(project.store, recorded["another-host.example"]).status == "running"
    assert drivers.reconcile(project.store, actor="tester") == []
