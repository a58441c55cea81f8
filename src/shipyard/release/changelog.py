"""Changelog sections in Markdown, and adding one to an existing changelog file.

Rendering is pure text from ``ConventionalCommit`` values. Adding a section never rewrites
what the file already holds: its bytes stay as they were, the new section is inserted.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from shipyard.core.errors import UserError
from shipyard.release.commits import ConventionalCommit
from shipyard.release.semver import Version

__all__ = [
    "BREAKING_TITLE",
    "SECTIONS",
    "ChangelogError",
    "prepend",
    "prepend_to_file",
    "render_release",
    "render_unreleased",
]

BREAKING_TITLE = "⚠ Breaking changes"
"""The heading of the section that lists breaking changes, always the first one."""

SECTIONS: tuple[tuple[str, str], ...] = (
    ("feat", "Features"),
    ("fix", "Bug fixes"),
    ("perf", "Performance"),
)
"""Commit types shown in a changelog, in order, with their section headings."""

_RELEASE_HEADING = re.compile(r"^## ", re.MULTILINE)
_TITLE = re.compile(r"#[ \t]")


class ChangelogError(UserError):
    """The changelog file cannot be read as text or cannot be written."""


def render_release(
    version: Version | str,
    date: datetime.date,
    commits: Sequence[ConventionalCommit],
    *,
    repo_url: str | None = None,
    sections: Sequence[tuple[str, str]] = SECTIONS,
) -> str:
    """The Markdown section of one release: ``## 1.3.0 (2026-11-26)`` and its changes."""
    return _render(f"## {version} ({date.isoformat()})", commits, repo_url, sections)


def render_unreleased(
    commits: Sequence[ConventionalCommit],
    *,
    repo_url: str | None = None,
    sections: Sequence[tuple[str, str]] = SECTIONS,
) -> str:
    """The Markdown section of the changes not released yet, headed ``## Unreleased``."""
    return _render("## Unreleased", commits, repo_url, sections)


def prepend(existing_text: str | None, section: str, *, title: str = "# Changelog") -> str:
    """The changelog with ``section`` inserted above the newest release, the rest untouched.

    The section goes before the first ``## `` heading; without one, after everything when the
    text starts with a ``# `` title, else at the very start. Line endings follow the text's.
    """
    if not existing_text:
        return f"{title}\n\n{section.rstrip()}\n"
    newline = "\r\n" if "\r\n" in existing_text else "\n"
    block = section.rstrip().replace("\r\n", "\n").replace("\n", newline) + newline
    bom = "\ufeff" if existing_text.startswith("\ufeff") else ""
    text = existing_text[len(bom) :]
    heading = _RELEASE_HEADING.search(text)
    if heading is not None:
        at = heading.start()
        return bom + text[:at] + block + newline + text[at:]
    if _TITLE.match(text):
        ending = "" if text.endswith("\n") else newline
        return existing_text + ending + newline + block
    return bom + block + newline + text


def prepend_to_file(path: Path, section: str, *, title: str = "# Changelog") -> None:
    """Add ``section`` to the changelog at ``path`` (created if missing), atomically."""
    try:
        raw: bytes | None = path.read_bytes()
    except FileNotFoundError:
        raw = None
    except OSError as error:
        raise ChangelogError(f"cannot read the changelog {path}: {error.strerror}") from error
    try:
        existing = None if raw is None else raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ChangelogError(
            f"the changelog {path} is not UTF-8 text (byte {error.start}); it was left as it is",
            hint="convert the file to UTF-8, or point release.changelog at another file",
        ) from None
    data = prepend(existing, section, title=title).encode("utf-8")
    _write_atomically(path, data)


def _render(
    heading: str,
    commits: Sequence[ConventionalCommit],
    repo_url: str | None,
    sections: Sequence[tuple[str, str]],
) -> str:
    parts = [heading]
    breaking = [commit for commit in commits if commit.breaking]
    if breaking:
        entries = [
            _entry(commit, note, repo_url)
            for commit in breaking
            for note in (commit.breaking_notes or (commit.description,))
        ]
        parts.append(f"### {BREAKING_TITLE}\n\n" + "\n".join(entries))
    for kind, name in sections:
        entries = [
            _entry(commit, commit.description, repo_url)
            for commit in commits
            if commit.type == kind
        ]
        if entries:
            parts.append(f"### {name}\n\n" + "\n".join(entries))
    if len(parts) == 1:
        parts.append("No notable changes.")
    return "\n\n".join(parts) + "\n"


def _entry(commit: ConventionalCommit, text: str, repo_url: str | None) -> str:
    scope = f"**{commit.scope}:** " if commit.scope else ""
    first, *more = text.strip().splitlines() or [""]
    if repo_url:
        link = f"([{commit.short_sha}]({repo_url.rstrip('/')}/commit/{commit.sha}))"
    else:
        link = f"({commit.short_sha})"
    lines = [f"- {scope}{first} {link}"]
    lines += [f"  {line}".rstrip() for line in more]
    return "\n".join(lines)


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old file or the new one."""
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    try:
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as error:
        raise ChangelogError(f"cannot write the changelog {path}: {error.strerror}") from error
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            Path(temporary).chmod(mode)
        Path(temporary).replace(path)
    except OSError as error:
        with contextlib.suppress(OSError):
            Path(temporary).unlink()
        raise ChangelogError(f"cannot write the changelog {path}: {error.strerror}") from error
