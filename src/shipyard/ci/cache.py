"""The content-addressed job cache: exact keys, restored artifacts, outputs and logs.

A key is an HMAC (with a key kept in the state directory) over everything that decides what a
job does: its commands, its environment (secret values only as HMACs), the contents of its
inputs, the artifacts and outputs it consumes and the versions of the tools it declares. Only
passed jobs are stored; the cache keeps under its size cap by evicting least recently used.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Row, bindparam, delete, func, select, update

from shipyard.ci.expressions import path_matches
from shipyard.ci.model import JobSpec
from shipyard.core.blobs import BlobStore
from shipyard.core.git import Git
from shipyard.core.store import Store
from shipyard.core.store.tables import cache_entries

KEY_VERSION = "shipyard-job-cache-v1"
_TOOL_TIMEOUT_S = 60


@dataclass(frozen=True)
class CacheEntry:
    """What a cached job left behind: its artifacts manifest, log and outputs."""

    key: str
    job_id: str
    run_id: int
    artifacts: str | None
    log: str
    outputs: Mapping[str, str]
    size_bytes: int


def load_or_create_key(path: Path) -> bytes:
    """The per-state-directory HMAC key; created (mode 0600) on first use."""
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fresh = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as handle:
        handle.write(fresh)
    return fresh


class InputIndex:
    """The content id of every tracked file of a project, built once per run."""

    def __init__(self, files: Mapping[str, str], *, exclude: Sequence[str] = ()) -> None:
        self.files = {path: ident for path, ident in files.items() if path not in exclude}
        self._digests: dict[tuple[str, ...] | None, str] = {}

    @classmethod
    def from_commit(
        cls, git: Git, commit: str, project_dir: str, exclude: Sequence[str] = ()
    ) -> InputIndex:
        """Tracked files of a commit under the project folder, with git's blob ids."""
        out = git.run_bytes("ls-tree", "-r", "-z", "--full-tree", commit)
        prefix = f"{project_dir.strip('/')}/" if project_dir else ""
        files: dict[str, str] = {}
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, _, raw_path = record.partition(b"\t")
            path = raw_path.decode("utf-8", "surrogateescape")
            if prefix and not path.startswith(prefix):
                continue
            mode, _kind, sha = meta.decode().split(" ")
            files[path[len(prefix) :]] = f"{mode}:{sha}"
        return cls(files, exclude=exclude)

    @classmethod
    def from_worktree(
        cls, git: Git, toplevel: Path, project_dir: str, exclude: Sequence[str] = ()
    ) -> InputIndex:
        """Tracked files as they are in the working tree (hashed by content)."""
        prefix = f"{project_dir.strip('/')}/" if project_dir else ""
        files: dict[str, str] = {}
        for path in git.tracked_files():
            if prefix and not path.startswith(prefix):
                continue
            full = toplevel / path
            try:
                digest = (
                    hashlib.sha256(full.read_bytes()).hexdigest()
                    if not full.is_symlink()
                    else "link:" + str(full.readlink())
                )
            except FileNotFoundError:
                digest = "deleted"
            files[path[len(prefix) :]] = digest
        return cls(files, exclude=exclude)

    def digest(self, patterns: Sequence[str] | None) -> str:
        """A digest of the files matching ``patterns`` (all of them when None)."""
        key = None if patterns is None else tuple(patterns)
        if key not in self._digests:
            self._digests[key] = self._compute(patterns)
        return self._digests[key]

    def _compute(self, patterns: Sequence[str] | None) -> str:
        chosen = sorted(
            path
            for path in self.files
            if patterns is None or any(path_matches(path, p) for p in patterns)
        )
        h = hashlib.sha256()
        for path in chosen:
            h.update(path.encode("utf-8", "surrogateescape"))
            h.update(b"\0")
            h.update(self.files[path].encode())
            h.update(b"\n")
        return h.hexdigest()


