"""``shipyard agent`` as a user runs it, in a real repository, against a real webhook server and
a real SMTP server on loopback: a rollback is sent exactly once, also across a receiver that is
down and an agent killed with SIGKILL in the middle of a delivery; SIGTERM ends it cleanly;
``agent start|status|stop`` run it under the state directory's supervisor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.test_notify_receivers import (
    DEADLINE,
    free_port,
    mail_receiver,
    verify,
    wait_until,
    webhook_receiver,
)
from shipyard.cd import deployments
from shipyard.cd.supervisor import Supervisor
from shipyard.core import state as state_dir
from shipyard.core.config import load_config
from shipyard.core.store import open_store
from shipyard.monitor.agent import consumer_name, delivery_counts
from support import run_cli

KEY = "whsec-e2e-0123456789"


def write_config(repo: Path, url: str, *, smtp_port: int | None = None) -> None:
    text = (
        "project: shop\n"
        "notifications:\n"
        f"  - {{url: '{url}', on: [deployment.rolled_back], secret: HOOK_KEY}}\n"
    )
    if smtp_port is not None:
        text += (
            f"  - {{smtp: '127.0.0.1:{smtp_port}', from: shipyard@example.com, "
            "to: [oncall@example.com], on: [deployment.rolled_back]}\n"
        )
    (repo / "shipyard.yaml").write_text(text)


def keep_secret(repo: Path) -> None:
    """HOOK_KEY in the state directory's secrets file, as a user keeps it."""
    root = state_dir.locate(repo).ensure().root
    path = root / "secrets"
    path.write_text(f"HOOK_KEY={KEY}\n")
    path.chmod(0o600)


def roll_back(repo: Path, version: str = "1.4.0") -> int:
    """A deployment of ``version`` to production that ends rolled back, as the controller
    records one (each step announced in the outbox)."""
    store = open_store(state_dir.locate(repo))
    try:
        created = deployments.create(
            store,
            project="shop",
            environment="production",
            version=version,
            kind="deploy",
            strategy="canary",
            previous_version="1.3.0",
            settings={},
            actor="ada@example.com",
            on_busy="queue",
        )
        for to, message in (
            ("progressing", None),
            ("aborted", "error_rate 0.2 > 0.01"),
            ("rolled_back", "error_rate 0.2 > 0.01"),
        ):
            deployments.transition(store, created.id, to, actor="shipyard", message=message)
        return created.id
    finally:
        store.dispose()


def webhook_counts(repo: Path) -> dict[str, Any]:
    config = load_config(repo / "shipyard.yaml")
    webhook = config.notifications[0]
    store = open_store(state_dir.locate(repo))
    try:
        with store.read() as conn:
            counts = delivery_counts(conn, consumer_name("shop", webhook), webhook.on)
        return counts.as_json()
    finally:
        store.dispose()


@pytest.fixture
def agents(repo: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Agent processes started by the test; any still running at the end are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(DEADLINE)


def start_agent(
    repo: Path, agents: list[subprocess.Popen[str]], *args: str
) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "shipyard", "agent", *args],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    agents.append(process)
    return process


def test_a_rollback_sends_one_signed_webhook_and_one_email(repo: Path) -> None:
    with webhook_receiver() as receiver, mail_receiver() as (smtp_port, inbox):
        write_config(repo, receiver.url, smtp_port=smtp_port)
        keep_secret(repo)
        deployment = roll_back(repo)

        first = run_cli("agent", "--once", cwd=repo)
        again = run_cli("agent", "--once", cwd=repo)

    assert first.code == 0, first.output
    assert "2 delivered, 0 failed, 0 skipped" in first.stdout
    assert again.code == 0, again.output
    assert "0 delivered" in again.stdout
    (request,) = receiver.requests
    assert request.headers["X-Shipyard-Event"] == "deployment.rolled_back"
    assert verify(KEY, request.body, request.headers["X-Shipyard-Signature-256"])
    body = json.loads(request.body)
    assert body["event"]["subject"] == f"deployment:{deployment}"
    assert body["payload"]["version"] == "1.4.0"
    assert body["payload"]["message"] == "error_rate 0.2 > 0.01"
    ((sender, recipients, message),) = inbox.messages
    assert (sender, recipients) == ("shipyard@example.com", ["oncall@example.com"])
    assert message["Subject"] == (
        f"[Shipyard] shop: deployment {deployment} of 1.4.0 to production was rolled back: "
        "error_rate 0.2 > 0.01"
    )
    assert message["X-Shipyard-Event"] == "deployment.rolled_back"
    assert KEY not in first.output + again.output


