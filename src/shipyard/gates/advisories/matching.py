"""Whether a package version is affected by an advisory, exactly as the OSV specification says.

Listed ``versions`` or any ``ECOSYSTEM``/``SEMVER`` range (sorted events, ``limit`` caps);
withdrawn records affect nothing, and a bound that does not parse is read so that more is
affected, never less. Also the fixed versions above a version and the smallest clean upgrade.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from shipyard.gates.advisories.model import Advisory, Affected, Range
from shipyard.gates.advisories.versions import (
    canonical_version,
    listed_versions,
    normalize_name,
    version_key,
)


@dataclass(frozen=True)
class _CompiledRange:
    """A range ready to test: its ordering, limit keys (None: no limit) and sorted events."""

    ordering: str
    limits: tuple[Any, ...] | None
    events: tuple[tuple[str, Any], ...]


def entries_for(advisory: Advisory, ecosystem: str, name: str) -> list[Affected]:
    """The ``affected`` entries of ``advisory`` that name this package."""
    wanted = normalize_name(ecosystem, name)
    return [
        entry
        for entry in advisory.affected
        if entry.ecosystem == ecosystem and normalize_name(ecosystem, entry.name) == wanted
    ]


def is_affected(advisory: Advisory, ecosystem: str, name: str, version: str) -> bool:
    """Whether ``name`` at ``version`` is affected (``IsVulnerable`` of the OSV spec)."""
    if advisory.withdrawn is not None:
        return False
    return any(entry_affects(entry, version) for entry in entries_for(advisory, ecosystem, name))


def entry_affects(entry: Affected, version: str) -> bool:
    """Whether ``version`` is in the entry's ``versions`` or in any of its ranges."""
    listed = _listed(entry)
    if listed and f"\n{canonical_version(entry.ecosystem, version)}\n" in listed:
        return True
    return any(_in_range(compiled, version) for compiled in _compiled(entry))


def range_affects(ecosystem: str, candidate: Range, version: str) -> bool:
    """Whether ``version`` lies in one ``ECOSYSTEM`` or ``SEMVER`` range (GIT ranges: never)."""
    compiled = _compile(ecosystem, candidate)
    return compiled is not None and _in_range(compiled, version)


def fixed_versions(
    advisories: Iterable[Advisory], ecosystem: str, name: str, version: str
) -> list[str]:
    """The ``fixed`` versions above ``version`` named by the advisories, lowest first."""
    current = version_key(ecosystem, version)
    found: dict[str, Any] = {}
    for advisory in advisories:
        for entry in entries_for(advisory, ecosystem, name):
            for candidate in entry.ranges:
                if candidate.type not in ("ECOSYSTEM", "SEMVER"):
                    continue
                for event in candidate.events:
                    if event.kind != "fixed":
                        continue
                    key = version_key(ecosystem, event.version)
                    if key is not None and (current is None or key > current):
                        found.setdefault(event.version, key)
    return [text for text, _ in sorted(found.items(), key=lambda item: item[1])]


def smallest_upgrade(
    advisories: Sequence[Advisory], ecosystem: str, name: str, version: str
) -> str | None:
    """The lowest fixed version above ``version`` that none of the advisories affects."""
    for candidate in fixed_versions(advisories, ecosystem, name, version):
        if not any(is_affected(a, ecosystem, name, candidate) for a in advisories):
            return candidate
    return None


def last_affected_versions(advisories: Iterable[Advisory], ecosystem: str, name: str) -> list[str]:
    """The ``last_affected`` bounds the advisories name for this package."""
    return sorted(
        {
            event.version
            for advisory in advisories
            for entry in entries_for(advisory, ecosystem, name)
            for candidate in entry.ranges
            for event in candidate.events
            if event.kind == "last_affected"
        }
    )


def _listed(entry: Affected) -> str:
    if entry.canonical_versions is not None:
        return entry.canonical_versions
    listed = entry.memo.get("listed")
    if listed is None:
        listed = listed_versions(entry.ecosystem, entry.versions)
        entry.memo["listed"] = listed
    return str(listed)


def _compiled(entry: Affected) -> tuple[_CompiledRange, ...]:
    compiled = entry.memo.get("ranges")
    if compiled is None:
        compiled = tuple(
            found
            for candidate in entry.ranges
            if (found := _compile(entry.ecosystem, candidate)) is not None
        )
        entry.memo["ranges"] = compiled
    return compiled


def _compile(ecosystem: str, candidate: Range) -> _CompiledRange | None:
    if candidate.type == "SEMVER":
        ordering = "SEMVER"
    elif candidate.type == "ECOSYSTEM" and ecosystem in ("PyPI", "npm"):
        ordering = ecosystem
    else:
        return None  # GIT ranges need the repository; ``versions`` covers them
    limits: list[Any] | None = None
    keyed: list[tuple[int, Any, int, str]] = []
    for position, event in enumerate(candidate.events):
        if event.kind == "limit":
            limits = [] if limits is None else limits
            if "*" in event.version:
                limits.append(None)  # infinity
                continue
            key = version_key(ordering, event.version)
            limits.append(None if key is None else key)  # an unreadable limit limits nothing
            continue
        key = None if event.version == "0" else version_key(ordering, event.version)
        if key is None and event.kind != "introduced":
            continue  # an unreadable fixed or last_affected bound would hide affected versions
        keyed.append((0 if key is None else 1, key, position, event.kind))
    # Unbounded events (key None) form their own group, so None is never compared to a key.
    keyed.sort(key=lambda item: (item[0], item[1], item[2]) if item[0] else (0, 0, item[2]))
    return _CompiledRange(
        ordering=ordering,
        limits=None if limits is None else tuple(limits),
        events=tuple((kind, key) for _, key, _, kind in keyed),
    )


def _in_range(compiled: _CompiledRange, version: str) -> bool:
    current = version_key(compiled.ordering, version)
    if current is None:
        return False
    if compiled.limits is not None and not any(
        limit is None or current < limit for limit in compiled.limits
    ):
        return False
    vulnerable = False
    for kind, key in compiled.events:
        if kind == "introduced":
            if key is None or current >= key:
                vulnerable = True
        elif key is not None and (
            (kind == "fixed" and current >= key) or (kind == "last_affected" and current > key)
        ):
            vulnerable = False
    return vulnerable
