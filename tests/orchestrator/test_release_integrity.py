"""``shipyard verify`` covers all of a release: gate results (blob and record), changelog, status.

Each test cuts a real release, then changes one thing the way somebody with access to the state
directory could (a blob's bytes, a column of the record), and checks that ``verify`` names it.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from shipyard.core import state as state_dir
from shipyard.core.blobs import BlobStore
from shipyard.core.store import Store, open_store
from shipyard.core.store.tables import releases
from shipyard.release import dsse
from shipyard.release.keys import Keyring
from shipyard.release.provenance import PAYLOAD_TYPE
from support import CliResult, git, run_cli

PIPELINE = """project: intapp
pipeline:
  jobs:
    build: {run: "true"}
release:
  version_files: ["pyproject.toml:project.version"]
gates:
  sbom: true
"""


@pytest.fixture
def project(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository with a pipeline, the SBOM gate, a signing key and release 0.1.0."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SHIPYARD_USER", "releaser@example.com")
    (repo / "shipyard.yaml").write_text(PIPELINE)
    (repo / "pyproject.toml").write_text('[project]\nname = "intapp"\nversion = "0.0.0"\n')
    (repo / "requirements.txt").write_text("requests==2.19.0\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "feat: the first feature")
    assert run_cli("keys", "generate", cwd=repo).code == 0
    released = run_cli("release", "--json", cwd=repo, env={"CI": "1"})
    assert released.code == 0, released.output
    return repo


@pytest.fixture
def store(project: Path) -> Iterator[Store]:
    opened = open_store(state_dir.locate(project))
    try:
        yield opened
    finally:
        opened.dispose()


def _record(project: Path) -> dict[str, Any]:
    shown = run_cli("releases", "show", "0.1.0", "--json", cwd=project)
    assert shown.code == 0, shown.output
    value = json.loads(shown.stdout)
    assert isinstance(value, dict)
    return value


def _set(store: Store, **values: object) -> None:
    with store.write() as conn:
        conn.execute(sa.update(releases).where(releases.c.version == "0.1.0").values(**values))


def _verify(project: Path) -> tuple[CliResult, list[dict[str, Any]]]:
    result = run_cli("verify", "0.1.0", "--json", cwd=project)
    return result, json.loads(result.stdout)["problems"]


def _blob(project: Path, digest: str) -> Path:
    hex_ = digest.split(":", 1)[1]
    return project / ".shipyard" / "blobs" / "sha256" / hex_[:2] / hex_


def test_an_intact_release_verifies_and_counts_its_subjects(project: Path) -> None:
    human = run_cli("verify", "0.1.0", cwd=project)
    assert human.code == 0, human.output
    assert "2 subjects" in human.output  # the bundle and the SBOM
    as_json = json.loads(run_cli("verify", "0.1.0", "--json", cwd=project).stdout)
    assert as_json["ok"] is True and as_json["subjects"] == 2


def test_a_modified_gate_results_blob_is_named(project: Path) -> None:
    stored = _blob(project, _record(project)["gate_results"])
    os.chmod(stored, 0o644)
    results = json.loads(stored.read_bytes())
    assert results, "the release ran at least one gate"
    stored.write_bytes(json.dumps(results[1:]).encode())  # a gate's result taken out
    result, problems = _verify(project)
    assert result.code == 1
    assert any(p["kind"] == "blob-modified" and p["name"] == "gate results" for p in problems)


def test_a_missing_gate_results_blob_is_named(project: Path) -> None:
    stored = _blob(project, _record(project)["gate_results"])
    stored.unlink()
    result, problems = _verify(project)
    assert result.code == 1
    assert any(p["kind"] == "blob-missing" and p["name"] == "gate results" for p in problems)


def test_gate_results_swapped_or_cleared_in_the_record_are_named(
    project: Path, store: Store
) -> None:
    other = BlobStore.for_state(state_dir.locate(project)).put_bytes(b"[]")
    _set(store, gate_results=str(other.digest))
    result, problems = _verify(project)
    assert result.code == 1
    assert any(p["kind"] == "gate-results-mismatch" for p in problems)
    _set(store, gate_results=None)
    result, problems = _verify(project)
    assert result.code == 1
    assert [p["kind"] for p in problems] == ["gate-results-mismatch"]
    assert "records no gate results" in problems[0]["message"]


def test_an_edited_changelog_is_named(project: Path, store: Store) -> None:
    _set(store, changelog=_record(project)["changelog"] + "\n- a feature nobody shipped\n")
    result, problems = _verify(project)
    assert result.code == 1
    assert [p["kind"] for p in problems] == ["changelog-mismatch"]
    human = run_cli("verify", "0.1.0", cwd=project)
    assert human.code == 1 and "changelog" in human.output


def test_a_release_signed_before_changelogs_were_signed_verifies_with_a_note(
    project: Path, store: Store
) -> None:
    """An older release's statement has no changelog digest: it still verifies, and says so."""
    record = _record(project)
    blobs = BlobStore.for_state(state_dir.locate(project))
    envelope = json.loads(blobs.read_bytes(record["envelope"]))
    statement = json.loads(base64.b64decode(envelope["payload"]))
    byproducts = statement["predicate"]["runDetails"]["byproducts"]
    assert "changelog" in {b["name"] for b in byproducts}
    statement["predicate"]["runDetails"]["byproducts"] = [
        b for b in byproducts if b["name"] != "changelog"
    ]
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    signer = Keyring.for_state(state_dir.locate(project)).signer()
    older = blobs.put_bytes(dsse.sign(PAYLOAD_TYPE, payload, signer).to_json())
    _set(store, envelope=str(older.digest))
    result = run_cli("verify", "0.1.0", "--json", cwd=project)
    assert result.code == 0, result.output
    notes = json.loads(result.stdout)["notes"]
    assert any("changelog is not covered by the signature" in note for note in notes)
    human = run_cli("verify", "0.1.0", cwd=project)
    assert human.code == 0 and "changelog is not covered" in human.output


