"""Severities are computed from CVSS vectors, else the database's rating, else configured."""

from __future__ import annotations

import pytest

from gates.gatesupport import osv
from shipyard.gates import Severity
from shipyard.gates.advisories.model import ScoreVector, parse_advisory
from shipyard.gates.advisories.severity import compute_severity, score_vector


@pytest.mark.parametrize(
    ("kind", "vector", "score", "severity"),
    [
        ("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8, Severity.CRITICAL),
        ("CVSS_V3", "CVSS:3.0/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:L/A:N", 4.2, Severity.MEDIUM),
        ("CVSS_V3", "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 1.8, Severity.LOW),
        ("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0, Severity.INFO),
        # CVSS v2 has no "critical": 10.0 is high.
        ("CVSS_V2", "AV:N/AC:L/Au:N/C:C/I:C/A:C", 10.0, Severity.HIGH),
        ("CVSS_V2", "AV:N/AC:L/Au:N/C:P/I:N/A:N", 5.0, Severity.MEDIUM),
        (
            "CVSS_V4",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
            9.3,
            Severity.CRITICAL,
        ),
    ],
)
def test_vectors_are_scored(kind: str, vector: str, score: float, severity: Severity) -> None:
    assert score_vector(ScoreVector(kind, vector)) == (score, severity)


def test_the_highest_scored_vector_wins_and_a_bad_one_is_reported() -> None:
    vectors = [
        ScoreVector("CVSS_V2", "AV:N/AC:L/Au:N/C:P/I:N/A:N"),
        ScoreVector("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
        ScoreVector("CVSS_V3", "CVSS:3.1/AV:X/oops"),
    ]
    computed = compute_severity([], vectors, Severity.LOW)
    assert computed.severity is Severity.CRITICAL
    assert computed.score == 9.8
    assert computed.source == "CVSS_V3"
    assert computed.problem is not None and "AV:X" in computed.problem


def test_the_database_rating_is_used_when_there_is_no_vector() -> None:
    record = parse_advisory(osv("GHSA-1", database_severity="MODERATE"), "test")
    computed = compute_severity([record], [], Severity.CRITICAL)
    assert (computed.severity, computed.source) == (Severity.MEDIUM, "database")


def test_a_bad_vector_falls_back_to_the_rating() -> None:
    record = parse_advisory(osv("GHSA-2", database_severity="LOW"), "test")
    computed = compute_severity([record], [ScoreVector("CVSS_V3", "garbage")], Severity.HIGH)
    assert computed.severity is Severity.LOW
    assert computed.problem is not None


def test_no_vector_and_no_rating_is_the_configured_unknown_severity() -> None:
    record = parse_advisory(osv("PYSEC-1"), "test")
    for unknown in (Severity.LOW, Severity.CRITICAL):
        computed = compute_severity([record], [], unknown)
        assert (computed.severity, computed.source) == (unknown, "unknown")


def test_other_severity_types_are_not_guessed_at() -> None:
    record = parse_advisory(osv("UBUNTU-1"), "test")
    computed = compute_severity([record], [ScoreVector("Ubuntu", "high")], Severity.MEDIUM)
    assert computed.source == "unknown"
