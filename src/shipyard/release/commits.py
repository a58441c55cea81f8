"""Conventional Commits: turn one commit message into the changes it announces.

Pure text parsing, no git and no versions: a message gives zero, one, or (a squash merge)
several ``ConventionalCommit`` values. What a type is worth is decided in ``versioning``.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from functools import cached_property, lru_cache

__all__ = [
    "CONVENTIONAL_TYPES",
    "ConventionalCommit",
    "parse_message",
]

CONVENTIONAL_TYPES = frozenset(
    {"feat", "fix", "perf", "refactor", "docs", "style", "test", "build", "ci", "chore", "revert"}
)
"""The usual types; a squash body's lines count only if their type is one of these (or given)."""

_BREAKING_TOKENS = ("BREAKING CHANGE", "BREAKING-CHANGE")

_HEADER = re.compile(
    r"(?P<type>[A-Za-z][A-Za-z0-9-]*)(?:\((?P<scope>[^()\r\n]*)\))?(?P<bang>!)?"
    r":[ \t]+(?P<desc>\S.*)"
)
# A squash body lists the squashed commits' headers, often as "* feat: …" or "- fix: …".
_BODY_HEADER = re.compile(
    r"^[ \t]*(?:(?P<bullet>[*-])[ \t]+)?"
    r"(?P<header>(?P<type>[A-Za-z][A-Za-z0-9-]*)(?:\([^()\r\n]*\))?!?:[ \t]+\S.*?)[ \t]*$",
    re.MULTILINE,
)
_FOOTER_LINE = re.compile(
    r"^(?:BREAKING[ -]CHANGE|[A-Za-z][A-Za-z0-9-]*)(?::(?:[ \t]|$)| #)", re.MULTILINE
)
_FOOTER = re.compile(
    r"(?P<token>BREAKING[ -]CHANGE|[A-Za-z][A-Za-z0-9-]*)(?::(?:[ \t]+|$)| #)(?P<value>.*)"
)
_GIT_REVERT = re.compile(r'Revert "(?P<header>.*)"')
_REVERTS_COMMIT = re.compile(r"This reverts commit (?P<sha>[0-9a-fA-F]{7,64})\b")
_PULL_REQUEST = re.compile(r"\s*\(#\d+\)$")
_SHA = re.compile(r"[0-9a-fA-F]{7,64}")


@dataclass(frozen=True)
class ConventionalCommit:
    """One change a commit message announces: ``type(scope)!: description``, body and footers."""

    sha: str
    type: str
    scope: str | None
    breaking: bool
    description: str
    text: str = ""
    """Everything below the header: the body, then the footers."""
    breaking_notes: tuple[str, ...] = ()
    release_as: str | None = None
    """The value of a ``Release-As:`` footer, which asks for that exact version."""
    is_revert: bool = False
    reverted_sha: str | None = None

    @property
    def short_sha(self) -> str:
        """The first seven characters of the commit's sha."""
        return self.sha[:7]

    @property
    def title(self) -> str:
        """Type, scope and description as one line: ``feat(api): add tokens``."""
        scope = f"({self.scope})" if self.scope else ""
        return f"{self.type}{scope}: {self.description}"

    @cached_property
    def body(self) -> str:
        """The text between the header and the footers."""
        return _split_footers(self.text)[0]

    @cached_property
    def footers(self) -> tuple[tuple[str, str], ...]:
        """The footers in order, as ``(token, value)`` pairs; values may span lines."""
        return _split_footers(self.text)[1]

    def footer(self, token: str) -> str | None:
        """The value of the last footer called ``token`` (case-insensitive), or None."""
        return _last_footer(self.footers, token)


def parse_message(
    sha: str, message: str, *, types: Collection[str] = CONVENTIONAL_TYPES
) -> tuple[ConventionalCommit, ...]:
    """The conventional changes in a commit message; empty when it follows no convention.

    A squash merge's body may list several headers; each one whose type is in ``types``
    starts a change of its own, with the lines below it as its body and footers.
    """
    if "\r" in message:
        message = message.replace("\r\n", "\n")
    header, _, rest = message.strip("\n").partition("\n")
    header = header.strip()
    starts = _squash_starts(rest, types) if rest else []
    if not starts:
        unit = _parse_unit(sha, header, rest)
        return () if unit is None else (unit,)
    first = _parse_unit(sha, header, rest[: starts[0].start()])
    commits = [] if first is None else [first]
    for index, start in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(rest)
        unit = _parse_unit(sha, start["header"], rest[start.end() : end])
        # GitHub repeats a one-commit pull request's title in the list below it.
        if unit is not None and not (first is not None and _same_change(first, unit)):
            commits.append(unit)
    return tuple(commits)


