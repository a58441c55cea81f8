"""Runs, jobs and attempts in the store: the records every other process reads.

Each transition is a small function that checks it is legal and writes in one short
transaction; run start, finish and cancel are audit events and outbox events. Nothing here
starts a process or reads a log file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Connection, bindparam, func, select, update

from shipyard.ci.model import JobSpec
from shipyard.core import audit, outbox
from shipyard.core.errors import NotFoundError
from shipyard.core.store import Store
from shipyard.core.store.tables import job_attempts, run_jobs, runs

RunStatus = Literal["queued", "running", "passed", "failed", "cancelled"]
JobStatus = Literal["queued", "running", "passed", "failed", "skipped", "cancelled"]
FINISHED_RUN = ("passed", "failed", "cancelled")
FINISHED_JOB = ("passed", "failed", "skipped", "cancelled")


@dataclass(frozen=True)
class Run:
    """One execution of a pipeline on one commit."""

    id: int
    project: str
    commit: str
    ref: str
    branch: str | None
    tag: str | None
    event: str
    status: str
    actor: str
    workspace: str
    config_digest: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested_at: datetime | None
    message: str | None
    rerun_of: int | None = None
    superseded_by: int | None = None
    driver_pid: int | None = None
    driver_host: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the run has reached a final status."""
        return self.status in FINISHED_RUN

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to finish (or to now while running)."""
        if self.started_at is None:
            return None
        end = self.finished_at or datetime.now(UTC)
        return (end - self.started_at).total_seconds()

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "id": self.id,
            "project": self.project,
            "commit": self.commit,
            "ref": self.ref,
            "branch": self.branch,
            "tag": self.tag,
            "event": self.event,
            "status": self.status,
            "actor": self.actor,
            "workspace": self.workspace,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_s": self.duration_s,
            "message": self.message,
            "rerun_of": self.rerun_of,
            "superseded_by": self.superseded_by,
            "driver_pid": self.driver_pid,
            "driver_host": self.driver_host,
        }


@dataclass(frozen=True)
class RunJob:
    """One job of a run and where it stands."""

    run_id: int
    job_id: str
    position: int
    name: str
    spec: JobSpec
    status: str
    reason: str | None
    allow_failure: bool
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    outputs: Mapping[str, str]
    artifacts: str | None
    cache_key: str | None
    cached: bool
    flaky: bool

    @property
    def duration_s(self) -> float | None:
        """Seconds the job ran (across attempts), or None if it never started."""
        if self.started_at is None:
            return None
        end = self.finished_at or datetime.now(UTC)
        return (end - self.started_at).total_seconds()

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "job": self.job_id,
            "name": self.name,
            "matrix": dict(self.spec.matrix),
            "status": self.status,
            "reason": self.reason,
            "allow_failure": self.allow_failure,
            "attempts": self.attempts,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_s": self.duration_s,
            "outputs": dict(self.outputs),
            "artifacts": self.artifacts,
            "cache_key": self.cache_key,
            "cached": self.cached,
            "flaky": self.flaky,
        }


@dataclass(frozen=True)
class Attempt:
    """One try at running a job, and where its log is."""

    run_id: int
    job_id: str
    attempt: int
    status: str
    exit_code: int | None
    failure_kind: str | None
    message: str | None
    started_at: datetime
    finished_at: datetime | None
    log_path: str
    log_bytes: int
    log_lines: int
    log_index: tuple[int, ...]

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "attempt": self.attempt,
            "status": self.status,
            "exit_code": self.exit_code,
            "failure_kind": self.failure_kind,
            "message": self.message,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "log": self.log_path,
            "log_bytes": self.log_bytes,
            "log_lines": self.log_lines,
        }


def create_run(
    store: Store,
    *,
    project: str,
    commit: str,
    ref: str,
    branch: str | None,
    tag: str | None,
    event: str,
    actor: str,
    workspace: str,
    config_digest: str,
    jobs: Sequence[JobSpec],
    driver_pid: int | None,
    driver_host: str | None = None,
    rerun_of: int | None = None,
) -> Run:
    """Record a new run with all its jobs queued; an audit and an outbox event go with it."""
    now = datetime.now(UTC)
    with store.write() as conn:
        result = conn.execute(
            runs.insert().values(
                project=project,
                commit_sha=commit,
                ref=ref,
                branch=branch,
                tag=tag,
                event=event,
                status="running",
                actor=actor,
                workspace=workspace,
                config_digest=config_digest,
                created_at=now,
                started_at=now,
                driver_pid=driver_pid,
                driver_host=driver_host,
                rerun_of=rerun_of,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        run_id = int(key[0])
        if jobs:
            conn.execute(
                run_jobs.insert(),
                [
                    {
                        "run_id": run_id,
                        "job_id": job.id,
                        "position": index,
                        "name": job.name,
                        "spec": json.dumps(job.to_json(), sort_keys=True),
                        "status": "queued",
                        "allow_failure": job.allow_failure,
                        "attempts": 0,
                    }
                    for index, job in enumerate(jobs)
                ],
            )
        details = {
            "project": project,
            "commit": commit,
            "ref": ref,
            "event": event,
            "jobs": len(jobs),
        }
        audit.append(
            conn, actor=actor, action="run.started", subject=f"run:{run_id}", details=details
        )
        outbox.append(conn, "run.started", f"run:{run_id}", details)
        return _get_run(conn, run_id)


def get_run(store: Store, run_id: int) -> Run:
    """The run with this id; NotFoundError names it when there is none."""
    with store.read() as conn:
        return _get_run(conn, run_id)


def latest_run_id(store: Store) -> int:
    """The newest run's id; NotFoundError when there are no runs yet."""
    with store.read() as conn:
        newest = conn.execute(select(func.max(runs.c.id))).scalar()
    if newest is None:
        raise NotFoundError("there are no runs yet", hint="start one with 'shipyard run'")
    return int(newest)


