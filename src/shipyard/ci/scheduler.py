"""The DAG scheduler: runs a pipeline's jobs in dependency order, in parallel up to a limit.

A failed job skips its dependents (unless it may fail); ``when: always`` jobs run after their
needs whatever happened; ``--fail-fast`` cancels what runs after the first failure; a cancel
(Ctrl-C, SIGTERM or ``shipyard runs cancel``) stops every job's whole process tree. Every
transition is written to the store as it happens, so another terminal sees the run live.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from shipyard.ci import runs
from shipyard.ci.artifacts import ArtifactError, ArtifactSet, collect, lay, load_set, store_set
from shipyard.ci.cache import CacheEntry, InputIndex, JobCache, tool_versions
from shipyard.ci.executors import AttemptOutcome, AttemptRequest, Executor
from shipyard.ci.expressions import ExpressionContext, ExpressionError
from shipyard.ci.logs import LogWriter, summarize_log
from shipyard.ci.model import JobSpec, PipelineSpec
from shipyard.ci.outputs import OutputError, output_variables, read_outputs
from shipyard.ci.workspace import RunWorkspace, WorkspaceError, job_folder
from shipyard.core.blobs import BlobError, BlobStore
from shipyard.core.secrets import Masker, SecretValue
from shipyard.core.store import Store

CANCEL_POLL_S = 0.5


class RunObserver(Protocol):
    """What the terminal (or anything else) is told while a run progresses."""

    def job_started(self, job: JobSpec, attempt: int) -> None:
        """An attempt of a job started."""

    def job_retrying(self, job: JobSpec, attempt: int, outcome: AttemptOutcome) -> None:
        """An attempt failed and the job will be tried again."""

    def job_finished(
        self, job: JobSpec, status: str, reason: str | None, duration_s: float | None
    ) -> None:
        """A job reached its final status."""


class SilentObserver:
    """An observer that shows nothing (for ``--json`` and tests)."""

    def job_started(self, job: JobSpec, attempt: int) -> None:
        """Nothing to show."""

    def job_retrying(self, job: JobSpec, attempt: int, outcome: AttemptOutcome) -> None:
        """Nothing to show."""

    def job_finished(
        self, job: JobSpec, status: str, reason: str | None, duration_s: float | None
    ) -> None:
        """Nothing to show."""


@dataclass(frozen=True)
class RunOptions:
    """How a run is driven."""

    concurrency: int
    fail_fast: bool = False


@dataclass
class _JobResult:
    status: runs.JobStatus
    reason: str | None = None
    satisfies: bool = False  # whether dependents may run after it
    artifacts: ArtifactSet | None = None
    artifacts_digest: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    cache_key: str | None = None
    cached: bool = False
    flaky: bool = False


@dataclass(frozen=True)
class ReusedJob:
    """A job of an earlier run whose result a re-run takes over instead of running it."""

    run_id: int
    artifacts_digest: str | None
    outputs: Mapping[str, str]


@dataclass(frozen=True)
class CacheContext:
    """What the scheduler needs to key and use the job cache."""

    cache: JobCache
    inputs: Callable[[], InputIndex]


@dataclass
class Scheduler:
    """Drives one run's jobs to completion and records every step in the store."""

    store: Store
    run_id: int
    actor: str
    pipeline: PipelineSpec
    executor: Executor
    workspace: RunWorkspace
    logs_dir: Path
    base_env: Mapping[str, str]
    secrets: Mapping[str, SecretValue]
    masker: Masker
    context: ExpressionContext
    options: RunOptions
    blobs: BlobStore
    outputs_dir: Path
    cache: CacheContext | None = None
    reuse: Mapping[str, ReusedJob] = field(default_factory=dict)
    previous_keys: Mapping[str, str] = field(default_factory=dict)
    version: str | None = None
    observer: RunObserver = field(default_factory=SilentObserver)
    results: dict[str, _JobResult] = field(default_factory=dict)
    _stop_new: str | None = None
    _cancelled: str | None = None
    _touched: list[str] = field(default_factory=list)
    _keys: dict[str, str] = field(default_factory=dict)  # cache keys, once looked up
    _seen: set[str] = field(default_factory=set)  # jobs offered to the cache
    _saves: set[asyncio.Task[CacheEntry]] = field(default_factory=set)

    async def run(self) -> runs.Run:
        """Run every job; return the finished run. Cancelling this task cancels the run."""
        for folder in (self.logs_dir / f"run-{self.run_id}", self.outputs_dir):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        poller = asyncio.create_task(self._watch_cancel_requests())
        running: dict[str, asyncio.Task[_JobResult]] = {}
        try:
            await self._drive(running)
        except asyncio.CancelledError as cancel:
            # A signal's cancel says which signal ("cancelled by SIGTERM").
            said = cancel.args[0] if cancel.args and isinstance(cancel.args[0], str) else None
            self._cancelled = self._cancelled or said or "interrupted"
            await asyncio.shield(self._cancel_all(running))
            await asyncio.shield(asyncio.to_thread(self._finish))
            raise
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await asyncio.shield(self.executor.close())
            await asyncio.shield(self._settle_saves())
        return await asyncio.to_thread(self._finish)

    async def _drive(self, running: dict[str, asyncio.Task[_JobResult]]) -> None:
        pending = [job.id for job in self.pipeline.jobs]
        while pending or running:
            if self._cancelled is not None and running:
                await self._cancel_all(running)
            # Jobs the cache holds are served first, all at once; their dependents may then be
            # ready and served in turn.
            while served := await self._serve_from_cache(await self._newly_ready(pending)):
                pending = [job_id for job_id in pending if job_id not in served]
            for job_id in list(pending):
                job = self.pipeline.job(job_id)
                if any(need not in self.results for need in job.needs):
                    continue
                decision = self._decide(job)
                if decision is not None:
                    pending.remove(job_id)
                    await self._record(job, decision, None)
                    continue
                if len(running) >= self.options.concurrency:
                    break
                pending.remove(job_id)
                running[job_id] = asyncio.create_task(self._run_job(job))
            if not running:
                if pending:  # nothing can start: only possible if needs are broken
                    for job_id in pending:
                        await self._record(
                            self.pipeline.job(job_id),
                            _JobResult("skipped", "its needs never finished"),
                            None,
                        )
                    pending.clear()
                break
            done, _ = await asyncio.wait(
                running.values(), timeout=CANCEL_POLL_S, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                job_id = next(k for k, v in running.items() if v is task)
                del running[job_id]
                result = task.result()
                self.results[job_id] = result
                job = self.pipeline.job(job_id)
                if (
                    self.options.fail_fast
                    and result.status == "failed"
                    and not job.allow_failure
                    and self._stop_new is None
                ):
                    self._stop_new = f"--fail-fast: {job_id} failed"
                    for other_id, other in running.items():
                        if self.pipeline.job(other_id).when != "always":
                            other.cancel()

    async def _newly_ready(self, pending: list[str]) -> list[JobSpec]:
        """The pending jobs that became ready to run since the last call; one that must not
        run (skipped or cancelled) is recorded and leaves ``pending``."""
        ready: list[JobSpec] = []
        for job_id in list(pending):
            job = self.pipeline.job(job_id)
            if job_id in self._seen or any(need not in self.results for need in job.needs):
                continue
            self._seen.add(job_id)
            decision = self._decide(job)
            if decision is None:
                ready.append(job)
                continue
            pending.remove(job_id)
            await self._record(job, decision, None)
        return ready

    async def _serve_from_cache(self, ready: Sequence[JobSpec]) -> set[str]:
        """Serve the ready jobs that the cache holds, all in one look-up and one write, without
        taking a place among the running jobs; the ids served. A miss keeps its key for the
        entry the job leaves when it passes."""
        if self.cache is None:
            return set()
        asked = [job for job in ready if job.cache and job.id not in self.reuse]
        if not asked:
            return set()
        started = time.monotonic()
        # Listing (and for a working tree, hashing) the files is done once per run, off the loop.
        inputs = await asyncio.to_thread(self._input_digests, asked)
        keys = {job.id: await self._cache_key(job, inputs[job.id]) for job in asked}
        self._keys.update(keys)
        served = await asyncio.to_thread(self._replay, asked, keys)
        took = time.monotonic() - started
        for job in asked:
            result = served.get(job.id)
            if result is None:
                continue
            assert result.cache_key is not None
            self._touched.append(result.cache_key)
            self.observer.job_finished(job, result.status, result.reason, took)
            self.results[job.id] = result
        return set(served)

    def _decide(self, job: JobSpec) -> _JobResult | None:
        """Why a ready job must not run (skipped or cancelled), or None to run it."""
        if self._cancelled is not None:
            return _JobResult("cancelled", f"the run was cancelled ({self._cancelled})")
        if job.when != "always":
            if self._stop_new is not None:
                return _JobResult("cancelled", self._stop_new)
            blocked = [need for need in job.needs if not self.results[need].satisfies]
            if blocked:
                need = self.results[blocked[0]]
                verb = "failed" if need.status == "failed" else f"was {need.status}"
                return _JobResult("skipped", f"{blocked[0]} {verb}")
        expression = job.expression()
        if expression is None:
            return None
        try:
            context = replace(self.context, matrix=dict(job.matrix), needs=self._needs_view(job))
            if expression.evaluate(context):
                return None
        except ExpressionError as error:
            return _JobResult("failed", f"if: {error.message}")
        return _JobResult("skipped", f"if: {job.condition} is false", satisfies=True)

    def _needs_view(self, job: JobSpec) -> dict[str, dict[str, dict[str, str]]]:
        view: dict[str, dict[str, dict[str, str]]] = {}
        for need in job.needs:
            result = self.results.get(need)
            name = self.pipeline.job(need).name
            entry = view.setdefault(name, {"result": {"status": ""}, "outputs": {}})
            if result is not None:
                entry["result"]["status"] = result.status
                entry["outputs"].update(result.outputs)
        return view

    async def _run_job(self, job: JobSpec) -> _JobResult:
        started = time.monotonic()
        result = _JobResult("failed", "no attempt ran")
        try:
            reused = self.reuse.get(job.id)
            if reused is not None:
                result = await asyncio.to_thread(self._take_over, job, reused)
                await self._record(job, result, time.monotonic() - started)
                return result
            key = self._keys.get(job.id)  # looked up, and missed, before it started
            for attempt in range(1, job.retry_max + 2):
                self.observer.job_started(job, attempt)
                outcome, produced = await self._attempt(job, attempt, key)
                if outcome.passed and produced is not None:
                    flaky = attempt > 1 or (
                        key is not None and self.previous_keys.get(job.id) == key
                    )
                    result = replace(produced, flaky=flaky)
                    break
                if outcome.passed:  # passed, but its artifacts or outputs were unusable
                    result = _JobResult("failed", outcome.message, satisfies=job.allow_failure)
                    break
                retry = attempt <= job.retry_max and outcome.failure_kind in job.retry_on
                if retry:
                    self.observer.job_retrying(job, attempt, outcome)
                    continue
                reason = outcome.message or outcome.status
                if job.allow_failure:
                    reason = f"{reason} (allowed to fail)"
                result = _JobResult("failed", reason, satisfies=job.allow_failure, cache_key=key)
                break
        except asyncio.CancelledError:
            result = _JobResult("cancelled", self._cancelled or self._stop_new or "cancelled")
            await asyncio.shield(self._record(job, result, time.monotonic() - started))
            return result
        await self._record(job, result, time.monotonic() - started)
        return result

    def _take_over(self, job: JobSpec, reused: ReusedJob) -> _JobResult:
        artifacts = (
            load_set(reused.artifacts_digest, self.blobs) if reused.artifacts_digest else None
        )
        return _JobResult(
            "passed",
            f"reused from run #{reused.run_id}",
            satisfies=True,
            artifacts=artifacts,
            artifacts_digest=reused.artifacts_digest,
            outputs=dict(reused.outputs),
        )

    async def _cache_key(self, job: JobSpec, inputs: str) -> str:
        assert self.cache is not None
        needs: dict[str, object] = {}
        for need in job.needs:
            result = self.results[need]
            needs[need] = {"artifacts": result.artifacts_digest, "outputs": result.outputs}
        tools: dict[str, str] = {}
        if job.tools:
            tools = await asyncio.to_thread(
                tool_versions, job.tools, self.workspace.checkout(), self.base_env
            )
        secrets = {name: self.secrets[name].reveal() for name in job.secrets}
        return self.cache.cache.job_key(
            job,
            project_dir=self.pipeline.project_dir,
            inputs=inputs,
            secrets=secrets,
            needs=needs,
            tools=tools,
            version=self.version,
        )

    def _input_digests(self, jobs: Sequence[JobSpec]) -> dict[str, str]:
        assert self.cache is not None
        index = self.cache.inputs()
        return {job.id: index.digest(job.inputs) for job in jobs}

    def _replay(self, jobs: Sequence[JobSpec], keys: Mapping[str, str]) -> dict[str, _JobResult]:
        """Lay out and record the jobs whose entries are whole (file-system and database work,
        off the loop); a damaged entry is dropped and its job runs, never a wrong result."""
        assert self.cache is not None
        entries = self.cache.cache.lookup(list(keys.values()))
        served: dict[str, _JobResult] = {}
        records: list[runs.CachedJob] = []
        for job in jobs:
            entry = entries.get(keys[job.id])
            if entry is None:
                continue
            try:
                artifacts = load_set(entry.artifacts, self.blobs) if entry.artifacts else None
                for file in artifacts.files if artifacts else ():
                    self.blobs.verify(file.digest)
                log_path = self._log_path(job, 1)
                log_path.parent.mkdir(parents=True, exist_ok=True)
                log_path.write_bytes(self.blobs.read_bytes(entry.log))  # verified; replayable
            except BlobError:
                self.cache.cache.forget(entry.key)
                continue
            summary = summarize_log(log_path)
            reason = f"cached from run #{entry.run_id}"
            records.append(
                runs.CachedJob(
                    job_id=job.id,
                    log_path=str(log_path),
                    log_bytes=summary.size_bytes,
                    log_lines=summary.lines,
                    log_index=summary.index,
                    reason=reason,
                    outputs=entry.outputs,
                    artifacts=entry.artifacts,
                    cache_key=entry.key,
                )
            )
            served[job.id] = _JobResult(
                "passed",
                reason,
                satisfies=True,
                artifacts=artifacts,
                artifacts_digest=entry.artifacts,
                outputs=dict(entry.outputs),
                cache_key=entry.key,
                cached=True,
            )
        runs.record_cached(self.store, self.run_id, records)
        return served

    def _open_attempt(self, job: JobSpec, attempt: int, log_path: Path) -> LogWriter:
        """Record the attempt and open its log (file-system and database work, off the loop)."""
        runs.attempt_started(self.store, self.run_id, job.id, attempt, str(log_path))
        return LogWriter(log_path, limit_bytes=job.log_limit, masker=self.masker)

    def _log_path(self, job: JobSpec, attempt: int) -> Path:
        return self.logs_dir / f"run-{self.run_id}" / f"{job_folder(job.id)}.attempt-{attempt}.log"

    async def _attempt(
        self, job: JobSpec, attempt: int, key: str | None
    ) -> tuple[AttemptOutcome, _JobResult | None]:
        log_path = self._log_path(job, attempt)
        writer = await asyncio.to_thread(self._open_attempt, job, attempt, log_path)
        outcome = AttemptOutcome("error", failure_kind="infrastructure")
        produced: _JobResult | None = None
        output_file = self.outputs_dir / f"{job_folder(job.id)}.attempt-{attempt}.env"
        try:
            try:
                folder = await asyncio.to_thread(self._prepare, job, writer)
            except (WorkspaceError, ArtifactError, BlobError) as error:
                writer.note(error.message)
                outcome = AttemptOutcome(
                    "error", failure_kind="infrastructure", message=error.message
                )
                return outcome, None
            workspace = folder / self.pipeline.project_dir if self.pipeline.project_dir else folder
            output_file.unlink(missing_ok=True)
            env = self._environment(job, attempt, folder)
            env["SHIPYARD_OUTPUT"] = str(output_file)
            request = AttemptRequest(
                run_id=self.run_id,
                job=job,
                attempt=attempt,
                workspace=workspace,
                env=env,
                log=writer,
            )
            outcome = await self.executor.execute(request)
            if outcome.passed:
                produced, problem = await asyncio.to_thread(
                    self._collect, job, workspace, output_file, writer, key
                )
                if problem is not None:
                    writer.note(problem)
                    outcome = AttemptOutcome(
                        "failed", exit_code=0, failure_kind="exit", message=problem
                    )
                    produced = None
            return outcome, produced
        except asyncio.CancelledError:
            outcome = AttemptOutcome(
                "cancelled",
                failure_kind="cancelled",
                message=self._cancelled or self._stop_new or "cancelled",
            )
            raise
        finally:
            summary = writer.close()
            await asyncio.shield(
                asyncio.to_thread(
                    runs.attempt_finished,
                    self.store,
                    self.run_id,
                    job.id,
                    attempt,
                    status=outcome.status,
                    exit_code=outcome.exit_code,
                    failure_kind=outcome.failure_kind,
                    message=outcome.message,
                    log_bytes=summary.size_bytes,
                    log_lines=summary.lines,
                    log_index=summary.index,
                )
            )
            if produced is not None and key is not None and self.cache is not None:
                # Filling the cache is off the critical path; the run waits for it at the end.
                save = asyncio.create_task(
                    asyncio.to_thread(
                        self.cache.cache.save,
                        key,
                        job,
                        self.run_id,
                        artifacts=produced.artifacts_digest,
                        artifacts_size=produced.artifacts.size if produced.artifacts else 0,
                        log_path=log_path,
                        outputs=produced.outputs,
                    )
                )
                self._saves.add(save)
                save.add_done_callback(self._saves.discard)

    def _prepare(self, job: JobSpec, writer: LogWriter) -> Path:
        """A fresh workspace for the job with the artifacts of its needs laid in."""
        folder = self.workspace.for_job(job.id)
        sets = [self.results[n].artifacts for n in job.needs if self.results[n].artifacts]
        if sets:
            root = folder / self.pipeline.project_dir if self.pipeline.project_dir else folder
            count = lay([s for s in sets if s is not None], root, self.blobs)
            writer.note(
                f"laid out {count} artifact file(s) from "
                f"{', '.join(s.job_id for s in sets if s is not None)}"
            )
        return folder

    def _collect(
        self, job: JobSpec, workspace: Path, output_file: Path, writer: LogWriter, key: str | None
    ) -> tuple[_JobResult, str | None]:
        """Artifacts and outputs of a job that passed; a problem fails the job."""
        try:
            outputs = {k: self.masker.mask(v) for k, v in read_outputs(output_file).items()}
        except OutputError as error:
            return _JobResult("failed", error.message), error.message
        artifacts: ArtifactSet | None = None
        digest: str | None = None
        if job.artifacts:
            base = workspace / job.workdir if job.workdir else workspace
            try:
                collected = collect(job.id, workspace, base, job.artifacts, self.blobs)
            except (ArtifactError, BlobError) as error:
                return _JobResult("failed", error.message), error.message
            if collected.unmatched:
                missing = ", ".join(collected.unmatched)
                if job.artifacts_missing == "fail":
                    problem = f"artifact pattern(s) matched no file: {missing}"
                    return _JobResult("failed", problem), problem
                writer.note(f"warning: artifact pattern(s) matched no file: {missing}")
            artifacts = collected.artifacts
            digest = store_set(artifacts, self.blobs)
            writer.note(f"stored {len(artifacts.files)} artifact file(s), {artifacts.size} bytes")
        return _JobResult(
            "passed",
            satisfies=True,
            artifacts=artifacts,
            artifacts_digest=digest,
            outputs=outputs,
            cache_key=key,
        ), None

    def _environment(self, job: JobSpec, attempt: int, folder: Path) -> dict[str, str]:
        env = dict(self.base_env)
        ctx = self.context
        env.update(
            {
                "CI": "true",
                "SHIPYARD": "true",
                "SHIPYARD_RUN_ID": str(self.run_id),
                "SHIPYARD_JOB": job.id,
                "SHIPYARD_JOB_NAME": job.name,
                "SHIPYARD_ATTEMPT": str(attempt),
                "SHIPYARD_COMMIT": ctx.commit,
                "SHIPYARD_BRANCH": ctx.branch or "",
                "SHIPYARD_TAG": ctx.tag or "",
                "SHIPYARD_EVENT": ctx.event,
                "SHIPYARD_PROJECT": self.pipeline.project,
                "SHIPYARD_WORKSPACE": str(folder),
            }
        )
        if self.version:
            env["SHIPYARD_VERSION"] = self.version
        for key, value in job.matrix.items():
            env[f"SHIPYARD_MATRIX_{_env_key(key)}"] = value
        for need in job.needs:
            result = self.results.get(need)
            if result is not None and result.outputs:
                env.update(output_variables(self.pipeline.job(need).name, result.outputs))
        env.update(job.env)
        for name in job.secrets:
            env[name] = self.secrets[name].reveal()
        return env

    async def _record(self, job: JobSpec, result: _JobResult, duration_s: float | None) -> None:
        """Store a job's final state, then let its dependents see it (in that order)."""
        self.observer.job_finished(job, result.status, result.reason, duration_s)
        await asyncio.to_thread(
            runs.job_finished,
            self.store,
            self.run_id,
            job.id,
            result.status,
            result.reason,
            outputs=result.outputs,
            artifacts=result.artifacts_digest,
            cache_key=result.cache_key,
            cached=result.cached,
            flaky=result.flaky,
        )
        self.results[job.id] = result

    async def _settle_saves(self) -> None:
        """Wait for cache entries still being written; a blob that cannot be stored (a full
        disk) only costs a later cache hit, so it does not fail the run."""
        while self._saves:
            for outcome in await asyncio.gather(*list(self._saves), return_exceptions=True):
                if isinstance(outcome, BaseException) and not isinstance(outcome, BlobError):
                    raise outcome

    async def _cancel_all(self, running: dict[str, asyncio.Task[_JobResult]]) -> None:
        for task in running.values():
            task.cancel()
        if running:
            await asyncio.wait(running.values())
        for job_id, task in list(running.items()):
            if not task.cancelled() and task.exception() is None:
                self.results[job_id] = task.result()
        running.clear()

    async def _watch_cancel_requests(self) -> None:
        while self._cancelled is None:
            await asyncio.sleep(CANCEL_POLL_S)
            requested = await asyncio.to_thread(self._cancel_requested)
            if requested:
                self._cancelled = "cancel requested with 'shipyard runs cancel'"

    def _cancel_requested(self) -> bool:
        with self.store.read() as conn:
            return runs.cancel_requested(conn, self.run_id)

    def _finish(self) -> runs.Run:
        if self.cache is not None:
            self.cache.cache.touch(self._touched)
            self.cache.cache.evict()
        failed = [
            job_id
            for job_id, r in self.results.items()
            if r.status == "failed" and not self.pipeline.job(job_id).allow_failure
        ]
        if self._cancelled is not None:
            return runs.finish_run(
                self.store, self.run_id, "cancelled", actor=self.actor, message=self._cancelled
            )
        if failed:
            message = f"{len(failed)} job(s) failed: {', '.join(failed[:5])}"
            return runs.finish_run(
                self.store, self.run_id, "failed", actor=self.actor, message=message
            )
        return runs.finish_run(self.store, self.run_id, "passed", actor=self.actor)


def _env_key(key: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in key).upper()
