"""How versions are ordered and package names compared, per ecosystem and range type.

PyPI versions follow PEP 440 (``packaging``); npm versions and OSV ``SEMVER`` ranges follow
SemVer 2.0 precedence (``semver``). A version that does not parse is ``None``; callers decide
what that means (matching reads such bounds conservatively). Nothing here knows OSV records.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import semver
from packaging.utils import canonicalize_version
from packaging.version import InvalidVersion, Version

SUPPORTED_ECOSYSTEMS = ("PyPI", "npm")
"""The ecosystems whose dependencies Shipyard reads and whose ranges it can order."""

_PEP503 = re.compile(r"[-_.]+")


@lru_cache(maxsize=65536)
def normalize_name(ecosystem: str, name: str) -> str:
    """The form of a package name that two spellings of the same package share."""
    if ecosystem == "PyPI":
        return _PEP503.sub("-", name).lower()
    return name


def version_key(ordering: str, text: str) -> Any | None:
    """A sortable key for ``text`` under ``ordering`` (``PyPI``, ``npm`` or ``SEMVER``)."""
    if ordering == "PyPI":
        return _pep440(text)
    if ordering in ("npm", "SEMVER"):
        return _semver(text)
    return None


def can_order(ordering: str) -> bool:
    """Whether versions under ``ordering`` (an ecosystem or ``SEMVER``) can be compared."""
    return ordering in ("PyPI", "npm", "SEMVER")


@lru_cache(maxsize=65536)
def canonical_version(ecosystem: str, text: str) -> str:
    """One spelling per version, so that equal versions are equal strings (``1.0`` is ``1``)."""
    if ecosystem == "PyPI" and _pep440(text) is not None:
        return canonicalize_version(text)
    if ecosystem == "npm":
        parsed = _semver(text)
        if parsed is not None:
            return str(parsed.replace(build=None))
    return text


def listed_versions(ecosystem: str, versions: Iterable[str]) -> str:
    """Versions in canonical spelling, each between newlines: ``"\\n1\\n1.1\\n"``.

    Membership is then a substring test of ``"\\n" + canonical + "\\n"``, which needs no set
    built per record when thousands of records are read for one scan.
    """
    canonical = sorted({canonical_version(ecosystem, v) for v in versions})
    return "\n" + "\n".join(canonical) + "\n" if canonical else ""


@lru_cache(maxsize=65536)
def _pep440(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


@lru_cache(maxsize=65536)
def _semver(text: str) -> semver.Version | None:
    try:
        return semver.Version.parse(text.removeprefix("v"))
    except (ValueError, TypeError):
        return None
