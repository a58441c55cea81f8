"""``shipyard report``: write the delivery report, one self-contained HTML page of charts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from shipyard.ci import runs as ci_runs
from shipyard.cli.commands.dora import ReworkOption, SinceOption, project_config, read_history
from shipyard.cli.context import Context
from shipyard.cli.options import FileOption, JsonOption
from shipyard.cli.output import Output
from shipyard.monitor import dora
from shipyard.monitor.dora import Period

FLAKY_LOOKUP = 1000
"""How many of the newest flaky jobs are read to find those of the period."""

OutputOption = Annotated[
    Path,
    typer.Option(
        "--output", "-o", metavar="FILE", help="Where to write the page.", show_default=True
    ),
]


def report(
    output: OutputOption = Path("report.html"),
    since: SinceOption = timedelta(days=30),
    rework_window: ReworkOption = dora.REWORK_WINDOW,
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Write an HTML page with charts: DORA trends, deployments and rollbacks, gate failures,
    pipeline durations and flaky jobs. It needs no network to be read."""
    from shipyard.monitor import report as pages  # matplotlib only for this command

    out = Output(json_mode=json_)
    ctx = Context()
    config = project_config(file, ctx)
    now = datetime.now(UTC)
    period = Period.last(since, end=now)
    history = read_history(ctx, config.project, since=period.start, out=out)
    with ctx.store.read() as conn:
        finished = pages.read_runs(conn, config.project, period)
        failures = pages.read_gate_failures(conn, config.project, period)
    ours = {run.id for run in finished}
    flaky = tuple(
        pages.FlakyJob.from_json(job)
        for job in ci_runs.flaky_jobs(ctx.store, limit=FLAKY_LOOKUP)
        if job["run"] in ours
    )
    data = pages.ReportData(
        project=config.project,
        period=period,
        generated_at=now,
        environments=pages.environments_of(config.environments, history),
        history=history,
        runs=finished,
        gate_failures=failures,
        flaky=flaky,
        rework_window=rework_window,
    )
    written = pages.write(data, output)
    if json_:
        out.json({"report": str(written.resolve()), **period.as_json()})
        return
    out.success(f"wrote {written} ({config.project}, {dora.show_length(since)} up to now)")
