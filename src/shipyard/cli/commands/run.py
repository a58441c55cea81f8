"""``shipyard run``: run the pipeline on a commit, live, and say how it went."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from shipyard.ci import drivers, runs
from shipyard.ci.logs import read_log
from shipyard.ci.runner import (
    PreparedRun,
    RunRequest,
    RunStopped,
    execute,
    prepare_run,
    record_unstartable,
)
from shipyard.cli.commands.runs import resolve_run_id
from shipyard.cli.context import Context
from shipyard.cli.live import RunView, format_seconds
from shipyard.cli.options import FileOption, JsonOption
from shipyard.cli.output import Output
from shipyard.core.errors import ArgumentError, ShipyardError, UserError
from shipyard.core.store import Store
from shipyard.release import planning

FAILURE_TAIL_LINES = 15


def run(
    ref: Annotated[str, typer.Argument(help="The commit, branch or tag to run.")] = "HEAD",
    jobs: Annotated[
        int | None,
        typer.Option("-j", "--jobs", min=1, help="Jobs run in parallel (default: number of CPUs)."),
    ] = None,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="Cancel running jobs after the first failure.")
    ] = False,
    worktree: Annotated[
        bool,
        typer.Option(
            "--worktree", help="Run in the working tree as it is, not in a clean checkout."
        ),
    ] = False,
    base: Annotated[
        str | None,
        typer.Option(help="What changed('…') compares against (default: the commit's parent)."),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--job", help="Run only this job and what it needs (repeatable)."),
    ] = None,
    event: Annotated[str, typer.Option(help="The event name 'if' expressions see.")] = "manual",
    branch: Annotated[
        str | None, typer.Option(help="The branch the run is for, when REF is a commit.")
    ] = None,
    keep_workspace: Annotated[
        bool, typer.Option("--keep-workspace", help="Keep the checkout under .shipyard/workspaces.")
    ] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Run every job; neither use nor fill the cache.")
    ] = False,
    rerun_failed: Annotated[
        str | None,
        typer.Option(
            "--rerun-failed",
            metavar="RUN",
            help="Run again only the failed or cancelled jobs of RUN and their dependents.",
        ),
    ] = None,
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Run the pipeline of shipyard.yaml on a commit (exit 1 when it fails)."""
    out = Output(json_mode=json_)
    ctx = Context()
    earlier: runs.Run | None = None
    if rerun_failed is not None:
        if ref != "HEAD" or worktree:
            raise ArgumentError(
                "--rerun-failed takes the commit of the earlier run", hint="drop REF and --worktree"
            )
        earlier = runs.get_run(ctx.store, resolve_run_id(ctx.store, rerun_failed))
        if earlier.workspace == "worktree":
            raise ArgumentError(
                f"run #{earlier.id} ran a working tree, which cannot be re-run",
                hint="start a new run instead",
            )
        ref, event = earlier.commit, earlier.event
    request = RunRequest(
        ref=ref,
        base=base,
        event=event,
        worktree=worktree,
        jobs=tuple(only or ()),
        fail_fast=fail_fast,
        keep_workspace=keep_workspace,
        config_file=file,
        no_cache=no_cache,
        rerun_of=earlier.id if earlier else None,
        branch=branch or None,
    )
    if jobs:
        request = replace(request, concurrency=jobs)
    try:
        prepared = prepare_run(Path.cwd(), request, ctx.state)
    except ShipyardError as error:
        if event == "hook":
            # Nobody watches a hook's run: the reason it could not start goes on record.
            with contextlib.suppress(ShipyardError):
                record_unstartable(
                    ctx.store, Path.cwd(), request, actor=ctx.actor, reason=error.message
                )
        raise
    if earlier is not None:
        prepared = replace(prepared, branch=earlier.branch, tag=earlier.tag)
    prepared = replace(prepared, request=replace(prepared.request, version=_version(prepared, out)))
    for warning in prepared.warnings:
        out.warn(warning)
    store = ctx.store
    # Runs whose driver died are put on record first (a hook's newer run supersedes only
    # runs that someone still drives).
    drivers.reconcile(store, actor=ctx.actor)
    title = (
        f"{prepared.pipeline.project} @ {prepared.commit[:12]}"
        f"{' (' + prepared.branch + ')' if prepared.branch else ''}"
    )
    created: list[runs.Run] = []

    def announce(run: runs.Run) -> None:
        created.append(run)
        view.title = f"run #{run.id}: {title}"
        if out.plain:
            out.line(f"run #{run.id}: {title}, {len(prepared.pipeline.jobs)} jobs")

    view = RunView(out=out, pipeline=prepared.pipeline, title=title)
    stopped_by: int | None = None
    try:
        with view:
            asyncio.run(
                execute(
                    prepared,
                    store=store,
                    state=ctx.state,
                    actor=ctx.actor,
                    observer=view,
                    on_created=announce,
                )
            )
    except RunStopped as stop:
        stopped_by = stop.signal
    except (KeyboardInterrupt, asyncio.CancelledError):
        stopped_by = signal.SIGINT
    if not created:
        raise typer.Exit(128 + stopped_by if stopped_by else 1)
    final = runs.get_run(store, created[0].id)
    _report(out, store, final)
    if stopped_by:
        raise typer.Exit(128 + stopped_by)
    if final.status != "passed":
        raise typer.Exit(1)


def _version(prepared: PreparedRun, out: Output) -> str | None:
    """What the run's jobs see as SHIPYARD_VERSION (version first: computed before the run)."""
    section = prepared.loaded.model.release
    try:
        plan = planning.plan(
            prepared.git,
            section,
            project_dir=prepared.pipeline.project_dir,
            branch=prepared.branch,
            ref=prepared.commit,
        )
    except UserError as error:
        out.warn(f"SHIPYARD_VERSION is not set: {error.message}")
        return None
    return planning.run_version(plan, section)


def _report(out: Output, store: Store, run: runs.Run) -> None:
    jobs = runs.jobs_of(store, run.id)
    if out.json_mode:
        out.json({**run.as_json(), "jobs": [job.as_json() for job in jobs]})
        return
    attempts = runs.attempts_of(store, run.id)
    for job in jobs:
        if job.status != "failed":
            continue
        tried = [a for a in attempts if a.job_id == job.job_id]
        if not tried:
            continue
        last = tried[-1]
        out.line("")
        out.line(
            f"── {job.job_id}: {job.reason or job.status} (last lines of {last.log_path})",
            style="red",
        )
        lines = list(read_log(Path(last.log_path)))[-FAILURE_TAIL_LINES:]
        for line in lines:
            out.line(f"   {line.text}")
    out.line("")
    out.table(
        ["job", "status", "time", "attempts", "note"],
        [
            [j.job_id, j.status, format_seconds(j.duration_s), j.attempts or "", j.reason or ""]
            for j in jobs
        ],
    )
    took = format_seconds(run.duration_s)
    summary = f"run #{run.id} {run.status} in {took}"
    if run.message:
        summary += f": {run.message}"
    if run.status == "passed":
        out.success(summary)
    else:
        out.line(summary, style="red")
