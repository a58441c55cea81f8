"""The ``notifications`` section: what it accepts, and each mistake said at its line with a fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shipyard.core.config import ConfigInvalid, load_config_text
from shipyard.core.config.notifications import EVENT_TYPES, Notification

SRC = Path(__file__).resolve().parents[2] / "src" / "shipyard"


def load(*items: str) -> ConfigInvalid | list[Notification]:
    text = "project: shop\nnotifications:\n" + "".join(f"  - {item}\n" for item in items)
    try:
        return list(load_config_text(text).notifications)
    except ConfigInvalid as invalid:
        return invalid


def problem(*items: str) -> str:
    result = load(*items)
    assert isinstance(result, ConfigInvalid), result
    (found,) = result.problems
    return str(found)


def test_a_webhook_and_an_email_as_the_docs_write_them() -> None:
    webhook, email = load(
        "{url: 'https://hooks.example.com/s', format: slack, on: [deployment.rolled_back, "
        "'gate.*'], secret: HOOK_KEY}",
        "{smtp: 'mail.example.com:587', from: s@example.com, to: [o@example.com], user: ship, "
        "secret: SMTP_PASSWORD, on: ['*']}",
    )
    assert (webhook.kind, webhook.format, webhook.on) == (
        "webhook",
        "slack",
        ["deployment.rolled_back", "gate.*"],
    )
    assert email.kind == "email"
    assert email.smtp_address == ("mail.example.com", 587)
    assert email.smtp_tls == "starttls"  # it logs in


@pytest.mark.parametrize(
    ("smtp", "tls", "address"),
    [
        ("mail.example.com", None, ("mail.example.com", 25)),
        ("mail.example.com", "ssl", ("mail.example.com", 465)),
        ("'[::1]:2525'", None, ("::1", 2525)),
    ],
)
def test_the_smtp_port_defaults_by_tls(smtp: str, tls: str | None, address: object) -> None:
    tls_key = f", tls: {tls}" if tls else ""
    (email,) = load(
        f"{{smtp: {smtp}, from: s@example.com, to: [o@example.com], on: ['*']{tls_key}}}"
    )
    assert email.smtp_address == address


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (
            "{url: 'https://h.example.com/x', on: [deployment.rolledback]}",
            "notifications[0].on[0]: 'deployment.rolledback' is not an event "
            "Shipyard sends (hint: did you mean 'deployment.rolled_back'?)",
        ),
        (
            "{url: 'https://h.example.com/x', on: ['billing.*']}",
            "notifications[0].on[0]: 'billing.*' is not an event Shipyard sends "
            "(hint: name an event such as deployment.rolled_back, a family such as gate.*",
        ),
        (
            "{on: [deployment.rolled_back]}",
            "notifications[0]: a notification needs url (a webhook) or smtp (email)",
        ),
        (
            "{url: 'https://h.example.com/x', smtp: 'mail:25', on: ['*']}",
            "notifications[0].smtp: a notification is a webhook (url) or an email (smtp), not both",
        ),
        (
            "{url: 'https://h.example.com/x', to: [a@example.com], on: ['*']}",
            "notifications[0].to: to is for email notifications (smtp), not webhooks (url)",
        ),
        (
            "{smtp: 'mail:25', to: [a@example.com], from: b@example.com, format: slack, on: ['*']}",
            "notifications[0].format: format is for webhooks (url), not email notifications",
        ),
        (
            "{smtp: 'mail:25', from: b@example.com, on: ['*']}",
            "notifications[0]: an email notification needs to: the addresses it is sent to",
        ),
        (
            "{smtp: 'mail:25', to: [not-an-address], from: b@example.com, on: ['*']}",
            "notifications[0].to[0]: 'not-an-address' is not an email address",
        ),
        (
            "{smtp: 'mail:25', to: [a@example.com], from: b@example.com, user: u, on: ['*']}",
            "notifications[0].secret: user and secret go together",
        ),
        (
            "{smtp: 'mail:25', to: [a@example.com], from: b@example.com, user: u, secret: PW, "
            "tls: none, on: ['*']}",
            "notifications[0].tls: with tls: none the SMTP password would cross the network in "
            "clear",
        ),
        (
            "{smtp: 'mail:70000', to: [a@example.com], from: b@example.com, on: ['*']}",
            "notifications[0].smtp: port 70000 is not a port number",
        ),
        (
            "{url: 'ftp://h.example.com/x', on: ['*']}",
            "notifications[0].url: the url must be an http or https address with a host",
        ),
        (
            "{url: 'https://h.example.com/x', on: ['*'], secret: 9LIVES}",
            "notifications[0].secret:",
        ),
        (
            "{url: 'https://h.example.com/x', on: ['*'], timeout: 0s}",
            "notifications[0].timeout: the timeout must be from 1s to 5m",
        ),
        (
            "{url: 'https://h.example.com/x', on: [], secret: HOOK_KEY}",
            "notifications[0].on:",
        ),
        (
            "{url: 'https://h.example.com/x', on: ['*'], sekret: HOOK_KEY}",
            "notifications[0].sekret: unknown key 'sekret' (hint: did you mean 'secret'?)",
        ),
    ],
)
def test_each_mistake_is_said_at_its_line_with_a_fix(item: str, expected: str) -> None:
    said = problem(item)
    assert said.startswith("shipyard.yaml:3:")
    assert expected in said


def test_the_same_receiver_twice_is_an_error_at_the_second() -> None:
    said = problem(
        "{url: 'https://h.example.com/x', on: ['deployment.*']}",
        "{url: 'https://h.example.com/x', on: ['gate.*']}",
    )
    assert said.startswith(
        "shipyard.yaml:4:5: notifications[1]: notification 1 goes where notification 0 goes"
    )


def test_every_event_the_code_appends_may_be_named_in_on() -> None:
    """A new event appended anywhere must be added to EVENT_TYPES, or nobody can subscribe.

    (Types built at run time are listed by hand; this catches every one written out.)"""
    appended = set()
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        appended |= set(re.findall(r"outbox\.append\(\s*conn,\s*\"([a-z_.]+)\"", text))
    from shipyard.cd.deployments import DeploymentStatus

    appended |= {f"deployment.{status}" for status in DeploymentStatus if status != "pending"}
    assert {"deployment.rolled_back", "release.published", "run.started"} <= appended
    missing = sorted(appended - set(EVENT_TYPES))
    assert not missing, f"add these to EVENT_TYPES in core/config/notifications.py: {missing}"
