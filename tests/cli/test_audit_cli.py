"""``shipyard audit`` and ``shipyard db`` end to end, on a real repository and database."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from support import run_cli


def _seed(repo: Path) -> None:
    """Cause audited actions: a schema migration, through the real command."""
    result = run_cli("db", "upgrade", "--json", cwd=repo, env={"SHIPYARD_USER": "ada@example.com"})
    assert result.code == 0, result.output
    assert json.loads(result.stdout)["changed"] is True


def test_db_upgrade_is_audited_and_idempotent(repo: Path) -> None:
    _seed(repo)
    again = run_cli("db", "upgrade", "--json", cwd=repo)
    assert json.loads(again.stdout)["changed"] is False
    listed = run_cli("audit", "list", "--json", cwd=repo)
    events = json.loads(listed.stdout)
    assert [e["action"] for e in events] == ["store.migrated"]
    assert events[0]["actor"] == "ada@example.com"
    status = json.loads(run_cli("db", "status", "--json", cwd=repo).stdout)
    assert status["up_to_date"] is True
    assert status["backend"] == "sqlite"


def test_verify_and_head_round_trip(repo: Path, tmp_path: Path) -> None:
    _seed(repo)
    head_file = tmp_path / "head.json"
    head = run_cli("audit", "head", "-o", str(head_file), "--json", cwd=repo)
    assert head.code == 0
    assert json.loads(head_file.read_text())["seq"] == 1
    verified = run_cli("audit", "verify", "--head", str(head_file), cwd=repo)
    assert verified.code == 0, verified.output
    assert "1 events" in verified.stdout


def test_verify_names_the_tampered_event(repo: Path) -> None:
    _seed(repo)
    db = sqlite3.connect(repo / ".shipyard" / "shipyard.db")
    db.execute("DROP TRIGGER audit_events_no_update")
    db.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 1")
    db.commit()
    db.close()
    result = run_cli("audit", "verify", cwd=repo)
    assert result.code == 1
    assert "event 1 " in result.stderr
    as_json = run_cli("audit", "verify", "--json", cwd=repo)
    assert as_json.code == 1
    assert json.loads(as_json.stdout)["first_bad_seq"] == 1


def test_a_bad_head_file_is_a_clear_error(repo: Path, tmp_path: Path) -> None:
    _seed(repo)
    bad = tmp_path / "head.json"
    bad.write_text("not json")
    result = run_cli("audit", "verify", "--head", str(bad), cwd=repo)
    assert result.code == 2
    assert "not an exported audit head" in result.stderr
