"""``shipyard runs`` and ``shipyard logs``: look at runs, past and in progress."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from shipyard.ci import drivers, runs
from shipyard.ci.logs import LogLine, follow_log, read_log
from shipyard.cli.context import Context
from shipyard.cli.live import format_seconds
from shipyard.cli.options import JsonOption
from shipyard.cli.output import Output
from shipyard.core.errors import ArgumentError, NotFoundError
from shipyard.core.store import Store

app = typer.Typer(help="Pipeline runs: list, show, cancel.", no_args_is_help=True)

RunArgument = Annotated[
    str, typer.Argument(metavar="RUN", help="A run number (#12 or 12), or 'last'.")
]


def resolve_run_id(store: Store, text: str) -> int:
    """A run number from what the user typed: ``12``, ``#12`` or ``last``."""
    if text.strip().lower() in ("last", "latest"):
        return runs.latest_run_id(store)
    digits = text.strip().removeprefix("#")
    if not digits.isdigit():
        raise ArgumentError(f"{text!r} is not a run number", hint="write 12, #12 or last")
    return int(digits)


@app.command("list")
def list_runs(
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
    json_: JsonOption = False,
) -> None:
    """List recent runs, newest first."""
    out = Output(json_mode=json_)
    found = runs.list_runs(_reconciled(Context()), limit=limit)
    if json_:
        out.json([run.as_json() for run in found])
        return
    if not found:
        out.line("no runs yet; start one with 'shipyard run'")
        return
    out.table(
        ["run", "status", "commit", "branch", "event", "started", "time", "by"],
        [
            [
                f"#{r.id}",
                r.status,
                r.commit[:12],
                r.branch or r.tag or "",
                r.event,
                r.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
                format_seconds(r.duration_s),
                r.actor,
            ]
            for r in found
        ],
    )


@app.command("show")
def show(run_ref: RunArgument, json_: JsonOption = False) -> None:
    """Show one run: its jobs, their attempts and why anything failed."""
    out = Output(json_mode=json_)
    store = _reconciled(Context())
    run = runs.get_run(store, resolve_run_id(store, run_ref))
    jobs = runs.jobs_of(store, run.id)
    attempts = runs.attempts_of(store, run.id)
    if json_:
        out.json(
            {
                **run.as_json(),
                "jobs": [
                    {
                        **job.as_json(),
                        "attempts": [a.as_json() for a in attempts if a.job_id == job.job_id],
                    }
                    for job in jobs
                ],
            }
        )
        return
    out.line(
        f"run #{run.id} {run.status}: {run.project} @ {run.commit[:12]}"
        f" ({run.branch or run.tag or 'detached'}), {run.event} by {run.actor}"
    )
    if run.message:
        out.line(run.message)
    out.table(
        ["job", "status", "time", "attempts", "note"],
        [
            [j.job_id, j.status, format_seconds(j.duration_s), j.attempts or "", j.reason or ""]
            for j in jobs
        ],
    )
    if attempts:
        out.table(
            ["job", "attempt", "status", "exit", "log"],
            [
                [
                    a.job_id,
                    a.attempt,
                    a.status,
                    "" if a.exit_code is None else a.exit_code,
                    f"{a.log_path} ({a.log_lines} lines)",
                ]
                for a in attempts
            ],
            title="attempts",
        )


@app.command("flaky")
def flaky(
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 50,
    json_: JsonOption = False,
) -> None:
    """Jobs that failed and then passed with the same cache key: flaky, not fixed."""
    out = Output(json_mode=json_)
    found = runs.flaky_jobs(Context().store, limit=limit)
    if json_:
        out.json(found)
        return
    if not found:
        out.line("no flaky jobs recorded")
        return
    out.table(
        ["job", "run", "attempts", "commit", "finished"],
        [
            [f["job"], f"#{f['run']}", f["attempts"], f["commit"][:12], f["finished_at"] or ""]
            for f in found
        ],
    )


