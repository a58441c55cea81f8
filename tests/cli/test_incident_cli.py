"""``shipyard incident``: open by hand, list, show and resolve, as a user types them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shipyard.cd import deployments
from shipyard.core import audit
from shipyard.core import state as state_dir
from shipyard.core.store import open_store
from support import CliResult, run_cli

pytestmark = pytest.mark.backends

ONCALL = "oncall@example.com"
CONFIG = """project: shop
service:
  command: python3 -m app --port {port}
environments:
  staging: {}
  production: {}
"""


@pytest.fixture
def shop(repo: Path) -> Path:
    """A repository whose shipyard.yaml has the environments staging and production."""
    (repo / "shipyard.yaml").write_text(CONFIG)
    return repo


def cli(repo: Path, *args: str, user: str = ONCALL) -> CliResult:
    return run_cli(*args, cwd=repo, env={"SHIPYARD_USER": user})


def cli_json(repo: Path, *args: str, user: str = ONCALL) -> Any:
    result = cli(repo, *args, "--json", user=user)
    assert result.code == 0, result.output
    return json.loads(result.stdout)


def _running(repo: Path, environment: str, version: str) -> int:
    """Record that ``environment`` runs ``version`` now, as a finished deployment leaves it."""
    store = open_store(state_dir.locate(repo))
    try:
        created = deployments.create(
            store,
            project="shop",
            environment=environment,
            version=version,
            kind="deploy",
            strategy="recreate",
            previous_version=None,
            settings={},
            actor="ada@example.com",
            on_busy="queue",
        )
        empty = deployments.environment(store, "shop", environment)
        deployments.save_environment(
            store,
            deployments.EnvironmentState(
                project="shop",
                environment=environment,
                active_version=version,
                active_deployment=created.id,
                warm_version=None,
                warm_deployment=None,
                warm_until=None,
                instances=empty.instances,
                router=empty.router,
                since=None,
            ),
        )
        return created.id
    finally:
        store.dispose()


def _audited(repo: Path, incident_id: int) -> list[tuple[str, str]]:
    store = open_store(state_dir.locate(repo))
    try:
        with store.read() as conn:
            return [
                (e.action, e.actor) for e in audit.events(conn, subject=f"incident:{incident_id}")
            ]
    finally:
        store.dispose()


def test_an_incident_opened_by_hand_blames_what_the_environment_runs_now(shop: Path) -> None:
    deployment_id = _running(shop, "production", "1.4.0")
    opened = cli(shop, "incident", "open", "--env", "production", "--title", "Checkout is slow")
    assert opened.code == 0, opened.output
    assert "opened incident 1 in production, caused by 1.4.0: Checkout is slow" in opened.stdout

    shown = cli_json(shop, "incident", "show", "1")
    assert shown["status"] == "open"
    assert shown["source"] == "manual"
    assert (shown["project"], shown["environment"]) == ("shop", "production")
    assert (shown["caused_by_version"], shown["deployment"]) == ("1.4.0", deployment_id)
    assert shown["opened_by"] == ONCALL
    assert shown["reason"] == "Checkout is slow"  # no --reason: the title says what happened
    assert shown["restored_at"] is None
    assert _audited(shop, 1) == [("incident.opened", ONCALL)]


def test_open_with_a_version_and_a_reason(shop: Path) -> None:
    _running(shop, "production", "1.4.0")
    opened = cli_json(
        shop,
        "incident",
        "open",
        "-e",
        "production",
        "--title",
        "Refunds fail",
        "--version",
        "1.3.9",
        "--reason",
        "refunds have failed since 1.3.9; noticed late",
    )
    assert opened["caused_by_version"] == "1.3.9"
    assert opened["deployment"] is None  # 1.3.9 is not what runs now: its deployment is unknown
    assert opened["reason"] == "refunds have failed since 1.3.9; noticed late"


def test_an_environment_never_deployed_has_no_version_to_blame(shop: Path) -> None:
    opened = cli_json(shop, "incident", "open", "--env", "staging", "--title", "Login broken")
    assert (opened["caused_by_version"], opened["deployment"]) == (None, None)
    text = cli(shop, "incident", "show", str(opened["id"]))
    assert text.code == 0, text.output
    assert "incident 1: Login broken (open)" in text.stdout
    assert "unknown" in text.stdout


def test_resolve_records_who_what_and_which_release_restored_service(shop: Path) -> None:
    _running(shop, "production", "1.4.0")
    cli_json(shop, "incident", "open", "--env", "production", "--title", "Checkout is slow")
    resolved = cli(
        shop,
        "incident",
        "resolve",
        "1",
        "--reason",
        "rolled back; the fix ships in 1.4.1",
        "--restored-by",
        "1.3.9",
        user="ada@example.com",
    )
    assert resolved.code == 0, resolved.output
    assert "resolved incident 1 in production; service restored after" in resolved.stdout

    shown = cli_json(shop, "incident", "show", "1")
    assert shown["status"] == "resolved"
    assert shown["restored_by_version"] == "1.3.9"
    assert shown["resolution"] == "rolled back; the fix ships in 1.4.1"
    assert shown["resolved_by"] == "ada@example.com"
    assert shown["restored_at"] == shown["resolved_at"]
    assert shown["time_to_restore_s"] >= 0
    assert _audited(shop, 1) == [
        ("incident.opened", ONCALL),
        ("incident.restored", "ada@example.com"),
        ("incident.resolved", "ada@example.com"),
    ]
    text = cli(shop, "incident", "show", "1")
    assert "rolled back; the fix ships in 1.4.1" in text.stdout
    assert "by 1.3.9, after" in text.stdout


def test_resolving_needs_a_reason_and_happens_once(shop: Path) -> None:
    cli_json(shop, "incident", "open", "--env", "production", "--title", "Checkout is slow")
    for args in (
        ("incident", "resolve", "1"),
        ("incident", "resolve", "1", "--reason", " ", "--restored-by", "1.3.9"),
    ):
        missing = cli(shop, *args)
        assert missing.code == 2
        assert "incident 1 is resolved with a reason: what was done about it" in missing.stderr
        assert "hint: shipyard incident resolve 1 --reason" in missing.stderr
        assert "Traceback" not in missing.output
    unchanged = cli_json(shop, "incident", "show", "1")
    assert (unchanged["status"], unchanged["restored_by_version"]) == ("open", None)

    first = cli(shop, "incident", "resolve", "1", "--reason", "restarted the database")
    assert first.code == 0, first.output
    again = cli(shop, "incident", "resolve", "1", "--reason", "again", "--restored-by", "1.4.1")
    assert again.code == 2
    assert f"incident 1 was resolved already, by {ONCALL} at " in again.stderr
    assert "its resolution: restarted the database" in again.stderr
    as_json = cli(shop, "incident", "resolve", "1", "--reason", "again", "--json")
    assert as_json.code == 2
    assert json.loads(as_json.stdout)["error"]["kind"] == "AlreadyResolved"


def test_list_is_newest_first_and_filters_by_environment_and_status(shop: Path) -> None:
    for env, title in (("production", "A"), ("staging", "B"), ("production", "C")):
        cli_json(shop, "incident", "open", "--env", env, "--title", title)
    assert cli(shop, "incident", "resolve", "1", "--reason", "fixed").code == 0

    def titles(*args: str) -> list[str]:
        return [i["title"] for i in cli_json(shop, "incident", "list", *args)]

    assert titles() == ["C", "B", "A"]
    assert titles("--env", "production") == ["C", "A"]
    assert titles("--status", "open") == ["C", "B"]
    assert titles("--status", "resolved") == ["A"]
    assert titles("--status", "restored") == []
    assert titles("--status", "all", "-e", "staging") == ["B"]

    table = cli(shop, "incident", "list")
    assert table.code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["ID", "ENV", "STATUS", "TITLE"]
    assert [line.split()[:4] for line in lines[1:]] == [
        ["3", "production", "open", "C"],
        ["2", "staging", "open", "B"],
        ["1", "production", "resolved", "A"],
    ]
    none = cli(shop, "incident", "list", "--status", "restored", "--env", "staging")
    assert none.stdout.strip() == "shop has no restored incidents in staging"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("incident", "show", "9"), "there is no incident 9"),
        (("incident", "resolve", "9", "--reason", "x"), "there is no incident 9"),
        (("incident", "list", "--status", "closed"), "'closed' is not an incident status"),
        (
            ("incident", "open", "--env", "qa", "--title", "Down"),
            "shop has no environment 'qa'",
        ),
        (("incident", "open", "--env", "staging", "--title", " "), "an incident needs a title"),
    ],
)
def test_a_users_mistake_is_exit_2_with_what_and_how_to_fix(
    shop: Path, args: tuple[str, ...], message: str
) -> None:
    result = cli(shop, *args)
    assert result.code == 2, result.output
    assert message in result.stderr
    assert "hint:" in result.stderr
    assert "Traceback" not in result.output
    assert cli_json(shop, "incident", "list") == []