def list_runs(
    store: Store,
    *,
    limit: int = 20,
    commit: str | None = None,
    statuses: Sequence[str] | None = None,
) -> list[Run]:
    """Runs, newest first."""
    query = select(runs).order_by(runs.c.id.desc()).limit(limit)
    if commit:
        query = query.where(runs.c.commit_sha == commit)
    if statuses:
        query = query.where(runs.c.status.in_(list(statuses)))
    with store.read() as conn:
        return [_to_run(row) for row in conn.execute(query)]


def jobs_of(store: Store, run_id: int) -> list[RunJob]:
    """The jobs of a run in pipeline order."""
    with store.read() as conn:
        rows = conn.execute(
            select(run_jobs).where(run_jobs.c.run_id == run_id).order_by(run_jobs.c.position)
        )
        return [_to_job(row) for row in rows]


def attempts_of(store: Store, run_id: int, job_id: str | None = None) -> list[Attempt]:
    """Attempts of a run (or of one job), in job order then attempt order."""
    query = (
        select(job_attempts)
        .join(
            run_jobs,
            (run_jobs.c.run_id == job_attempts.c.run_id)
            & (run_jobs.c.job_id == job_attempts.c.job_id),
        )
        .where(job_attempts.c.run_id == run_id)
        .order_by(run_jobs.c.position, job_attempts.c.attempt)
    )
    if job_id is not None:
        query = query.where(job_attempts.c.job_id == job_id)
    with store.read() as conn:
        return [_to_attempt(row) for row in conn.execute(query)]


