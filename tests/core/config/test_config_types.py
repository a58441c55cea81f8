"""Durations, percentages and project names: the forms accepted, and what a wrong one says."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from pydantic import ValidationError

from shipyard.core.config import (
    ConfigInvalid,
    Duration,
    Percentage,
    ProjectName,
    StrictModel,
    load_config_text,
    parse_yaml,
    validate_document,
)

Rejecter = Callable[..., ConfigInvalid]


class Timing(StrictModel):
    """A test-only model holding one of each shared type."""

    wait: Duration = timedelta(0)
    share: Percentage = 0.0
    name: ProjectName = "x"


def timing(text: str) -> Timing:
    """Load a Timing from YAML text."""
    return validate_document(parse_yaml(text, "timing.yaml"), Timing)


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("10m", timedelta(minutes=10)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("1d2h3m4s5ms", timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=5)),
        ("45", timedelta(seconds=45)),
        ("'45'", timedelta(seconds=45)),
        ("0s", timedelta(0)),
    ],
)
def test_duration_forms(written: str, expected: timedelta) -> None:
    assert timing(f"wait: {written}\n").wait == expected


@pytest.mark.parametrize(
    ("written", "says"),
    [
        ("10 minutes", "'10 minutes' is not a duration"),
        ("1.5.3s", "'1.5.3s' is not a duration: use whole numbers"),
        ("1.5h", "use whole numbers"),
        ("-5s", "a duration cannot be negative"),
        ("-5", "a duration cannot be negative"),
        ("''", "a duration cannot be empty"),
        ("30m1h", "'30m1h' is not a duration"),
        ("10S", "'10S' is not a duration"),
        ("2.5", "expected a duration, got the number 2.5"),
        ("true", "expected a duration, got the boolean true"),
        ("[1]", "expected a duration, got a list"),
        ("99999999999d", "is not a duration"),
        ("999999999d24h", "too long"),
        ("'²'", "'²' is not a duration"),
    ],
)
def test_bad_durations_list_the_accepted_forms(written: str, says: str, reject: Rejecter) -> None:
    problem = reject(f"# timing\nwait: {written}\n", Timing).problems[0]
    assert (problem.line, problem.path) == (2, "wait")
    assert says in problem.message
    assert problem.hint is not None
    assert "500ms, 30s, 10m, 1h, 1h30m or 2d" in problem.hint or "a million days" in problem.hint


@pytest.mark.parametrize(
    ("written", "expected"),
    [("20%", 0.2), ("0.5%", 0.005), ("100%", 1.0), ("0%", 0.0), ("0.25", 0.25), ("1", 1.0)],
)
def test_percentage_forms(written: str, expected: float) -> None:
    assert timing(f"share: {written}\n").share == pytest.approx(expected)


@pytest.mark.parametrize(
    ("written", "says", "hint"),
    [
        ("120%", "120% is outside 0% to 100%", "from 0% to 100%"),
        ("-1%", "is outside 0% to 100%", "from 0% to 100%"),
        ("20", "20 is outside the fractions 0 to 1", "write 20% for 20 per cent"),
        ("1.5", "1.5 is outside the fractions 0 to 1", "write 1.5% for 1.5 per cent"),
        ("lots", "'lots' is not a percentage", "20% or 0.5%"),
        ("'%'", "'%' is not a percentage", "20% or 0.5%"),
        (".nan", "nan is not a percentage", "20% or 0.5%"),
        ("false", "expected a percentage, got the boolean false", "20% or 0.5%"),
    ],
)
def test_bad_percentages(written: str, says: str, hint: str, reject: Rejecter) -> None:
    problem = reject(f"share: {written}\n", Timing).problems[0]
    assert str(problem).startswith("shipyard.yaml:1:8: share: ")
    assert says in problem.message
    assert problem.hint is not None
    assert hint in problem.hint


def test_json_dump_writes_the_string_forms() -> None:
    loaded = timing("wait: 1h30m\nshare: 0.5%\n")
    assert loaded.model_dump(mode="json") == {"wait": "1h30m", "share": "0.5%", "name": "x"}
    assert loaded.model_dump()["wait"] == timedelta(minutes=90)
    assert Timing.model_validate(loaded.model_dump(mode="json")) == loaded


@pytest.mark.parametrize(
    "written", ["500ms", "30s", "10m", "1h", "1h30m", "2d", "1d1ms", "0s", "20%", "0.5%", "100%"]
)
def test_string_forms_round_trip(written: str) -> None:
    field = "share" if written.endswith("%") else "wait"
    dumped = timing(f"{field}: {written}\n").model_dump(mode="json")
    assert dumped[field] == written


def test_models_are_frozen_and_strict() -> None:
    loaded = timing("wait: 1s\n")
    with pytest.raises(ValidationError):
        loaded.wait = timedelta(0)  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Timing.model_validate({"wiat": "1s"})


@pytest.mark.parametrize("name", ["demo", "demo-service", "billing_api", "web.v2", "A1", "x" * 64])
def test_good_project_names(name: str) -> None:
    assert load_config_text(f"project: {name}\n").project == name


@pytest.mark.parametrize(
    ("written", "says"),
    [
        ("'my project!'", "the project name 'my project!' contains ' ', '!'"),
        ("''", "the project name is empty"),
        ("x" * 65, "the project name is 65 characters long"),
        ("-demo", "must start with a letter or digit"),
        (".hidden", "must start with a letter or digit"),
        ("'café'", "contains 'é'"),
    ],
)
def test_bad_project_names(written: str, says: str, reject: Rejecter) -> None:
    problem = reject(f"project: {written}\n").problems[0]
    assert (problem.line, problem.column, problem.path) == (1, 10, "project")
    assert says in problem.message
    assert problem.hint == (
        "use 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit"
    )
