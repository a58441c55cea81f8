"""Approvals of deployments: who approved, when and why, and whether the approvals suffice.

A deployment to an environment with ``approval:`` waits until enough different people approved
it. This module stores approvals (each audited and announced in the caller's transaction) and
counts them against the rule frozen with the deployment. It verifies no signature itself (the
caller passes a verifier: keys belong to the release pillar) and never starts a deployment.

Identities are self-declared (``SHIPYARD_USER``, git's ``user.email``): they are compared
without regard to case or surrounding spaces, and only a signature makes one trustworthy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from shipyard.core import audit, outbox
from shipyard.core.errors import UserError
from shipyard.core.store.tables import approvals

STATEMENT_TYPE = "https://shipyard.dev/approval/v1"
"""What a signed approval's statement says it is, so that its signature means nothing else."""

REASON_LIMIT = 2000
"""The longest reason an approval may give, in characters."""


class ApprovalError(UserError):
    """An approval cannot be recorded as asked."""


class AlreadyApproved(ApprovalError):
    """This person approved the deployment already; an approval is recorded once."""


class ApprovalRefused(ApprovalError):
    """The approval would not count under the environment's rule, so it is not recorded."""


def same_person(first: str, second: str) -> bool:
    """Whether two self-declared identities name the same person (case and spaces aside)."""
    return first.strip().casefold() == second.strip().casefold()


@dataclass(frozen=True)
class Approval:
    """One person's approval of one deployment, as recorded."""

    id: int
    deployment_id: int
    approver: str
    reason: str | None
    approved_at: datetime
    statement: str | None = None
    """The signed statement (canonical JSON), when the approval is signed."""
    signature: str | None = None
    """The base64 ed25519 signature of ``statement``."""
    key_id: str | None = None

    @property
    def signed(self) -> bool:
        """Whether the approver signed the approval."""
        return self.signature is not None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form (what deploy checks see as ``approvals``)."""
        return {
            "id": self.id,
            "deployment": self.deployment_id,
            "approver": self.approver,
            "reason": self.reason,
            "approved_at": self.approved_at.isoformat(),
            "signed": self.signed,
            "key_id": self.key_id,
        }


@dataclass(frozen=True)
class ApprovalRule:
    """An environment's ``approval`` as frozen with a deployment when it was asked for.

    ``groups`` maps each group named to its members and ``keys`` each approver to the public
    keys (PEM) listed for them, both as read from the approvers folder at that moment; the
    author and releaser are those of the release deployed.
    """

    required: int
    not_author: bool = False
    not_releaser: bool = False
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    signed: bool = False
    author: str | None = None
    releaser: str | None = None
    keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    approvers: str = ".shipyard-approvers"
    """The folder the groups and keys were read from, for messages."""

    def why_not(self, approver: str) -> str | None:
        """Why an approval by ``approver`` does not count (None: it counts, if signed when
        signatures are required)."""
        if self.not_author and self.author is not None and same_person(approver, self.author):
            return f"{approver} wrote the release's commit (the environment sets not_author)"
        if self.not_releaser and self.releaser is not None and same_person(approver, self.releaser):
            return f"{approver} made the release (the environment sets not_releaser)"
        if self.groups and not any(
            same_person(approver, member) for members in self.groups.values() for member in members
        ):
            names = ", ".join(sorted(self.groups))
            return (
                f"{approver} is in none of the approving groups ({names}; their members are "
                f"listed in {self.approvers}/groups/)"
            )
        return None

    def keys_of(self, approver: str) -> tuple[str, ...]:
        """The public keys (PEM) listed for ``approver``."""
        return tuple(
            key for name, found in self.keys.items() if same_person(name, approver) for key in found
        )

    def describe(self) -> str:
        """The rule in one line: ``2 approvals, not by the author, signed``."""
        parts = [f"{self.required} approval{'s' if self.required != 1 else ''}"]
        if self.not_author:
            parts.append(f"not by the author ({self.author})")
        if self.not_releaser:
            parts.append(f"not by the releaser ({self.releaser})")
        if self.groups:
            parts.append(f"by members of {', '.join(sorted(self.groups))}")
        if self.signed:
            parts.append("signed")
        return ", ".join(parts)

    def as_json(self) -> dict[str, Any]:
        """The JSON stored with the deployment."""
        return {
            "required": self.required,
            "not_author": self.not_author,
            "not_releaser": self.not_releaser,
            "groups": {name: list(members) for name, members in self.groups.items()},
            "signed": self.signed,
            "author": self.author,
            "releaser": self.releaser,
            "keys": {name: list(found) for name, found in self.keys.items()},
            "approvers": self.approvers,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApprovalRule:
        """Read back the form written by :meth:`as_json`."""
        return cls(
            required=int(data["required"]),
            not_author=bool(data.get("not_author", False)),
            not_releaser=bool(data.get("not_releaser", False)),
            groups={str(k): tuple(v) for k, v in (data.get("groups") or {}).items()},
            signed=bool(data.get("signed", False)),
            author=data.get("author"),
            releaser=data.get("releaser"),
            keys={str(k): tuple(v) for k, v in (data.get("keys") or {}).items()},
            approvers=str(data.get("approvers", ".shipyard-approvers")),
        )


@dataclass(frozen=True)
class Counted:
    """One approval as the rule judges it."""

    approval: Approval
    counts: bool
    why_not: str | None = None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {**self.approval.as_json(), "counts": self.counts, "why_not": self.why_not}


@dataclass(frozen=True)
class Tally:
    """A deployment's approvals counted against its rule."""

    rule: ApprovalRule
    approvals: tuple[Counted, ...]

    @property
    def counted(self) -> int:
        """How many different people's approvals count."""
        people: list[str] = []
        for item in self.approvals:
            name = item.approval.approver
            if item.counts and not any(same_person(name, other) for other in people):
                people.append(name)
        return len(people)

    @property
    def missing(self) -> int:
        """How many more approvals that count are needed (0 once they suffice)."""
        return max(0, self.rule.required - self.counted)

    @property
    def suffices(self) -> bool:
        """Whether the deployment may start."""
        return self.missing == 0

    def describe(self) -> str:
        """``1 of 2 approvals (bob@example.com); 1 more needed``."""
        who = [c.approval.approver for c in self.approvals if c.counts]
        text = f"{self.counted} of {self.rule.required} approvals"
        if who:
            text += f" ({', '.join(who)})"
        if self.missing:
            text += f"; {self.missing} more needed"
        return text

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "rule": self.rule.describe(),
            "required": self.rule.required,
            "counted": self.counted,
            "missing": self.missing,
            "suffices": self.suffices,
            "approvals": [item.as_json() for item in self.approvals],
        }


