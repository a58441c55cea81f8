"""``shipyard notify test|status`` as a user types them: every receiver tried at once, delivery
counts with the last error, mistakes in shipyard.yaml at their line, and never a secret."""

from __future__ import annotations

import json
from pathlib import Path

from monitor.test_notify_receivers import free_port, mail_receiver, verify, webhook_receiver
from shipyard.core import outbox
from shipyard.core import state as state_dir
from shipyard.core.store import open_store
from support import run_cli

KEY = "whsec-cli-0123456789"


def configure(repo: Path, *notifications: str) -> None:
    lines = "".join(f"  - {n}\n" for n in notifications)
    (repo / "shipyard.yaml").write_text(f"project: shop\nnotifications:\n{lines}")


def keep_secret(repo: Path, value: str = KEY) -> None:
    path = state_dir.locate(repo).ensure().root / "secrets"
    path.write_text(f"HOOK_KEY={value}\n")
    path.chmod(0o600)


def test_notify_test_sends_to_every_receiver_and_reports_each(repo: Path) -> None:
    with webhook_receiver() as receiver, mail_receiver() as (smtp_port, inbox):
        configure(
            repo,
            f"{{url: '{receiver.url}', format: slack, on: ['*'], secret: HOOK_KEY}}",
            f"{{smtp: '127.0.0.1:{smtp_port}', from: s@example.com, to: [o@example.com], "
            "on: ['incident.*']}",
        )
        keep_secret(repo)
        result = run_cli("notify", "test", cwd=repo)
        as_json = run_cli("notify", "test", "--json", cwd=repo)

    assert result.code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"notification 0 (webhook http://127.0.0.1:{receiver.port}/…): delivered: 200 OK"
    )
    assert lines[1] == (
        f"notification 1 (email smtp://127.0.0.1:{smtp_port} to o@example.com): "
        "delivered: accepted for o@example.com"
    )
    first = receiver.requests[0]
    assert first.headers["X-Shipyard-Event"] == "notification.tested"
    assert json.loads(first.body) == {
        "text": "shop: a test notification from Shipyard: this notification works"
    }
    assert verify(KEY, first.body, first.headers["X-Shipyard-Signature-256"])
    assert len(inbox.messages) == 2
    assert as_json.code == 0, as_json.output
    document = json.loads(as_json.stdout)
    assert [n["outcome"] for n in document["notifications"]] == ["delivered", "delivered"]
    assert len({r.delivery for r in receiver.requests}) == 2  # each test is a new delivery
    assert KEY not in result.output + as_json.output


def test_notify_test_exits_1_when_a_receiver_fails_and_2_when_a_secret_is_missing(
    repo: Path,
) -> None:
    port = free_port()
    configure(repo, f"{{url: 'http://127.0.0.1:{port}/x', on: ['*']}}")
    down = run_cli("notify", "test", cwd=repo)
    assert down.code == 1
    assert "failed: cannot deliver: the connection was refused" in down.stderr

    configure(repo, f"{{url: 'http://127.0.0.1:{port}/x', on: ['*'], secret: HOOK_KEY}}")
    missing = run_cli("notify", "test", cwd=repo)
    assert missing.code == 2
    assert "unusable" in missing.stderr
    assert "secret HOOK_KEY is not set" in missing.stderr


def test_notify_status_counts_deliveries_and_masks_the_last_error(repo: Path) -> None:
    with webhook_receiver(status=500) as receiver:
        receiver.answer = f"bad signature, expected key {KEY}".encode()  # a careless receiver
        configure(repo, f"{{url: '{receiver.url}', on: ['deployment.*'], secret: HOOK_KEY}}")
        keep_secret(repo)
        store = open_store(state_dir.locate(repo))
        try:
            with store.write() as conn:
                outbox.append(conn, "deployment.rolled_back", "deployment:1", {"version": "1"})
                outbox.append(conn, "deployment.failed", "deployment:2", {"version": "2"})
                outbox.append(conn, "incident.opened", "incident:1", {"project": "shop"})
        finally:
            store.dispose()
        agent = run_cli("agent", "--once", cwd=repo)
        status = run_cli("notify", "status", "--json", cwd=repo)
        table = run_cli("notify", "status", cwd=repo)

    assert agent.code == 1
    assert "answered 500 Internal Server Error: bad signature, expected key ***" in agent.stderr
    assert status.code == 0, status.output
    (row,) = json.loads(status.stdout)["notifications"]
    assert (row["delivered"], row["pending"], row["failing"]) == (0, 1, 1)
    assert (
        row["last_error"] == "answered 500 Internal Server Error: bad signature, expected key ***"
    )
    assert row["next_attempt_at"] is not None
    assert row["target"] == f"http://127.0.0.1:{receiver.port}/…"
    assert "no agent is delivering them" in table.stderr
    for output in (agent.output, status.output, table.output):
        assert KEY not in output


def test_a_mistake_in_notifications_is_reported_at_its_line(repo: Path) -> None:
    configure(repo, "{url: 'https://hooks.example.com/x', on: [deployment.rolledback]}")
    for command in (("notify", "status"), ("notify", "test"), ("agent", "--once")):
        result = run_cli(*command, cwd=repo)
        assert result.code == 2, command
        assert "shipyard.yaml:3:" in result.stderr
        assert "'deployment.rolledback' is not an event Shipyard sends" in result.stderr
        assert "did you mean 'deployment.rolled_back'?" in result.stderr
        assert "Traceback" not in result.output


def test_a_url_with_a_password_is_refused_without_echoing_it(repo: Path) -> None:
    configure(repo, "{url: 'https://user:pa55word-x@hooks.example.com/x', on: ['*']}")
    result = run_cli("notify", "status", cwd=repo)
    assert result.code == 2
    assert "the url holds a user name or password" in result.stderr
    assert "pa55word-x" not in result.output


def test_without_notifications_there_is_nothing_to_do(repo: Path) -> None:
    (repo / "shipyard.yaml").write_text("project: shop\n")
    status = run_cli("notify", "status", cwd=repo)
    assert status.code == 0
    assert "shop has no notifications" in status.stdout
    agent = run_cli("agent", "--once", cwd=repo)
    assert agent.code == 0
    assert "nothing to deliver" in agent.stdout
    start = run_cli("agent", "start", cwd=repo)
    assert start.code == 2
    assert "an agent would have nothing to deliver" in start.stderr
