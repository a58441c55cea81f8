"""A release carries its signed SBOM, and a shipped release is re-scanned from it."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gates.secretsupport import planted
from support import CliResult, git, run_cli

PIPELINE = """project: sbomapp
pipeline:
  jobs:
    build: {run: "true"}
release:
  version_files: ["pyproject.toml:project.version"]
gates:
  secrets: true
  sbom: true
"""
PLAIN = {"CI": "1"}


@pytest.fixture
def project(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository with pinned dependencies, the secrets and SBOM gates, and a signing key."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SHIPYARD_USER", "releaser@example.com")
    (repo / "shipyard.yaml").write_text(PIPELINE)
    (repo / "pyproject.toml").write_text('[project]\nname = "sbomapp"\nversion = "0.0.0"\n')
    (repo / "requirements.txt").write_text("requests==2.19.0\nurllib3==1.26.5\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "feat: the first feature")
    assert run_cli("keys", "generate", cwd=repo).code == 0
    return repo


def _release(repo: Path) -> CliResult:
    return run_cli("release", "--json", cwd=repo, env=PLAIN)


def _blob(repo: Path, digest: str) -> Path:
    hex_ = digest.split(":", 1)[1]
    return repo / ".shipyard" / "blobs" / "sha256" / hex_[:2] / hex_


@pytest.mark.backends
def test_a_release_carries_its_sbom_as_a_signed_subject(project: Path, tmp_path: Path) -> None:
    result = _release(project)
    assert result.code == 0, result.output
    record = json.loads(result.stdout)["release"]
    sbom = record["sbom"]
    assert sbom and sbom.startswith("sha256:")
    document = json.loads(_blob(project, sbom).read_bytes())
    assert document["specVersion"] == "1.6"
    assert document["metadata"]["component"]["version"] == "0.1.0"
    purls = sorted(c["purl"] for c in document["components"])
    assert purls == ["pkg:pypi/requests@2.19.0", "pkg:pypi/urllib3@1.26.5"]
    envelope = json.loads(_blob(project, record["envelope"]).read_bytes())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert subjects["sbomapp-0.1.0.cdx.json"] == sbom.split(":", 1)[1]
    assert run_cli("verify", "0.1.0", cwd=project).code == 0
    written = tmp_path / "out.cdx.json"
    exported = run_cli("sbom", "--release", "0.1.0", "-o", str(written), "--json", cwd=project)
    assert exported.code == 0, exported.output
    assert written.read_bytes() == _blob(project, sbom).read_bytes()
    assert json.loads(exported.stdout)["digest"] == sbom


def test_verify_detects_a_modified_sbom(project: Path) -> None:
    record = json.loads(_release(project).stdout)["release"]
    stored = _blob(project, record["sbom"])
    os.chmod(stored, 0o644)
    stored.write_bytes(stored.read_bytes().replace(b"2.19.0", b"2.99.0"))
    result = run_cli("verify", "0.1.0", "--json", cwd=project)
    assert result.code == 1
    problems = json.loads(result.stdout)["problems"]
    assert any(
        p["kind"] == "blob-modified" and p["name"] == "sbomapp-0.1.0.cdx.json" for p in problems
    )


def test_a_rescan_finds_an_advisory_published_after_the_release(
    project: Path, tmp_path: Path
) -> None:
    assert _release(project).code == 0
    # The working tree moves on: the shipped release still has requests 2.19.0.
    (project / "requirements.txt").write_text("requests==2.32.3\nurllib3==1.26.5\n")
    git(project, "commit", "-q", "-am", "fix: upgrade requests")
    data = tmp_path / "osv"
    data.mkdir()
    recent = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    advisory = {
        "id": "GHSA-new1-new2-new3",
        "modified": recent,
        "summary": "requests leaks credentials",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "requests"},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.20.0"}]}
                ],
            }
        ],
    }
    (data / "GHSA-new1-new2-new3.json").write_text(json.dumps(advisory))
    assert run_cli("advisories", "import", str(data), cwd=project, env=PLAIN).code == 0
    today = run_cli("scan", "--gate", "vulnerabilities", "--json", cwd=project)
    assert today.code == 0, today.output  # the working tree is fixed
    rescan = run_cli(
        "scan", "--release", "0.1.0", "--gate", "vulnerabilities", "--json", cwd=project
    )
    assert rescan.code == 1, rescan.output
    run = json.loads(rescan.stdout)
    assert run["release"] == "0.1.0"
    [result] = run["results"]
    assert "the stored SBOM" in result["summary"]
    found = [f for f in result["findings"] if f["id"] == "GHSA-new1-new2-new3"]
    assert [(f["location"], f["details"]["version"]) for f in found] == [
        ("requirements.txt:1", "2.19.0")
    ]


def test_a_release_with_a_secret_is_blocked_and_nothing_records_it(project: Path) -> None:
    secrets = [p for p in planted() if p.file.endswith(".py")][:3]
    (project / "app.py").write_text("".join(p.text + "\n" for p in secrets))
    git(project, "add", "app.py")
    git(project, "commit", "-q", "-m", "feat: settings")
    result = _release(project)
    assert result.code == 1
    assert "secrets" in json.loads(result.stdout)["error"]["message"]
    scanned = run_cli("scan", "--json", cwd=project)
    sarif = run_cli("scan", "--sarif", "-", cwd=project)
    plain = run_cli("scan", cwd=project, env=PLAIN)
    outputs = result.output + scanned.output + sarif.output + plain.output
    stored = b"".join(
        path.read_bytes() for path in (project / ".shipyard").rglob("*") if path.is_file()
    )
    with sqlite3.connect(project / ".shipyard" / "shipyard.db") as db:
        rows = repr(db.execute("SELECT findings FROM gate_results").fetchall())
        rows += repr(db.execute("SELECT details FROM audit_events").fetchall())
    for item in secrets:
        assert item.secret not in outputs
        assert item.secret.encode() not in stored
        assert item.secret not in rows
    assert "secrets/aws-access-key" in scanned.stdout
