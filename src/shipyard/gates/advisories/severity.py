"""An advisory's severity, computed: CVSS vectors scored, else the database's rating, else unknown.

Vectors (v2, v3, v4) are scored with the ``cvss`` package and rated by their version's bands,
the highest score winning; without one, the database's rating (GHSA's ``MODERATE`` is medium)
or the configured ``unknown_severity``. It must not decide what fails a gate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from cvss import CVSS2, CVSS3, CVSS4  # type: ignore[import-untyped]
from cvss.exceptions import CVSSError  # type: ignore[import-untyped]

from shipyard.gates.advisories.model import Advisory, ScoreVector
from shipyard.gates.interface import Severity

_RATINGS = {
    "critical": Severity.CRITICAL,
    "high": Severity.HIGH,
    "important": Severity.HIGH,
    "moderate": Severity.MEDIUM,
    "medium": Severity.MEDIUM,
    "low": Severity.LOW,
    "negligible": Severity.LOW,
}


@dataclass(frozen=True)
class ComputedSeverity:
    """A severity and where it came from: a scored vector, a rating, or nothing known."""

    severity: Severity
    source: str
    score: float | None = None
    vector: str | None = None
    problem: str | None = None


def score_vector(entry: ScoreVector) -> tuple[float, Severity] | None:
    """The base score and rating of a CVSS vector; None for other severity types."""
    return _scored(entry.type, entry.score.strip())


def compute_severity(
    advisories: Iterable[Advisory], vectors: Iterable[ScoreVector], unknown: Severity
) -> ComputedSeverity:
    """The severity of a finding made of ``advisories`` whose own vectors are ``vectors``."""
    best: ComputedSeverity | None = None
    problems: list[str] = []
    for entry in vectors:
        try:
            scored = score_vector(entry)
        except ValueError as exc:
            problems.append(f"{entry.type} {entry.score!r}: {exc}")
            continue
        if scored is None:
            continue
        score, severity = scored
        if best is None or best.score is None or score > best.score:
            best = ComputedSeverity(severity, entry.type, score=score, vector=entry.score)
    problem = "; ".join(problems) or None
    if best is not None:
        return ComputedSeverity(best.severity, best.source, best.score, best.vector, problem)
    ratings = [
        _RATINGS[rating.lower()]
        for advisory in advisories
        for rating in _ratings_of(advisory)
        if rating.lower() in _RATINGS
    ]
    if ratings:
        worst = max(ratings, key=lambda severity: severity.rank)
        return ComputedSeverity(worst, "database", problem=problem)
    return ComputedSeverity(unknown, "unknown", problem=problem)


def _ratings_of(advisory: Advisory) -> list[str]:
    found = [advisory.database_severity] if advisory.database_severity else []
    found += [entry.database_severity for entry in advisory.affected if entry.database_severity]
    return found


@lru_cache(maxsize=4096)
def _scored(kind: str, vector: str) -> tuple[float, Severity] | None:
    try:
        if kind == "CVSS_V2":
            score = float(CVSS2(vector).scores()[0])
            return score, _band(score, has_critical=False)
        if kind == "CVSS_V3":
            score = float(CVSS3(vector).scores()[0])
            return score, _band(score, has_critical=True)
        if kind == "CVSS_V4":
            score = float(CVSS4(vector).base_score)
            return score, _band(score, has_critical=True)
    except CVSSError as exc:
        raise ValueError(f"not a valid vector ({exc})") from None
    return None


def _band(score: float, *, has_critical: bool) -> Severity:
    if score >= 9.0 and has_critical:
        return Severity.CRITICAL
    if score >= 7.0:
        return Severity.HIGH
    if score >= 4.0:
        return Severity.MEDIUM
    if score > 0.0:
        return Severity.LOW
    return Severity.INFO