def test_a_half_published_release_does_not_verify_until_it_is_reconciled(
    project: Path, store: Store
) -> None:
    """Pending with its tag made (a crash before 'published'): verify finishes it, or refuses."""
    _set(store, status="pending", published_at=None)
    listed = run_cli("releases", "list", "--json", cwd=project)
    assert [r["status"] for r in json.loads(listed.stdout)] == ["published"]  # reconciled
    assert "an interrupted release was finished" in listed.stderr

    _set(store, status="pending", published_at=None)
    verified = run_cli("verify", "0.1.0", "--json", cwd=project)
    assert verified.code == 0, verified.output
    assert _record(project)["status"] == "published"

    # A pending release whose tag points elsewhere is failed by the reconciliation: never good.
    _set(store, status="pending", published_at=None)
    git(project, "tag", "-d", "v0.1.0")
    git(project, "commit", "-q", "--allow-empty", "-m", "chore: elsewhere")
    git(project, "tag", "v0.1.0")
    refused = run_cli("verify", "0.1.0", "--json", cwd=project)
    assert refused.code == 1
    problems = json.loads(refused.stdout)["problems"]
    assert [p["kind"] for p in problems] == ["release-not-published"]
    assert "failed" in problems[0]["message"]


@pytest.mark.parametrize("command", [("sbom", "--release"), ("scan", "--json", "--release")])
def test_reading_a_half_published_release_finishes_it_first(
    project: Path, store: Store, command: tuple[str, ...]
) -> None:
    _set(store, status="pending", published_at=None)
    read = run_cli(*command, "0.1.0", cwd=project)
    assert "an interrupted release was finished" in read.stderr
    with store.read() as conn:
        status = conn.execute(sa.select(releases.c.status)).scalar_one()
    assert status == "published"


def test_a_deploy_request_finishes_a_half_published_release_first(
    project: Path, store: Store
) -> None:
    from shipyard.cd.delivery import request_deploy
    from shipyard.cd.settings import DeploySettings

    settings = DeploySettings(
        project="intapp",
        environment="staging",
        target="local",
        strategy="recreate",
        setup=None,
        command="python3 -m app --port {port}",
        health_path="/healthz",
        health_timeout_s=5,
        health_interval_s=0.1,
        instances=1,
    )
    _set(store, status="pending", published_at=None)
    state = state_dir.locate(project)
    requested = request_deploy(store, state, settings, "0.1.0", actor="deployer@example.com")
    assert (requested.version, requested.status) == ("0.1.0", "pending")
    assert _record(project)["status"] == "published"


@pytest.mark.parametrize("command", [("releases", "show"), ("verify",), ("sbom", "--release")])
def test_a_huge_version_argument_is_refused_in_a_short_message(
    project: Path, command: tuple[str, ...]
) -> None:
    huge = "1." * 50_000
    refused = run_cli(*command, huge, cwd=project)
    assert refused.code == 2, refused.output
    assert "has no release '1.1.1.1." in refused.stderr
    assert "(100,000 characters)" in refused.stderr
    assert len(refused.output) < 2_000
