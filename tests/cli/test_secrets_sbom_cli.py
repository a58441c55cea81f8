"""``shipyard secrets baseline``, ``shipyard sbom`` and the new gates in ``shipyard scan``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gates.secretsupport import planted
from support import git, run_cli

PLAIN = {"CI": "1"}


@pytest.fixture
def project(repo: Path) -> Path:
    """A repository with the secrets, licenses and SBOM gates and a pinned requirement."""
    (repo / "shipyard.yaml").write_text(
        "project: demo\ngates:\n  secrets: true\n  sbom: true\n"
        "  licenses: {allow: [MIT, Apache-2.0], overrides: {requests: Apache-2.0}}\n"
    )
    (repo / "requirements.txt").write_text("requests==2.32.3\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "chore: gates")
    return repo


def test_the_baseline_accepts_secrets_by_hash_and_does_not_churn(project: Path) -> None:
    secret = planted()[0]
    (project / "settings.py").write_text(secret.text + "\n")
    git(project, "add", "settings.py")
    git(project, "commit", "-q", "-m", "feat: settings")
    failing = run_cli("scan", "--gate", "secrets", cwd=project, env=PLAIN)
    assert failing.code == 1
    assert "secrets/aws-access-key" in failing.stdout
    made = run_cli("secrets", "baseline", "--json", cwd=project)
    assert made.code == 0, made.output
    answer = json.loads(made.stdout)
    assert answer["secrets"] == 1
    [added] = answer["added"]
    assert (added["rule"], added["location"]) == ("AWS Access Key", "settings.py:1")
    baseline = project / ".shipyard-secrets-baseline.json"
    text = baseline.read_text()
    assert secret.secret not in text and secret.secret not in made.output
    assert run_cli("scan", "--gate", "secrets", cwd=project, env=PLAIN).code == 0
    (project / "settings.py").write_text("# moved down\n\n\n" + secret.text + "\n")
    again = run_cli("secrets", "baseline", cwd=project, env=PLAIN)
    assert again.code == 0
    assert "1 accepted secret (0 added, 0 removed)" in again.stdout
    assert baseline.read_text() == text


def test_sbom_writes_cyclonedx_to_stdout_or_a_file(project: Path, tmp_path: Path) -> None:
    printed = run_cli("sbom", cwd=project)
    assert printed.code == 0, printed.output
    document = json.loads(printed.stdout)
    assert (document["bomFormat"], document["specVersion"]) == ("CycloneDX", "1.6")
    [component] = document["components"]
    assert component["purl"] == "pkg:pypi/requests@2.32.3"
    assert component["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    target = tmp_path / "demo.cdx.json"
    written = run_cli("sbom", "-o", str(target), cwd=project, env=PLAIN)
    assert written.code == 0
    assert "1 component," in written.stdout
    assert json.loads(target.read_text())["components"][0]["name"] == "requests"


def test_sbom_of_an_unknown_release_is_a_clear_error(project: Path) -> None:
    result = run_cli("sbom", "--release", "9.9.9", cwd=project, env=PLAIN)
    assert result.code == 2
    assert "demo has no release 9.9.9" in result.stderr


def test_a_malformed_lockfile_stops_the_sbom_naming_the_file(project: Path) -> None:
    (project / "package-lock.json").write_text("{broken")
    result = run_cli("sbom", cwd=project, env=PLAIN)
    assert result.code == 2
    assert "package-lock.json:1: not valid JSON" in result.stderr


@pytest.mark.parametrize(
    ("licenses", "message"),
    [
        ("{python: .venv/bin/python}", ".venv/bin/python does not exist"),
        ("{allow: ['MIT AND']}", "gates.licenses.allow[0]"),
    ],
)
def test_bad_license_settings_fail_the_scan_with_a_message(
    project: Path, licenses: str, message: str
) -> None:
    (project / "shipyard.yaml").write_text(f"project: demo\ngates:\n  licenses: {licenses}\n")
    result = run_cli("scan", "--json", cwd=project)
    assert result.code == 1
    [gate] = json.loads(result.stdout)["results"]
    assert gate["status"] == "fail"
    assert message in gate["findings"][0]["message"]


def test_the_gates_pass_on_a_clean_project(project: Path) -> None:
    result = run_cli("scan", cwd=project, env=PLAIN)
    assert result.code == 0, result.output
    assert "licenses" in result.stdout and "sbom" in result.stdout
