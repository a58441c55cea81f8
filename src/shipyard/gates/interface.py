"""The gate interface: a gate judges a context and answers pass, warn or fail with findings.

Gates are small classes registered by the name ``shipyard.yaml`` uses under ``gates:``. A gate
computes a verdict and nothing else: it never writes the store, prints, or decides exit codes;
the runner times it, records it and turns an unexpected error into a failure.

::

    GateError                  a gate could not judge (the runner records it as a failure)
    ├── UnknownGate            a gate name that no gate registers (also a UserError: exit 2)
    ├── DependencyError        a dependency file cannot be read (also a UserError)
    └── AdvisorySourceError    advisory data is missing, corrupt, stale or unreachable
    GateFailed                 a CheckFailed: gates failed and were not overridden (exit 1)
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from shipyard.core.config import ShipyardConfig, did_you_mean
from shipyard.core.errors import CheckFailed, ShipyardError, UserError

GateKind = Literal["release", "deploy"]
"""Release gates judge a candidate before it is recorded; deploy checks judge a deployment."""


class GateError(ShipyardError):
    """A gate could not reach a verdict; it fails closed with this message as its reason."""


class UnknownGate(GateError, UserError):
    """A gate was named (``--gate``, ``--override``) that no gate registers."""


class DependencyError(GateError, UserError):
    """A dependency file (lockfile, requirements) is malformed; the message names the file."""


class AdvisorySourceError(GateError):
    """Advisory data is missing, corrupt, stale or unreachable; the message names the source."""


class GateFailed(CheckFailed):
    """One or more gates failed and were not overridden (exit 1)."""


class Status(enum.StrEnum):
    """A gate's verdict, from the best to the worst."""

    PASS = "pass"  # noqa: S105 - a verdict, not a password
    WARN = "warn"
    FAIL = "fail"

    @property
    def rank(self) -> int:
        """0 for pass, 1 for warn, 2 for fail."""
        return _STATUS_RANKS[self]

    @staticmethod
    def worst(statuses: list[Status]) -> Status:
        """The worst of some verdicts; pass when there are none."""
        return max(statuses, key=lambda status: status.rank, default=Status.PASS)


_STATUS_RANKS = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2}


class Severity(enum.StrEnum):
    """How bad a finding is; ``info`` is a note that never fails a gate on its own."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for info up to 4 for critical."""
        return _SEVERITY_RANKS[self]

    def at_least(self, other: Severity) -> bool:
        """Whether this severity is ``other`` or worse."""
        return self.rank >= other.rank


_SEVERITY_RANKS = {
    Severity.INFO: 0,
    Severity.LOW: 1,
    Severity.MEDIUM: 2,
    Severity.HIGH: 3,
    Severity.CRITICAL: 4,
}


@dataclass(frozen=True)
class Finding:
    """One thing a gate found: what, how bad, where, and how to fix it."""

    id: str
    severity: Severity
    location: str
    message: str
    remediation: str | None = None
    blocking: bool = False
    suppression: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> bool:
        """Whether the finding affects the verdict (it is not suppressed by an ignore)."""
        return self.suppression is None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "id": self.id,
            "severity": self.severity.value,
            "location": self.location,
            "message": self.message,
            "remediation": self.remediation,
            "blocking": self.blocking,
            "suppression": self.suppression,
            "details": dict(self.details),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Finding:
        """Read back the form written by :meth:`as_json`."""
        return cls(
            id=str(value["id"]),
            severity=Severity(value["severity"]),
            location=str(value["location"]),
            message=str(value["message"]),
            remediation=value.get("remediation"),
            blocking=bool(value.get("blocking", False)),
            suppression=value.get("suppression"),
            details=dict(value.get("details") or {}),
        )


def count_of(number: int, noun: str) -> str:
    """``1 file``, ``2 files``: a count for a verdict's summary (plural by a final ``s``)."""
    return f"{number} {noun}{'s' if number != 1 else ''}"


@dataclass(frozen=True)
class Verdict:
    """What a gate's ``judge`` returns: its status, findings and a one-line summary."""

    status: Status
    findings: tuple[Finding, ...] = ()
    summary: str = ""

    @classmethod
    def of(cls, findings: Sequence[Finding], summary: str) -> Verdict:
        """The verdict the findings make: fail if one that counts blocks, warn if any counts,
        else pass."""
        counted = [f for f in findings if f.counts]
        if any(f.blocking for f in counted):
            status = Status.FAIL
        elif counted:
            status = Status.WARN
        else:
            status = Status.PASS
        return cls(status=status, findings=tuple(findings), summary=summary)


