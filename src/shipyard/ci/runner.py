"""Starting a run: check everything first, then record it and drive the scheduler.

``prepare_run`` resolves the commit, reads the pipeline *from that commit*, expands it and
loads its secrets; any mistake is an error before anything is stored or started. ``execute``
records the run, checks the commit out, runs the DAG and cleans up.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import shutil
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from shipyard.ci import runs
from shipyard.ci.cache import InputIndex, JobCache, load_or_create_key
from shipyard.ci.drivers import run_marker, this_host
from shipyard.ci.executors import EXECUTORS
from shipyard.ci.expressions import ExpressionContext
from shipyard.ci.model import PipelineSpec, build_pipeline
from shipyard.ci.scheduler import (
    CacheContext,
    ReusedJob,
    RunObserver,
    RunOptions,
    Scheduler,
    SilentObserver,
)
from shipyard.ci.workspace import RunWorkspace
from shipyard.core.blobs import BlobStore
from shipyard.core.config import LoadedConfig, load
from shipyard.core.errors import (
    ArgumentError,
    CheckFailed,
    GitError,
    NotFoundError,
    ShipyardError,
)
from shipyard.core.git import Git
from shipyard.core.repoconfig import config_location, load_committed
from shipyard.core.secrets import Masker, SecretError, SecretValue, load_secrets
from shipyard.core.state import StateDir
from shipyard.core.store import Store


@dataclass(frozen=True)
class RunRequest:
    """What the user asked for."""

    ref: str = "HEAD"
    base: str | None = None
    event: str = "manual"
    worktree: bool = False
    jobs: tuple[str, ...] = ()
    concurrency: int = field(default_factory=lambda: os.cpu_count() or 2)
    fail_fast: bool = False
    keep_workspace: bool = False
    config_file: Path | None = None
    no_cache: bool = False
    rerun_of: int | None = None
    branch: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class PreparedRun:
    """A run that has passed every check and can start."""

    request: RunRequest
    git: Git
    toplevel: Path
    commit: str
    branch: str | None
    tag: str | None
    loaded: LoadedConfig
    pipeline: PipelineSpec
    secrets: Mapping[str, SecretValue]
    warnings: tuple[str, ...] = ()
    config_name: str = "shipyard.yaml"

    def context(self) -> ExpressionContext:
        """What ``if`` expressions see for this run."""
        git, commit, base = self.git, self.commit, self.request.base

        @functools.cache
        def changed() -> Sequence[str]:
            start = git.resolve_commit(base) if base else git.find_commit(f"{commit}^")
            if start is None:
                return ()
            return git.changed_files(start, commit)

        has_base = base is not None or self.git.find_commit(f"{commit}^") is not None
        return ExpressionContext(
            branch=self.branch,
            tag=self.tag,
            event=self.request.event,
            commit=self.commit,
            env=dict(os.environ),
            matrix={},
            needs={},
            vars={},
            changed_files=changed if has_base else None,
        )


def prepare_run(cwd: Path, request: RunRequest, state: StateDir) -> PreparedRun:
    """Check the request and build the run; nothing is stored or started."""
    if request.concurrency < 1:
        raise ArgumentError("-j must be at least 1")
    git = Git(cwd)
    bare = git.is_bare()
    if bare and request.worktree:
        raise ArgumentError(
            "a bare repository has no working tree to run",
            hint="run a commit instead (drop --worktree)",
        )
    toplevel = git.common_dir() if bare else git.toplevel()
    try:
        commit = git.resolve_commit(request.ref)
    except GitError as error:
        raise NotFoundError(
            f"{request.ref!r} is not a commit, branch or tag of this repository",
            hint="check the name with 'git log --oneline' or 'git branch -a'",
        ) from error
    if request.base is not None and git.find_commit(request.base) is None:
        raise NotFoundError(
            f"--base {request.base!r} is not a commit of this repository",
            hint="name a branch, tag or commit that exists",
        )
    warnings: list[str] = []
    relative, config_path = config_location(
        cwd, request.config_file, toplevel=None if bare else toplevel
    )
    if config_path is None:
        loaded = _load_from_commit(git, commit, relative)
    else:
        if request.worktree:
            loaded = load(config_path)
        else:
            loaded = _load_from_commit(git, commit, relative)
            if config_path.exists() and _digest(config_path) != loaded.digest:
                warnings.append(
                    f"{relative} has changes that are not committed; the run uses the "
                    f"version in {commit[:12]} (use --worktree to run your working tree)"
                )
    project_dir = "" if str(relative.parent) == "." else str(relative.parent)
    pipeline = build_pipeline(loaded, project_dir=project_dir)
    if request.jobs:
        known = {job.name for job in pipeline.jobs} | {job.id for job in pipeline.jobs}
        unknown = [name for name in request.jobs if name not in known]
        if unknown:
            names = ", ".join(sorted({job.name for job in pipeline.jobs}))
            raise ArgumentError(
                f"--job {unknown[0]!r} is not a job of this pipeline", hint=f"the jobs are: {names}"
            )
        pipeline = pipeline.select(request.jobs)
    secret_names = sorted({name for job in pipeline.jobs for name in job.secrets})
    secrets = load_secrets(secret_names, environ=os.environ, secrets_file=state.root / "secrets")
    for name, secret in secrets.items():
        if "\0" in secret.reveal():
            raise SecretError(
                f"the secret {name} holds a NUL character, which no program can be given",
                hint="set it again without it; encode binary secrets (base64)",
            )
    branch = request.branch or _branch(git, request.ref, commit)
    tags = git.tags_pointing_at(commit)
    return PreparedRun(
        request=request,
        git=git,
        toplevel=toplevel,
        commit=commit,
        branch=branch,
        tag=tags[0] if tags else None,
        loaded=loaded,
        pipeline=pipeline,
        secrets=secrets,
        warnings=tuple(warnings),
        config_name=relative.name,
    )


def record_unstartable(
    store: Store, cwd: Path, request: RunRequest, *, actor: str, reason: str
) -> runs.Run:
    """Record a run that could not start as failed, with no jobs and ``reason`` as its message.

    For runs nobody watches (a hook's): without a record, the commit would look untested.
    """
    git = Git(cwd)
    commit = git.find_commit(request.ref)
    run = runs.create_run(
        store,
        project=_project_name(git, cwd, commit, request),
        commit=commit or request.ref[:64],
        ref=request.ref,
        branch=request.branch,
        tag=None,
        event=request.event,
        actor=actor,
        workspace="worktree" if request.worktree else "isolated",
        config_digest="",
        jobs=(),
        driver_pid=None,
    )
    return runs.finish_run(
        store, run.id, "failed", actor=actor, message=f"could not start: {reason}"
    )


def _project_name(git: Git, cwd: Path, commit: str | None, request: RunRequest) -> str:
    """The project of the configuration the run would have used, or else the repository's
    folder name (the configuration may be what could not be read)."""
    try:
        bare = git.is_bare()
        toplevel = git.common_dir() if bare else git.toplevel()
        relative, path = config_location(
            cwd, request.config_file, toplevel=None if bare else toplevel
        )
        if commit is not None and (path is None or not request.worktree):
            return _load_from_commit(git, commit, relative).model.project
        if path is not None:
            return load(path).model.project
    except ShipyardError:
        pass
    name = (git.common_dir().parent if git.is_bare() else git.toplevel()).name
    return (name or "unknown")[:64]


class RunStopped(CheckFailed):
    """A signal (Ctrl-C, SIGTERM) stopped the run: its jobs were stopped, it is recorded as
    cancelled, and ``signal`` says which one (a command exits with 128 + its number)."""

    def __init__(self, signal_number: int) -> None:
        name = signal.Signals(signal_number).name
        super().__init__(f"the run was cancelled by {name}")
        self.signal = signal_number


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""The signals that cancel a run: its jobs are stopped and the run is recorded as cancelled."""


async def execute(
    prepared: PreparedRun,
    *,
    store: Store,
    state: StateDir,
    actor: str,
    observer: RunObserver | None = None,
    on_created: Callable[[runs.Run], None] | None = None,
) -> runs.Run:
    """Record the run, check the commit out, run every job, clean up; return the result.

    SIGINT and SIGTERM cancel the run at any point after it is recorded (and raise
    :class:`RunStopped` once it is recorded as cancelled).
    """
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def stop(number: int) -> None:
        if main is not None and not received:
            received.append(number)
            main.cancel(f"cancelled by {signal.Signals(number).name}")

    if main is not None:
        for number in STOP_SIGNALS:
            loop.add_signal_handler(number, stop, number)
    request = prepared.request
    try:
        # Not in a thread: a signal is handled once the run is recorded, never half-way.
        run = runs.create_run(
            store,
            project=prepared.pipeline.project,
            commit=prepared.commit,
            ref=request.ref,
            branch=prepared.branch,
            tag=prepared.tag,
            event=request.event,
            actor=actor,
            workspace="worktree" if request.worktree else "isolated",
            config_digest=prepared.loaded.digest,
            jobs=prepared.pipeline.jobs,
            driver_pid=os.getpid(),
            driver_host=this_host(),
            rerun_of=request.rerun_of,
        )
        if on_created is not None:
            on_created(run)
        workspace: RunWorkspace | None = None
        try:
            workspace = await _start_workspace(prepared, store, state, run, actor)
            reuse, previous_keys = (
                ({}, {})
                if request.rerun_of is None
                else await asyncio.to_thread(_reusable, store, request.rerun_of, prepared.pipeline)
            )
            scheduler = _scheduler(prepared, store, state, run, actor, workspace, observer)
            scheduler.reuse, scheduler.previous_keys = reuse, previous_keys
            return await scheduler.run()
        except asyncio.CancelledError:
            # Cancelled before the scheduler took over, the run is still to be recorded.
            reason = f"cancelled by {signal.Signals(received[0]).name}" if received else None
            await asyncio.shield(
                asyncio.to_thread(
                    runs.finish_run,
                    store,
                    run.id,
                    "cancelled",
                    actor=actor,
                    message=reason or "interrupted",
                )
            )
            if received:
                raise RunStopped(received[0]) from None
            raise
        finally:
            if workspace is not None and not request.keep_workspace:
                await asyncio.shield(asyncio.to_thread(workspace.remove))
            shutil.rmtree(state.root / "outputs" / f"run-{run.id}", ignore_errors=True)
    finally:
        if main is not None:
            for number in STOP_SIGNALS:
                loop.remove_signal_handler(number)


async def _start_workspace(
    prepared: PreparedRun, store: Store, state: StateDir, run: runs.Run, actor: str
) -> RunWorkspace:
    """Supersede older runs of a hook's branch, then check the commit out for the run."""
    request = prepared.request
    if request.event == "hook" and prepared.pipeline.supersede and prepared.branch:
        await asyncio.to_thread(
            runs.supersede,
            store,
            project=prepared.pipeline.project,
            branch=prepared.branch,
            newer=run.id,
            actor=actor,
        )
    if request.worktree:
        return RunWorkspace.in_place(prepared.toplevel)
    return await asyncio.to_thread(
        RunWorkspace.create, prepared.git, state.workspaces / f"run-{run.id}", prepared.commit
    )


def _scheduler(
    prepared: PreparedRun,
    store: Store,
    state: StateDir,
    run: runs.Run,
    actor: str,
    workspace: RunWorkspace,
    observer: RunObserver | None,
) -> Scheduler:
    request = prepared.request
    blobs = BlobStore.for_state(state)
    secret_names = {name for job in prepared.pipeline.jobs for name in job.secrets}
    base_env = {
        k: v
        for k, v in os.environ.items()
        if k not in secret_names and not k.startswith("SHIPYARD_")
    }
    # Every process of the run's jobs carries it: if this driver dies, they can be found.
    marker = run_marker(run)
    base_env[marker[0]] = marker[1]
    return Scheduler(
        store=store,
        run_id=run.id,
        actor=actor,
        pipeline=prepared.pipeline,
        executor=EXECUTORS["local"](),
        workspace=workspace,
        logs_dir=state.logs,
        base_env=base_env,
        secrets=prepared.secrets,
        masker=Masker(secret.reveal() for secret in prepared.secrets.values()),
        context=prepared.context(),
        options=RunOptions(concurrency=request.concurrency, fail_fast=request.fail_fast),
        blobs=blobs,
        outputs_dir=state.root / "outputs" / f"run-{run.id}",
        cache=None if request.no_cache else _cache_context(prepared, store, state, blobs),
        version=request.version,
        observer=observer or SilentObserver(),
    )


def _cache_context(
    prepared: PreparedRun, store: Store, state: StateDir, blobs: BlobStore
) -> CacheContext:
    key = load_or_create_key(state.keys / "cache.key")
    cache = JobCache(store, blobs, key, prepared.pipeline.cache_size)
    project_dir = prepared.pipeline.project_dir

    # The pipeline file is not an input: each job's own definition is part of its key.
    exclude = (prepared.config_name,)

    @functools.cache
    def inputs() -> InputIndex:
        if prepared.request.worktree:
            return InputIndex.from_worktree(prepared.git, prepared.toplevel, project_dir, exclude)
        return InputIndex.from_commit(prepared.git, prepared.commit, project_dir, exclude)

    return CacheContext(cache=cache, inputs=inputs)


def _reusable(
    store: Store, run_id: int, pipeline: PipelineSpec
) -> tuple[dict[str, ReusedJob], dict[str, str]]:
    """What a re-run takes over from run ``run_id``, and the keys of the jobs that failed."""
    earlier = {job.job_id: job for job in runs.jobs_of(store, run_id)}
    again = {
        job_id
        for job_id, job in earlier.items()
        if job.status in ("failed", "cancelled", "queued", "running")
        or (job.status == "skipped" and not (job.reason or "").startswith("if:"))
    }
    dependents: dict[str, set[str]] = {}
    for job in pipeline.jobs:
        for need in job.needs:
            dependents.setdefault(need, set()).add(job.id)
    pending = list(again)
    while pending:
        for dependent in dependents.get(pending.pop(), ()):
            if dependent not in again:
                again.add(dependent)
                pending.append(dependent)
    reuse = {
        job.id: ReusedJob(
            run_id=run_id,
            artifacts_digest=earlier[job.id].artifacts,
            outputs=earlier[job.id].outputs,
        )
        for job in pipeline.jobs
        if job.id in earlier and job.id not in again and earlier[job.id].status == "passed"
    }
    keys = {
        job_id: job.cache_key
        for job_id, job in earlier.items()
        if job.status == "failed" and job.cache_key
    }
    return reuse, keys


def _load_from_commit(git: Git, commit: str, relative: PurePosixPath) -> LoadedConfig:
    return load_committed(
        git,
        commit,
        relative,
        hint="commit it first, or run your working tree with 'shipyard run --worktree'",
    )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _branch(git: Git, ref: str, commit: str) -> str | None:
    if ref != "HEAD" and git.find_commit(f"refs/heads/{ref}") == commit:
        return ref
    if ref.startswith("refs/heads/"):
        return ref.removeprefix("refs/heads/")
    current = git.current_branch()
    if current and (ref == "HEAD" or git.find_commit("HEAD") == commit):  # HEAD: resolved already
        return current
    return None