@app.command("cancel")
def cancel(run_ref: RunArgument, json_: JsonOption = False) -> None:
    """Ask the process driving a run to cancel it; it stops every job's processes."""
    out = Output(json_mode=json_)
    ctx = Context()
    store = _reconciled(ctx)
    run = runs.request_cancel(store, resolve_run_id(store, run_ref), actor=ctx.actor)
    if json_:
        out.json(run.as_json())
    elif run.finished:
        why = f": {run.message}" if run.message else ""
        out.line(f"run #{run.id} already {run.status}{why}")
    else:
        out.success(f"cancel requested for run #{run.id}; its driver stops it within a second")


def logs(
    run_ref: RunArgument,
    job: Annotated[str | None, typer.Argument(help="Only this job (name or id).")] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep printing as the run goes on, until it ends."),
    ] = False,
    attempt: Annotated[
        int | None, typer.Option(min=1, help="This attempt (default: the last of each job).")
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Print the logs of a run (or one job), or follow a run in progress."""
    out = Output(json_mode=json_)
    ctx = Context()
    store = _reconciled(ctx)
    run = runs.get_run(store, resolve_run_id(store, run_ref))
    job_ids = _job_ids(store, run.id, job)
    several = len(job_ids) > 1
    if follow:
        _follow(out, ctx, run.id, job_ids, several)
        return
    printed: list[dict[str, str]] = []
    for job_id in job_ids:
        tried = runs.attempts_of(store, run.id, job_id)
        chosen = [a for a in tried if a.attempt == attempt] if attempt else tried[-1:]
        for chosen_attempt in chosen:
            for line in read_log(Path(chosen_attempt.log_path)):
                _print(out, line, job_id if several else None, printed)
    if json_:
        out.json(printed)


def _job_ids(store: Store, run_id: int, job: str | None) -> list[str]:
    jobs = runs.jobs_of(store, run_id)
    if job is None:
        return [j.job_id for j in jobs]
    chosen = [j.job_id for j in jobs if job in (j.job_id, j.name)]
    if not chosen:
        names = ", ".join(j.job_id for j in jobs)
        raise NotFoundError(f"run #{run_id} has no job {job!r}", hint=f"its jobs are: {names}")
    return chosen


def _reconciled(ctx: Context) -> Store:
    """The store, once every run whose driver is gone is recorded as failed (driver lost)."""
    drivers.reconcile(ctx.store, actor=ctx.actor)
    return ctx.store


def _follow(out: Output, ctx: Context, run_id: int, job_ids: list[str], several: bool) -> None:
    """Print each job's attempts as they are written, in the order the jobs start, until the
    run ends (or its driver is found gone)."""
    store = ctx.store
    printed: list[dict[str, str]] = []
    done: set[tuple[str, int]] = set()

    def run_now() -> runs.Run:
        current = runs.get_run(store, run_id)
        if current.finished or drivers.driver_alive(current):
            return current
        drivers.reconcile(store, actor=ctx.actor)
        return runs.get_run(store, run_id)

    while True:
        run = run_now()
        started = [
            a
            for a in runs.attempts_of(store, run_id)
            if a.job_id in job_ids and (a.job_id, a.attempt) not in done
        ]
        if not started:
            if run.finished:
                break
            time.sleep(0.2)
            continue
        current = started[0]

        def finished(key: tuple[str, int] = (current.job_id, current.attempt)) -> bool:
            attempt = [a for a in runs.attempts_of(store, run_id, key[0]) if a.attempt == key[1]]
            if attempt and attempt[0].finished_at is not None:
                return True
            return run_now().finished

        for line in follow_log(Path(current.log_path), finished=finished):
            _print(out, line, current.job_id if several else None, printed)
        done.add((current.job_id, current.attempt))
    if drivers.was_lost(run):
        out.warn(f"run #{run_id} {run.status}: {run.message}")
    if out.json_mode:
        out.json(printed)


def _print(out: Output, line: LogLine, job_id: str | None, collected: list[dict[str, str]]) -> None:
    if out.json_mode:
        collected.append(
            {
                "job": job_id or "",
                "time": line.time.isoformat(),
                "stream": line.stream,
                "text": line.text,
            }
        )
        return
    stamp = line.time.astimezone().strftime("%H:%M:%S")
    prefix = f"[{job_id}] " if job_id else ""
    out.stdout.write(f"{stamp} {prefix}{line.text}\n")
    out.stdout.flush()