def _same_change(first: ConventionalCommit, other: ConventionalCommit) -> bool:
    return (first.type, first.scope, _PULL_REQUEST.sub("", first.description)) == (
        other.type,
        other.scope,
        _PULL_REQUEST.sub("", other.description),
    )


@lru_cache(maxsize=32)
def _squash_hint(types: frozenset[str]) -> re.Pattern[str]:
    """A quick test on the lower-cased body: could a line start a change of these types?"""
    names = "|".join(re.escape(name.lower()) for name in sorted(types, key=len, reverse=True))
    return re.compile(rf"\n[ \t]*(?:[*-][ \t]+)?(?:{names})[(!:]")


def _squash_starts(body: str, types: Collection[str]) -> list[re.Match[str]]:
    """The body lines that start another conventional change (a squash merge)."""
    known = types if isinstance(types, frozenset) else frozenset(types)
    if not _squash_hint(known).search("\n" + body.lower()):
        return []
    # A plain line must open a paragraph; a bulleted one may follow the previous bullet.
    return [
        match
        for match in _BODY_HEADER.finditer(body)
        if match["type"].lower() in known
        and (match["bullet"] is not None or _opens_paragraph(body, match.start()))
    ]


def _opens_paragraph(text: str, at: int) -> bool:
    """Whether the line starting at ``at`` is the first one or follows a blank line."""
    if at == 0:
        return True
    previous = text.rfind("\n", 0, at - 1)
    return not text[previous + 1 : at - 1].strip()


def _parse_unit(sha: str, header: str, text: str) -> ConventionalCommit | None:
    reverted = _GIT_REVERT.fullmatch(header) if header.startswith('Revert "') else None
    if reverted is not None:
        kind, scope, bang, description = "revert", None, False, reverted["header"]
    else:
        match = _HEADER.fullmatch(header)
        if match is None:
            return None
        kind = match["type"].lower()
        scope = match["scope"]
        scope = scope.strip() or None if scope else None
        bang = match["bang"] is not None
        description = match["desc"].rstrip()
    text = text.strip("\n")
    is_revert = kind == "revert"
    # Footers are parsed here only when they matter for the version; else on first use.
    if not (is_revert or "BREAKING" in text or "release-as" in text.lower()):
        return ConventionalCommit(sha, kind, scope, bang, description, text)
    body, footers = _split_footers(text)
    notes = tuple(value for name, value in footers if name in _BREAKING_TOKENS and value)
    breaking = bang or any(name in _BREAKING_TOKENS for name, _ in footers)
    return ConventionalCommit(
        sha,
        kind,
        scope,
        breaking,
        description,
        text,
        notes,
        _last_footer(footers, "Release-As"),
        is_revert,
        _reverted_sha(body, footers) if is_revert else None,
    )


def _last_footer(footers: tuple[tuple[str, str], ...], token: str) -> str | None:
    wanted = token.casefold()
    for name, value in reversed(footers):
        if name.casefold() == wanted:
            return value
    return None


def _split_footers(text: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Body and footers: footers start at a paragraph that opens with ``Token: value``.

    A ``BREAKING CHANGE:`` line starts them anywhere; lines that are no footer continue the
    value of the footer above.
    """
    start = next(
        (
            match.start()
            for match in _FOOTER_LINE.finditer(text)
            if text.startswith("BREAKING", match.start()) or _opens_paragraph(text, match.start())
        ),
        None,
    )
    if start is None:
        return text.strip(), ()
    footers: list[tuple[str, list[str]]] = []
    for line in text[start:].split("\n"):
        match = _FOOTER.fullmatch(line)
        if match is not None:
            footers.append((match["token"], [match["value"].rstrip()]))
        else:
            footers[-1][1].append(line.rstrip())
    body = text[:start].strip()
    return body, tuple((name, "\n".join(value).strip()) for name, value in footers)


def _reverted_sha(body: str, footers: tuple[tuple[str, str], ...]) -> str | None:
    found = _REVERTS_COMMIT.search(body)
    if found is not None:
        return found["sha"].lower()
    for name, value in footers:
        if name.casefold() in ("refs", "reverts"):
            words = value.replace(",", " ").split()
            for word in words:
                if _SHA.fullmatch(word):
                    return word.lower()
    return None