def job_finished(
    store: Store,
    run_id: int,
    job_id: str,
    status: JobStatus,
    reason: str | None = None,
    *,
    outputs: Mapping[str, str] | None = None,
    artifacts: str | None = None,
    cache_key: str | None = None,
    cached: bool = False,
    flaky: bool = False,
) -> None:
    """Record a job's final status and results, and why when it did not pass."""
    if status not in FINISHED_JOB:
        raise ValueError(f"{status!r} is not a final job status")
    with store.write() as conn:
        conn.execute(
            update(run_jobs)
            .where(run_jobs.c.run_id == run_id, run_jobs.c.job_id == job_id)
            .values(
                status=status,
                reason=reason,
                finished_at=datetime.now(UTC),
                outputs=json.dumps(dict(outputs or {}), sort_keys=True),
                artifacts=artifacts,
                cache_key=cache_key,
                cached=cached,
                flaky=flaky,
            )
        )


@dataclass(frozen=True)
class CachedJob:
    """A job served from the cache, as recorded: its replayed log and what it left behind."""

    job_id: str
    log_path: str
    log_bytes: int
    log_lines: int
    log_index: Sequence[int]
    reason: str
    outputs: Mapping[str, str]
    artifacts: str | None
    cache_key: str


def record_cached(store: Store, run_id: int, served: Sequence[CachedJob]) -> None:
    """Record jobs served from the cache: for each, one passed attempt and the job, all of
    them in one write."""
    if not served:
        return
    now = datetime.now(UTC)
    with store.write() as conn:
        conn.execute(
            _INSERT_ATTEMPT,
            [
                {
                    "run_id": run_id,
                    "job_id": job.job_id,
                    "attempt": 1,
                    "status": "passed",
                    "exit_code": 0,
                    "message": job.reason,
                    "started_at": now,
                    "finished_at": now,
                    "log_path": job.log_path,
                    "log_bytes": job.log_bytes,
                    "log_lines": job.log_lines,
                    "log_index": json.dumps(list(job.log_index)),
                }
                for job in served
            ],
        )
        conn.execute(
            _FINISH_CACHED_JOB,
            [
                {
                    "the_run": run_id,
                    "the_job": job.job_id,
                    "status": "passed",
                    "reason": job.reason,
                    "attempts": 1,
                    "started_at": now,
                    "finished_at": now,
                    "outputs": json.dumps(dict(job.outputs), sort_keys=True),
                    "artifacts": job.artifacts,
                    "cache_key": job.cache_key,
                    "cached": True,
                }
                for job in served
            ],
        )


# Built once: building statements costs more than running them (parameters are bound at
# execution).
_INSERT_ATTEMPT = job_attempts.insert()
_FINISH_CACHED_JOB = update(run_jobs).where(
    run_jobs.c.run_id == bindparam("the_run"), run_jobs.c.job_id == bindparam("the_job")
)


def attempt_started(store: Store, run_id: int, job_id: str, attempt: int, log_path: str) -> None:
    """Record that an attempt began (and so its job) and where its log is written."""
    with store.write() as conn:
        conn.execute(
            job_attempts.insert().values(
                run_id=run_id,
                job_id=job_id,
                attempt=attempt,
                status="running",
                started_at=datetime.now(UTC),
                log_path=log_path,
                log_bytes=0,
                log_lines=0,
                log_index="[]",
            )
        )
        conn.execute(
            update(run_jobs)
            .where(run_jobs.c.run_id == run_id, run_jobs.c.job_id == job_id)
            .values(
                attempts=attempt,
                status="running",
                started_at=func.coalesce(run_jobs.c.started_at, datetime.now(UTC)),
            )
        )


def attempt_finished(
    store: Store,
    run_id: int,
    job_id: str,
    attempt: int,
    *,
    status: str,
    exit_code: int | None,
    failure_kind: str | None,
    message: str | None,
    log_bytes: int,
    log_lines: int,
    log_index: Sequence[int],
) -> None:
    """Record how an attempt ended and the size and index of its log."""
    with store.write() as conn:
        conn.execute(
            update(job_attempts)
            .where(
                job_attempts.c.run_id == run_id,
                job_attempts.c.job_id == job_id,
                job_attempts.c.attempt == attempt,
            )
            .values(
                status=status,
                exit_code=exit_code,
                failure_kind=failure_kind,
                message=message,
                finished_at=datetime.now(UTC),
                log_bytes=log_bytes,
                log_lines=log_lines,
                log_index=json.dumps(list(log_index)),
            )
        )


