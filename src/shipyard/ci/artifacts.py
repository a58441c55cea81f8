"""Artifacts: files a job declares, kept as blobs and laid into the jobs that need it.

Collection resolves the job's globs inside its workspace and refuses anything that escapes it
(``..``, absolute paths, symlinks pointing out). An artifact set is a manifest of paths and
digests, itself stored as a blob; laying it out copies verified blobs into place.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from shipyard.ci.expressions import glob_to_regex
from shipyard.core.blobs import BlobStore
from shipyard.core.errors import UserError

_SKIP_DIRS = {".git"}
_WILDCARDS = set("*?[")


class ArtifactError(UserError):
    """An artifact cannot be collected or laid out: it escapes the workspace or collides."""


@dataclass(frozen=True)
class ArtifactFile:
    """One file of an artifact set: where it goes, what it holds, its permission bits."""

    path: str
    digest: str
    size: int
    mode: int


@dataclass(frozen=True)
class ArtifactSet:
    """The files one job produced, named by the job id (which carries its matrix values)."""

    job_id: str
    files: tuple[ArtifactFile, ...]

    @property
    def size(self) -> int:
        """Bytes in all files."""
        return sum(f.size for f in self.files)

    def manifest(self) -> bytes:
        """The canonical JSON manifest that is stored as a blob."""
        body = {
            "job": self.job_id,
            "files": [
                {"path": f.path, "digest": f.digest, "size": f.size, "mode": f.mode}
                for f in sorted(self.files, key=lambda f: f.path)
            ],
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_manifest(cls, data: bytes) -> ArtifactSet:
        """Read a manifest written by ``manifest``."""
        body = json.loads(data)
        files = tuple(
            ArtifactFile(str(f["path"]), str(f["digest"]), int(f["size"]), int(f["mode"]))
            for f in body["files"]
        )
        return cls(job_id=str(body["job"]), files=files)


@dataclass(frozen=True)
class Collected:
    """What collection found: the stored set, and the patterns that matched nothing."""

    artifacts: ArtifactSet
    unmatched: tuple[str, ...]


def collect(
    job_id: str, root: Path, base: Path, patterns: Sequence[str], blobs: BlobStore
) -> Collected:
    """Store the files matching ``patterns`` (relative to ``base``), paths relative to ``root``."""
    real_root = root.resolve()
    found: dict[str, Path] = {}
    unmatched: list[str] = []
    for pattern in patterns:
        matched = False
        for path in _matches(base, pattern):
            matched = True
            for file in _files_under(path):
                _check_inside(file, real_root, pattern)
                if not file.is_file():
                    raise ArtifactError(
                        f"artifact {pattern!r} matches {file}, which is not a regular file"
                    )
                found[file.relative_to(root).as_posix()] = file
        if not matched:
            unmatched.append(pattern)
    files = []
    for relative, path in sorted(found.items()):
        info = blobs.put_file(path)
        mode = stat.S_IMODE(path.stat().st_mode)
        files.append(ArtifactFile(relative, str(info.digest), info.size, mode))
    return Collected(ArtifactSet(job_id, tuple(files)), tuple(unmatched))


def store_set(artifacts: ArtifactSet, blobs: BlobStore) -> str:
    """Store the manifest of a set; returns its digest."""
    return str(blobs.put_bytes(artifacts.manifest()).digest)


def load_set(digest: str, blobs: BlobStore) -> ArtifactSet:
    """Read the set whose manifest has this digest (verified)."""
    return ArtifactSet.from_manifest(blobs.read_bytes(digest))


def lay(sets: Iterable[ArtifactSet], root: Path, blobs: BlobStore) -> int:
    """Copy every file of ``sets`` under ``root``; two sets may not disagree on one path."""
    chosen: dict[str, tuple[ArtifactFile, str]] = {}
    for artifact_set in sets:
        for file in artifact_set.files:
            earlier = chosen.get(file.path)
            if earlier is not None and earlier[0].digest != file.digest:
                raise ArtifactError(
                    f"artifacts of {earlier[1]} and {artifact_set.job_id} both hold "
                    f"{file.path!r} with different contents",
                    hint="give the files distinct names, e.g. include $SHIPYARD_MATRIX_<AXIS>",
                )
            chosen[file.path] = (file, artifact_set.job_id)
    real_root = root.resolve()
    for relative, (file, _) in chosen.items():
        target = root / relative
        existing = target.parent
        while not existing.exists():
            existing = existing.parent
        _check_inside(existing, real_root, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        blobs.copy_to(file.digest, target, mode=file.mode)
    return len(chosen)


def _matches(base: Path, pattern: str) -> Iterator[Path]:
    """Paths under ``base`` whose relative path matches ``pattern`` (files or folders)."""
    segments = pattern.strip("/").split("/")
    literal: list[str] = []
    for segment in segments:
        if _WILDCARDS & set(segment):
            break
        literal.append(segment)
    if len(literal) == len(segments):
        candidate = base.joinpath(*literal)
        if candidate.exists() or candidate.is_symlink():
            yield candidate
        return
    regex = glob_to_regex(pattern)
    start = base.joinpath(*literal)
    if not start.is_dir():
        return
    for folder, dirs, files in os.walk(start):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        here = Path(folder)
        for name in [*dirs, *files]:
            path = here / name
            if regex.match(path.relative_to(base).as_posix()):
                yield path


def _files_under(path: Path) -> Iterator[Path]:
    if path.is_dir() and not path.is_symlink():
        for folder, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
            for name in sorted(files):
                yield Path(folder) / name
        return
    yield path


def _check_inside(path: Path, real_root: Path, pattern: str) -> None:
    resolved = path.resolve()
    if resolved != real_root and real_root not in resolved.parents:
        raise ArtifactError(
            f"artifact {pattern!r} reaches {path}, which leads outside the workspace "
            f"(to {resolved})",
            hint="artifacts must be files inside the job's workspace; copy the file in "
            "instead of linking to it",
        )
