"""Approvals: recorded once per person in the caller's transaction, audited and announced there,
read back in order on both backends; counted against a deployment's rule (author, releaser,
groups, signatures, how many different people)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shipyard.core import approvals, audit, outbox
from shipyard.core.approvals import (
    AlreadyApproved,
    Approval,
    ApprovalError,
    ApprovalRule,
    Counted,
)
from shipyard.core.store import Store

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
AUTHOR = "ada@example.com"
RELEASER = "rel@example.com"


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    store.ensure_schema()
    yield store
    store.dispose()


def _approve(store: Store, approver: str, deployment: int = 7, **changes: object) -> Approval:
    values: dict[str, object] = {
        "deployment_id": deployment,
        "approver": approver,
        "reason": None,
        "at": AT,
    }
    values.update(changes)
    with store.write() as conn:
        return approvals.record(conn, **values)  # type: ignore[arg-type]


def _recorded(store: Store, deployment: int = 7) -> list[Approval]:
    with store.read() as conn:
        return approvals.for_deployment(conn, deployment)


def test_an_approval_is_stored_audited_and_announced(store: Store) -> None:
    approval = _approve(store, "bob@example.com", reason="  reviewed the changelog  ")
    later = _approve(store, "carol@example.com", at=AT + timedelta(minutes=3))
    _approve(store, "bob@example.com", deployment=8)
    assert _recorded(store) == [approval, later]
    assert approval.reason == "reviewed the changelog"
    assert approval.approved_at == AT and not approval.signed
    with store.read() as conn:
        audited = audit.events(conn, subject="deployment:7")
        announced = [e for e in outbox.read(conn) if e.subject == "deployment:7"]
    assert [(e.actor, e.action) for e in audited] == [
        ("bob@example.com", "deployment.approved"),
        ("carol@example.com", "deployment.approved"),
    ]
    assert [e.type for e in announced] == ["deployment.approved"] * 2
    assert json.loads(audited[0].details)["reason"] == "reviewed the changelog"


def test_a_person_approves_a_deployment_once_whatever_the_case(store: Store) -> None:
    _approve(store, "bob@example.com")
    with pytest.raises(AlreadyApproved, match=r"bob@example\.com approved deployment 7 already"):
        _approve(store, " BOB@example.com ")
    assert [a.approver for a in _recorded(store)] == ["bob@example.com"]


def test_a_huge_reason_is_refused_and_nothing_is_recorded(store: Store) -> None:
    with pytest.raises(ApprovalError, match="at most 2,000 fit"):
        _approve(store, "bob@example.com", reason="x" * 5000)
    assert _recorded(store) == []


def test_a_signed_approval_keeps_its_statement_signature_and_key(store: Store) -> None:
    text = approvals.statement(
        deployment_id=7,
        project="shop",
        environment="production",
        version="1.4.0",
        release_digest="sha256:" + "ab" * 32,
        approver="bob@example.com",
        at=AT,
    )
    approval = _approve(store, "bob@example.com", statement=text, signature="c2ln", key_id="k" * 64)
    assert _recorded(store) == [approval]
    assert approval.signed
    assert json.loads(text) == {
        "_type": approvals.STATEMENT_TYPE,
        "deployment": 7,
        "project": "shop",
        "environment": "production",
        "version": "1.4.0",
        "release": "sha256:" + "ab" * 32,
        "approver": "bob@example.com",
        "approved_at": "2026-03-02T09:30:00+00:00",
    }
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))


def _approval(approver: str, number: int = 1, *, signed: bool = False) -> Approval:
    return Approval(
        id=number,
        deployment_id=7,
        approver=approver,
        reason=None,
        approved_at=AT,
        statement="{}" if signed else None,
        signature="c2ln" if signed else None,
        key_id="k" * 64 if signed else None,
    )


def _rule(**changes: object) -> ApprovalRule:
    values: dict[str, object] = {
        "required": 2,
        "not_author": True,
        "not_releaser": True,
        "author": AUTHOR,
        "releaser": RELEASER,
    }
    values.update(changes)
    return ApprovalRule(**values)  # type: ignore[arg-type]


def _never_verified(approval: Approval) -> str | None:
    raise AssertionError(f"{approval.approver}'s approval is not signed: nothing to verify")


def test_the_authors_own_approval_does_not_count() -> None:
    tally = approvals.tally(
        _rule(),
        [_approval("Ada@Example.com"), _approval("bob@example.com", 2)],
        _never_verified,
    )
    assert [c.counts for c in tally.approvals] == [False, True]
    assert "wrote the release's commit" in str(tally.approvals[0].why_not)
    assert (tally.counted, tally.missing, tally.suffices) == (1, 1, False)
    assert tally.describe() == "1 of 2 approvals (bob@example.com); 1 more needed"


def test_the_releasers_approval_does_not_count_where_not_releaser_is_set() -> None:
    recorded = [_approval(RELEASER), _approval("bob@example.com", 2)]
    strict = approvals.tally(_rule(), recorded, _never_verified)
    assert strict.counted == 1
    assert "made the release" in str(strict.approvals[0].why_not)
    lenient = approvals.tally(_rule(not_releaser=False), recorded, _never_verified)
    assert lenient.counted == 2 and lenient.suffices


def test_two_different_people_make_two_approvals() -> None:
    rule = _rule(not_author=False)
    tally = approvals.tally(
        rule,
        [_approval("bob@example.com"), _approval("BOB@example.com", 2), _approval(AUTHOR, 3)],
        _never_verified,
    )
    assert tally.counted == 2 and tally.suffices
    assert tally.as_json()["approvals"][1]["counts"] is True  # the same person: counted once


def test_only_members_of_the_groups_count() -> None:
    rule = _rule(
        required=1,
        groups={"release-managers": ("carol@example.com",), "sre": ("dan@example.com",)},
    )
    outsider = approvals.judge(rule, _approval("bob@example.com"), _never_verified)
    member = approvals.judge(rule, _approval("Dan@example.com"), _never_verified)
    assert not outsider.counts
    assert "in none of the approving groups (release-managers, sre" in str(outsider.why_not)
    assert member == Counted(member.approval, True, None)


def test_signed_approvals_count_only_when_their_signature_verifies() -> None:
    rule = _rule(required=1, signed=True)
    verdicts = {"bob@example.com": None, "carol@example.com": "does not verify"}
    verify = lambda approval: verdicts[approval.approver]  # noqa: E731 - a fake verifier
    good = approvals.judge(rule, _approval("bob@example.com", signed=True), verify)
    forged = approvals.judge(rule, _approval("carol@example.com", signed=True), verify)
    unsigned = approvals.judge(rule, _approval("dan@example.com"), _never_verified)
    assert (good.counts, forged.counts, unsigned.counts) == (True, False, False)
    assert forged.why_not == "does not verify"
    assert "is not signed (the environment sets signed)" in str(unsigned.why_not)


def test_a_signature_that_does_not_verify_never_counts_even_where_none_is_needed() -> None:
    rule = _rule(required=1, signed=False)
    forged = approvals.judge(
        rule, _approval("bob@example.com", signed=True), lambda _approval: "forged"
    )
    assert not forged.counts and forged.why_not == "forged"


def test_a_rule_reads_back_as_written() -> None:
    rule = _rule(
        groups={"sre": ("dan@example.com",)},
        signed=True,
        keys={"bob@example.com": ("-----BEGIN PUBLIC KEY-----\n…",)},
        approvers="approvers",
    )
    assert ApprovalRule.from_json(json.loads(json.dumps(rule.as_json()))) == rule
    assert rule.describe() == (
        "2 approvals, not by the author (ada@example.com), not by the releaser "
        "(rel@example.com), by members of sre, signed"
    )
    assert rule.keys_of("BOB@example.com") == ("-----BEGIN PUBLIC KEY-----\n…",)
