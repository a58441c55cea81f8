"""``shipyard release`` end to end: version first, pipeline, signed bundle, tag, crash safety."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from support import CliResult, git, run_cli

PIPELINE = """project: relapp
pipeline:
  jobs:
    build:
      run: mkdir -p dist && echo "wheel $SHIPYARD_VERSION" > dist/relapp-$SHIPYARD_VERSION.whl
      artifacts: [dist/*.whl]
release:
  version_files: ["pyproject.toml:project.version"]
"""


@pytest.fixture
def project(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository with a pipeline, a release section and a signing key."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SHIPYARD_USER", "releaser@example.com")
    (repo / "shipyard.yaml").write_text(PIPELINE)
    (repo / "pyproject.toml").write_text('[project]\nname = "relapp"\nversion = "0.0.0"\n')
    (repo / "CHANGELOG.md").write_text("# Changelog\n\n## 0.0.1\n\nthe old entry, kept\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "feat: the first feature")
    assert run_cli("keys", "generate", cwd=repo).code == 0
    return repo


def _release(repo: Path, *args: str, env: dict[str, str] | None = None) -> CliResult:
    return run_cli("release", "--json", *args, cwd=repo, env=env)


def _show(repo: Path, version: str) -> dict[str, object]:
    result = run_cli("releases", "show", version, "--json", cwd=repo)
    assert result.code == 0, result.output
    value = json.loads(result.stdout)
    assert isinstance(value, dict)
    return value


def _blob(repo: Path, digest: str) -> Path:
    hex_ = digest.split(":", 1)[1]
    return repo / ".shipyard" / "blobs" / "sha256" / hex_[:2] / hex_


@pytest.mark.backends
def test_a_release_is_versioned_built_signed_and_tagged(project: Path) -> None:
    result = _release(project)
    assert result.code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["released"] is True
    assert outcome["version"] == "0.1.0"
    record = outcome["release"]
    assert record["tag"] == "v0.1.0"
    assert list(record["artifacts"]) == ["dist/relapp-0.1.0.whl"]  # SHIPYARD_VERSION reached it
    assert git(project, "tag", "-l").split() == ["v0.1.0"]
    with tarfile.open(_blob(project, record["bundle"])) as bundle:
        pyproject = bundle.extractfile("relapp-0.1.0/pyproject.toml")
        changelog = bundle.extractfile("relapp-0.1.0/CHANGELOG.md")
        assert pyproject is not None and changelog is not None
        assert 'version = "0.1.0"' in pyproject.read().decode()
        text = changelog.read().decode()
    assert text.index("## 0.1.0") < text.index("the old entry, kept")
    assert run_cli("verify", "0.1.0", cwd=project).code == 0
    audit = json.loads(run_cli("audit", "list", "--json", cwd=project).stdout)
    actions = [event["action"] for event in audit]
    for action in ("release.created", "release.signed", "tag.created", "release.published"):
        assert action in actions
    assert run_cli("audit", "verify", cwd=project).code == 0


def test_no_qualifying_commit_means_no_release(project: Path) -> None:
    assert _release(project).code == 0
    git(project, "commit", "-q", "--allow-empty", "-m", "docs: wording")
    result = _release(project)
    assert result.code == 0
    assert json.loads(result.stdout)["released"] is False


def test_the_bundle_is_reproducible(project: Path) -> None:
    from shipyard.core.git import Git
    from shipyard.release.bundle import build

    first = build(Git(project), "HEAD", project.parent / "a.tar.gz", prefix="x/", replace={})
    second = build(Git(project), "HEAD", project.parent / "b.tar.gz", prefix="x/", replace={})
    assert first.read_bytes() == second.read_bytes()


def test_verify_names_a_modified_blob_and_a_foreign_key(project: Path, tmp_path: Path) -> None:
    record = json.loads(_release(project).stdout)["release"]
    artifact = _blob(project, record["artifacts"]["dist/relapp-0.1.0.whl"])
    os.chmod(artifact, 0o644)
    artifact.write_bytes(b"swapped wheel")
    result = run_cli("verify", "0.1.0", "--json", cwd=project)
    assert result.code == 1
    kinds = {p["kind"] for p in json.loads(result.stdout)["problems"]}
    assert "blob-modified" in kinds or "subject-mismatch" in kinds
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    env = {"XDG_CONFIG_HOME": str(tmp_path / "other-xdg")}
    run_cli("keys", "generate", cwd=other, env=env)
    pub = next((other / ".shipyard" / "keys" / "public").glob("*.pub"))
    foreign = run_cli("verify", "0.1.0", "--key", str(pub), "--json", cwd=project)
    assert foreign.code == 1
    assert "unknown-key" in {p["kind"] for p in json.loads(foreign.stdout)["problems"]}


@pytest.mark.backends
def test_a_version_is_never_reused_even_when_its_tag_is_deleted(project: Path) -> None:
    assert _release(project).code == 0
    git(project, "tag", "-d", "v0.1.0")
    result = _release(project)
    assert result.code == 2
    assert "never reused" in json.loads(result.stdout)["error"]["message"]


@pytest.mark.parametrize(
    "point", ["release:after-blobs", "release:after-pending", "release:after-tag"]
)
@pytest.mark.backends
def test_a_crash_at_each_step_is_reconciled(project: Path, point: str) -> None:
    from shipyard.core import state as state_dir
    from shipyard.core.store import open_store
    from shipyard.release import records

    crashed = _release(project, env={"SHIPYARD_FAULT": point})
    assert crashed.code == -9, crashed.output
    store = open_store(state_dir.locate(project))  # read as it is: 'releases list' reconciles
    listed = [r.status for r in records.all_of(store, "relapp")]
    store.dispose()
    tags = git(project, "tag", "-l").split()
    if point == "release:after-blobs":
        assert listed == [] and tags == []  # blobs only: nothing recorded, nothing tagged
    else:
        assert listed == ["pending"]
    again = _release(project)
    assert again.code == 0, again.output
    outcome = json.loads(again.stdout)
    if point == "release:after-blobs":
        assert outcome["released"] is True and outcome["version"] == "0.1.0"
    else:
        assert outcome["reconciled"] == ["0.1.0: published (an interrupted release was finished)"]
        assert outcome["released"] is False  # 0.1.0 is out; nothing new since
    assert _show(project, "0.1.0")["status"] == "published"
    assert git(project, "tag", "-l").split() == ["v0.1.0"]
    assert run_cli("verify", "0.1.0", cwd=project).code == 0


def test_a_dirty_tree_is_refused_and_nothing_is_written(project: Path) -> None:
    (project / "pyproject.toml").write_text("changed\n")
    result = _release(project)
    assert result.code == 2
    assert "uncommitted changes" in json.loads(result.stdout)["error"]["message"]
    assert json.loads(run_cli("releases", "list", "--json", cwd=project).stdout) == []
    assert json.loads(run_cli("runs", "list", "--json", cwd=project).stdout) == []


def test_a_failed_pipeline_releases_nothing(project: Path) -> None:
    (project / "shipyard.yaml").write_text(PIPELINE.replace("mkdir -p dist", "exit 3; mkdir"))
    git(project, "commit", "-q", "-am", "fix: break the build")
    result = _release(project)
    assert result.code == 1
    assert "nothing was released" in json.loads(result.stdout)["error"]["message"]
    assert git(project, "tag", "-l") == ""
    run_id = json.loads(run_cli("runs", "list", "--json", cwd=project).stdout)[0]["id"]
    refused = _release(project, "--run", str(run_id))
    assert refused.code == 1
    assert "only a passed run is released" in json.loads(refused.stdout)["error"]["message"]


def test_a_missing_key_is_a_clear_error_before_anything_runs(project: Path, tmp_path: Path) -> None:
    result = _release(project, env={"XDG_CONFIG_HOME": str(tmp_path / "empty")})
    assert result.code == 2
    error = json.loads(result.stdout)["error"]
    assert "shipyard keys" in (error["hint"] or "") + error["message"]
    assert json.loads(run_cli("runs", "list", "--json", cwd=project).stdout) == []


@pytest.mark.backends
def test_gc_never_removes_what_a_release_needs(project: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from shipyard.ci import retention
    from shipyard.core import state as state_dir
    from shipyard.core.blobs import BlobStore
    from shipyard.core.store import open_store

    record = json.loads(_release(project).stdout)["release"]
    state = state_dir.locate(project)
    store, blobs = open_store(state), BlobStore.for_state(state)
    later = datetime.now(UTC) + timedelta(days=2)  # past the blobs' grace and the runs' age
    planned = retention.plan(store, state, blobs, retention=timedelta(days=1), now=later)
    assert len(planned.runs) == 1
    needed = {record["bundle"], record["envelope"], *record["artifacts"].values()}
    assert not needed & set(planned.blobs)
    retention.apply(planned, store, state, blobs, actor="tester")
    store.dispose()
    verified = run_cli("verify", "0.1.0", cwd=project)
    assert verified.code == 0, verified.output


def test_a_release_can_be_scanned_again(project: Path) -> None:
    assert _release(project).code == 0
    scanned = run_cli(
        "scan", "--release", "0.1.0", "--gate", "vulnerabilities", "--json", cwd=project
    )
    assert "has no release" not in scanned.output
    assert json.loads(scanned.stdout)["release"] == "0.1.0"


def test_release_commit_puts_the_version_in_a_commit_of_its_own(project: Path) -> None:
    (project / "shipyard.yaml").write_text(
        PIPELINE.replace(
            'version_files: ["pyproject.toml:project.version"]',
            'version_files: ["pyproject.toml:project.version"]\n  commit: true',
        )
    )
    git(project, "commit", "-q", "-am", "feat: release commits")
    result = _release(project)
    assert result.code == 0, result.output
    record = json.loads(result.stdout)["release"]
    head = git(project, "rev-parse", "HEAD").strip()
    assert record["commit"] == head
    assert git(project, "log", "-1", "--format=%s").strip() == "chore(release): 0.1.0"
    assert 'version = "0.1.0"' in (project / "pyproject.toml").read_text()
    assert "## 0.1.0" in (project / "CHANGELOG.md").read_text()
    assert git(project, "rev-parse", "v0.1.0^{commit}").strip() == head
    assert run_cli("verify", "0.1.0", cwd=project).code == 0
    again = _release(project)
    assert json.loads(again.stdout)["released"] is False  # the release commit makes no release


def test_a_named_commit_is_released_from_its_own_tree(project: Path) -> None:
    first = git(project, "rev-parse", "HEAD").strip()
    git(project, "commit", "-q", "--allow-empty", "-m", "feat: a later feature")
    (project / "pyproject.toml").write_text("uncommitted edits do not matter here\n")
    result = _release(project, "--commit", first)
    assert result.code == 0, result.output
    record = json.loads(result.stdout)["release"]
    assert (record["version"], record["commit"]) == ("0.1.0", first)
    assert "later feature" not in record["changelog"]
    assert git(project, "rev-list", "-n1", "v0.1.0").strip() == first
    with tarfile.open(_blob(project, record["bundle"])) as bundle:
        pyproject = bundle.extractfile("relapp-0.1.0/pyproject.toml")
        assert pyproject is not None
        assert 'version = "0.1.0"' in pyproject.read().decode()  # the commit's file, bumped


def test_a_commit_its_branch_has_moved_past_is_not_released(project: Path) -> None:
    first = git(project, "rev-parse", "HEAD").strip()
    git(project, "commit", "-q", "--allow-empty", "-m", "feat: a later feature")
    result = _release(project, "--commit", first, "--branch", "main")
    assert result.code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["released"] is False
    assert "main has moved on" in outcome["reason"]
    assert git(project, "tag", "-l") == ""
    git(project, "branch", "other", first)
    git(project, "checkout", "-q", "--orphan", "unrelated")
    git(project, "commit", "-q", "--allow-empty", "-m", "feat: unrelated history")
    wrong = _release(project, "--commit", first, "--branch", "unrelated")
    assert wrong.code == 2
    assert "is not on the branch unrelated" in json.loads(wrong.stdout)["error"]["message"]
    unknown = _release(project, "--commit", "no-such-ref")
    assert unknown.code == 2
    assert "not a commit" in json.loads(unknown.stdout)["error"]["message"]


def test_release_commit_can_only_release_head(project: Path) -> None:
    (project / "shipyard.yaml").write_text(PIPELINE + "  commit: true\n")
    git(project, "commit", "-q", "-am", "feat: commit the version")
    first = git(project, "rev-parse", "HEAD").strip()
    git(project, "commit", "-q", "--allow-empty", "-m", "fix: later")
    result = _release(project, "--commit", first)
    assert result.code == 2
    assert "only HEAD can be released" in json.loads(result.stdout)["error"]["message"]
    assert git(project, "tag", "-l") == ""
    assert json.loads(run_cli("runs", "list", "--json", cwd=project).stdout) == []