@dataclass(frozen=True)
class GateResult:
    """A gate's verdict as recorded: the verdict, its duration and any override."""

    gate: str
    status: Status
    findings: tuple[Finding, ...]
    summary: str
    duration_s: float
    overridden_by: str | None = None
    override_reason: str | None = None

    @property
    def overridden(self) -> bool:
        """Whether a person let this result through despite its verdict."""
        return self.overridden_by is not None

    @property
    def blocks(self) -> bool:
        """Whether this result stops the release: it failed and was not overridden."""
        return self.status is Status.FAIL and not self.overridden

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "gate": self.gate,
            "status": self.status.value,
            "summary": self.summary,
            "duration_s": round(self.duration_s, 6),
            "overridden_by": self.overridden_by,
            "override_reason": self.override_reason,
            "findings": [finding.as_json() for finding in self.findings],
        }


@dataclass(frozen=True)
class GateContext:
    """What a gate judges: a workspace, the configuration, and what it is judged for.

    ``project_dir`` is the project's folder in the working tree when ``workspace`` is a copy of
    it (a release bundle); ``sbom`` is a stored bill of materials that dependency gates read
    instead of the workspace's files (re-scanning a shipped release).
    """

    workspace: Path
    config: ShipyardConfig
    state_root: Path
    release: str | None = None
    environment: str | None = None
    commit: str | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    project_dir: Path | None = None
    sbom: Path | None = None
    actor: str | None = None
    """Deploy checks: who asks for the deployment."""
    deployment: Mapping[str, Any] | None = None
    """Deploy checks: the deployment asked for (id, kind, strategy), when it is recorded."""
    release_record: Mapping[str, Any] | None = None
    """Deploy checks: the release to deploy as its record's JSON (version, commit, digests,
    gate results, signer)."""
    running: Mapping[str, Any] | None = None
    """Deploy checks: the release the environment runs now as its record's JSON (None: none)."""
    approvals: Sequence[Mapping[str, Any]] = ()
    """Deploy checks: the approvals the deployment has (who, when, reason, signed or not)."""
    read_artifact: Callable[[str, str], bytes | None] | None = None
    """Deploy checks: a release's artifact by (version, path), None when it has no such file."""

    @property
    def source_dir(self) -> Path:
        """The project's folder in the repository: settings' relative paths resolve here.

        It is ``project_dir`` when the workspace is a copy (an unpacked release bundle), else
        the workspace itself.
        """
        return self.project_dir if self.project_dir is not None else self.workspace

    @property
    def is_copy(self) -> bool:
        """Whether the workspace is an unpacked copy of the project rather than its folder."""
        return (
            self.project_dir is not None and self.project_dir.resolve() != self.workspace.resolve()
        )

    @property
    def today(self) -> date:
        """The current date in UTC, for expiry dates."""
        return self.now.astimezone(UTC).date()


class Gate(ABC):
    """One check a release or a deployment must pass."""

    name: ClassVar[str]
    kind: ClassVar[GateKind]

    @classmethod
    @abstractmethod
    def for_context(cls, context: GateContext) -> Gate:
        """The gate as ``context``'s configuration sets it up (defaults when unconfigured)."""

    @abstractmethod
    def judge(self, context: GateContext) -> Verdict:
        """Judge the context; raise ``GateError`` when no verdict can be reached."""


GATES: dict[str, type[Gate]] = {}
"""Every gate by the name ``shipyard.yaml`` uses under ``gates:``."""

GateT = TypeVar("GateT", bound=type[Gate])


def register(gate: GateT) -> GateT:
    """Class decorator: make a gate known under its ``name``."""
    if gate.name in GATES and GATES[gate.name] is not gate:
        raise ValueError(f"two gates are named {gate.name!r}")
    GATES[gate.name] = gate
    return gate


def gate_named(name: str) -> type[Gate]:
    """The gate registered as ``name``; ``UnknownGate`` with a suggestion otherwise."""
    try:
        return GATES[name]
    except KeyError:
        known = sorted(GATES)
        raise UnknownGate(
            f"there is no gate named {name!r}",
            hint=did_you_mean(name, known) or f"the gates are: {', '.join(known)}",
        ) from None


def configured_gates(config: ShipyardConfig, kind: GateKind) -> list[str]:
    """The names of the gates of ``kind`` that ``shipyard.yaml`` turns on, in its order."""
    section = config.gates
    if section is None:
        return []
    return [
        name
        for name in type(section).model_fields
        if getattr(section, name) is not None and name in GATES and GATES[name].kind == kind
    ]
