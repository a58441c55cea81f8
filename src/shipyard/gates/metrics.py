"""The metric gates of model releases: a number in an artifact, its bounds, and no regression.

Each ``gates.metrics`` entry reads one number from a JSON artifact of the release to deploy,
checks it against ``min`` and ``max``, and compares it with the same number of the release the
environment runs now: falling behind by more than ``no_regression`` fails. Both values go into
the gate's findings, so they are recorded with the deployment; ``recorded_metrics`` reads them
back for ``releases show``. The gate reads artifacts only through the context.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import select

from shipyard.core.config.gates import MetricGate, PathStep, value_path_steps
from shipyard.core.errors import ShipyardError
from shipyard.core.store import Store
from shipyard.core.store.tables import gate_results, gate_runs
from shipyard.gates.interface import (
    Finding,
    Gate,
    GateContext,
    GateError,
    GateKind,
    Severity,
    Status,
    Verdict,
    register,
)

PASSED = "SHIPYARD-METRIC-PASSED"
"""The finding id of a metric that met every bound (its values are in the details)."""

UNREADABLE = "SHIPYARD-METRIC-UNREADABLE"
"""The finding id of a metric the release's artifact does not give as a number."""

BELOW_MIN = "SHIPYARD-METRIC-BELOW-MIN"
"""The finding id of a metric below its ``min``."""

ABOVE_MAX = "SHIPYARD-METRIC-ABOVE-MAX"
"""The finding id of a metric above its ``max``."""

REGRESSED = "SHIPYARD-METRIC-REGRESSED"
"""The finding id of a metric worse than the running release's by more than ``no_regression``."""

NOT_COMPARED = "SHIPYARD-METRIC-NOT-COMPARED"
"""The finding id of a metric that could not be compared with the running release's."""

_FINDING_IDS = (UNREADABLE, BELOW_MIN, ABOVE_MAX, REGRESSED, NOT_COMPARED, PASSED)

_TOLERANCE = 1e-9
"""Relative slack when comparing, so that 0.93 - 0.92 is not above no_regression 0.01."""

ArtifactReader = Callable[[str, str], bytes | None]


@dataclass(frozen=True)
class MetricCheck:
    """One metric judged: both values, the verdict and why."""

    gate: MetricGate
    value: float | None
    running_version: str | None
    running_value: float | None
    status: Status
    finding_id: str
    reasons: tuple[str, ...]

    def details(self) -> dict[str, Any]:
        """What the finding records: the metric, both values, the bounds and the verdict."""
        return {
            "metric": self.gate.name,
            "file": self.gate.file,
            "path": self.gate.path,
            "value": self.value,
            "running_version": self.running_version,
            "running_value": self.running_value,
            "min": self.gate.min,
            "max": self.gate.max,
            "no_regression": self.gate.no_regression,
            "better": "higher" if self.gate.higher_is_better else "lower",
            "verdict": self.status.value,
            "reasons": list(self.reasons),
        }

    def finding(self) -> Finding:
        """The finding that records this check (blocking when it failed)."""
        severity = {Status.PASS: Severity.INFO, Status.WARN: Severity.LOW}.get(
            self.status, Severity.HIGH
        )
        return Finding(
            id=self.finding_id,
            severity=severity,
            location=f"{self.gate.file}: {self.gate.path}",
            message=f"{self.gate.name}: {self.describe()}",
            remediation=_REMEDIATION.get(self.finding_id),
            blocking=self.status is Status.FAIL,
            details=self.details(),
        )

    def describe(self) -> str:
        """``0.93 (1.0.0 runs 0.95): regressed by 0.02, more than no_regression 0.01``."""
        shown = "no value" if self.value is None else _number(self.value)
        if self.running_version is not None:
            running = "no value" if self.running_value is None else _number(self.running_value)
            shown += f" ({self.running_version} runs {running})"
        return f"{shown}: {'; '.join(self.reasons)}" if self.reasons else f"{shown}: ok"


