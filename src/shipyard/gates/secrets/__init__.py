"""Secrets in a project's files and history: what is scanned, and what was found.

``scan_secrets`` lists the files (git's tracked files in a working tree, every file of an
unpacked release), reads each one safely (binary files by their printable strings, files over
``max_file_size`` reported as not scanned) and, with ``history: true``, every line a commit
added. The gate and ``shipyard secrets baseline`` both build on it; nothing here writes.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

from shipyard.core.config.gates import SecretGateSettings
from shipyard.core.errors import GitError
from shipyard.core.git import Git
from shipyard.gates.interface import GateContext
from shipyard.gates.secrets.baseline import (
    Baseline,
    BaselineChange,
    BaselineEntry,
    BaselineInvalid,
    read_baseline,
    write_baseline,
)
from shipyard.gates.secrets.engine import SecretHit, SecretScanner, TextSource, printable_runs
from shipyard.gates.secrets.history import additions, commits

_SNIFF = 8192


@dataclass(frozen=True)
class Skipped:
    """A file (or a commit's change to one) that was not scanned, and why."""

    path: str
    reason: str
    commit: str | None = None


@dataclass(frozen=True)
class SecretScan:
    """Everything one scan found and everything it could not look at."""

    hits: tuple[SecretHit, ...]
    skipped: tuple[Skipped, ...]
    files: int
    binary_files: int
    commits: int | None
    history_problem: str | None = None


def settings_of(context: GateContext) -> SecretGateSettings:
    """``gates.secrets`` of the context's configuration (defaults when unconfigured)."""
    gates = context.config.gates
    settings = gates.secrets if gates is not None else None
    return settings if settings is not None else SecretGateSettings()


def scan_secrets(context: GateContext, settings: SecretGateSettings) -> SecretScan:
    """Scan the context's files (and, with ``history``, its commits) for secrets."""
    scanner = SecretScanner(settings.rules)
    hits: list[SecretHit] = []
    skipped: list[Skipped] = []
    names = [name for name in project_files(context) if not _excluded(name, settings)]
    binary = 0
    with scanner.session():
        for name in names:
            path = context.workspace / name
            if path.is_symlink() or not path.is_file():
                continue
            size = path.stat().st_size
            if size > settings.max_file_size:
                skipped.append(Skipped(name, _too_large(size, settings.max_file_size)))
                continue
            try:
                data = path.read_bytes()
            except OSError as exc:
                skipped.append(Skipped(name, f"cannot be read: {exc.strerror or exc}"))
                continue
            text = _text(data)
            if text is None:
                binary += 1
                runs = printable_runs(data)
                if runs:
                    source = TextSource(
                        name,
                        [run for _, run in runs],
                        [offset for offset, _ in runs],
                        location_format="{path} (byte {number})",
                        detectors_by_name=False,
                    )
                    hits.extend(scanner.scan_source(source))
                continue
            hits.extend(scanner.scan_file(path, name, text.splitlines()))
        history_commits: int | None = None
        problem: str | None = None
        if settings.history:
            history_commits, problem = _scan_history(context, settings, scanner, hits, skipped)
    return SecretScan(tuple(hits), tuple(skipped), len(names), binary, history_commits, problem)


def project_files(context: GateContext) -> list[str]:
    """The files to scan, relative to the workspace: tracked files, or every file of a copy."""
    if not context.is_copy:
        try:
            out = Git(context.workspace).run_bytes("ls-files", "-z", "--cached", "--", ".")
        except GitError:
            pass
        else:
            names = [item.decode("utf-8", "surrogateescape") for item in out.split(b"\0") if item]
            return sorted(dict.fromkeys(names))
    found = []
    for folder, subfolders, files in os.walk(context.workspace):
        subfolders[:] = sorted(name for name in subfolders if name != ".git")
        for name in sorted(files):
            found.append((Path(folder) / name).relative_to(context.workspace).as_posix())
    return found


def baseline_path(context: GateContext, settings: SecretGateSettings) -> Path:
    """Where the baseline is read from: inside the workspace judged."""
    return context.workspace / settings.baseline


def _scan_history(
    context: GateContext,
    settings: SecretGateSettings,
    scanner: SecretScanner,
    hits: list[SecretHit],
    skipped: list[Skipped],
) -> tuple[int | None, str | None]:
    git = Git(context.source_dir)
    try:
        shas = commits(git, context.commit or "HEAD")
        shallow = git.is_shallow()
    except GitError as exc:
        return None, f"the history was not scanned: {exc.message}"
    seen = {hit.fingerprint for hit in hits}
    introduced: dict[str, SecretHit] = {}
    for change in additions(git, shas):
        if _excluded(change.path, settings):
            continue
        if change.size > settings.max_file_size:
            skipped.append(
                Skipped(change.path, _too_large(change.size, settings.max_file_size), change.commit)
            )
            continue
        source = TextSource(change.path, change.lines, change.numbers, commit=change.commit)
        for hit in scanner.scan_source(source):
            if hit.fingerprint not in seen:
                introduced[hit.fingerprint] = hit  # newest first: the last one is the oldest
    hits.extend(introduced.values())
    if shallow:
        return len(shas), "the repository is a shallow clone; older commits were not scanned"
    return len(shas), None


def _excluded(name: str, settings: SecretGateSettings) -> bool:
    if name == settings.baseline:
        return True
    for pattern in settings.exclude:
        if pattern.endswith("/"):
            if name.startswith(pattern):
                return True
        elif fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, f"{pattern}/*"):
            return True
    return False


def _text(data: bytes) -> str | None:
    """The data as text, or None when it is binary (a NUL byte, or not UTF-8)."""
    if b"\0" in data[:_SNIFF]:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def _too_large(size: int, limit: int) -> str:
    return f"not scanned: {_size(size)} is larger than max_file_size ({_size(limit)})"


def _size(count: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= factor:
            return f"{count / factor:.1f} {unit}"
    return f"{count} bytes"


__all__ = [
    "Baseline",
    "BaselineChange",
    "BaselineEntry",
    "BaselineInvalid",
    "SecretHit",
    "SecretScan",
    "Skipped",
    "baseline_path",
    "project_files",
    "read_baseline",
    "scan_secrets",
    "settings_of",
    "write_baseline",
]