Verifier = Callable[[Approval], str | None]
"""Says why a signed approval's signature does not hold (None when it does)."""


def judge(rule: ApprovalRule, approval: Approval, verify: Verifier) -> Counted:
    """Whether one approval counts: the rule's conditions, then its signature.

    A signature is checked whenever there is one (a signature that does not verify never
    counts, even where none is required); an unsigned approval counts only where the rule
    does not ask for signatures.
    """
    why = rule.why_not(approval.approver)
    if why is None and approval.signed:
        why = verify(approval)
    if why is None and rule.signed and not approval.signed:
        why = f"{approval.approver}'s approval is not signed (the environment sets signed)"
    return Counted(approval, why is None, why)


def tally(rule: ApprovalRule, recorded: Sequence[Approval], verify: Verifier) -> Tally:
    """The approvals of a deployment counted against its rule."""
    return Tally(rule, tuple(judge(rule, approval, verify) for approval in recorded))


def statement(
    *,
    deployment_id: int,
    project: str,
    environment: str,
    version: str,
    release_digest: str,
    approver: str,
    at: datetime,
) -> str:
    """The canonical JSON an approver signs: this deployment of this release, by them, then."""
    return json.dumps(
        {
            "_type": STATEMENT_TYPE,
            "deployment": deployment_id,
            "project": project,
            "environment": environment,
            "version": version,
            "release": release_digest,
            "approver": approver,
            "approved_at": at.astimezone(UTC).isoformat(),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )


def record(
    conn: Connection,
    *,
    deployment_id: int,
    approver: str,
    reason: str | None,
    at: datetime,
    statement: str | None = None,
    signature: str | None = None,
    key_id: str | None = None,
) -> Approval:
    """Store an approval in the caller's transaction; audited and announced as
    ``deployment.approved``. ``AlreadyApproved`` if this person approved it before."""
    if reason is not None:
        reason = reason.strip() or None
    if reason is not None and len(reason) > REASON_LIMIT:
        raise ApprovalError(
            f"the reason is {len(reason):,} characters long; at most {REASON_LIMIT:,} fit",
            hint="say briefly why it may go out",
        )
    if (signature is None) != (statement is None):
        raise ValueError("a signed approval needs both its statement and its signature")
    for earlier in for_deployment(conn, deployment_id):
        if same_person(earlier.approver, approver):
            raise AlreadyApproved(
                f"{earlier.approver} approved deployment {deployment_id} already, at "
                f"{earlier.approved_at:%Y-%m-%d %H:%M:%S} UTC",
                hint="an approval counts once; ask somebody else to approve it",
            )
    moment = at.astimezone(UTC)
    key = conn.execute(
        approvals.insert().values(
            deployment_id=deployment_id,
            approver=approver,
            reason=reason,
            approved_at=moment,
            statement=statement,
            signature=signature,
            key_id=key_id,
        )
    ).inserted_primary_key
    assert key is not None
    approval = Approval(
        int(key[0]), deployment_id, approver, reason, moment, statement, signature, key_id
    )
    subject = f"deployment:{deployment_id}"
    details = {
        "approval": approval.id,
        "approver": approver,
        "reason": reason,
        "signed": approval.signed,
        "key_id": key_id,
    }
    audit.append(
        conn, actor=approver, action="deployment.approved", subject=subject, details=details
    )
    outbox.append(conn, "deployment.approved", subject, details)
    return approval


def for_deployment(conn: Connection, deployment_id: int) -> list[Approval]:
    """A deployment's approvals, oldest first."""
    rows = conn.execute(
        select(approvals).where(approvals.c.deployment_id == deployment_id).order_by(approvals.c.id)
    )
    return [
        Approval(
            id=int(row.id),
            deployment_id=int(row.deployment_id),
            approver=row.approver,
            reason=row.reason,
            approved_at=row.approved_at,
            statement=row.statement,
            signature=row.signature,
            key_id=row.key_id,
        )
        for row in rows
    ]