_REMEDIATION = {
    UNREADABLE: "make the pipeline store the file as an artifact, with a number at the path",
    BELOW_MIN: "improve the model, or lower min in gates.metrics",
    ABOVE_MAX: "improve the model, or raise max in gates.metrics",
    REGRESSED: "improve the model; a release this much worse than the running one is refused",
    NOT_COMPARED: "the running release has no such number; deploy one that has to compare",
}


@register
class MetricsGate(Gate):
    """Fails when a metric cannot be read, is out of bounds, or regressed too far."""

    name: ClassVar[str] = "metrics"
    kind: ClassVar[GateKind] = "deploy"

    def __init__(self, metrics: Sequence[MetricGate]) -> None:
        self.metrics = tuple(metrics)

    @classmethod
    def for_context(cls, context: GateContext) -> MetricsGate:
        """The gate with ``gates.metrics`` (no metrics when unconfigured)."""
        gates = context.config.gates
        return cls((gates.metrics or ()) if gates is not None else ())

    def judge(self, context: GateContext) -> Verdict:
        """Read each metric of the release and of the running one, and compare them."""
        if not self.metrics:
            return Verdict(Status.PASS, (), "no metrics are configured")
        record = context.release_record
        if record is None or context.read_artifact is None:
            raise GateError(
                "the metrics check judges a deployment: it needs the release and its artifacts",
                hint="run it through a deployment (deploy, promote, rollback, ship)",
            )
        version = str(record.get("version"))
        running = None if context.running is None else str(context.running.get("version"))
        checks = [
            check_metric(
                gate,
                context.read_artifact,
                version=version,
                running_version=running,
                environment=context.environment,
            )
            for gate in self.metrics
        ]
        status = Status.worst([check.status for check in checks])
        summary = "; ".join(f"{check.gate.name} {check.describe()}" for check in checks)
        return Verdict(status, tuple(check.finding() for check in checks), summary)


def check_metric(
    gate: MetricGate,
    read_artifact: ArtifactReader,
    *,
    version: str,
    running_version: str | None,
    environment: str | None = None,
) -> MetricCheck:
    """Judge one metric of ``version`` against its bounds and ``running_version``'s value."""
    value, problem = read_metric(gate, read_artifact, version)
    running_value: float | None = None
    running_problem: str | None = None
    if running_version is not None:
        running_value, running_problem = read_metric(gate, read_artifact, running_version)
    if value is None:
        return _check(gate, value, running_version, running_value, Status.FAIL, UNREADABLE, problem)
    failures: list[tuple[str, str]] = []
    if gate.min is not None and value < gate.min and not _close(value, gate.min):
        failures.append((BELOW_MIN, f"below min {_number(gate.min)}"))
    if gate.max is not None and value > gate.max and not _close(value, gate.max):
        failures.append((ABOVE_MAX, f"above max {_number(gate.max)}"))
    notes: list[str] = []
    if gate.no_regression is not None:
        if running_version is None:
            where = f"in {environment}" if environment else "there"
            notes.append(f"no release runs {where} yet: nothing to compare with")
        elif running_value is None:
            notes.append(f"not compared with {running_version}: {running_problem}")
        else:
            regression = _regression(gate, value, running_value)
            if regression > gate.no_regression and not _close(regression, gate.no_regression):
                failures.append(
                    (
                        REGRESSED,
                        f"regressed by {_number(regression)}, more than no_regression "
                        f"{_number(gate.no_regression)}",
                    )
                )
    if failures:
        reasons = tuple(reason for _, reason in failures)
        return _check(
            gate, value, running_version, running_value, Status.FAIL, failures[0][0], *reasons
        )
    if notes and running_version is not None:
        return _check(
            gate, value, running_version, running_value, Status.WARN, NOT_COMPARED, *notes
        )
    return _check(gate, value, running_version, running_value, Status.PASS, PASSED, *notes)


def _check(
    gate: MetricGate,
    value: float | None,
    running_version: str | None,
    running_value: float | None,
    status: Status,
    finding_id: str,
    *reasons: str | None,
) -> MetricCheck:
    return MetricCheck(
        gate=gate,
        value=value,
        running_version=running_version,
        running_value=running_value,
        status=status,
        finding_id=finding_id,
        reasons=tuple(reason for reason in reasons if reason),
    )


