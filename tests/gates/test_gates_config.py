"""The gates section of shipyard.yaml: defaults, and each mistake named at its line."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from shipyard.core.config import ConfigInvalid, load_config_text


def gates(text: str) -> str:
    return f"project: demo\ngates:\n  vulnerabilities:\n{text}"


def test_defaults_fail_on_high_and_treat_unknown_as_high() -> None:
    config = load_config_text("project: demo\ngates:\n  vulnerabilities: {}\n")
    assert config.gates is not None and config.gates.vulnerabilities is not None
    settings = config.gates.vulnerabilities
    assert (settings.fail_on, settings.unknown_severity) == ("high", "high")
    assert (settings.max_age, settings.on_stale, settings.sources) == (
        timedelta(days=7),
        "fail",
        ("local",),
    )


def test_the_design_example_is_valid() -> None:
    config = load_config_text(
        gates(
            "    fail_on: high\n    unknown_severity: medium\n    max_age: 30d\n"
            '    ignore: [{id: GHSA-xxxx, reason: "not reachable", until: 2027-01-01}]\n'
        )
    )
    assert config.gates is not None and config.gates.vulnerabilities is not None
    [entry] = config.gates.vulnerabilities.ignore
    assert (entry.id, entry.until) == ("GHSA-xxxx", date(2027, 1, 1))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("    fail_on: severe\n", "gates.vulnerabilities.fail_on"),
        ("    ignore: [{id: GHSA-1, until: 2027-01-01}]\n", "ignore[0]"),
        ("    ignore: [{id: GHSA-1, reason: x, until: soon}]\n", "a date like 2027-01-31"),
        ("    ignore: [{id: GHSA-1, reason: ' ', until: 2027-01-01}]\n", "the reason is empty"),
        (
            "    ignore:\n    - {id: GHSA-1, reason: a, until: 2027-01-01}\n"
            "    - {id: ghsa-1, reason: b, until: 2027-01-01}\n",
            "ghsa-1 is ignored twice",
        ),
        ("    sources: [osv]\n", "did you mean 'osv-api'?"),
        ("    sources: []\n", "no advisory source is named"),
        ("    max_age: a week\n", "'a week' is not a duration"),
        ("    on_stale: ignore\n", "gates.vulnerabilities.on_stale"),
        ("    osv_api: {url: 'ftp://x'}\n", "is not an http(s) URL"),
        ("    fail_on: high\n    secrets: true\n", "unknown key 'secrets'"),
    ],
)
def test_mistakes_are_named(text: str, problem: str) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        load_config_text(gates(text))
    assert problem in str(caught.value)