def test_a_receiver_that_is_down_gets_the_event_once_it_is_up(
    repo: Path, agents: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    write_config(repo, f"http://127.0.0.1:{port}/hooks/shipyard")
    keep_secret(repo)
    roll_back(repo)
    agent = start_agent(repo, agents, "--retry-delay", "1s")

    failing = wait_until(
        lambda: (counts := webhook_counts(repo))["failing"] and counts,
        what="the agent to record a failed delivery",
    )
    assert "the connection was refused" in failing["last_error"]
    assert failing["delivered"] == 0

    with webhook_receiver(port) as receiver:
        receiver.wait_for(1)
        wait_until(lambda: webhook_counts(repo)["delivered"] == 1, what="the delivery recorded")
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(DEADLINE) == 0
    assert len(receiver.requests) == 1
    assert verify(
        KEY, receiver.requests[0].body, receiver.requests[0].headers["X-Shipyard-Signature-256"]
    )
    assert webhook_counts(repo)["failing"] == 0
    stdout, stderr = agent.communicate()
    assert "failed deployment.rolled_back" in stderr
    assert "delivered deployment.rolled_back" in stdout
    assert KEY not in stdout + stderr


def test_an_agent_killed_mid_delivery_sends_again_with_the_same_key(
    repo: Path, agents: list[subprocess.Popen[str]]
) -> None:
    with webhook_receiver() as receiver:
        write_config(repo, receiver.url)
        keep_secret(repo)
        roll_back(repo)
        receiver.hold = True
        agent = start_agent(repo, agents)
        receiver.wait_for(1)  # the agent is in the middle of its delivery
        os.kill(agent.pid, signal.SIGKILL)
        assert agent.wait(DEADLINE) == -signal.SIGKILL
        receiver.release()

        rerun = run_cli("agent", "--once", cwd=repo)
        last = run_cli("agent", "--once", cwd=repo)

    assert rerun.code == 0, rerun.output
    assert "1 delivered" in rerun.stdout
    assert "0 delivered" in last.stdout
    first, second = receiver.requests
    assert first.delivery == second.delivery
    assert first.body == second.body
    for request in (first, second):
        assert verify(KEY, request.body, request.headers["X-Shipyard-Signature-256"])
    assert len(receiver.logical()) == 1  # one logical delivery, as the receiver sees it
    assert webhook_counts(repo)["delivered"] == 1


def test_sigterm_ends_the_agent_after_the_delivery_in_progress(
    repo: Path, agents: list[subprocess.Popen[str]]
) -> None:
    with webhook_receiver() as receiver:
        write_config(repo, receiver.url)
        keep_secret(repo)
        roll_back(repo)
        receiver.hold = True
        agent = start_agent(repo, agents, "--json")
        receiver.wait_for(1)
        agent.send_signal(signal.SIGTERM)
        receiver.release()
        assert agent.wait(DEADLINE) == 0
    stdout, _ = agent.communicate()
    (line,) = stdout.splitlines()
    assert json.loads(line)["outcome"] == "delivered"
    assert webhook_counts(repo) | {"next_attempt_at": None} == {
        "consumer": consumer_name("shop", load_config(repo / "shipyard.yaml").notifications[0]),
        "delivered": 1,
        "pending": 0,
        "failing": 0,
        "last_error": None,
        "next_attempt_at": None,
    }
    assert len(receiver.requests) == 1


def test_a_second_agent_for_the_project_is_refused(
    repo: Path, agents: list[subprocess.Popen[str]]
) -> None:
    with webhook_receiver() as receiver:
        write_config(repo, receiver.url)
        keep_secret(repo)
        agent = start_agent(repo, agents)
        wait_until(lambda: _serving(repo), what="the agent to take its lock")
        second = run_cli("agent", "--once", cwd=repo)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(DEADLINE) == 0
    assert second.code == 2
    assert f"another agent serves project shop already (pid {agent.pid})" in second.stderr


def _serving(repo: Path) -> bool:
    status = run_cli("agent", "status", "--json", cwd=repo)
    return json.loads(status.stdout)["serving_pid"] is not None


def test_agent_start_runs_it_supervised_with_its_secret_and_stop_ends_it(repo: Path) -> None:
    supervisor = Supervisor.for_state(state_dir.locate(repo).ensure())
    env = {"HOOK_KEY": KEY}  # in the environment of 'start' only: it must reach the agent
    try:
        with webhook_receiver() as receiver:
            write_config(repo, receiver.url)
            started = run_cli("agent", "start", cwd=repo, env=env)
            assert started.code == 0, started.output
            assert "agent of shop running (pid" in started.stdout
            status = json.loads(run_cli("agent", "status", "--json", cwd=repo).stdout)
            assert status["state"] == "RUNNING"
            wait_until(lambda: _serving(repo), what="the supervised agent to take its lock")

            roll_back(repo)
            (request,) = receiver.wait_for(1)
            assert verify(KEY, request.body, request.headers["X-Shipyard-Signature-256"])

            stopped = run_cli("agent", "stop", cwd=repo)
            assert stopped.code == 0, stopped.output
            assert "agent of shop stopped" in stopped.stdout
            after = run_cli("agent", "status", cwd=repo)
            assert "no supervised agent runs for shop" in after.stdout
            assert not _serving(repo)
        log = supervisor.log_path("agent.shop").read_text()
        assert "delivered deployment.rolled_back" in log
        assert KEY not in log + started.output
    finally:
        supervisor.shutdown()


def test_agent_start_refuses_when_a_secret_is_missing(repo: Path) -> None:
    write_config(repo, "http://127.0.0.1:9/hooks")
    started = run_cli("agent", "start", cwd=repo)
    assert started.code == 2
    assert "secret HOOK_KEY is not set" in started.stderr
    assert not Supervisor.for_state(state_dir.locate(repo)).is_running()
