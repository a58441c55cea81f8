"""Artifacts, outputs, the job cache, re-runs and flaky jobs, on real repositories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cisupport import Project
from shipyard.ci import runs
from shipyard.ci.runner import RunRequest, prepare_run
from shipyard.core.blobs import BlobStore
from shipyard.core.config import ConfigInvalid
from shipyard.core.store.tables import cache_entries


def _blobs(project: Project) -> BlobStore:
    return BlobStore.for_state(project.state)


@pytest.mark.backends
def test_artifacts_reach_dependents_and_only_them(project: Project) -> None:
    project.commit("""
        jobs:
          build:
            run: mkdir -p dist && echo wheel-bytes > dist/app.whl && echo scratch > scratch.txt
            artifacts: [dist/*.whl]
          test: {needs: [build], run: "cat dist/app.whl && test ! -e scratch.txt"}
          unrelated: {run: "test ! -e dist/app.whl"}
          later: {needs: [test], run: "test ! -e dist/app.whl"}
    """)
    run, jobs = project.run()
    assert run.status == "passed", {k: j.reason for k, j in jobs.items()}
    assert "wheel-bytes" in project.log(run.id, "test")
    assert jobs["build"].artifacts is not None


@pytest.mark.backends
def test_each_matrix_instance_keeps_its_own_artifacts(project: Project) -> None:
    project.commit("""
        jobs:
          build:
            matrix: {py: ["3.11", "3.12"]}
            run: >-
              mkdir -p out &&
              echo "built on $SHIPYARD_MATRIX_PY" > out/report-$SHIPYARD_MATRIX_PY.txt
            artifacts: [out/]
          gather: {needs: [build], run: cat out/report-3.11.txt out/report-3.12.txt}
    """)
    run, jobs = project.run()
    assert run.status == "passed", {k: j.reason for k, j in jobs.items()}
    log = project.log(run.id, "gather")
    assert "built on 3.11" in log and "built on 3.12" in log
    from shipyard.ci.artifacts import load_set

    named = load_set(jobs["build[py=3.12]"].artifacts or "", _blobs(project))
    assert named.job_id == "build[py=3.12]"
    assert [f.path for f in named.files] == ["out/report-3.12.txt"]


def test_colliding_matrix_artifacts_fail_the_dependent_clearly(project: Project) -> None:
    project.commit("""
        jobs:
          build:
            matrix: {py: ["3.11", "3.12"]}
            run: echo "$SHIPYARD_MATRIX_PY" > report.txt
            artifacts: [report.txt]
          gather: {needs: [build], run: cat report.txt}
    """)
    run, jobs = project.run()
    assert run.status == "failed"
    assert "both hold 'report.txt'" in (jobs["gather"].reason or "")


def test_a_pattern_matching_nothing_fails_or_warns_as_configured(project: Project) -> None:
    project.commit("""
        jobs:
          strict: {run: echo, artifacts: [dist/*.whl]}
          lenient: {run: echo, artifacts: [dist/*.whl], artifacts_missing: warn}
    """)
    run, jobs = project.run()
    assert jobs["strict"].status == "failed"
    assert "matched no file: dist/*.whl" in (jobs["strict"].reason or "")
    assert jobs["lenient"].status == "passed"
    assert "warning: artifact pattern(s) matched no file" in project.log(run.id, "lenient")


def test_an_artifact_escaping_the_workspace_is_refused(project: Project, tmp_path: Path) -> None:
    secret = tmp_path / "outside.txt"
    secret.write_text("not yours")
    project.commit(f"""
        jobs:
          sneaky: {{run: "ln -s {secret} link.txt", artifacts: [link.txt]}}
    """)
    _, jobs = project.run()
    assert jobs["sneaky"].status == "failed"
    assert "leads outside the workspace" in (jobs["sneaky"].reason or "")
    project.commit("jobs:\n  bad: {run: echo, artifacts: [../../etc/passwd]}\n")
    with pytest.raises(ConfigInvalid, match="must stay inside the workspace"):
        prepare_run(project.path, RunRequest(), project.state)


def test_outputs_reach_if_and_the_environment(project: Project) -> None:
    project.commit("""
        jobs:
          version:
            run:
              - echo "number=1.2.3" >> "$SHIPYARD_OUTPUT"
              - echo channel=rc >> "$SHIPYARD_OUTPUT"
          publish:
            needs: [version]
            if: "needs.version.outputs.channel == 'rc'"
            run: echo "publishing $SHIPYARD_NEEDS_VERSION_NUMBER"
          stable:
            needs: [version]
            if: "needs.version.outputs.channel == 'stable'"
            run: echo never
    """)
    run, jobs = project.run()
    assert jobs["version"].outputs == {"number": "1.2.3", "channel": "rc"}
    assert jobs["publish"].status == "passed"
    assert "publishing 1.2.3" in project.log(run.id, "publish")
    assert jobs["stable"].status == "skipped"


def test_a_malformed_output_file_fails_the_job(project: Project) -> None:
    project.commit("""
        jobs:
          bad: {run: 'echo "no equals sign here" >> "$SHIPYARD_OUTPUT"'}
    """)
    _, jobs = project.run()
    assert jobs["bad"].status == "failed"
    assert "line 1 is not KEY=VALUE" in (jobs["bad"].reason or "")


def test_an_output_with_a_nul_byte_fails_the_job_that_wrote_it(project: Project) -> None:
    project.commit("""
        jobs:
          write:
            run: 'echo ok=1 >> "$SHIPYARD_OUTPUT"; printf "v=x\\000y\\n" >> "$SHIPYARD_OUTPUT"'

          read: {needs: [write], run: 'echo "$SHIPYARD_NEEDS_WRITE_V"'}
    """)
    run, jobs = project.run()
    assert run.status == "failed"
    assert jobs["write"].status == "failed"
    assert "line 2" in (jobs["write"].reason or "")
    assert "NUL" in (jobs["write"].reason or "")
    assert jobs["read"].status == "skipped"


CACHED = """
    jobs:
      build:
        run:
          - mkdir -p dist && cat src.txt > dist/out.txt && echo building
          - echo "v=$(cat src.txt)" >> "$SHIPYARD_OUTPUT"
        artifacts: [dist/out.txt]
        env: {MODE: fast}
      test:
        needs: [build]
        run: cat dist/out.txt && echo "$SHIPYARD_NEEDS_BUILD_V"
"""


@pytest.mark.backends
def test_an_unchanged_rerun_is_served_from_the_cache(project: Project) -> None:
    project.commit(CACHED, files={"src.txt": "one\n"})
    first, jobs = project.run()
    assert first.status == "passed"
    assert not any(j.cached for j in jobs.values())
    second, jobs = project.run()
    assert second.status == "passed"
    assert all(j.cached for j in jobs.values())
    assert jobs["build"].reason == f"cached from run #{first.id}"
    assert "building" in project.log(second.id, "build")  # the log is replayed
    assert jobs["build"].outputs == {"v": "one"}
    assert "one" in project.log(second.id, "test")
    _, jobs = project.run(no_cache=True)
    assert not any(j.cached for j in jobs.values())


def test_jobs_the_cache_holds_are_served_without_waiting_for_a_free_slot(
    project: Project,
) -> None:
    # One job at a time: a job that really runs holds the only slot, and the jobs the cache
    # holds (with a dependent of theirs) are served before it even starts, not after it.
    project.commit("""
        jobs:
          slow: {run: echo slow, cache: false}
          fast: {run: echo fast}
          after-fast: {needs: [fast], run: echo after}
    """)
    project.run(concurrency=1)
    run, jobs = project.run(concurrency=1)
    assert run.status == "passed"
    assert jobs["fast"].cached and jobs["after-fast"].cached and not jobs["slow"].cached
    slow_started = jobs["slow"].started_at
    assert slow_started is not None
    for served in ("fast", "after-fast"):
        finished = jobs[served].finished_at
        assert finished is not None and finished <= slow_started


@pytest.mark.backends
@pytest.mark.parametrize("change", ["input", "env", "unrelated-untracked"])
def test_the_cache_is_invalidated_by_what_jobs_depend_on(project: Project, change: str) -> None:
    project.commit(CACHED, files={"src.txt": "one\n"})
    project.run()
    if change == "input":
        project.commit(CACHED, files={"src.txt": "two\n"})
    elif change == "env":
        project.commit(CACHED.replace("MODE: fast", "MODE: slow"), files={"src.txt": "one\n"})
    else:
        (project.path / "notes.txt").write_text("not tracked")
    run, jobs = project.run()
    if change == "unrelated-untracked":
        assert jobs["build"].cached
        return
    assert not jobs["build"].cached
    if change == "input":
        assert not jobs["test"].cached  # its consumed artifact changed
        assert "two" in project.log(run.id, "test")
    else:
        assert jobs["test"].cached  # same artifact, same outputs: same key


def test_declared_inputs_narrow_what_invalidates(project: Project) -> None:
    pipeline = """
        jobs:
          docs: {run: cat docs.txt, inputs: [docs.txt]}
          code: {run: cat code.txt, inputs: [code.txt]}
    """
    project.commit(pipeline, files={"docs.txt": "d1\n", "code.txt": "c1\n"})
    project.run()
    project.commit(pipeline, files={"docs.txt": "d2\n"})
    _, jobs = project.run()
    assert not jobs["docs"].cached
    assert jobs["code"].cached


def test_a_secret_value_changes_the_key_without_being_stored(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_TOKEN", "first-token-value")
    project.commit("jobs:\n  call: {run: echo calling, secrets: [API_TOKEN]}\n")
    project.run()
    _, jobs = project.run()
    assert jobs["call"].cached
    monkeypatch.setenv("API_TOKEN", "second-token-value")
    _, jobs = project.run()
    assert not jobs["call"].cached
    db = (project.state.root / "shipyard.db").read_bytes()
    assert b"first-token-value" not in db and b"second-token-value" not in db


def test_failed_jobs_are_never_cached(project: Project) -> None:
    project.commit("jobs:\n  broken: {run: 'echo once >> ../../count.txt; exit 1'}\n")
    project.run()
    _, jobs = project.run()
    assert not jobs["broken"].cached
    with project.store.read() as conn:
        assert conn.execute(cache_entries.select()).all() == []


@pytest.mark.backends
def test_a_corrupted_blob_is_detected_and_the_job_runs_again(project: Project) -> None:
    project.commit(CACHED, files={"src.txt": "one\n"})
    _, jobs = project.run()
    blobs = _blobs(project)
    manifest = jobs["build"].artifacts
    from shipyard.ci.artifacts import load_set

    stored = load_set(manifest or "", blobs).files[0].digest
    target = blobs._path(blobs_digest(stored))  # the file a disk error would damage
    os.chmod(target, 0o644)
    target.write_bytes(b"bit rot")
    second, jobs = project.run()
    assert second.status == "passed"
    assert not jobs["build"].cached or not jobs["test"].cached
    assert "one" in project.log(second.id, "test")


def blobs_digest(text: str) -> object:
    from shipyard.core.blobs import Digest

    return Digest.parse(text)


@pytest.mark.backends
def test_rerun_failed_runs_only_failed_jobs_and_dependents(
    project: Project, tmp_path: Path
) -> None:
    flag = tmp_path / "fixed"
    project.commit(f"""
        jobs:
          build: {{run: 'mkdir -p d && echo built > d/a.txt', artifacts: [d/a.txt], cache: false}}
          flaky: {{needs: [build], run: 'cat d/a.txt && test -e {flag}', cache: false}}
          after: {{needs: [flaky], run: echo after, cache: false}}
          other: {{run: echo other, cache: false}}
    """)
    first, jobs = project.run()
    assert first.status == "failed"
    assert jobs["after"].status == "skipped"
    flag.write_text("now it works")
    prepared_ids = []
    import asyncio

    from shipyard.ci.runner import execute

    prepared = prepare_run(
        project.path, RunRequest(ref=first.commit, rerun_of=first.id), project.state
    )
    second = asyncio.run(
        execute(prepared, store=project.store, state=project.state, actor="tester")
    )
    prepared_ids.append(second.id)
    jobs = {j.job_id: j for j in runs.jobs_of(project.store, second.id)}
    assert second.status == "passed"
    assert second.rerun_of == first.id
    assert jobs["build"].reason == f"reused from run #{first.id}"
    assert jobs["other"].reason == f"reused from run #{first.id}"
    assert jobs["flaky"].reason is None and jobs["flaky"].status == "passed"
    assert "built" in project.log(second.id, "flaky")  # the reused artifact reached it
    assert jobs["after"].status == "passed"


@pytest.mark.backends
def test_a_job_that_passes_on_retry_is_recorded_as_flaky(project: Project, tmp_path: Path) -> None:
    counter = tmp_path / "n"
    project.commit(f"""
        jobs:
          wobbly:
            run: 'n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; [ $n -ge 1 ]'
            retry: {{max: 2}}
    """)
    _, jobs = project.run()
    assert jobs["wobbly"].flaky
    assert runs.flaky_jobs(project.store)[0]["job"] == "wobbly"