def _regression(gate: MetricGate, value: float, running_value: float) -> float:
    """How much worse ``value`` is than the running one (negative when it is better)."""
    return running_value - value if gate.higher_is_better else value - running_value


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_TOLERANCE, abs_tol=_TOLERANCE)


def read_metric(
    gate: MetricGate, read_artifact: ArtifactReader, version: str
) -> tuple[float | None, str | None]:
    """The number at ``gate.path`` in ``version``'s artifact ``gate.file``, or None and why."""
    try:
        data = read_artifact(version, gate.file)
    except ShipyardError as error:
        return None, f"{version}'s artifact {gate.file} cannot be read: {error.message}"
    if data is None:
        return None, f"{version} has no artifact {gate.file}"
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"{version}'s {gate.file} is not JSON: {error}"
    found, problem = _at(document, value_path_steps(gate.path))
    if problem is not None:
        return None, f"{version}'s {gate.file} {problem}"
    if isinstance(found, bool) or not isinstance(found, int | float):
        return None, f"{version}'s {gate.file} has {_described(found)} at {gate.path}, not a number"
    if not math.isfinite(found):
        return None, f"{version}'s {gate.file} has {found} at {gate.path}, not a finite number"
    return float(found), None


def _at(document: Any, steps: Sequence[PathStep]) -> tuple[Any, str | None]:
    current = document
    walked = "$"
    for step in steps:
        if isinstance(step, int):
            if not isinstance(current, list) or step >= len(current):
                return None, f"has no item [{step}] in {walked}"
            current = current[step]
            walked += f"[{step}]"
        else:
            if not isinstance(current, Mapping) or step not in current:
                return None, f"has no key {step!r} in {walked}"
            current = current[step]
            walked = step if walked == "$" else f"{walked}.{step}"
    return current, None


def _described(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {json.dumps(value[:40])}"
    return "a list" if isinstance(value, list) else "an object"


def _number(value: float) -> str:
    return f"{value:.6g}"


# --- reading the recorded values back -----------------------------------------------------------


@dataclass(frozen=True)
class RecordedMetric:
    """One metric as a deploy check recorded it for a release in one environment."""

    gate_run: int
    environment: str | None
    judged_at: datetime
    metric: str
    value: float | None
    running_version: str | None
    running_value: float | None
    verdict: str
    reasons: tuple[str, ...]
    overridden_by: str | None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "gate_run": self.gate_run,
            "environment": self.environment,
            "judged_at": self.judged_at.isoformat(),
            "metric": self.metric,
            "value": self.value,
            "running_version": self.running_version,
            "running_value": self.running_value,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "overridden_by": self.overridden_by,
        }


def recorded_metrics(store: Store, project: str, version: str) -> list[RecordedMetric]:
    """Every metric the metrics gate recorded for ``version`` of ``project``, oldest first."""
    query = (
        select(
            gate_runs.c.id,
            gate_runs.c.environment,
            gate_runs.c.finished_at,
            gate_results.c.findings,
            gate_results.c.overridden_by,
        )
        .join(gate_results, gate_results.c.run_id == gate_runs.c.id)
        .where(
            gate_runs.c.project == project,
            gate_runs.c.release == version,
            gate_results.c.gate == MetricsGate.name,
        )
        .order_by(gate_runs.c.id)
    )
    with store.read() as conn:
        rows = list(conn.execute(query))
    found: list[RecordedMetric] = []
    for row in rows:
        for finding in json.loads(row.findings):
            details = finding.get("details") or {}
            if finding.get("id") not in _FINDING_IDS or "metric" not in details:
                continue
            found.append(
                RecordedMetric(
                    gate_run=int(row.id),
                    environment=row.environment,
                    judged_at=row.finished_at,
                    metric=str(details["metric"]),
                    value=details.get("value"),
                    running_version=details.get("running_version"),
                    running_value=details.get("running_value"),
                    verdict=str(details.get("verdict")),
                    reasons=tuple(details.get("reasons") or ()),
                    overridden_by=row.overridden_by,
                )
            )
    return found
