"""``shipyard dora``: the scripted month of dorasupport.py read back as a user asks for it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.dorasupport import CONFIG, D, H, M, script_month
from shipyard.core import state as state_dir
from shipyard.core.store import open_store
from support import CliResult, run_cli

pytestmark = pytest.mark.backends


@pytest.fixture
def shop(repo: Path) -> Path:
    """A repository whose last 30 days are the scripted month (ending now)."""
    (repo / "shipyard.yaml").write_text(CONFIG)
    store = open_store(state_dir.locate(repo))
    try:
        # Whole seconds: git keeps commit times to the second.
        script_month(store, repo, datetime.now(UTC).replace(microsecond=0) - 30 * D)
    finally:
        store.dispose()
    return repo


def cli(repo: Path, *args: str) -> CliResult:
    return run_cli(*args, cwd=repo, env={"SHIPYARD_USER": "ada@example.com"})


def cli_json(repo: Path, *args: str) -> Any:
    result = cli(repo, "dora", *args, "--json")
    assert result.code == 0, result.output
    return json.loads(result.stdout)


def test_json_gives_each_environments_figures_and_bands(shop: Path) -> None:
    found = cli_json(shop)

    assert found["project"] == "shop"
    assert found["days"] == 30
    production, staging = (
        {e["environment"]: e for e in found["environments"]}[name]
        for name in ("production", "staging")
    )
    assert production["deployment_frequency"] == {
        "value": 4 / 30,
        "unit": "per_day",
        "band": "medium",
        "deployments": 4,
    }
    assert production["lead_time"] == {
        "value": (46800 + 90000) / 2,
        "unit": "seconds",
        "band": "elite",
        "changes": 6,
    }
    assert production["change_failure_rate"] == {
        "value": 4 / 6,
        "unit": "ratio",
        "band": "low",
        "failed": 4,
        "deployments": 6,
    }
    assert production["recovery_time"] == {
        "value": (45 * M).total_seconds(),
        "unit": "seconds",
        "band": "elite",
        "recoveries": 3,
        "not_restored": 1,
    }
    assert production["rework_rate"] == {
        "value": 3 / 7,
        "unit": "ratio",
        "band": None,
        "rework": 3,
        "deployments": 7,
    }
    assert staging["lead_time"]["value"] == (2 * H + 10 * M).total_seconds()


def test_the_table_says_each_figure_its_band_and_what_it_rests_on(shop: Path) -> None:
    result = cli(shop, "dora", "--env", "production")

    assert result.code == 0, result.output
    lines = result.stdout.splitlines()
    assert "shop · production · " in lines[0]
    assert "(30d)" in lines[0]
    table = {line.split("  ")[0]: " ".join(line.split()) for line in lines[2:]}
    assert table["deployment frequency"].endswith("0.9/week medium 4 successful deployments")
    assert table["lead time for changes"].endswith("19h00m elite 6 changes")
    assert table["change failure rate"].endswith("67% low 4 of 6 deployments failed")
    assert table["failed deployment recovery time"].endswith(
        "45m00s elite 3 recoveries, 1 not restored yet"
    )
    assert table["rework rate"].endswith("43% - 3 of 7 deployments unplanned")
    assert "staging" not in result.stdout


def test_a_shorter_period_sees_only_its_own_deployments(shop: Path) -> None:
    found = cli_json(shop, "--env", "production", "--since", "6d")
    (production,) = found["environments"]

    # From 24 days after the month's start: P7 and P8 finished then (P9 still runs).
    assert found["days"] == 6
    assert production["deployment_frequency"]["deployments"] == 1
    assert production["change_failure_rate"]["failed"] == 2
    assert production["rework_rate"] == {
        "value": 0.5,
        "unit": "ratio",
        "band": None,
        "rework": 1,
        "deployments": 2,
    }


def test_the_rework_window_is_the_users_to_choose(shop: Path) -> None:
    found = cli_json(shop, "--env", "production", "--rework-window", "10m")
    (production,) = found["environments"]

    # P4 came six hours after P3 failed and P8 a quarter of an hour after P7: with a window
    # of ten minutes both were planned, and only the rollback P6 is rework.
    assert found["rework_window_s"] == timedelta(minutes=10).total_seconds()
    assert production["rework_rate"]["rework"] == 1


def test_an_unknown_environment_is_a_mistake_that_names_the_known_ones(shop: Path) -> None:
    result = cli(shop, "dora", "--env", "prod")

    assert result.code == 2
    assert "shop has no environment 'prod'" in result.stderr
    assert "staging, production" in result.stderr


@pytest.mark.parametrize("since", ["a month", "0d"])
def test_a_period_that_is_not_a_duration_is_refused(shop: Path, since: str) -> None:
    result = cli(shop, "dora", "--since", since)

    assert result.code == 2
    assert "--since" in result.stderr
    assert "Traceback" not in result.output


def test_a_project_without_deployments_shows_no_data(repo: Path) -> None:
    (repo / "shipyard.yaml").write_text(CONFIG)
    result = cli(repo, "dora", "--env", "staging")

    assert result.code == 0, result.output
    assert "no data" in result.stdout
    assert "0.0/week low 0 successful deployments" in " ".join(result.stdout.split())