def finish_run(
    store: Store, run_id: int, status: RunStatus, *, actor: str, message: str | None = None
) -> Run:
    """Record a run's final status; an audit and an outbox event go with it."""
    if status not in FINISHED_RUN:
        raise ValueError(f"{status!r} is not a final run status")
    with store.write() as conn:
        current = _get_run(conn, run_id)
        if current.finished:
            return current
        now = datetime.now(UTC)
        conn.execute(
            update(run_jobs)
            .where(run_jobs.c.run_id == run_id, run_jobs.c.status.in_(["queued", "running"]))
            .values(
                status="cancelled", finished_at=now, reason="the run ended before this job finished"
            )
        )
        conn.execute(
            update(runs)
            .where(runs.c.id == run_id)
            .values(status=status, finished_at=now, message=message)
        )
        action = "run.cancelled" if status == "cancelled" else "run.finished"
        details = {"status": status, "commit": current.commit, "message": message}
        audit.append(conn, actor=actor, action=action, subject=f"run:{run_id}", details=details)
        outbox.append(conn, action, f"run:{run_id}", details)
        return _get_run(conn, run_id)


def unfinished_runs(store: Store) -> list[Run]:
    """Runs still queued or running, oldest first."""
    query = select(runs).where(runs.c.status.in_(["queued", "running"])).order_by(runs.c.id)
    with store.read() as conn:
        return [_to_run(row) for row in conn.execute(query)]


def driver_lost(store: Store, run_id: int, *, actor: str, message: str) -> Run | None:
    """Record that the process driving a run is gone: the run and the jobs it was running
    failed, the jobs it had not started are cancelled. None if the run had finished already."""
    with store.write() as conn:
        current = _get_run(conn, run_id)
        if current.finished:
            return None
        now = datetime.now(UTC)
        conn.execute(
            update(job_attempts)
            .where(job_attempts.c.run_id == run_id, job_attempts.c.status == "running")
            .values(
                status="failed",
                failure_kind="infrastructure",
                message=message,
                finished_at=now,
            )
        )
        conn.execute(
            update(run_jobs)
            .where(run_jobs.c.run_id == run_id, run_jobs.c.status == "running")
            .values(status="failed", finished_at=now, reason=message)
        )
        conn.execute(
            update(run_jobs)
            .where(run_jobs.c.run_id == run_id, run_jobs.c.status == "queued")
            .values(status="cancelled", finished_at=now, reason=message)
        )
        conn.execute(
            update(runs)
            .where(runs.c.id == run_id)
            .values(status="failed", finished_at=now, message=message)
        )
        details = {"status": "failed", "commit": current.commit, "message": message}
        audit.append(
            conn, actor=actor, action="run.driver_lost", subject=f"run:{run_id}", details=details
        )
        outbox.append(conn, "run.finished", f"run:{run_id}", details)
        return _get_run(conn, run_id)


def request_cancel(store: Store, run_id: int, *, actor: str) -> Run:
    """Ask the process driving a run to cancel it (it polls for this)."""
    with store.write() as conn:
        run = _get_run(conn, run_id)
        if run.finished:
            return run
        conn.execute(
            update(runs)
            .where(runs.c.id == run_id, runs.c.cancel_requested_at.is_(None))
            .values(cancel_requested_at=datetime.now(UTC))
        )
        audit.append(conn, actor=actor, action="run.cancel_requested", subject=f"run:{run_id}")
        return _get_run(conn, run_id)


