"""Semantic versions exactly as SemVer 2.0.0 defines them: parsing, precedence and bumps.

A ``Version`` is an immutable value; every change returns a new one. This module knows
nothing of git, tags or commits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum

from shipyard.core.errors import UserError, excerpt

__all__ = ["MAX_VERSION_LENGTH", "BumpLevel", "InvalidVersion", "Version", "excerpt"]

MAX_VERSION_LENGTH = 256
"""The longest version text accepted; SemVer sets no limit, but no real version comes close."""

_NUMBER = r"0|[1-9]\d*"
_PRERELEASE_ID = r"0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*"
_SEMVER = re.compile(
    rf"(?P<major>{_NUMBER})\.(?P<minor>{_NUMBER})\.(?P<patch>{_NUMBER})"
    rf"(?:-(?P<prerelease>(?:{_PRERELEASE_ID})(?:\.(?:{_PRERELEASE_ID}))*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)
_IDENTIFIER = re.compile(r"[0-9A-Za-z-]+")
_NUMERIC = re.compile(r"\d+")

# Precedence of one prerelease identifier: numeric ones sort below alphanumeric ones.
_PrereleaseKey = tuple[tuple[int, int | str], ...]


class InvalidVersion(UserError):
    """A text is not a semantic version, or a version's parts are out of range."""


class BumpLevel(IntEnum):
    """How much a change moves the version; levels compare, so the largest one wins."""

    NONE = 0
    PATCH = 1
    MINOR = 2
    MAJOR = 3

    @classmethod
    def from_name(cls, name: str) -> BumpLevel:
        """The level called ``name`` ("major", "minor", "patch" or "none")."""
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise InvalidVersion(
                f"{name!r} is not a bump level", hint="use major, minor, patch or none"
            ) from None


@dataclass(frozen=True)
class Version:
    """A SemVer 2.0.0 version: ``<`` is precedence (build metadata ignored), ``==`` is exact."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: tuple[str, ...] = ()
    _key: tuple[int, int, int, int, _PrereleaseKey] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        for name in ("major", "minor", "patch"):
            number = getattr(self, name)
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                raise InvalidVersion(f"the {name} version must be a whole number ≥ 0: {number!r}")
        object.__setattr__(self, "prerelease", tuple(self.prerelease))
        object.__setattr__(self, "build", tuple(self.build))
        for identifier in self.prerelease:
            _check_identifier(identifier, "prerelease", numeric_without_zeros=True)
        for identifier in self.build:
            _check_identifier(identifier, "build metadata", numeric_without_zeros=False)
        key: _PrereleaseKey = tuple(
            (0, int(part)) if _NUMERIC.fullmatch(part) else (1, part) for part in self.prerelease
        )
        # A release ranks above every prerelease of the same MAJOR.MINOR.PATCH.
        object.__setattr__(self, "_key", (self.major, self.minor, self.patch, 0 if key else 1, key))

    @classmethod
    def parse(cls, text: str) -> Version:
        """The version ``text`` spells, such as ``1.3.0-rc.1+build.5``; InvalidVersion if none."""
        if len(text) > MAX_VERSION_LENGTH:
            raise InvalidVersion(
                f"{excerpt(text)} is not a semantic version: a version has at most "
                f"{MAX_VERSION_LENGTH} characters",
                hint="write MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], such as 1.4.0 or 2.0.0-rc.1",
            )
        match = _SEMVER.fullmatch(text)
        if match is None:
            raise InvalidVersion(f"{text!r} is not a semantic version", hint=_hint(text))
        prerelease, build = match["prerelease"], match["build"]
        return cls(
            int(match["major"]),
            int(match["minor"]),
            int(match["patch"]),
            tuple(prerelease.split(".")) if prerelease else (),
            tuple(build.split(".")) if build else (),
        )

    @classmethod
    def try_parse(cls, text: str) -> Version | None:
        """The version ``text`` spells, or None when it is not a semantic version."""
        if len(text) > MAX_VERSION_LENGTH or _SEMVER.fullmatch(text) is None:
            return None
        return cls.parse(text)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key < other._key

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key <= other._key

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key > other._key

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key >= other._key

    @property
    def is_prerelease(self) -> bool:
        """Whether the version has prerelease identifiers (``1.3.0-rc.1``)."""
        return bool(self.prerelease)

    def same_precedence(self, other: Version) -> bool:
        """Whether the two versions rank equal, that is, differ at most in build metadata."""
        return self._key == other._key

    def finalize(self) -> Version:
        """The release this version leads to: ``1.3.0-rc.2+b.7`` gives ``1.3.0``."""
        return Version(self.major, self.minor, self.patch)

    def bump(self, level: BumpLevel) -> Version:
        """The next release at ``level`` from MAJOR.MINOR.PATCH, dropping prerelease and build."""
        if level is BumpLevel.MAJOR:
            return Version(self.major + 1, 0, 0)
        if level is BumpLevel.MINOR:
            return Version(self.major, self.minor + 1, 0)
        if level is BumpLevel.PATCH:
            return Version(self.major, self.minor, self.patch + 1)
        return self.finalize()

    def with_prerelease(self, token: str, number: int) -> Version:
        """This MAJOR.MINOR.PATCH as prerelease ``token.number`` (``1.3.0-rc.2``), without build."""
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise InvalidVersion(f"a prerelease number must be 1 or more, not {number!r}")
        if not _IDENTIFIER.fullmatch(token) or _NUMERIC.fullmatch(token):
            raise InvalidVersion(
                f"{token!r} is not a prerelease token",
                hint="use a word of letters, digits and '-', such as rc, beta or alpha",
            )
        return Version(self.major, self.minor, self.patch, (token, str(number)))


def _check_identifier(identifier: object, what: str, *, numeric_without_zeros: bool) -> None:
    if not isinstance(identifier, str) or not _IDENTIFIER.fullmatch(identifier):
        raise InvalidVersion(
            f"{identifier!r} is not a valid {what} identifier",
            hint="identifiers are non-empty and use only letters, digits and '-'",
        )
    leading_zero = len(identifier) > 1 and identifier.startswith("0")
    if numeric_without_zeros and leading_zero and _NUMERIC.fullmatch(identifier):
        raise InvalidVersion(
            f"the numeric {what} identifier {identifier!r} has a leading zero",
            hint=f"write {int(identifier)}",
        )


def _hint(text: str) -> str:
    if text[:1] in ("v", "V") and _SEMVER.fullmatch(text[1:]):
        return f"drop the leading {text[0]!r}: write {text[1:]}"
    core = text.split("+", 1)[0].split("-", 1)[0]
    parts = core.split(".")
    if len(parts) != 3:
        return "write MAJOR.MINOR.PATCH with three numbers, such as 1.4.0"
    if any(len(part) > 1 and part.startswith("0") and part.isdigit() for part in parts):
        return "numbers may not have leading zeros: write 1.2.3, not 01.02.03"
    return "write MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], such as 1.4.0 or 2.0.0-rc.1"
