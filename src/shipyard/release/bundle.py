"""Release bundles: the commit's tree as a reproducible ``tar.gz``, with the version written in.

The bundle is ``git archive`` of the commit, rewritten with fixed gzip headers so that the same
commit and version always give the same bytes, and with ``release.version_files`` and the
changelog set to the release's values. Files outside the archive are never read.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tomlkit
import tomlkit.exceptions

from shipyard.core.errors import UserError
from shipyard.core.git import Git


class BundleError(UserError):
    """A bundle cannot be built: a version file is missing or has no such key."""


def version_file_contents(
    git: Git, commit: str, specs: Sequence[str], version: str
) -> dict[str, bytes]:
    """The new contents of each ``path[:key.path]`` version file, read from ``commit``."""
    patched: dict[str, bytes] = {}
    for spec in specs:
        path, _, key = spec.partition(":")
        try:
            original = git.run_bytes("show", f"{commit}:{path}")
        except Exception as error:
            raise BundleError(
                f"release.version_files names {path!r}, which is not in commit {commit[:12]}",
                hint="commit the file, or remove it from release.version_files",
            ) from error
        patched[path] = _set_version(path, key, original, version)
    return patched


def _set_version(path: str, key: str, original: bytes, version: str) -> bytes:
    if not key:
        return (version + "\n").encode()
    parts = key.split(".")
    if path.endswith(".toml"):
        try:
            document: Any = tomlkit.parse(original.decode("utf-8"))
        except (UnicodeDecodeError, tomlkit.exceptions.TOMLKitError) as error:
            raise BundleError(f"{path} is not valid TOML: {error}") from error
        _assign(document, parts, version, path, key)
        return tomlkit.dumps(document).encode("utf-8")
    try:
        data = json.loads(original)
    except ValueError as error:
        raise BundleError(f"{path} is not valid JSON: {error}") from error
    _assign(data, parts, version, path, key)
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _assign(document: Any, parts: list[str], version: str, path: str, key: str) -> None:
    node = document
    for part in parts[:-1]:
        if not hasattr(node, "get") or node.get(part) is None:
            raise BundleError(
                f"{path} has no {key!r}", hint="fix the key path in release.version_files"
            )
        node = node[part]
    if not hasattr(node, "get") or parts[-1] not in node:
        raise BundleError(
            f"{path} has no {key!r}", hint="fix the key path in release.version_files"
        )
    node[parts[-1]] = version


def build(git: Git, commit: str, dest: Path, *, prefix: str, replace: Mapping[str, bytes]) -> Path:
    """Write the bundle of ``commit`` to ``dest`` (``tar.gz``); ``replace`` sets file contents."""
    with tempfile.TemporaryDirectory(prefix="shipyard-bundle-") as tmp:
        raw = Path(tmp) / "tree.tar"
        git.archive(commit, raw)
        pending = dict(replace)
        with (
            raw.open("rb") as source,
            tarfile.open(fileobj=source, mode="r|") as reader,
            dest.open("wb") as target,
            gzip.GzipFile(filename="", mode="wb", fileobj=target, mtime=0) as zipped,
            tarfile.open(fileobj=zipped, mode="w|", format=tarfile.PAX_FORMAT) as writer,
        ):
            mtime = 0
            for member in reader:
                mtime = max(mtime, int(member.mtime))
                name = member.name
                out = _normalised(member, prefix)
                if member.isfile() and name in pending:
                    data = pending.pop(name)
                    out.size = len(data)
                    writer.addfile(out, io.BytesIO(data))
                elif member.isfile():
                    writer.addfile(out, reader.extractfile(member))
                else:
                    writer.addfile(out)
            for name, data in sorted(pending.items()):  # new files, such as a first CHANGELOG
                info = tarfile.TarInfo(prefix + name)
                info.size, info.mtime, info.mode = len(data), mtime, 0o644
                writer.addfile(info, io.BytesIO(data))
    return dest


def _normalised(member: tarfile.TarInfo, prefix: str) -> tarfile.TarInfo:
    out = tarfile.TarInfo(prefix + member.name)
    out.type, out.mode, out.size = member.type, member.mode, member.size
    out.mtime, out.linkname = member.mtime, member.linkname
    out.uid = out.gid = 0
    out.uname = out.gname = ""
    return out
