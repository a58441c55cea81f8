"""Gate runs and results in the store, and overrides of failed gates.

A run is written in one transaction with its results and an audit and outbox event per result
(``gate.passed``/``warned``/``failed``); an override needs a reason, applies only to a failure
and is its own audited ``gate.overridden`` transition. Nothing here runs a gate.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select, update

from shipyard.core import audit, outbox
from shipyard.core.blobs import BlobStore
from shipyard.core.errors import ArgumentError, NotFoundError, excerpt
from shipyard.core.store import Store
from shipyard.core.store.tables import gate_results, gate_runs, releases
from shipyard.gates.interface import Finding, GateKind, GateResult, Status

RunStatus = str
"""A gate run's overall status: ``pass``, ``warn``, ``fail`` or ``overridden``."""

_EVENT_FOR = {Status.PASS: "gate.passed", Status.WARN: "gate.warned", Status.FAIL: "gate.failed"}


@dataclass(frozen=True)
class GateRun:
    """One judgement of a subject (a scan, a release candidate, a deployment) by its gates."""

    id: int
    subject: str
    kind: str
    project: str
    release: str | None
    environment: str | None
    commit: str | None
    actor: str
    status: RunStatus
    started_at: datetime
    finished_at: datetime
    results: tuple[GateResult, ...]

    @property
    def blocked(self) -> bool:
        """Whether a gate failed and was not overridden."""
        return any(result.blocks for result in self.results)

    def result(self, gate: str) -> GateResult:
        """The result of one gate; ``NotFoundError`` if it did not run."""
        for result in self.results:
            if result.gate == gate:
                return result
        raise NotFoundError(
            f"gate run #{self.id} has no result for {gate!r}",
            hint=f"its gates are: {', '.join(r.gate for r in self.results) or 'none'}",
        )

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "id": self.id,
            "subject": self.subject,
            "kind": self.kind,
            "project": self.project,
            "release": self.release,
            "environment": self.environment,
            "commit": self.commit,
            "actor": self.actor,
            "status": self.status,
            "blocked": self.blocked,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "results": [result.as_json() for result in self.results],
        }


def run_status(results: Sequence[GateResult]) -> RunStatus:
    """The overall status: fail if any failure stands, overridden if all were overridden."""
    if any(result.blocks for result in results):
        return "fail"
    if any(result.status is Status.FAIL for result in results):
        return "overridden"
    return Status.worst([result.status for result in results]).value


def record_gate_run(
    store: Store,
    *,
    kind: GateKind,
    project: str,
    actor: str,
    results: Sequence[GateResult],
    started_at: datetime,
    finished_at: datetime,
    subject: str | None = None,
    release: str | None = None,
    environment: str | None = None,
    commit: str | None = None,
    overrides: Mapping[str, str] | None = None,
) -> GateRun:
    """Store a run and its results (``scan:<id>`` when no subject is given), then overrides."""
    with store.write() as conn:
        inserted = conn.execute(
            gate_runs.insert().values(
                subject=subject or "scan:pending",
                kind=kind,
                project=project,
                release=release,
                environment=environment,
                commit_sha=commit,
                actor=actor,
                status=run_status(results),
                started_at=started_at,
                finished_at=finished_at,
            )
        ).inserted_primary_key
        assert inserted is not None
        run_id = int(inserted[0])
        if subject is None:
            subject = f"scan:{run_id}"
            conn.execute(update(gate_runs).where(gate_runs.c.id == run_id).values(subject=subject))
        for result in results:
            conn.execute(
                gate_results.insert().values(
                    run_id=run_id,
                    gate=result.gate,
                    status=result.status.value,
                    summary=result.summary,
                    duration_s=result.duration_s,
                    findings=json.dumps(
                        [finding.as_json() for finding in result.findings],
                        ensure_ascii=False,
                        default=str,
                    ),
                )
            )
            details = {
                "gate_run": run_id,
                "gate": result.gate,
                "kind": kind,
                "status": result.status.value,
                "summary": result.summary,
                "blocking_findings": sorted({f.id for f in result.findings if f.blocking}),
                "release": release,
                "environment": environment,
            }
            action = _EVENT_FOR[result.status]
            audit.append(conn, actor=actor, action=action, subject=subject, details=details)
            outbox.append(conn, action, subject, details)
        for gate, reason in (overrides or {}).items():
            _override(conn, run_id, gate, actor=actor, reason=reason, missing_ok=True)
        return _load(conn, run_id)


def override_gate(store: Store, run_id: int, gate: str, *, actor: str, reason: str) -> GateRun:
    """Let a failed gate's result through, with a reason; an audited transition."""
    with store.write() as conn:
        _override(conn, run_id, gate, actor=actor, reason=reason, missing_ok=False)
        return _load(conn, run_id)


def get_gate_run(store: Store, run_id: int) -> GateRun:
    """One gate run with its results."""
    with store.read() as conn:
        return _load(conn, run_id)


