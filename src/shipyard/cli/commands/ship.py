"""``shipyard ship``: a commit to the last environment in one command, shown as it goes.

It parses, calls ``orchestrator.ship`` and draws what that tells it: on a terminal a Rich view
redrawn in place (the stages, the deployment's step and weights, the analysis' latest
verdicts with their numbers), plain timestamped lines in CI or a pipe, one JSON document with
``--json``. Exit 0 shipped, 1 a stage failed, 3 waiting for a person, 130 interrupted.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated

import typer

from shipyard.cli.app import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_WAITING
from shipyard.cli.commands.agent import ensure_agent
from shipyard.cli.context import Context
from shipyard.cli.live import SYMBOLS, Redrawn, format_seconds
from shipyard.cli.options import FileOption, JsonOption
from shipyard.cli.output import Output
from shipyard.core.config import find_config, load_config
from shipyard.core.errors import ShipyardError
from shipyard.orchestrator.ship import (
    Rollout,
    ShipEvent,
    ShipOutcome,
    ShipRequest,
    ShipStatus,
)
from shipyard.orchestrator.ship import ship as run_ship

if TYPE_CHECKING:
    from rich.console import Group, RenderableType

PLAIN_SOAK_EVERY_S = 10.0
"""In plain output, the time left of a soak is printed at most this often."""

STAGE_SYMBOLS = {**SYMBOLS, "pending": SYMBOLS["queued"], "waiting": ("‖", "yellow")}


def ship(
    ref: Annotated[
        str | None,
        typer.Argument(metavar="REF", help="The commit to ship (default: HEAD)."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the last ship after Ctrl-C, a crash or a wait for a person: "
            "nothing is released again, a deployment in progress is driven on.",
        ),
    ] = False,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="ENV",
            help="Stop after this environment (default: the last in promotion order).",
        ),
    ] = None,
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Ship a commit: pipeline, release gates, signed release, then every environment in
    promotion order — deploy checks, the deployment (a canary's analysis, the watch), the
    soak before the next.

    Exit 0 when the last environment runs it, 1 when a stage failed (a rolled-back deployment
    leaves the stable version serving), 3 when it waits for a person (approve, or resume the
    paused deployment, then 'shipyard ship --resume').
    """
    out = Output(json_mode=json_)
    ctx = Context()
    request = ShipRequest(
        cwd=ctx.cwd,
        state=ctx.state,
        store=ctx.store,
        actor=ctx.actor,
        ref=ref,
        resume=resume,
        to=to,
        config_file=file,
    )
    problem = _start_agent(ctx, file)
    if problem:
        out.warn(problem)
    view = _view(out)
    try:
        with view:
            outcome = run_ship(request, on_progress=view.tell)
    except KeyboardInterrupt:
        out.error(
            "interrupted; the ship stops where it was (a deployment in progress stays as it is)",
            "continue with 'shipyard ship --resume'",
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    _report(out, outcome)
    if outcome.status == ShipStatus.FAILED:
        raise typer.Exit(EXIT_FAILED)
    if outcome.status == ShipStatus.WAITING:
        raise typer.Exit(EXIT_WAITING)


def _report(out: Output, outcome: ShipOutcome) -> None:
    if out.json_mode:
        out.json(outcome.as_json())
        return
    version = outcome.version or outcome.commit[:12]
    if outcome.status == ShipStatus.SHIPPED:
        out.success(f"shipped {version} to {', '.join(outcome.reached)}")
    elif outcome.status == ShipStatus.WAITING:
        out.line(f"{version} waits at {outcome.stopped_at}: {outcome.message}", style="yellow")
        if outcome.hint:
            out.line(f"  next: {outcome.hint}")
    else:
        out.error(
            f"the ship of {version} stopped at {outcome.stopped_at}: {outcome.message}",
            outcome.hint,
        )


class _View:
    """What is told during a ship, drawn for a person; this one draws nothing (``--json``)."""

    def __enter__(self) -> _View:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def tell(self, event: ShipEvent) -> None:
        """Take in one event."""


def _view(out: Output) -> _View:
    if out.json_mode:
        return _View()
    if out.plain:
        return _Lines(out)
    return _LiveView(out)


@dataclass
class _Lines(_View):
    """Plain lines, one per event that matters, each with the time."""

    out: Output
    _shown: dict[str, str] = field(default_factory=dict)
    _soak_said: dict[str, float] = field(default_factory=dict)

    def tell(self, event: ShipEvent) -> None:
        """Print the event, unless it repeats what was printed or is a pending stage."""
        if event.kind == "start":
            self._say(event.message)
        elif event.kind == "stage":
            if event.status == "pending":
                return
            symbol = STAGE_SYMBOLS.get(event.status or "", ("·", ""))[0]
            if event.status in ("failed", "waiting"):  # the last lines say why, and what next
                self._say(f"{symbol} {event.stage} {event.status}")
            else:
                self._say(f"{symbol} {event.stage}: {event.message}")
        elif event.kind == "job":
            symbol = STAGE_SYMBOLS.get(event.status or "", ("·", ""))[0]
            self._say(f"  {symbol} {event.message}")
        elif event.kind == "note":
            self._say(f"  {event.message}")
        elif event.kind == "rollout" and event.rollout is not None:
            line = event.rollout.describe()  # the looks are told by the controller's notes
            if self._shown.get(event.stage) != line:
                self._shown[event.stage] = line
                self._say(f"  {line}")
        elif event.kind == "soak":
            now = time.monotonic()
            said = self._soak_said.get(event.stage)
            if said is None or now - said >= PLAIN_SOAK_EVERY_S:
                self._soak_said[event.stage] = now
                self._say(f"  {event.stage}: {event.message}")

    def _say(self, text: str) -> None:
        self.out.line(f"{datetime.now():%H:%M:%S} {text}")


@dataclass
class _Stage:
    status: str = "pending"
    message: str = ""
    started: float | None = None
    took: float | None = None


@dataclass
class _LiveView(_View):
    """A Rich view redrawn in place: stages, the rollout under way, the latest notes."""

    out: Output
    stages: dict[str, _Stage] = field(default_factory=dict)
    jobs: dict[str, str] = field(default_factory=dict)
    title: str = "shipyard ship"
    rollout: Rollout | None = None
    soak: str = ""
    notes: deque[str] = field(default_factory=lambda: deque(maxlen=4))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _live: Redrawn | None = None

    def __enter__(self) -> _LiveView:
        self._live = Redrawn(self.out, self._render, per_second=4).__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(kind, value, tb)
            self._live = None

    def tell(self, event: ShipEvent) -> None:
        """Take the event into what is drawn next."""
        with self._lock:
            if event.kind == "start":
                self.title = event.message
            elif event.kind == "stage":
                self._stage(event)
            elif event.kind == "job" and event.job is not None:
                self.jobs[event.job] = event.status or ""
            elif event.kind == "note":
                self.notes.append(event.message)
            elif event.kind == "rollout":
                self.rollout = event.rollout
            elif event.kind == "soak":
                self.soak = event.message

    def _stage(self, event: ShipEvent) -> None:
        stage = self.stages.setdefault(event.stage, _Stage())
        status = event.status or stage.status
        if status == "running" and stage.started is None:
            stage.started = time.monotonic()
        if status not in ("pending", "running") and stage.started is not None:
            stage.took = time.monotonic() - stage.started
        stage.status, stage.message = status, event.message
        if event.stage.startswith("soak ") and status != "running":
            self.soak = ""

    def _render(self) -> Group:
        from rich.console import Group
        from rich.markup import escape
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            table = Table(box=None, pad_edge=False, show_header=False)
            table.add_column("", width=1)
            table.add_column("stage", no_wrap=True)
            table.add_column("time", justify="right")
            table.add_column("note")
            for name, stage in self.stages.items():
                symbol, style = STAGE_SYMBOLS.get(stage.status, ("?", ""))
                if stage.took is not None:
                    took = format_seconds(stage.took)
                elif stage.started is not None:
                    took = format_seconds(time.monotonic() - stage.started)
                else:
                    took = ""
                note = stage.message
                if stage.status == "running" and name == "release" and self.jobs:
                    note = ", ".join(f"{job} {status}" for job, status in self.jobs.items())
                if stage.status == "running" and name.startswith("soak ") and self.soak:
                    note = self.soak
                table.add_row(
                    Text(symbol, style=style),
                    Text(name, style=style),
                    took,
                    Text(note, style="dim" if stage.status == "pending" else ""),
                )
            parts: list[RenderableType] = [Text(self.title, style="bold"), table]
            if self.rollout is not None:
                parts.extend(_rollout(self.rollout))
            parts.extend(Text(f"  {escape(note)}", style="dim") for note in self.notes)
            return Group(*parts)


def _rollout(rollout: Rollout) -> list[RenderableType]:
    """The deployment under way: its step, each version's share, each metric's last look."""
    from rich.table import Table
    from rich.text import Text

    heading = f"  deployment {rollout.deployment} to {rollout.environment}: {rollout.status}"
    if rollout.step:
        heading += f", {rollout.step}"
    table = Table(box=None, pad_edge=False, show_header=False)
    for _ in range(4):
        table.add_column("", no_wrap=True)
    for version, weight in rollout.weights.items():
        bar = "█" * (weight // 5) + "·" * (20 - weight // 5)
        role = "new" if version == rollout.version else "stable"
        table.add_row(f"    {version}", Text(bar, style="cyan"), f"{weight:>3}%", role)
    for look in rollout.looks:
        style = {"pass": "green", "fail": "red"}.get(look.verdict, "yellow")
        value = "-" if look.value is None else f"{look.value:.4g}"
        table.add_row(
            f"    {look.metric}",
            f"{value} ({look.threshold})",
            Text(look.verdict, style=style),
            Text(look.phase, style="dim"),
        )
    return [Text(heading, style="bold"), table]


def _start_agent(ctx: Context, file: Path | None) -> str | None:
    """Start the notification agent as a deploy does (the ship reports a bad configuration)."""
    try:
        path = (file or find_config(ctx.cwd, stop=ctx.state.repo_root)).resolve()
        config = load_config(path)
    except ShipyardError:
        return None
    return ensure_agent(ctx, config, path)