def supersede(store: Store, *, project: str, branch: str, newer: int, actor: str) -> list[int]:
    """Ask every older unfinished run of ``project`` on ``branch`` to cancel; returns their ids."""
    with store.write() as conn:
        older = [
            int(row.id)
            for row in conn.execute(
                select(runs.c.id).where(
                    runs.c.project == project,
                    runs.c.branch == branch,
                    runs.c.id < newer,
                    runs.c.status.in_(["queued", "running"]),
                )
            )
        ]
        now = datetime.now(UTC)
        for run_id in older:
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(cancel_requested_at=now, superseded_by=newer)
            )
            audit.append(
                conn,
                actor=actor,
                action="run.superseded",
                subject=f"run:{run_id}",
                details={"by": newer, "branch": branch},
            )
        return older


def flaky_jobs(store: Store, *, limit: int = 50) -> list[dict[str, Any]]:
    """Jobs recorded as flaky (failed, then passed with the same cache key), newest first."""
    query = (
        select(
            run_jobs.c.name,
            run_jobs.c.job_id,
            run_jobs.c.run_id,
            run_jobs.c.attempts,
            run_jobs.c.finished_at,
            runs.c.commit_sha,
        )
        .join(runs, runs.c.id == run_jobs.c.run_id)
        .where(run_jobs.c.flaky.is_(True))
        .order_by(run_jobs.c.run_id.desc())
        .limit(limit)
    )
    with store.read() as conn:
        return [
            {
                "job": row.job_id,
                "name": row.name,
                "run": int(row.run_id),
                "attempts": int(row.attempts),
                "commit": row.commit_sha,
                "finished_at": _iso(row.finished_at),
            }
            for row in conn.execute(query)
        ]


def cancel_requested(conn: Connection, run_id: int) -> bool:
    """Whether somebody asked for this run to be cancelled."""
    value = conn.execute(select(runs.c.cancel_requested_at).where(runs.c.id == run_id)).scalar()
    return value is not None


def _get_run(conn: Connection, run_id: int) -> Run:
    row = conn.execute(select(runs).where(runs.c.id == run_id)).first()
    if row is None:
        raise NotFoundError(f"there is no run {run_id}", hint="list runs with 'shipyard runs list'")
    return _to_run(row)


def _to_run(row: Any) -> Run:
    return Run(
        id=int(row.id),
        project=row.project,
        commit=row.commit_sha,
        ref=row.ref,
        branch=row.branch,
        tag=row.tag,
        event=row.event,
        status=row.status,
        actor=row.actor,
        workspace=row.workspace,
        config_digest=row.config_digest,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        cancel_requested_at=row.cancel_requested_at,
        message=row.message,
        rerun_of=row.rerun_of,
        superseded_by=row.superseded_by,
        driver_pid=row.driver_pid,
        driver_host=row.driver_host,
    )


def _to_job(row: Any) -> RunJob:
    return RunJob(
        run_id=int(row.run_id),
        job_id=row.job_id,
        position=int(row.position),
        name=row.name,
        spec=JobSpec.from_json(json.loads(row.spec)),
        status=row.status,
        reason=row.reason,
        allow_failure=bool(row.allow_failure),
        attempts=int(row.attempts),
        started_at=row.started_at,
        finished_at=row.finished_at,
        outputs=json.loads(row.outputs or "{}"),
        artifacts=row.artifacts,
        cache_key=row.cache_key,
        cached=bool(row.cached),
        flaky=bool(row.flaky),
    )


def _to_attempt(row: Any) -> Attempt:
    return Attempt(
        run_id=int(row.run_id),
        job_id=row.job_id,
        attempt=int(row.attempt),
        status=row.status,
        exit_code=row.exit_code,
        failure_kind=row.failure_kind,
        message=row.message,
        started_at=row.started_at,
        finished_at=row.finished_at,
        log_path=row.log_path,
        log_bytes=int(row.log_bytes),
        log_lines=int(row.log_lines),
        log_index=tuple(json.loads(row.log_index)),
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
