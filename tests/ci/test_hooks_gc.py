"""Git hooks that start runs (and supersede older ones), and garbage collection."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cisupport import Project
from shipyard.ci import hooks, retention, runs
from shipyard.core.blobs import BlobStore
from shipyard.core.errors import ArgumentError
from shipyard.core.git import Git
from shipyard.core.store.tables import runs as runs_table
from support import git, run_cli


def _wait(predicate: object, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def _runs(project: Project) -> list[runs.Run]:
    return runs.list_runs(project.store)


def test_the_hook_runs_each_new_commit_in_the_background(project: Project) -> None:
    installed = run_cli("hook", "install", cwd=project.path)
    assert installed.code == 0, installed.output
    commit = project.commit("jobs:\n  hello: {run: echo hello from the hook}\n")
    _wait(lambda: _runs(project) and _runs(project)[0].finished)
    run = _runs(project)[0]
    assert run.commit == commit
    assert run.event == "hook"
    assert run.branch == "main"
    assert run.status == "passed"
    assert "hello from the hook" in project.log(run.id, "hello")
    removed = run_cli("hook", "uninstall", cwd=project.path)
    assert removed.code == 0
    assert not (project.path / ".git" / "hooks" / "post-commit").exists()


@pytest.mark.parametrize(
    "pipeline, reason",
    [
        ("jobs:\n  t: {run: echo, if: \"branch = 'main'\"}\n", "pipeline.jobs.t.if"),
        ("jobs:\n  t: {run: echo, secrets: [NOT_SET_ANYWHERE]}\n", "NOT_SET_ANYWHERE"),
    ],
)
def test_a_hook_run_that_cannot_start_is_recorded_as_failed_with_the_reason(
    project: Project, pipeline: str, reason: str
) -> None:
    installed = run_cli("hook", "install", cwd=project.path)
    assert installed.code == 0, installed.output
    commit = project.commit(pipeline)
    _wait(lambda: _runs(project) and _runs(project)[0].finished)
    run = _runs(project)[0]
    assert run.commit == commit
    assert run.event == "hook"
    assert run.branch == "main"
    assert run.status == "failed"
    assert reason in (run.message or "")
    assert run.message is not None and run.message.startswith("could not start")
    listed = json.loads(run_cli("runs", "list", "--json", cwd=project.path).stdout)
    assert listed[0]["status"] == "failed"
    assert reason in listed[0]["message"]


def test_a_newer_commit_supersedes_the_older_run(project: Project, tmp_path: Path) -> None:
    gate = tmp_path / "open"
    pipeline = f"jobs:\n  wait: {{run: 'while [ ! -e {gate} ]; do sleep 0.1; done'}}\n"
    hooks.install(Git(project.path), state_root=project.state.root)
    first = project.commit(pipeline, message="first")
    _wait(lambda: any(r.commit == first and r.status == "running" for r in _runs(project)))
    second = project.commit(pipeline + "# second\n", message="second")
    _wait(lambda: any(r.commit == second for r in _runs(project)))
    _wait(lambda: next(r for r in _runs(project) if r.commit == first).finished)
    older = next(r for r in _runs(project) if r.commit == first)
    newer = next(r for r in _runs(project) if r.commit == second)
    assert older.status == "cancelled"
    assert older.superseded_by == newer.id
    gate.write_text("go")
    _wait(lambda: runs.get_run(project.store, newer.id).finished)
    assert runs.get_run(project.store, newer.id).status == "passed"


def test_a_foreign_hook_is_kept_and_chained_only_with_force(
    project: Project, tmp_path: Path
) -> None:
    marker = tmp_path / "theirs-ran"
    existing = project.path / ".git" / "hooks" / "post-commit"
    existing.write_text(f"#!/bin/sh\ntouch {marker}\n")
    existing.chmod(0o755)
    with pytest.raises(ArgumentError, match="not Shipyard's"):
        hooks.install(Git(project.path), state_root=project.state.root)
    hooks.install(Git(project.path), state_root=project.state.root, force=True)
    project.commit("jobs:\n  x: {run: echo}\n")
    _wait(marker.exists)
    _wait(lambda: _runs(project) and _runs(project)[0].finished)
    hooks.uninstall(Git(project.path))
    assert existing.read_text() == f"#!/bin/sh\ntouch {marker}\n"


def test_a_bare_repository_gets_a_post_receive_hook(project: Project, tmp_path: Path) -> None:
    project.commit("jobs:\n  built: {run: echo pushed and built}\n")
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(project.path), str(bare))
    installed = run_cli("hook", "install", "--json", cwd=bare)
    assert json.loads(installed.stdout)["hook"] == "post-receive"
    git(project.path, "remote", "add", "origin", str(bare))
    project.commit("jobs:\n  built: {run: echo pushed and built}\n", message="feat: push me")
    git(project.path, "push", "-q", "origin", "main")
    _wait(
        lambda: (
            json.loads(run_cli("runs", "list", "--json", cwd=bare).stdout or "[]")
            and json.loads(run_cli("runs", "list", "--json", cwd=bare).stdout)[0]["finished_at"]
        )
    )
    listed = json.loads(run_cli("runs", "list", "--json", cwd=bare).stdout)
    assert listed[0]["status"] == "passed"
    assert listed[0]["branch"] == "main"


def _releases(cwd: Path) -> list[dict[str, object]]:
    listed = run_cli("releases", "list", "--json", cwd=cwd)
    value = json.loads(listed.stdout or "[]")
    assert isinstance(value, list)
    return value


@pytest.fixture
def signing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A private place for signing keys, seen by the hooks' background processes too."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SHIPYARD_USER", "flow@example.com")


@pytest.mark.usefixtures("signing")
def test_the_flow_hook_releases_commits_on_release_branches_and_runs_the_others(
    project: Project,
) -> None:
    assert run_cli("keys", "generate", cwd=project.path).code == 0
    installed = run_cli("hook", "install", "--flow", "--json", cwd=project.path)
    assert installed.code == 0, installed.output
    assert json.loads(installed.stdout)["release_branches"] == ["main"]
    pipeline = "jobs:\n  build: {run: echo built $SHIPYARD_VERSION}\n"
    released = project.commit(pipeline, message="feat: ship it")
    _wait(lambda: any(r["status"] == "published" for r in _releases(project.path)))
    record = _releases(project.path)[0]
    assert (record["version"], record["commit"]) == ("0.1.0", released)
    assert git(project.path, "rev-list", "-n1", "v0.1.0").strip() == released
    run = _runs(project)[0]
    assert (run.commit, run.event, run.status) == (released, "release", "passed")
    assert "built 0.1.0" in project.log(run.id, "build")

    git(project.path, "checkout", "-q", "-b", "topic")
    topic = project.commit("jobs:\n  build: {run: echo topic}\n", message="feat: not yet")
    _wait(lambda: any(r.commit == topic and r.finished for r in _runs(project)))
    assert next(r for r in _runs(project) if r.commit == topic).event == "hook"
    assert len(_releases(project.path)) == 1  # a topic branch is built, never released


def test_flow_options_are_checked(project: Project) -> None:
    wrong = run_cli("hook", "install", "--branch", "main", cwd=project.path)
    assert wrong.code == 2 and "--flow" in wrong.output
    bad = run_cli("hook", "install", "--flow", "--branch", "no good..name", cwd=project.path)
    assert bad.code == 2 and "not a valid branch name" in bad.output
    git(project.path, "checkout", "-q", "--detach")
    detached = run_cli("hook", "install", "--flow", cwd=project.path)
    assert detached.code == 2 and "--flow --branch" in detached.output
    assert not (project.path / ".git" / "hooks" / "post-commit").exists()


@pytest.mark.usefixtures("signing")
def test_the_flow_hook_of_a_bare_repository_releases_what_is_pushed(
    project: Project, tmp_path: Path
) -> None:
    project.commit("jobs:\n  build: {run: echo built}\n")
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(project.path), str(bare))
    assert run_cli("keys", "generate", cwd=bare).code == 0
    installed = run_cli("hook", "install", "--flow", "--json", cwd=bare)
    assert json.loads(installed.stdout)["release_branches"] == ["main"]
    git(project.path, "remote", "add", "origin", str(bare))
    pushed = project.commit("jobs:\n  build: {run: echo built}\n", message="feat: push me")
    git(project.path, "push", "-q", "origin", "main")
    _wait(lambda: any(r["status"] == "published" for r in _releases(bare)))
    record = _releases(bare)[0]
    assert (record["version"], record["commit"]) == ("0.1.0", pushed)
    assert git(bare, "rev-list", "-n1", "v0.1.0").strip() == pushed
    assert run_cli("verify", "0.1.0", cwd=bare).code == 0


def test_gc_frees_what_it_said_and_keeps_what_is_referenced(project: Project) -> None:
    project.commit("""
        jobs:
          build: {run: 'mkdir -p d && echo artifact > d/a.txt', artifacts: [d/a.txt]}
    """)
    old, _ = project.run(no_cache=True)
    now = datetime.now(UTC)
    kept, kept_jobs = project.run(no_cache=True)
    blobs = BlobStore.for_state(project.state)
    # Age the first run only; its artifact has the same content as the kept one's.
    with project.store.write() as conn:
        conn.execute(
            runs_table.update()
            .where(runs_table.c.id == old.id)
            .values(finished_at=(old.finished_at or now) - timedelta(days=60))
        )
    stray = blobs.put_bytes(b"nobody refers to me")
    planned = retention.plan(project.store, project.state, blobs, retention=timedelta(days=30))
    assert planned.runs == (old.id,)
    assert str(stray.digest) not in planned.blobs  # too young: a run may be recording it
    later = retention.plan(
        project.store,
        project.state,
        blobs,
        retention=timedelta(days=30),
        now=now + timedelta(hours=2),
    )
    assert str(stray.digest) in later.blobs
    kept_manifest = kept_jobs["build"].artifacts
    assert kept_manifest not in later.blobs
    freed = retention.apply(later, project.store, project.state, blobs, actor="tester")
    assert freed == later.total_bytes
    assert not blobs.exists(stray.digest)
    assert blobs.exists(kept_manifest or "")
    assert [r.id for r in runs.list_runs(project.store)] == [kept.id]
    assert not (project.state.logs / f"run-{old.id}").exists()
    assert (project.state.logs / f"run-{kept.id}").exists()


def test_gc_is_a_dry_run_without_yes(project: Project) -> None:
    project.commit("jobs:\n  x: {run: echo}\n")
    project.run()
    shown = run_cli("gc", "--older-than", "0s", "--json", cwd=project.path)
    assert json.loads(shown.stdout)["runs"] == 1
    assert json.loads(shown.stdout)["removed"] is False
    assert len(runs.list_runs(project.store)) == 1
    done = run_cli("gc", "--older-than", "0s", "--yes", cwd=project.path)
    assert done.code == 0, done.output
    assert runs.list_runs(project.store) == []
