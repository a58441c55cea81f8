"""The lines each commit added, read from ``git log -p``, for scanning a project's history.

Commits are read newest first in batches, so memory stays bounded by one batch; only added
lines are kept (with their line numbers in the new file), because a removed line was scanned
when it was added. It reads git and nothing else; what is a secret is the engine's business.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from shipyard.core.git import Git

BATCH = 100
"""How many commits one ``git log`` call reads."""

_HUNK = re.compile(rb"^@@ -\d+(?:,\d+)? \+(?P<start>\d+)(?:,\d+)? @@")
_COMMIT = b"\x00commit "


@dataclass
class Addition:
    """The lines one commit added to one file, with their numbers in the new file."""

    commit: str
    path: str
    numbers: list[int] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    size: int = 0


def commits(git: Git, revision: str) -> list[str]:
    """The commits reachable from ``revision`` that touch the folder ``git`` stands in."""
    out = git.run("rev-list", "--end-of-options", revision, "--", ".")
    return out.split()


def additions(git: Git, shas: list[str]) -> Iterator[Addition]:
    """What each commit added to each file under the folder, newest commit first."""
    for start in range(0, len(shas), BATCH):
        batch = shas[start : start + BATCH]
        out = git.run_bytes(
            "-c",
            "core.quotePath=false",
            "log",
            "--no-walk=unsorted",
            "-p",
            "-U0",
            "--text",
            "--no-color",
            "--no-renames",
            "--no-ext-diff",
            "--no-textconv",
            "--relative",
            "--format=%x00commit %H",
            *batch,
            "--",
            ".",
        )
        yield from _parse(out)


def _parse(out: bytes) -> Iterator[Addition]:
    commit = ""
    current: Addition | None = None
    in_header = False
    number = 0
    for raw in out.split(b"\n"):
        if raw.startswith(_COMMIT):
            if current is not None and current.lines:
                yield current
            commit, current, in_header = raw[len(_COMMIT) :].decode().strip(), None, False
            continue
        if raw.startswith(b"diff --git "):
            if current is not None and current.lines:
                yield current
            current, in_header = None, True
            continue
        if in_header and not raw.startswith(b"@@ "):
            if raw.startswith(b"+++ "):
                path = _path(raw[4:])
                current = Addition(commit, path) if path is not None else None
            continue
        if current is None:
            continue
        hunk = _HUNK.match(raw)
        if hunk:
            number = int(hunk.group("start"))
            in_header = False
            continue
        if raw.startswith(b"+"):
            text = raw[1:].decode("utf-8", "replace").rstrip("\r")
            current.numbers.append(number)
            current.lines.append(text)
            current.size += len(raw)
            number += 1
    if current is not None and current.lines:
        yield current


def _path(value: bytes) -> str | None:
    """The new file's path from a ``+++`` line; None for a deleted file."""
    text = value.rstrip(b"\r").rstrip(b"\t")
    if text == b"/dev/null":
        return None
    if text.startswith(b'"') and text.endswith(b'"'):
        text = codecs.escape_decode(text[1:-1])[0]
    decoded = text.decode("utf-8", "replace")
    return decoded[2:] if decoded.startswith("b/") else decoded
