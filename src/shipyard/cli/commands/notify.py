"""``shipyard notify``: send a test to every notification, and show how deliveries stand.

``test`` sends at once, past the outbox and the agent, so it shows whether a receiver works now;
``status`` reads what the agent recorded. Neither prints a secret: a receiver's answer and a
stored error are masked, and a webhook is shown by its scheme and host only.
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import typer

from shipyard.cli.context import Context
from shipyard.cli.options import FileOption, JsonOption
from shipyard.cli.output import Output
from shipyard.core.config import ShipyardConfig, find_config, load_config
from shipyard.core.config.notifications import TEST_EVENT_TYPE, Notification
from shipyard.core.secrets import Masker, SecretStore, masker_for, secrets_file
from shipyard.core.state import StateDir
from shipyard.monitor.agent import agent_pid, consumer_name, delivery_counts
from shipyard.monitor.notify import DeliveryFailed, Notice, NotifierUnavailable, notifier_for

app = typer.Typer(
    help="Notifications: send a test to each, and see their deliveries.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def notify() -> None:
    """Notifications: where events go, and whether they got there."""


@dataclass(frozen=True)
class _Tried:
    """What became of the test sent to one notification."""

    index: int
    kind: str
    target: str
    outcome: Literal["delivered", "failed", "unusable"]
    detail: str
    hint: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            "target": self.target,
            "outcome": self.outcome,
            "detail": self.detail,
            "hint": self.hint,
        }


@app.command("test")
def test(file: FileOption = None, json_: JsonOption = False) -> None:
    """Send a test event to every notification now and say what each receiver answered.

    Exit 1 if a delivery failed, 2 if a notification cannot be used (its secret is missing).
    """
    out = Output(json_mode=json_)
    context = Context()
    config = _config(file, context)
    if not config.notifications:
        _no_notifications(out, config, json_)
        return
    state = context.state.ensure()
    store = SecretStore(environ=dict(os.environ), secrets_file=secrets_file(state))
    masker = _masker(config, state)
    started = datetime.now(UTC)
    actor = context.actor

    def send(index: int, notification: Notification) -> _Tried:
        notice = Notice(
            event_id=0,
            type=TEST_EVENT_TYPE,
            subject=f"project:{config.project}",
            created_at=started,
            project=config.project,
            delivery=f"test-{uuid.uuid4().hex[:16]}",
            payload={"message": "a test notification from Shipyard", "sent_by": actor},
        )
        try:
            notifier = notifier_for(notification, store.get)
        except NotifierUnavailable as error:
            return _Tried(
                index, notification.kind, notification.target, "unusable", error.message, error.hint
            )
        try:
            answer = notifier.send(notice)
        except DeliveryFailed as error:
            return _Tried(
                index, notification.kind, notifier.target, "failed", masker.mask(error.message)
            )
        return _Tried(index, notification.kind, notifier.target, "delivered", masker.mask(answer))

    with ThreadPoolExecutor(max_workers=min(8, len(config.notifications))) as pool:
        tried = list(pool.map(send, *zip(*enumerate(config.notifications), strict=True)))
    if json_:
        out.json({"project": config.project, "notifications": [t.as_json() for t in tried]})
    else:
        for one in tried:
            where = f"notification {one.index} ({one.kind} {one.target})"
            if one.outcome == "delivered":
                out.success(f"{where}: delivered: {one.detail}")
            else:
                out.error(f"{where}: {one.outcome}: {one.detail}", one.hint)
    if any(one.outcome == "unusable" for one in tried):
        raise typer.Exit(2)
    if any(one.outcome == "failed" for one in tried):
        raise typer.Exit(1)


@app.command("status")
def status(file: FileOption = None, json_: JsonOption = False) -> None:
    """Per notification: events delivered, pending and failing, and the last failure."""
    out = Output(json_mode=json_)
    context = Context()
    config = _config(file, context)
    if not config.notifications:
        _no_notifications(out, config, json_)
        return
    state = context.state.ensure()
    masker = _masker(config, state)
    with context.store.read() as conn:
        counts = [
            delivery_counts(conn, consumer_name(config.project, n), n.on)
            for n in config.notifications
        ]
    serving = agent_pid(state.root, config.project)
    rows = []
    for index, (notification, count) in enumerate(zip(config.notifications, counts, strict=True)):
        error = None if count.last_error is None else masker.mask(count.last_error)
        rows.append(
            {
                "index": index,
                "kind": notification.kind,
                "target": notification.target,
                "on": list(notification.on),
                **count.as_json(),
                "last_error": error,
            }
        )
    if json_:
        out.json({"project": config.project, "agent_pid": serving, "notifications": rows})
        return
    out.table(
        ["#", "kind", "to", "on", "delivered", "pending", "failing", "last error", "next attempt"],
        [
            [
                row["index"],
                row["kind"],
                row["target"],
                ", ".join(row["on"]),
                row["delivered"],
                row["pending"],
                row["failing"],
                row["last_error"] or "",
                _when(row["next_attempt_at"]),
            ]
            for row in rows
        ],
    )
    if serving is None:
        out.warn("no agent is delivering them: start one with 'shipyard agent start'")


def _when(moment: str | None) -> str:
    if moment is None:
        return ""
    return datetime.fromisoformat(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _masker(config: ShipyardConfig, state: StateDir) -> Masker:
    names = [n.secret for n in config.notifications if n.secret is not None]
    return masker_for(names, environ=dict(os.environ), secrets_file=secrets_file(state))


def _no_notifications(out: Output, config: ShipyardConfig, json_: bool) -> None:
    if json_:
        out.json({"project": config.project, "notifications": []})
        return
    out.line(f"{config.project} has no notifications (add notifications: to shipyard.yaml)")


def _config(file: Path | None, context: Context) -> ShipyardConfig:
    return load_config((file or find_config(context.cwd, stop=context.state.repo_root)).resolve())