class JobCache:
    """Cache entries in the store, their contents in the blob store."""

    def __init__(self, store: Store, blobs: BlobStore, key: bytes, max_bytes: int) -> None:
        self.store = store
        self.blobs = blobs
        self._key = key
        self.max_bytes = max_bytes

    def secret_fingerprint(self, value: str) -> str:
        """An HMAC of a secret value: it changes the key without ever being the value."""
        return hmac.new(self._key, b"secret\0" + value.encode(), hashlib.sha256).hexdigest()

    def job_key(
        self,
        job: JobSpec,
        *,
        project_dir: str,
        inputs: str,
        secrets: Mapping[str, str],
        needs: Mapping[str, Any],
        tools: Mapping[str, str],
        version: str | None = None,
    ) -> str:
        """The cache key of one job: an HMAC over everything that decides its result."""
        material = {
            "version": KEY_VERSION,
            "job": job.id,
            "steps": [[step.name, step.run] for step in job.steps],
            "shell": list(job.shell),
            "workdir": job.workdir,
            "project_dir": project_dir,
            "env": dict(sorted(job.env.items())),
            "matrix": dict(sorted(job.matrix.items())),
            "secrets": {
                name: self.secret_fingerprint(value) for name, value in sorted(secrets.items())
            },
            "inputs": inputs,
            "needs": needs,
            "tools": dict(sorted(tools.items())),
            "artifacts": list(job.artifacts),
            "release_version": version,
        }
        body = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
        return hmac.new(self._key, body, hashlib.sha256).hexdigest()

    def lookup(self, keys: Sequence[str]) -> dict[str, CacheEntry]:
        """The entries of those keys whose blobs are all present, in one read (``touch``
        marks their use); an entry that lost a blob is dropped."""
        rows: list[Row[Any]] = []
        with self.store.read() as conn:
            for start in range(0, len(keys), _KEYS_PER_QUERY):
                chunk = list(keys[start : start + _KEYS_PER_QUERY])
                rows += conn.execute(_ENTRIES, {"the_keys": chunk}).all()
        found: dict[str, CacheEntry] = {}
        for row in rows:
            entry = CacheEntry(
                key=row.key,
                job_id=row.job_id,
                run_id=int(row.run_id),
                artifacts=row.artifacts,
                log=row.log,
                outputs=json.loads(row.outputs),
                size_bytes=int(row.size_bytes),
            )
            if not self.blobs.exists(entry.log) or (
                entry.artifacts is not None and not self.blobs.exists(entry.artifacts)
            ):
                self.forget(entry.key)
                continue
            found[entry.key] = entry
        return found

    def save(
        self,
        key: str,
        job: JobSpec,
        run_id: int,
        *,
        artifacts: str | None,
        artifacts_size: int,
        log_path: Path,
        outputs: Mapping[str, str],
    ) -> CacheEntry:
        """Store a passed job's results under its key (``evict`` keeps the cap, once a run)."""
        log = self.blobs.put_file(log_path)
        size = artifacts_size + log.size
        now = datetime.now(UTC)
        with self.store.write() as conn:
            conn.execute(delete(cache_entries).where(cache_entries.c.key == key))
            conn.execute(
                cache_entries.insert().values(
                    key=key,
                    job_name=job.name,
                    run_id=run_id,
                    job_id=job.id,
                    artifacts=artifacts,
                    log=str(log.digest),
                    outputs=json.dumps(dict(outputs), sort_keys=True),
                    size_bytes=size,
                    created_at=now,
                    last_used_at=now,
                )
            )
        return CacheEntry(key, job.id, run_id, artifacts, str(log.digest), dict(outputs), size)

    def touch(self, keys: Sequence[str]) -> None:
        """Mark entries as used now (done once per run, for least-recently-used eviction)."""
        if not keys:
            return
        with self.store.write() as conn:
            conn.execute(
                update(cache_entries)
                .where(cache_entries.c.key.in_(list(keys)))
                .values(last_used_at=datetime.now(UTC))
            )

    def forget(self, key: str) -> None:
        """Drop one entry (its blobs go at the next garbage collection)."""
        with self.store.write() as conn:
            conn.execute(delete(cache_entries).where(cache_entries.c.key == key))

    def evict(self) -> list[str]:
        """Drop least recently used entries until the total is under the cap."""
        with self.store.write() as conn:
            total = conn.execute(select(func.coalesce(func.sum(cache_entries.c.size_bytes), 0)))
            used = int(total.scalar() or 0)
            if used <= self.max_bytes:
                return []
            dropped: list[str] = []
            rows = conn.execute(
                select(cache_entries.c.key, cache_entries.c.size_bytes).order_by(
                    cache_entries.c.last_used_at
                )
            ).all()
            for row in rows:
                if used <= self.max_bytes:
                    break
                conn.execute(delete(cache_entries).where(cache_entries.c.key == row.key))
                used -= int(row.size_bytes)
                dropped.append(str(row.key))
            return dropped


def tool_versions(commands: Sequence[str], cwd: Path, env: Mapping[str, str]) -> dict[str, str]:
    """What each declared tool command prints (its version), for the cache key."""
    versions: dict[str, str] = {}
    for command in commands:
        try:
            result = subprocess.run(
                ["sh", "-c", command],
                cwd=cwd,
                env=dict(env),
                capture_output=True,
                timeout=_TOOL_TIMEOUT_S,
                check=False,
            )
            text = (result.stdout + result.stderr).decode("utf-8", "replace").strip()
            versions[command] = f"{result.returncode}:{text}"
        except subprocess.TimeoutExpired:
            versions[command] = "timeout"
    return versions


_ENTRIES = select(cache_entries).where(
    cache_entries.c.key.in_(bindparam("the_keys", expanding=True))
)
"""Entries by key; built once, as every run looks its jobs' keys up."""

_KEYS_PER_QUERY = 500
"""Keys per query: well under SQLite's limit on bound parameters."""