def gate_runs_of(store: Store, subject: str) -> list[GateRun]:
    """Every gate run of a subject (``release:1.2.0``), oldest first."""
    with store.read() as conn:
        ids = conn.execute(
            select(gate_runs.c.id).where(gate_runs.c.subject == subject).order_by(gate_runs.c.id)
        ).scalars()
        return [_load(conn, int(run_id)) for run_id in list(ids)]


def _override(
    conn: Connection, run_id: int, gate: str, *, actor: str, reason: str, missing_ok: bool
) -> None:
    if not reason.strip():
        raise ArgumentError(
            f"overriding {gate!r} needs a reason", hint='add --reason "why this may ship"'
        )
    run = _load(conn, run_id)
    try:
        result = run.result(gate)
    except NotFoundError:
        if missing_ok:
            return
        raise
    if result.status is not Status.FAIL:
        if missing_ok:
            return
        raise ArgumentError(
            f"gate {gate!r} of run #{run_id} did not fail ({result.status.value}); "
            "there is nothing to override"
        )
    if result.overridden:
        raise ArgumentError(
            f"gate {gate!r} of run #{run_id} was already overridden by {result.overridden_by}"
        )
    conn.execute(
        update(gate_results)
        .where(gate_results.c.run_id == run_id, gate_results.c.gate == gate)
        .values(overridden_by=actor, override_reason=reason, overridden_at=datetime.now(UTC))
    )
    results = tuple(
        replace(r, overridden_by=actor, override_reason=reason) if r.gate == gate else r
        for r in run.results
    )
    conn.execute(
        update(gate_runs).where(gate_runs.c.id == run_id).values(status=run_status(results))
    )
    details = {
        "gate_run": run_id,
        "gate": gate,
        "reason": reason,
        "blocking_findings": sorted({f.id for f in result.findings if f.blocking}),
        "release": run.release,
        "environment": run.environment,
    }
    audit.append(conn, actor=actor, action="gate.overridden", subject=run.subject, details=details)
    outbox.append(conn, "gate.overridden", run.subject, details)


def _load(conn: Connection, run_id: int) -> GateRun:
    row = conn.execute(select(gate_runs).where(gate_runs.c.id == run_id)).first()
    if row is None:
        raise NotFoundError(f"there is no gate run #{run_id}")
    results = tuple(
        GateResult(
            gate=str(r.gate),
            status=Status(r.status),
            findings=tuple(Finding.from_json(item) for item in json.loads(r.findings)),
            summary=str(r.summary),
            duration_s=float(r.duration_s),
            overridden_by=r.overridden_by,
            override_reason=r.override_reason,
        )
        for r in conn.execute(
            select(gate_results)
            .where(gate_results.c.run_id == run_id)
            .order_by(gate_results.c.gate)
        )
    )
    return GateRun(
        id=int(row.id),
        subject=str(row.subject),
        kind=str(row.kind),
        project=str(row.project),
        release=row.release,
        environment=row.environment,
        commit=row.commit_sha,
        actor=str(row.actor),
        status=str(row.status),
        started_at=row.started_at,
        finished_at=row.finished_at,
        results=results,
    )


def release_workspace(
    store: Store, blobs: BlobStore, project: str, version: str, into: Path
) -> tuple[Path, str]:
    """Unpack a recorded release's bundle into ``into``; returns the tree and its commit.

    Reads the release record and the bundle blob through ``core`` (the gates never import the
    release pillar); the bundle's digest is verified on the way.
    """
    with store.read() as conn:
        row = conn.execute(
            select(releases.c.bundle, releases.c.commit_sha, releases.c.status).where(
                releases.c.project == project, releases.c.version == version
            )
        ).first()
    if row is None:
        raise NotFoundError(
            f"{project} has no release {excerpt(version, quote=False)}",
            hint="list the releases with 'shipyard releases list', or scan the working tree",
        )
    archive = into / "bundle.tar.gz"
    blobs.copy_to(row.bundle, archive)
    tree = into / "tree"
    tree.mkdir()
    with tarfile.open(archive, "r:gz") as bundle:
        bundle.extractall(tree, filter="data")
    roots = [p for p in tree.iterdir() if p.is_dir()]
    return (roots[0] if len(roots) == 1 else tree), str(row.commit_sha)


def release_sbom(
    store: Store, blobs: BlobStore, project: str, version: str, into: Path
) -> Path | None:
    """Copy a recorded release's stored SBOM into ``into``; None for a release without one.

    The blob's digest is verified on the way, so a modified SBOM is refused, not read.
    """
    with store.read() as conn:
        row = conn.execute(
            select(releases.c.sbom).where(
                releases.c.project == project, releases.c.version == version
            )
        ).first()
    if row is None:
        raise NotFoundError(
            f"{project} has no release {excerpt(version, quote=False)}",
            hint="list the releases with 'shipyard releases list'",
        )
    if not row.sbom:
        return None
    target = into / f"{project}-{version}.cdx.json"
    blobs.copy_to(row.sbom, target)
    return target
