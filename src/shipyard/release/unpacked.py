"""Unpacked releases: a bundle extracted once after its digest verified, sealed, checked before use.

Sealing removes write permission from the tree and records a manifest of every entry (kind,
mode, SHA-256 of each file); checking compares the tree with it and names every file that
changed, appeared or went. This module never runs ``service.setup`` and never starts anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from shipyard.core.blobs import BlobStore
from shipyard.core.errors import CheckFailed

MANIFEST = ".shipyard-manifest.json"
"""The manifest's name at the top of an unpacked release's folder (it is not in the manifest)."""

_FORMAT = 1
_SHOWN = 20
_WRITE = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


class UnpackedReleaseChanged(CheckFailed):
    """An unpacked release differs from what was verified and sealed: it must not be started."""

    def __init__(
        self, message: str, *, folder: Path, root: Path, changes: tuple[str, ...], hint: str
    ) -> None:
        super().__init__(message, hint=hint)
        self.folder = folder
        self.root = root
        self.changes = changes


@dataclass(frozen=True)
class Entry:
    """One entry of an unpacked tree: its kind, permission bits and content digest."""

    kind: str
    mode: int
    digest: str

    def as_json(self) -> list[Any]:
        """The compact form kept in the manifest."""
        return [self.kind, self.mode, self.digest]


@dataclass(frozen=True)
class Manifest:
    """What a sealed tree holds: every entry by its path relative to the folder."""

    bundle: str
    entries: Mapping[str, Entry]

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", MappingProxyType(dict(self.entries)))

    @classmethod
    def of_tree(cls, folder: Path, bundle: str) -> Manifest:
        """The manifest of ``folder`` as it is now."""
        return cls(bundle, _walk(folder))

    def changes(self, folder: Path) -> tuple[str, ...]:
        """How ``folder`` differs from this manifest, one phrase per path, sorted by path."""
        found = _walk(folder)
        changes = []
        for path in sorted(self.entries.keys() | found.keys()):
            recorded, actual = self.entries.get(path), found.get(path)
            if actual is None:
                changes.append(f"{path} was removed")
            elif recorded is None:
                changes.append(f"{path} was added")
            elif (recorded.kind, recorded.digest) != (actual.kind, actual.digest):
                changes.append(f"{path} changed")
            elif recorded.mode != actual.mode:
                changes.append(f"{path} changed its mode ({recorded.mode:o} -> {actual.mode:o})")
        return tuple(changes)

    def to_bytes(self) -> bytes:
        """The manifest file's content."""
        entries = {path: entry.as_json() for path, entry in sorted(self.entries.items())}
        document = {"format": _FORMAT, "bundle": self.bundle, "entries": entries}
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Read a manifest file; ``ValueError`` if it is not one."""
        document = json.loads(data)
        if not isinstance(document, dict) or document.get("format") != _FORMAT:
            raise ValueError("not a manifest of this format")
        entries = {
            str(path): Entry(str(kind), int(mode), str(digest))
            for path, (kind, mode, digest) in document["entries"].items()
        }
        return cls(str(document["bundle"]), entries)


def unpack(blobs: BlobStore, bundle: str, folder: Path) -> None:
    """Extract the bundle blob into the new folder ``folder``, only once its digest verified."""
    folder.mkdir(parents=True)
    archive = folder / "bundle.tar.gz"
    blobs.copy_to(bundle, archive)  # replaces the file only once the content matched the digest
    with tarfile.open(archive, "r:gz") as reader:
        reader.extractall(folder, filter="data")
    archive.unlink()


def seal(folder: Path, bundle: str) -> Manifest:
    """Make ``folder``'s tree read-only and record its manifest in it; returns the manifest."""
    for path in _below(folder):
        if not path.is_symlink():
            path.chmod(stat.S_IMODE(path.lstat().st_mode) & ~_WRITE)
    manifest = Manifest.of_tree(folder, bundle)
    temporary = folder / f"{MANIFEST}.part"
    temporary.write_bytes(manifest.to_bytes())
    temporary.chmod(0o444)
    temporary.replace(folder / MANIFEST)
    folder.chmod(stat.S_IMODE(folder.stat().st_mode) & ~_WRITE)
    return manifest


def is_sealed(folder: Path) -> bool:
    """Whether ``folder`` holds a sealed tree (one that was unpacked, set up and sealed)."""
    return (folder / MANIFEST).is_file()


def check(folder: Path, bundle: str, *, root: Path) -> Manifest:
    """Raise ``UnpackedReleaseChanged`` naming every difference unless ``folder`` is as sealed.

    ``root`` is where the service runs from (what the error reports); ``bundle`` is the digest
    the release records, which the sealed tree must have been unpacked from.
    """
    hint = (
        f"find out who changed it; to deploy the release afresh remove the folder: "
        f"chmod -R u+w '{folder}' && rm -rf '{folder}'"
    )
    try:
        manifest = Manifest.from_bytes((folder / MANIFEST).read_bytes())
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UnpackedReleaseChanged(
            f"the unpacked release in {folder} cannot be checked: its manifest is missing or "
            f"unreadable ({error})",
            folder=folder,
            root=root,
            changes=(MANIFEST,),
            hint=hint,
        ) from None
    changes = manifest.changes(folder)
    if manifest.bundle != bundle:
        changes = (f"{MANIFEST} is of bundle {manifest.bundle}, not {bundle}", *changes)
    if changes:
        shown = "; ".join(changes[:_SHOWN])
        more = f"; and {len(changes) - _SHOWN} more" if len(changes) > _SHOWN else ""
        raise UnpackedReleaseChanged(
            f"the unpacked release in {folder} is not the verified bundle: {shown}{more}",
            folder=folder,
            root=root,
            changes=changes,
            hint=hint,
        )
    return manifest


def remove(folder: Path) -> None:
    """Delete an unpacked release's folder, sealed or not (nothing if it is not there)."""
    if not folder.exists():
        return
    for path in (folder, *_below(folder)):
        if path.is_dir() and not path.is_symlink():
            path.chmod(stat.S_IMODE(path.stat().st_mode) | stat.S_IRWXU)
    shutil.rmtree(folder)


def _below(folder: Path) -> list[Path]:
    """Every path under ``folder``, depth first, symbolic links not followed."""
    found = []
    for top, dirs, files in os.walk(folder):
        found += [Path(top, name) for name in (*dirs, *files)]
    return found


def _walk(folder: Path) -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    pending = [""]
    while pending:
        relative = pending.pop()
        with os.scandir(folder / relative if relative else folder) as listing:
            for item in listing:
                path = f"{relative}/{item.name}" if relative else item.name
                if path in (MANIFEST, f"{MANIFEST}.part"):
                    continue
                info = item.stat(follow_symlinks=False)
                mode = stat.S_IMODE(info.st_mode)
                if stat.S_ISDIR(info.st_mode):
                    entries[path] = Entry("dir", mode, "")
                    pending.append(path)
                elif stat.S_ISREG(info.st_mode):
                    entries[path] = Entry("file", mode, _file_digest(Path(item.path)))
                elif stat.S_ISLNK(info.st_mode):
                    entries[path] = Entry("link", 0, str(Path(item.path).readlink()))
                else:
                    entries[path] = Entry("other", mode, "")
    return entries


def _file_digest(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as error:
        return f"unreadable: {error.strerror}"
