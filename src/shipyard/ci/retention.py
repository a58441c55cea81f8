"""Retention: what ``shipyard gc`` removes, worked out before anything is touched.

A plan lists the runs, logs, workspaces, cache entries and blobs older than the retention that
nothing kept refers to — a blob a release, a kept run or a cache entry names is never removed.
Applying a plan removes exactly what it listed and reports the space freed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, delete, inspect, select, text

from shipyard.ci.artifacts import ArtifactSet
from shipyard.core import audit
from shipyard.core.blobs import BlobError, BlobStore
from shipyard.core.git import Git
from shipyard.core.state import StateDir
from shipyard.core.store import Store
from shipyard.core.store.tables import cache_entries, job_attempts, run_jobs, runs

BLOB_GRACE = timedelta(hours=1)
"""Blobs younger than this are kept: a run may be about to record them."""


@dataclass(frozen=True)
class GcPlan:
    """Everything a collection would remove, and how many bytes each part frees."""

    cutoff: datetime
    runs: tuple[int, ...]
    paths: tuple[Path, ...]
    cache_keys: tuple[str, ...]
    blobs: tuple[str, ...]
    bytes_by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        """Bytes freed in all."""
        return sum(self.bytes_by_kind.values())

    @property
    def empty(self) -> bool:
        """Whether there is nothing to remove."""
        return not (self.runs or self.paths or self.cache_keys or self.blobs)


def plan(
    store: Store,
    state: StateDir,
    blobs: BlobStore,
    *,
    retention: timedelta,
    now: datetime | None = None,
) -> GcPlan:
    """Work out what is older than ``retention`` and unreferenced; change nothing."""
    moment = now or datetime.now(UTC)
    cutoff = moment - retention
    with store.read() as conn:
        old_runs = [
            int(r.id)
            for r in conn.execute(
                select(runs.c.id).where(
                    runs.c.status.in_(["passed", "failed", "cancelled"]),
                    runs.c.finished_at < cutoff,
                )
            )
        ]
        live_runs = {int(r.id) for r in conn.execute(select(runs.c.id))} - set(old_runs)
        running = {
            int(r.id)
            for r in conn.execute(select(runs.c.id).where(runs.c.status.in_(["queued", "running"])))
        }
        old_keys = [
            str(r.key)
            for r in conn.execute(
                select(cache_entries.c.key).where(cache_entries.c.last_used_at < cutoff)
            )
        ]
        referenced = _referenced(conn, blobs, keep_runs=live_runs, drop_keys=set(old_keys))
    paths: list[Path] = []
    sizes = {"logs": 0, "workspaces": 0, "blobs": 0}
    for folder in _run_folders(state.logs):
        run_id = _run_number(folder)
        if run_id is not None and (run_id in old_runs or run_id not in live_runs):
            paths.append(folder)
            sizes["logs"] += _size(folder)
    for folder in _run_folders(state.workspaces):
        run_id = _run_number(folder)
        if run_id is not None and run_id not in running:
            paths.append(folder)
            sizes["workspaces"] += _size(folder)
    unreferenced: list[str] = []
    young = moment - BLOB_GRACE
    for digest in blobs.iter_digests():
        text = str(digest)
        if text in referenced:
            continue
        path = blobs.root / "sha256" / digest.hex[:2] / digest.hex
        try:
            modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        except FileNotFoundError:
            continue
        if modified > young:
            continue
        unreferenced.append(text)
        sizes["blobs"] += blobs.size(digest)
    return GcPlan(
        cutoff=cutoff,
        runs=tuple(old_runs),
        paths=tuple(paths),
        cache_keys=tuple(old_keys),
        blobs=tuple(unreferenced),
        bytes_by_kind=sizes,
    )


def apply(plan_: GcPlan, store: Store, state: StateDir, blobs: BlobStore, *, actor: str) -> int:
    """Remove what the plan lists; returns the bytes freed. Audited."""
    with store.write() as conn:
        if plan_.runs:
            conn.execute(delete(job_attempts).where(job_attempts.c.run_id.in_(plan_.runs)))
            conn.execute(delete(run_jobs).where(run_jobs.c.run_id.in_(plan_.runs)))
            conn.execute(delete(runs).where(runs.c.id.in_(plan_.runs)))
        if plan_.cache_keys:
            conn.execute(delete(cache_entries).where(cache_entries.c.key.in_(plan_.cache_keys)))
        audit.append(
            conn,
            actor=actor,
            action="gc.collected",
            subject=f"state:{state.root}",
            details={
                "runs": len(plan_.runs),
                "cache_entries": len(plan_.cache_keys),
                "blobs": len(plan_.blobs),
                "paths": len(plan_.paths),
                "bytes": plan_.total_bytes,
                "cutoff": plan_.cutoff.isoformat(),
            },
        )
    for path in plan_.paths:
        shutil.rmtree(path, ignore_errors=True)
    if any(p.parent == state.workspaces for p in plan_.paths) and state.repo_root:
        Git(state.repo_root).worktree_prune()
    for digest in plan_.blobs:
        blobs.delete(digest)
    return plan_.total_bytes


def _referenced(
    conn: Connection, blobs: BlobStore, *, keep_runs: set[int], drop_keys: set[str]
) -> set[str]:
    """Every blob something that stays refers to: kept runs, cache entries, releases."""
    manifests: set[str] = set()
    found: set[str] = set()
    for row in conn.execute(
        select(run_jobs.c.run_id, run_jobs.c.artifacts).where(run_jobs.c.artifacts.is_not(None))
    ):
        if int(row.run_id) in keep_runs:
            manifests.add(str(row.artifacts))
    for row in conn.execute(select(cache_entries)):
        if row.key in drop_keys:
            continue
        found.add(str(row.log))
        if row.artifacts:
            manifests.add(str(row.artifacts))
    found |= _release_blobs(conn)
    for manifest in manifests:
        found.add(manifest)
        try:
            found.update(
                f.digest for f in ArtifactSet.from_manifest(blobs.read_bytes(manifest)).files
            )
        except (BlobError, ValueError, KeyError):
            continue  # a damaged manifest keeps nothing alive; its files may go
    return found


def _release_blobs(conn: Connection) -> set[str]:
    """Blobs named by releases (every column of the releases table that holds digests)."""
    if not inspect(conn).has_table("releases"):
        return set()
    found: set[str] = set()
    for row in conn.execute(text("SELECT * FROM releases")):
        for value in row._mapping.values():
            found |= _digests_in(value)
    return found


def _digests_in(value: object) -> set[str]:
    if not isinstance(value, str):
        return set()
    if value.startswith("sha256:") and len(value) == 71:
        return {value}
    if "sha256:" in value:
        try:
            return _digests_in_json(json.loads(value))
        except ValueError:
            return set()
    return set()


def _digests_in_json(value: object) -> set[str]:
    if isinstance(value, str):
        return {value} if value.startswith("sha256:") and len(value) == 71 else set()
    if isinstance(value, dict):
        return set().union(*(_digests_in_json(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_digests_in_json(v) for v in value)) if value else set()
    return set()


def _run_folders(parent: Path) -> Iterable[Path]:
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir() and p.name.startswith("run-"))


def _run_number(folder: Path) -> int | None:
    suffix = folder.name.removeprefix("run-")
    return int(suffix) if suffix.isdigit() else None


def _size(path: Path) -> int:
    total = 0
    for item in path.rglob("*"):
        try:
            if item.is_file() and not item.is_symlink():
                total += item.stat().st_size
        except OSError:
            continue
    return total
