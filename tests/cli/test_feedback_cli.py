"""``shipyard feedback list``: the feedback a real router keeps, newest first, with complaint
text shown escaped; and ``environments.<name>.feedback`` as a user writes it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cd.router.router_support import RouterProcess, UpstreamServer, request, table
from shipyard.cd.settings import settings_for
from shipyard.core.config import load_config
from support import CliResult, run_cli

PATH = "/.shipyard/feedback"
CONFIG = f"""project: shop
service:
  command: python3 -m app --port {{port}}
environments:
  staging:
    feedback: {{path: {PATH}}}
  production: {{}}
  qa:
    feedback: true
"""
HOSTILE = "[bold]loud[/bold] \x1b[2J\x1b[31mred\x1b[0m\nsecond line\r\t\u202egnp.exe \\ end"


@pytest.fixture
def shop(repo: Path) -> Path:
    """A repository whose staging and qa environments take feedback, production not."""
    (repo / "shipyard.yaml").write_text(CONFIG)
    return repo


@pytest.fixture
def staging(shop: Path) -> Iterator[RouterProcess]:
    """The router of staging, as deployments start it, routing to version 1.0.0."""
    upstream = UpstreamServer("1.0.0").start()
    router = RouterProcess(shop / ".shipyard", "shop-staging", extra=["--feedback-path", PATH])
    try:
        router.client.set_routes(table({"1.0.0": (100, [upstream.address])}))
        yield router
    finally:
        router.terminate()
        upstream.stop()


def post(router: RouterProcess, body: dict[str, Any]) -> None:
    connection = router.connection()
    try:
        answer = request(connection, "POST", PATH, body=json.dumps(body).encode())
    finally:
        connection.close()
    assert answer.status == 202, answer.body


def cli(repo: Path, *args: str) -> CliResult:
    return run_cli(*args, cwd=repo)


def test_list_shows_each_feedback_newest_first_with_the_complaint_escaped(
    shop: Path, staging: RouterProcess
) -> None:
    post(staging, {"score": 4, "version": "1.0.0"})
    post(staging, {"complaint": HOSTILE, "score": 1, "version": "1.0.0"})
    shown = cli(shop, "feedback", "list", "--env", "staging")
    assert shown.code == 0, shown.output
    header, newest, oldest = shown.stdout.splitlines()
    assert header.split() == ["ENV", "VERSION", "TIME", "TRAFFIC", "SCORE", "COMPLAINT"]
    assert newest.split()[:2] == ["staging", "1.0.0"]
    assert newest.split()[4:6] == ["weighted", "1"]
    assert (
        "[bold]loud[/bold] \\x1b[2J\\x1b[31mred\\x1b[0m\\nsecond line\\r\\t\\u202egnp.exe \\\\ end"
        in newest
    )
    assert oldest.split()[4:] == ["weighted", "4"]
    for control in ("\x1b", "\r", "\u202e"):
        assert control not in shown.stdout


def test_json_keeps_the_text_as_sent_with_the_time_in_iso_form(
    shop: Path, staging: RouterProcess
) -> None:
    post(staging, {"complaint": HOSTILE, "version": "1.0.0"})
    shown = cli(shop, "feedback", "list", "--env", "staging", "--json")
    assert shown.code == 0, shown.output
    [item] = json.loads(shown.stdout)
    assert item["complaint"] == HOSTILE
    assert (item["env"], item["version"], item["score"], item["traffic"], item["via"]) == (
        "staging",
        "1.0.0",
        None,
        "weighted",
        "body",
    )
    assert item["at"].endswith("+00:00")


def test_without_env_every_environment_taking_feedback_is_listed_and_idle_ones_warned(
    shop: Path, staging: RouterProcess
) -> None:
    post(staging, {"score": 5, "version": "1.0.0"})
    shown = cli(shop, "feedback", "list", "--json")
    assert shown.code == 0, shown.output
    assert [(i["env"], i["score"]) for i in json.loads(shown.stdout)] == [("staging", 5)]
    assert "the router of qa is not running" in shown.stderr
    assert "production" not in shown.stderr  # it takes no feedback: nothing to say


def test_an_environment_whose_router_does_not_run_or_takes_none_is_said_clearly(
    shop: Path,
) -> None:
    down = cli(shop, "feedback", "list", "--env", "qa")
    assert down.code == 2
    assert "the router of qa is not running" in down.stderr
    assert "shipyard deploy VERSION --env qa" in down.stderr
    unknown = cli(shop, "feedback", "list", "--env", "prod")
    assert unknown.code == 2
    assert "no environment 'prod'" in unknown.stderr
    router = RouterProcess(shop / ".shipyard", "shop-production")
    try:
        off = cli(shop, "feedback", "list", "--env", "production")
    finally:
        router.terminate()
    assert off.code == 0, off.output
    assert "production takes no feedback" in off.stderr
    assert "environments.production.feedback" in off.stderr
    assert off.stdout.strip() == "no feedback in production yet"


def test_feedback_true_is_the_default_path_and_off_when_absent(shop: Path) -> None:
    config = load_config(shop / "shipyard.yaml")
    assert settings_for(config, "qa").feedback_path == PATH
    assert settings_for(config, "staging").feedback_path == PATH
    assert settings_for(config, "production").feedback_path is None


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        ("{path: feedback}", "is not a URL path for feedback"),
        ("{path: '/f?x=1'}", "is not a URL path for feedback"),
        ("{paht: /f}", "paht"),
        ("yes please", "feedback"),
    ],
)
def test_a_bad_feedback_setting_is_refused_where_it_is_written(
    repo: Path, written: str, problem: str
) -> None:
    (repo / "shipyard.yaml").write_text(
        "project: shop\nservice:\n  command: python3 -m app --port {port}\n"
        f"environments:\n  staging:\n    feedback: {written}\n"
    )
    result = cli(repo, "validate")
    assert result.code == 2
    assert problem in result.stderr
    assert "shipyard.yaml:6" in result.stderr
    assert "Traceback" not in result.output
