"""Gate runs in the store on SQLite and PostgreSQL: results, audit events, outbox, overrides."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shipyard.core import audit, outbox
from shipyard.core.blobs import BlobStore
from shipyard.core.errors import ArgumentError, NotFoundError
from shipyard.core.store import Store
from shipyard.gates import (
    Finding,
    GateResult,
    Severity,
    Status,
    get_gate_run,
    override_gate,
    record_gate_run,
)
from shipyard.gates.records import release_workspace

FINDING = Finding(
    id="GHSA-1",
    severity=Severity.CRITICAL,
    location="requirements.txt:1",
    message="requests 2.19.0: bad",
    remediation="upgrade requests to 2.20.0",
    blocking=True,
    details={"package": "requests", "fixed_versions": ["2.20.0"]},
)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    migrated = Store(database_url)
    migrated.ensure_schema()
    yield migrated
    migrated.dispose()


def record(store: Store, *results: GateResult, **kw: object) -> int:
    moment = datetime.now(UTC)
    run = record_gate_run(
        store,
        kind="release",
        project="demo",
        actor="ada@example.com",
        results=results,
        started_at=moment,
        finished_at=moment,
        **kw,  # type: ignore[arg-type]
    )
    return run.id


def failed(gate: str = "vulnerabilities") -> GateResult:
    return GateResult(gate, Status.FAIL, (FINDING,), "1 known vulnerability", 0.25)


def test_a_run_is_stored_with_its_results_audit_events_and_outbox_events(store: Store) -> None:
    passed = GateResult("secrets", Status.PASS, (), "nothing found", 0.1)
    run_id = record(store, failed(), passed, release="1.2.0", commit="abc123")
    run = get_gate_run(store, run_id)
    assert (run.subject, run.status, run.blocked, run.release) == (
        f"scan:{run_id}",
        "fail",
        True,
        "1.2.0",
    )
    assert run.result("vulnerabilities").findings == (FINDING,)
    assert run.result("vulnerabilities").duration_s == 0.25
    with store.read() as conn:
        events = audit.events(conn, subject=f"scan:{run_id}")
        sent = outbox.read(conn)
        audit.verify(conn)
    assert [(e.action, e.details_dict()["gate"]) for e in events] == [
        ("gate.failed", "vulnerabilities"),
        ("gate.passed", "secrets"),
    ]
    assert events[0].details_dict()["blocking_findings"] == ["GHSA-1"]
    assert [(e.type, e.subject) for e in sent] == [
        ("gate.failed", f"scan:{run_id}"),
        ("gate.passed", f"scan:{run_id}"),
    ]


def test_an_override_needs_a_reason_and_is_an_audit_event(store: Store) -> None:
    run_id = record(store, failed(), subject="release:1.2.0")
    with pytest.raises(ArgumentError, match="needs a reason"):
        override_gate(store, run_id, "vulnerabilities", actor="bob@example.com", reason=" ")
    run = override_gate(
        store, run_id, "vulnerabilities", actor="bob@example.com", reason="hotfix, risk accepted"
    )
    assert (run.status, run.blocked) == ("overridden", False)
    result = run.result("vulnerabilities")
    assert (result.overridden_by, result.override_reason) == (
        "bob@example.com",
        "hotfix, risk accepted",
    )
    with store.read() as conn:
        [event] = audit.events(conn, action="gate.overridden")
        sent = [e.type for e in outbox.read(conn)]
    assert (event.actor, event.subject) == ("bob@example.com", "release:1.2.0")
    assert event.details_dict()["reason"] == "hotfix, risk accepted"
    assert sent == ["gate.failed", "gate.overridden"]
    with pytest.raises(ArgumentError, match=r"already overridden by bob@example\.com"):
        override_gate(store, run_id, "vulnerabilities", actor="eve@example.com", reason="again")


def test_only_a_failure_can_be_overridden(store: Store) -> None:
    run_id = record(store, GateResult("vulnerabilities", Status.WARN, (), "warned", 0.1))
    with pytest.raises(ArgumentError, match="did not fail"):
        override_gate(store, run_id, "vulnerabilities", actor="a@example.com", reason="x")
    with pytest.raises(NotFoundError, match="has no result for 'licenses'"):
        override_gate(store, run_id, "licenses", actor="a@example.com", reason="x")
    with pytest.raises(NotFoundError, match="there is no gate run #999"):
        get_gate_run(store, 999)


def test_overrides_given_with_the_run_are_applied_in_the_same_transaction(store: Store) -> None:
    passed = GateResult("secrets", Status.PASS, (), "ok", 0.1)
    run_id = record(
        store, failed(), passed, overrides={"vulnerabilities": "accepted", "secrets": "unused"}
    )
    run = get_gate_run(store, run_id)
    assert run.status == "overridden"
    assert not run.result("secrets").overridden
    with store.read() as conn:
        actions = [e.action for e in audit.events(conn)]
    assert actions == ["gate.failed", "gate.passed", "gate.overridden"]


def test_scanning_a_release_that_was_never_recorded_says_so(store: Store, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as caught:
        release_workspace(store, BlobStore(tmp_path / "blobs"), "demo", "9.9.9", tmp_path)
    assert caught.value.message == "demo has no release 9.9.9"
    assert caught.value.hint is not None and "releases list" in caught.value.hint
