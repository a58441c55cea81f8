"""Measurements of a deployment's analysis: each metric's value, threshold, verdict and why.

The monitor pillar judges and records them; ``shipyard analysis show``, the controller and
later DORA read them. This module stores and reads rows; it judges nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import Connection, select

from shipyard.core.store.tables import measurements

VerdictName = Literal["pass", "fail", "inconclusive", "undecided"]
"""What a measurement was judged to be (``undecided``: a sequential test needs more looks)."""

VERDICT_NAMES: tuple[str, ...] = get_args(VerdictName)
"""Every verdict a measurement may carry."""


@dataclass(frozen=True)
class RecordedMeasurement:
    """One stored measurement of one metric of a deployment, with its verdict and reason."""

    id: int
    deployment_id: int
    environment: str
    phase: str
    metric: str
    version: str
    baseline_version: str | None
    value: float | None
    baseline_value: float | None
    threshold: str
    verdict: VerdictName
    reason: str
    measured_at: datetime
    evidence: Mapping[str, float] | None = None
    """The numbers behind the verdict (a sequential judge's counts and statistics), if any."""

    def as_json(self) -> dict[str, Any]:
        """The measurement as plain JSON values."""
        return {
            "id": self.id,
            "deployment": self.deployment_id,
            "environment": self.environment,
            "phase": self.phase,
            "metric": self.metric,
            "version": self.version,
            "baseline_version": self.baseline_version,
            "value": self.value,
            "baseline_value": self.baseline_value,
            "threshold": self.threshold,
            "verdict": self.verdict,
            "reason": self.reason,
            "measured_at": self.measured_at.isoformat(),
            "evidence": None if self.evidence is None else dict(self.evidence),
        }


def record(
    conn: Connection,
    *,
    deployment_id: int,
    environment: str,
    phase: str,
    metric: str,
    version: str,
    baseline_version: str | None,
    value: float | None,
    baseline_value: float | None,
    threshold: str,
    verdict: str,
    reason: str,
    measured_at: datetime | None = None,
    evidence: Mapping[str, float] | None = None,
) -> RecordedMeasurement:
    """Store one measurement in the caller's transaction and return it as stored."""
    if verdict not in VERDICT_NAMES:
        raise ValueError(f"verdict {verdict!r} is not one of {', '.join(VERDICT_NAMES)}")
    for name, number in (("value", value), ("baseline_value", baseline_value)):
        if number is not None and not math.isfinite(number):
            raise ValueError(f"{name} {number!r} is not a finite number")
    if not reason:
        raise ValueError("a measurement needs the reason for its verdict")
    row = {
        "deployment_id": deployment_id,
        "environment": environment,
        "phase": phase,
        "metric": metric,
        "version": version,
        "baseline_version": baseline_version,
        "value": None if value is None else float(value),
        "baseline_value": None if baseline_value is None else float(baseline_value),
        "threshold": threshold,
        "verdict": verdict,
        "reason": reason,
        "measured_at": (measured_at or datetime.now(UTC)).astimezone(UTC),
        "evidence": None if evidence is None else json.dumps(dict(evidence), sort_keys=True),
    }
    key = conn.execute(measurements.insert().values(**row)).inserted_primary_key
    assert key is not None
    return _to_measurement({"id": int(key[0]), **row})


def for_deployment(conn: Connection, deployment_id: int) -> list[RecordedMeasurement]:
    """A deployment's measurements, oldest first (in the order they were recorded)."""
    rows = conn.execute(
        select(measurements)
        .where(measurements.c.deployment_id == deployment_id)
        .order_by(measurements.c.measured_at, measurements.c.id)
    )
    return [_to_measurement(row._mapping) for row in rows]


def _to_measurement(row: Mapping[Any, Any]) -> RecordedMeasurement:
    verdict = row["verdict"]
    assert verdict in VERDICT_NAMES, f"unknown verdict {verdict!r} in the store"
    return RecordedMeasurement(
        id=int(row["id"]),
        deployment_id=int(row["deployment_id"]),
        environment=row["environment"],
        phase=row["phase"],
        metric=row["metric"],
        version=row["version"],
        baseline_version=row["baseline_version"],
        value=row["value"],
        baseline_value=row["baseline_value"],
        threshold=row["threshold"],
        verdict=verdict,
        reason=row["reason"],
        measured_at=row["measured_at"],
        evidence=json.loads(row["evidence"]) if row["evidence"] else None,
    )
