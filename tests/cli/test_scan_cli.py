"""``shipyard advisories`` and ``shipyard scan`` as users run them: real processes, real git."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from support import git, run_cli

RECENT = (datetime.now(UTC) - timedelta(hours=2)).isoformat().replace("+00:00", "Z")
PLAIN = {"CI": "1"}


def record(advisory_id: str, package: str, **affected: Any) -> dict[str, Any]:
    return {
        "id": advisory_id,
        "modified": RECENT,
        "summary": f"{package} is vulnerable",
        "affected": [{"package": {"ecosystem": "PyPI", "name": package}, **affected}],
    }


@pytest.fixture
def project(repo: Path, tmp_path: Path) -> Path:
    """A repository with gates configured and a small advisory database imported."""
    (repo / "shipyard.yaml").write_text("project: demo\ngates:\n  vulnerabilities: {}\n")
    data = tmp_path / "osv"
    data.mkdir()
    records = [
        record(
            "GHSA-aaaa-bbbb-cccc",
            "requests",
            ranges=[{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.20.0"}]}],
        ),
        record("PYSEC-2024-1", "requests", versions=["2.19.0"]),
    ]
    records[1]["aliases"] = ["GHSA-aaaa-bbbb-cccc"]
    for item in records:
        (data / f"{item['id']}.json").write_text(json.dumps(item))
    result = run_cli("advisories", "import", str(data), cwd=repo, env=PLAIN)
    assert result.code == 0, result.output
    assert "imported 2 advisories for 1 packages" in result.stdout
    git(repo, "add", "shipyard.yaml")
    git(repo, "commit", "-q", "-m", "chore: gates")
    return repo


def test_status_shows_the_count_and_the_age(project: Path) -> None:
    result = run_cli("advisories", "status", cwd=project, env=PLAIN)
    assert result.code == 0, result.output
    assert "2 for 1 packages" in result.stdout
    assert "2 hours (fresh; max_age 7d)" in result.stdout
    data = json.loads(run_cli("advisories", "status", "--json", cwd=project).stdout)
    assert (data["records"], data["stale"]) == (2, False)


def test_a_vulnerable_pin_fails_the_scan_with_a_readable_table(project: Path) -> None:
    (project / "requirements.txt").write_text("requests==2.19.0\nsix==1.16.0\n")
    result = run_cli("scan", cwd=project, env=PLAIN)
    assert result.code == 1, result.output
    assert "vulnerabilities  ✗ fail" in result.stdout
    assert "GHSA-aaaa-bbbb-cccc" in result.stdout
    assert "PYSEC-2024-1" not in result.stdout.split("findings")[1].split("WHERE")[0]
    assert "requirements.txt:1" in result.stdout
    assert "upgrade requests to 2.20.0" in result.stdout
    assert "error: gate run #1: vulnerabilities failed" in result.stderr
    assert "--override vulnerabilities" in result.stderr


def test_json_output_and_the_audit_trail(project: Path) -> None:
    (project / "requirements.txt").write_text("requests==2.19.0\n")
    result = run_cli("scan", "--json", cwd=project)
    assert result.code == 1, result.output
    run = json.loads(result.stdout)
    assert (run["status"], run["blocked"], run["subject"]) == ("fail", True, "scan:1")
    [finding] = run["results"][0]["findings"]
    assert finding["id"] == "GHSA-aaaa-bbbb-cccc"
    assert finding["details"]["aliases"] == ["PYSEC-2024-1"]
    assert finding["severity"] == "high"  # no severity in the record: unknown_severity
    events = json.loads(run_cli("audit", "list", "--json", cwd=project).stdout)
    assert [(e["action"], e["subject"]) for e in events] == [("gate.failed", "scan:1")]


def test_an_override_with_a_reason_lets_the_scan_pass_and_is_audited(project: Path) -> None:
    (project / "requirements.txt").write_text("requests==2.19.0\n")
    missing = run_cli("scan", "--override", "vulnerabilities", cwd=project, env=PLAIN)
    assert missing.code == 2
    assert "--override needs a reason" in missing.stderr
    result = run_cli(
        "scan",
        "--override",
        "vulnerabilities",
        "--reason",
        "hotfix, accepted",
        cwd=project,
        env=PLAIN,
    )
    assert result.code == 0, result.output
    assert "overridden by ada@example.com" in result.stdout
    events = json.loads(run_cli("audit", "list", "--json", cwd=project).stdout)
    assert [e["action"] for e in events] == ["gate.failed", "gate.overridden"]
    assert events[1]["details"]["reason"] == "hotfix, accepted"


def test_a_clean_project_passes(project: Path) -> None:
    (project / "requirements.txt").write_text("requests==2.31.0\n")
    result = run_cli("scan", cwd=project, env=PLAIN)
    assert result.code == 0, result.output
    assert "gate run #1 passed" in result.stdout


def test_sarif_is_written_for_code_scanning(project: Path) -> None:
    (project / "requirements.txt").write_text("requests==2.19.0\n")
    result = run_cli("scan", "--sarif", "scan.sarif", cwd=project, env=PLAIN)
    assert result.code == 1
    log = json.loads((project / "scan.sarif").read_text())
    assert log["version"] == "2.1.0"
    [sarif_result] = log["runs"][0]["results"]
    assert sarif_result["ruleId"] == "GHSA-aaaa-bbbb-cccc"
    assert sarif_result["level"] == "error"
    to_stdout = run_cli("scan", "--sarif", "-", cwd=project, env=PLAIN)
    assert json.loads(to_stdout.stdout)["version"] == "2.1.0"


def test_a_malformed_lockfile_is_named_and_fails_the_scan(project: Path) -> None:
    (project / "package-lock.json").write_text('{"packages": {\n  "node_modules/x": {\n')
    result = run_cli("scan", cwd=project, env=PLAIN)
    assert result.code == 1
    assert "package-lock.json:3: not valid JSON" in result.stdout
    assert "Traceback" not in result.output


def test_stale_data_fails_closed(project: Path) -> None:
    (project / "shipyard.yaml").write_text(
        "project: demo\ngates:\n  vulnerabilities: {max_age: 1h}\n"
    )
    (project / "requirements.txt").write_text("requests==2.31.0\n")
    result = run_cli("scan", cwd=project, env=PLAIN)
    assert result.code == 1
    assert "older than max_age 1h; the gate fails closed" in result.stdout
    status = run_cli("advisories", "status", cwd=project, env=PLAIN)
    assert "stale; max_age 1h" in status.stdout


def test_user_mistakes_exit_2_with_a_clear_message(project: Path, tmp_path: Path) -> None:
    unknown = run_cli("scan", "--gate", "vulnerabilites", cwd=project, env=PLAIN)
    assert unknown.code == 2
    assert "there is no gate named 'vulnerabilites'" in unknown.stderr
    assert "did you mean 'vulnerabilities'?" in unknown.stderr
    release = run_cli("scan", "--release", "1.2.0", cwd=project, env=PLAIN)
    assert release.code == 2
    assert "has no release 1.2.0" in release.stderr
    missing = run_cli("advisories", "import", str(tmp_path / "nowhere"), cwd=project, env=PLAIN)
    assert missing.code == 2
    assert "nowhere does not exist" in missing.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.json").write_text('{"id": "X-1"}')
    invalid = run_cli("advisories", "import", str(broken), cwd=project, env=PLAIN)
    assert invalid.code == 2
    assert "x.json (X-1): modified: is missing" in invalid.stderr
    assert "Traceback" not in invalid.output


def test_scanning_without_advisory_data_fails_and_says_how_to_get_it(repo: Path) -> None:
    (repo / "shipyard.yaml").write_text("project: demo\ngates:\n  vulnerabilities: {}\n")
    (repo / "requirements.txt").write_text("requests==2.31.0\n")
    result = run_cli("scan", cwd=repo, env=PLAIN)
    assert result.code == 1
    assert "no local advisory data" in result.stdout
    status = run_cli("advisories", "status", cwd=repo, env=PLAIN)
    assert status.code == 2
    assert "shipyard advisories import PATH" in status.stderr


def test_no_configured_gates_is_said_plainly(repo: Path) -> None:
    (repo / "shipyard.yaml").write_text("project: demo\n")
    result = run_cli("scan", cwd=repo, env=PLAIN)
    assert result.code == 0
    assert "no gates are configured" in result.stderr


def test_a_record_dated_in_the_future_is_warned_about_and_does_not_keep_data_fresh(
    repo: Path, tmp_path: Path
) -> None:
    data = tmp_path / "future"
    data.mkdir()
    old = record("PYSEC-OLD", "six", versions=["1.0"])
    old["modified"] = "2020-01-01T00:00:00Z"
    ahead = record("PYSEC-AHEAD", "six", versions=["1.1"])
    ahead["modified"] = "2999-01-01T00:00:00Z"
    for item in (old, ahead):
        (data / f"{item['id']}.json").write_text(json.dumps(item))
    result = run_cli("advisories", "import", str(data), cwd=repo, env=PLAIN)
    assert result.code == 0, result.output
    assert "1 records claim to be modified after now (PYSEC-AHEAD)" in result.stderr
    status = json.loads(run_cli("advisories", "status", "--json", cwd=repo).stdout)
    assert status["stale"] is False
    assert status["newest_modified"] < "2999"


def test_files_nested_absurdly_deep_are_clear_errors_not_internal_ones(
    project: Path, tmp_path: Path
) -> None:
    deep = "[" * 200_000 + "]" * 200_000
    (project / "package-lock.json").write_text(deep)
    result = run_cli("scan", cwd=project, env=PLAIN)
    assert result.code == 1, result.output
    assert "package-lock.json: not an npm lockfile" in result.stdout
    assert "internal error" not in result.output and "Traceback" not in result.output
    result = run_cli("sbom", "-o", str(tmp_path / "out.json"), cwd=project, env=PLAIN)
    assert result.code == 2, result.output
    assert "package-lock.json: not an npm lockfile" in result.stderr
    data = tmp_path / "deep-osv"
    data.mkdir()
    (data / "PYSEC-1.json").write_text(deep)
    result = run_cli("advisories", "import", str(data), cwd=project, env=PLAIN)
    assert result.code == 2 and "Traceback" not in result.output
    assert "PYSEC-1.json: not valid JSON: it nests" in result.stderr
