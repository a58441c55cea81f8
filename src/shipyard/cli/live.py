"""The live view of a run: a redrawn DAG table on a terminal, one line per event in CI.

It only renders what the scheduler tells it; it never reads the store or the logs itself. Rich
is loaded only for the terminal view.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING

from shipyard.ci.executors import AttemptOutcome
from shipyard.ci.model import JobSpec, PipelineSpec
from shipyard.cli.output import Output

if TYPE_CHECKING:
    from rich.console import Group, RenderableType
    from rich.live import Live

SYMBOLS = {
    "queued": ("·", "dim"),
    "running": ("▶", "cyan"),
    "passed": ("✓", "green"),
    "failed": ("✗", "red"),
    "skipped": ("–", "yellow"),
    "cancelled": ("■", "magenta"),
    "retrying": ("↻", "yellow"),
}


class Redrawn:
    """A renderable redrawn in place on the terminal while a block runs (Rich's ``Live``).

    ``render`` gives what is drawn at each refresh; ``final`` (default ``render``) what stays
    on the screen once the block ends.
    """

    def __init__(
        self,
        out: Output,
        render: Callable[[], RenderableType],
        *,
        per_second: float,
        final: Callable[[], RenderableType] | None = None,
    ) -> None:
        self._out = out
        self._render = render
        self._final = final or render
        self._per_second = per_second
        self._live: Live | None = None

    def __enter__(self) -> Redrawn:
        from rich.live import Live

        self._live = Live(
            self._render(),
            console=self._out.console,
            refresh_per_second=self._per_second,
            transient=False,
            get_renderable=self._render,
        )
        self._live.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.update(self._final())
            self._live.__exit__(kind, value, tb)
            self._live = None


@dataclass
class _Row:
    status: str = "queued"
    attempt: int = 0
    started: float | None = None
    duration_s: float | None = None
    reason: str | None = None


@dataclass
class RunView:
    """Observer of a run that draws it for a person (Rich) or a log (plain lines)."""

    out: Output
    pipeline: PipelineSpec
    title: str = ""
    rows: dict[str, _Row] = field(default_factory=dict)
    _live: Redrawn | None = None

    def __post_init__(self) -> None:
        self.rows = {job.id: _Row() for job in self.pipeline.jobs}

    def __enter__(self) -> RunView:
        if not self.out.plain and not self.out.json_mode:
            self._live = Redrawn(
                self.out, self._render, per_second=8, final=lambda: self._render(final=True)
            ).__enter__()
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

    def job_started(self, job: JobSpec, attempt: int) -> None:
        """An attempt of a job started."""
        row = self.rows[job.id]
        row.status, row.attempt = "running", attempt
        if row.started is None:
            row.started = time.monotonic()
        suffix = f" (attempt {attempt})" if attempt > 1 else ""
        self._plain(f"▶ {job.id} started{suffix}")

    def job_retrying(self, job: JobSpec, attempt: int, outcome: AttemptOutcome) -> None:
        """An attempt failed and the job will be tried again."""
        self.rows[job.id].status = "retrying"
        self._plain(
            f"↻ {job.id} attempt {attempt} {outcome.status}: "
            f"{outcome.message or outcome.failure_kind}; retrying"
        )

    def job_finished(
        self, job: JobSpec, status: str, reason: str | None, duration_s: float | None
    ) -> None:
        """A job reached its final status."""
        row = self.rows[job.id]
        row.status, row.reason, row.duration_s = status, reason, duration_s
        symbol = SYMBOLS.get(status, ("?", ""))[0]
        took = f" in {format_seconds(duration_s)}" if duration_s is not None else ""
        why = f": {reason}" if reason else ""
        self._plain(f"{symbol} {job.id} {status}{took}{why}")

    def _plain(self, text: str) -> None:
        if self.out.plain and not self.out.json_mode:
            stamp = datetime.now().strftime("%H:%M:%S")
            self.out.stdout.write(f"{stamp} {text}\n")
            self.out.stdout.flush()

    def _render(self, final: bool = False) -> Group:
        from rich.console import Group
        from rich.markup import escape
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False, show_header=False)
        table.add_column("", width=1)
        table.add_column("job")
        table.add_column("time", justify="right")
        table.add_column("note")
        for job in self.pipeline.jobs:
            row = self.rows[job.id]
            symbol, style = SYMBOLS.get(row.status, ("?", ""))
            if row.duration_s is not None:
                took = format_seconds(row.duration_s)
            elif row.started is not None:
                took = format_seconds(time.monotonic() - row.started)
            else:
                took = ""
            note = row.reason or ""
            if row.attempt > 1:
                note = f"attempt {row.attempt} {note}".strip()
            table.add_row(
                Text(symbol, style=style), Text(job.id, style=style), took, Text(note, style="dim")
            )
        header = Text.from_markup(f"[bold]{escape(self.title)}[/]") if self.title else Text("")
        return Group(header, table)


def format_seconds(value: float | None) -> str:
    """Durations for people: 0.4s, 12.3s, 4m05s, 1h02m."""
    if value is None:
        return ""
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


@dataclass
class JobLines:
    """Observer that prints one line per job event, for runs started inside another command."""

    out: Output

    def job_started(self, job: JobSpec, attempt: int) -> None:
        """An attempt of a job started."""
        self._say(f"▶ {job.id} started" + (f" (attempt {attempt})" if attempt > 1 else ""))

    def job_retrying(self, job: JobSpec, attempt: int, outcome: AttemptOutcome) -> None:
        """An attempt failed and the job will be tried again."""
        self._say(f"↻ {job.id} attempt {attempt} {outcome.status}; retrying")

    def job_finished(
        self, job: JobSpec, status: str, reason: str | None, duration_s: float | None
    ) -> None:
        """A job reached its final status."""
        symbol = SYMBOLS.get(status, ("?", ""))[0]
        took = f" in {format_seconds(duration_s)}" if duration_s is not None else ""
        self._say(f"{symbol} {job.id} {status}{took}" + (f": {reason}" if reason else ""))

    def _say(self, text: str) -> None:
        self.out.line(f"{datetime.now():%H:%M:%S} {text}")
