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
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from shipyard.ci import runs
from shipyard.ci.executors import AttemptOutcome, AttemptRequest, Executor
from shipyard.ci.expressions import ExpressionContext, ExpressionError
from shipyard.ci.logs import LogWriter
from shipyard.ci.model import JobSpec, PipelineSpec
from shipyard.ci.secrets import Masker, SecretValue
from shipyard.ci.workspace import RunWorkspace, WorkspaceError, job_folder
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
    observer: RunObserver = field(default_factory=SilentObserver)
    results: dict[str, _JobResult] = field(default_factory=dict)
    _stop_new: str | None = None
    _cancelled: str | None = None

    async def run(self) -> runs.Run:
        """Run every job; return the finished run. Cancelling this task cancels the run."""
        poller = asyncio.create_task(self._watch_cancel_requests())
        running: dict[str, asyncio.Task[_JobResult]] = {}
        try:
            await self._drive(running)
        except asyncio.CancelledError:
            self._cancelled = self._cancelled or "interrupted"
            await asyncio.shield(self._cancel_all(running))
            await asyncio.shield(asyncio.to_thread(self._finish))
            raise
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        return await asyncio.to_thread(self._finish)

    async def _drive(self, running: dict[str, asyncio.Task[_JobResult]]) -> None:
        pending = [job.id for job in self.pipeline.jobs]
        while pending or running:
            if self._cancelled is not None and running:
                await self._cancel_all(running)
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
            view[name] = {"result": {"status": result.status if result else ""}, "outputs": {}}
        return view

    async def _run_job(self, job: JobSpec) -> _JobResult:
        started = time.monotonic()
        await asyncio.to_thread(runs.job_started, self.store, self.run_id, job.id)
        result = _JobResult("failed", "no attempt ran")
        try:
            for attempt in range(1, job.retry_max + 2):
                self.observer.job_started(job, attempt)
                outcome = await self._attempt(job, attempt)
                if outcome.passed:
                    result = _JobResult("passed", satisfies=True)
                    break
                retry = attempt <= job.retry_max and outcome.failure_kind in job.retry_on
                if retry:
                    self.observer.job_retrying(job, attempt, outcome)
                    continue
                reason = outcome.message or outcome.status
                if job.allow_failure:
                    reason = f"{reason} (allowed to fail)"
                result = _JobResult("failed", reason, satisfies=job.allow_failure)
                break
        except asyncio.CancelledError:
            result = _JobResult("cancelled", self._cancelled or self._stop_new or "cancelled")
            await asyncio.shield(self._record(job, result, time.monotonic() - started))
            return result
        await self._record(job, result, time.monotonic() - started)
        return result

    async def _attempt(self, job: JobSpec, attempt: int) -> AttemptOutcome:
        log_path = (
            self.logs_dir / f"run-{self.run_id}" / job_folder(job.id) / (f"attempt-{attempt}.log")
        )
        await asyncio.to_thread(
            runs.attempt_started, self.store, self.run_id, job.id, attempt, str(log_path)
        )
        writer = LogWriter(log_path, limit_bytes=job.log_limit, masker=self.masker)
        outcome = AttemptOutcome("error", failure_kind="infrastructure")
        try:
            try:
                folder = await asyncio.to_thread(self.workspace.for_job, job.id)
            except WorkspaceError as error:
                writer.note(error.message)
                outcome = AttemptOutcome(
                    "error", failure_kind="infrastructure", message=error.message
                )
                return outcome
            workspace = folder / self.pipeline.project_dir if self.pipeline.project_dir else folder
            request = AttemptRequest(
                run_id=self.run_id,
                job=job,
                attempt=attempt,
                workspace=workspace,
                env=self._environment(job, attempt, folder),
                log=writer,
            )
            outcome = await self.executor.execute(request)
            return outcome
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
        for key, value in job.matrix.items():
            env[f"SHIPYARD_MATRIX_{_env_key(key)}"] = value
        env.update(job.env)
        for name in job.secrets:
            env[name] = self.secrets[name].reveal()
        return env

    async def _record(self, job: JobSpec, result: _JobResult, duration_s: float | None) -> None:
        self.results[job.id] = result
        self.observer.job_finished(job, result.status, result.reason, duration_s)
        await asyncio.to_thread(
            runs.job_finished, self.store, self.run_id, job.id, result.status, result.reason
        )

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
