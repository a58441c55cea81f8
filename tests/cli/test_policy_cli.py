"""``shipyard policy eval`` as a user runs it: a real release with a critical vulnerability
(let through the release gate with an override), and a policy that keeps it out of production.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from support import CliResult, git, run_cli

CONFIG = """project: shop
pipeline:
  jobs:
    build: {run: echo built}
gates:
  vulnerabilities: {}
  policy: {paths: [policies/]}
service:
  command: python3 -m app --port {port}
environments:
  staging: {}
  production: {}
"""

NO_CRITICAL = """package shop.vulnerabilities

deny contains msg if {
	input.environment == "production"
	some finding in input.gates.vulnerabilities.findings
	finding.severity == "critical"
	msg := sprintf("%s (critical) may not reach production", [finding.id])
}
"""

ADVISORY = {
    "id": "GHSA-crit-crit-crit",
    "modified": (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
    "summary": "requests runs code it should not",
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "requests"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.20.0"}]}],
        }
    ],
    "database_specific": {"severity": "CRITICAL"},
}

ENV = {"SHIPYARD_USER": "deployer@example.com", "CI": "1"}


@pytest.fixture
def shop(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Release 0.1.0 of a shop whose requirements pin a critically vulnerable requests."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    (repo / "shipyard.yaml").write_text(CONFIG)
    (repo / "requirements.txt").write_text("requests==2.19.0\n")
    (repo / "policies").mkdir()
    (repo / "policies" / "vulnerabilities.rego").write_text(NO_CRITICAL)
    advisories = tmp_path / "osv"
    advisories.mkdir()
    (advisories / "GHSA-crit-crit-crit.json").write_text(json.dumps(ADVISORY))
    assert run_cli("advisories", "import", str(advisories), cwd=repo, env=ENV).code == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "feat: the shop")
    assert run_cli("keys", "generate", cwd=repo, env=ENV).code == 0
    released = run_cli(
        "release",
        "--override",
        "vulnerabilities",
        "--reason",
        "staging only until requests is upgraded",
        cwd=repo,
        env={**ENV, "SHIPYARD_USER": "releaser@example.com"},
    )
    assert released.code == 0, released.output
    return repo


def evaluate(repo: Path, *args: str, process: bool = False) -> CliResult:
    return run_cli(
        "policy", "eval", "--release", "0.1.0", *args, cwd=repo, env=ENV, process=process
    )


def test_the_policy_denies_production_and_allows_staging(shop: Path) -> None:
    staging = evaluate(shop, "--env", "staging")
    assert staging.code == 0, staging.output
    assert "allowed: no policy denies 0.1.0 in staging" in staging.stdout
    assert '"environment": "staging"' in staging.stdout  # the input is shown
    production = evaluate(shop, "--env", "production")
    assert production.code == 1, production.output
    assert "GHSA-crit-crit-crit (critical) may not reach production" in production.stdout
    assert "policies/vulnerabilities.rego" in production.stdout


def test_json_shows_the_input_and_the_result(shop: Path) -> None:
    result = evaluate(shop, "--env", "production", "--json")
    assert result.code == 1, result.output
    data = json.loads(result.stdout)
    assert data["allowed"] is False
    assert data["deny"] == [
        {
            "package": "shop.vulnerabilities",
            "message": "GHSA-crit-crit-crit (critical) may not reach production",
            "files": ["policies/vulnerabilities.rego"],
        }
    ]
    assert data["policies"] == [
        {"file": "policies/vulnerabilities.rego", "package": "shop.vulnerabilities"}
    ]
    document = data["input"]
    assert (document["environment"], document["actor"]) == ("production", "deployer@example.com")
    assert document["release"]["version"] == "0.1.0"
    assert document["release"]["released_by"] == "releaser@example.com"
    assert document["release"]["author"] == "ada@example.com"
    assert document["release"]["signer"]["key_id"]
    vulnerabilities = document["gates"]["vulnerabilities"]
    assert vulnerabilities["overridden_by"] == "releaser@example.com"
    assert vulnerabilities["counts"]["critical"] == 1
    assert document["sbom"]["components"][0]["name"] == "requests"
    assert document["running"] is None
    assert document["deployment"]["previous_version"] is None
    datetime.fromisoformat(document["time"])


def test_a_broken_policy_keeps_stdout_json_and_names_file_and_line(shop: Path) -> None:
    (shop / "policies" / "broken.rego").write_text(
        "package shop.broken\n\ndeny contains msg if {\n\tmsg := \n}\n"
    )
    result = evaluate(shop, "--env", "production", "--json", process=True)
    assert result.code == 2, result.output
    data = json.loads(result.stdout)  # regopy's own report never reaches stdout
    assert data["error"]["problems"] == [
        {"file": "policies/broken.rego", "line": 4, "message": "Invalid assignment operator"}
    ]
    assert data["error"]["message"] == "policies/broken.rego:4: Invalid assignment operator"
    text = evaluate(shop, "--env", "production", process=True)
    assert text.code == 2
    assert text.stdout == ""
    assert "error: policies/broken.rego:4: Invalid assignment operator" in text.stderr


def test_a_v0_policy_is_refused_with_how_to_write_it_in_v1(shop: Path) -> None:
    (shop / "policies" / "vulnerabilities.rego").write_text(
        'package shop.vulnerabilities\n\ndeny[msg] {\n\tmsg := "old"\n}\n'
    )
    result = evaluate(shop, "--env", "staging")
    assert result.code == 2
    assert "policies/vulnerabilities.rego:3: 'deny[msg] {' is Rego v0 syntax" in result.stderr
    assert "deny contains msg if" in result.stderr


def test_mistakes_are_exit_2(shop: Path) -> None:
    unknown_env = evaluate(shop, "--env", "prodution")
    assert unknown_env.code == 2
    assert "shop has no environment 'prodution'" in unknown_env.stderr
    assert "did you mean 'production'?" in unknown_env.stderr
    unknown_release = run_cli(
        "policy", "eval", "--release", "9.9.9", "--env", "staging", cwd=shop, env=ENV
    )
    assert unknown_release.code == 2
    assert "shop has no release 9.9.9" in unknown_release.stderr
