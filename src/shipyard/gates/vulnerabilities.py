"""The known-vulnerabilities gate: the project's pinned dependencies against OSV advisories.

Matches by the OSV rules, merges aliases into one finding, computes severities, applies
ignores (an expired one stops ignoring, with a warning) and fails closed on stale, missing or
unreachable data. It reaches advisory sources only through the ``AdvisorySource`` interface.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar, get_args

from packaging.markers import InvalidMarker, Marker

from shipyard.core.config import format_duration
from shipyard.core.config.gates import (
    IgnoredAdvisory,
    MarkerVariable,
    VulnerabilityGateSettings,
)
from shipyard.gates.advisories import Advisory, AdvisorySource, PackageVersion, source_named
from shipyard.gates.advisories.matching import (
    entries_for,
    fixed_versions,
    is_affected,
    last_affected_versions,
    smallest_upgrade,
)
from shipyard.gates.advisories.severity import ComputedSeverity, compute_severity
from shipyard.gates.advisories.versions import version_key
from shipyard.gates.deps import (
    Dependency,
    no_dependency_files,
    scan_dependencies,
)
from shipyard.gates.interface import (
    AdvisorySourceError,
    Finding,
    Gate,
    GateContext,
    GateKind,
    Severity,
    Verdict,
    count_of,
    register,
)

UNPINNED = "SHIPYARD-UNPINNED"
"""The finding id of a requirement that names no single version."""

STALE_DATA = "SHIPYARD-STALE-ADVISORIES"
"""The finding id of advisory data older than ``max_age``."""

SOURCE_FAILED = "SHIPYARD-ADVISORY-SOURCE"
"""The finding id of an advisory source that could not be used."""

EXPIRED_IGNORE = "SHIPYARD-EXPIRED-IGNORE"
"""The finding id of an ignore entry whose date has passed."""


_ID_PREFERENCE = ("GHSA-", "PYSEC-", "OSV-", "RUSTSEC-", "GO-")


@dataclass(frozen=True)
class _Group:
    """Advisories that name each other: one vulnerability."""

    advisories: tuple[Advisory, ...]

    @property
    def ids(self) -> frozenset[str]:
        """Every id and alias of the group, upper-cased."""
        return frozenset().union(*(advisory.ids for advisory in self.advisories))

    @property
    def primary(self) -> str:
        """The id a finding is known by: a record's own id, GHSA and PYSEC first."""
        own = sorted({advisory.id for advisory in self.advisories})

        def rank(advisory_id: str) -> tuple[int, str]:
            upper = advisory_id.upper()
            for position, prefix in enumerate(_ID_PREFERENCE):
                if upper.startswith(prefix):
                    return position, advisory_id
            return len(_ID_PREFERENCE), advisory_id

        return min(own, key=rank)


@register
class VulnerabilityGate(Gate):
    """Fails when a pinned dependency has a known vulnerability at or above ``fail_on``."""

    name: ClassVar[str] = "vulnerabilities"
    kind: ClassVar[GateKind] = "release"

    def __init__(
        self, settings: VulnerabilityGateSettings, sources: Sequence[AdvisorySource]
    ) -> None:
        self.settings = settings
        self.sources = tuple(sources)

    @classmethod
    def for_context(cls, context: GateContext) -> VulnerabilityGate:
        """The gate with the configured sources (``local`` by default)."""
        gates = context.config.gates
        settings = (
            gates.vulnerabilities
            if gates is not None and gates.vulnerabilities is not None
            else VulnerabilityGateSettings()
        )
        sources = [
            source_named(name).from_settings(settings, context.state_root)
            for name in settings.sources
        ]
        return cls(settings, sources)

    def judge(self, context: GateContext) -> Verdict:
        """Match the workspace's dependencies (or the stored SBOM's) against the advisories."""
        scan = scan_dependencies(context.workspace, context.sbom, source_dir=context.source_dir)
        findings: list[Finding] = []
        usable: list[AdvisorySource] = []
        for source in self.sources:
            note = self._freshness(source, context)
            if note is not None:
                findings.append(note)
                if note.blocking:
                    continue
            usable.append(source)
        environment = self.settings.environment
        dependencies = [d for d in scan.dependencies if for_target(d.marker, environment)]
        elsewhere = len(scan.dependencies) - len(dependencies)
        pinned = [d for d in dependencies if d.version is not None]
        queries = {d: PackageVersion(d.ecosystem, d.name, d.version) for d in pinned if d.version}
        candidates = self._candidates(usable, list(dict.fromkeys(queries.values())), findings)
        ignores = {entry.id.upper(): entry for entry in self.settings.ignore}
        used_ignores: set[str] = set()
        for dependency in dependencies:
            if dependency.version is None:
                findings.append(_unpinned(dependency))
                continue
            query = queries[dependency]
            if version_key(dependency.ecosystem, dependency.version) is None:
                findings.append(_unreadable_version(dependency))
            findings.extend(
                self._findings_for(
                    dependency, candidates.get(query, ()), ignores, used_ignores, context.today
                )
            )
        for key in sorted(used_ignores):
            entry = ignores[key]
            if entry.until < context.today:
                findings.append(_expired(entry))
        return _verdict(
            findings,
            scan.files,
            len(dependencies),
            len(pinned),
            sbom=context.sbom is not None,
            elsewhere=elsewhere,
        )

    def _freshness(self, source: AdvisorySource, context: GateContext) -> Finding | None:
        try:
            freshness = source.freshness()
        except AdvisorySourceError as exc:
            return _source_failed(source, exc)
        if freshness is None:
            return None
        age = freshness.age(context.now)
        limit = self.settings.max_age.total_seconds()
        if age <= limit:
            return None
        fail = self.settings.on_stale == "fail"
        newest = freshness.newest_modified or freshness.fetched_at
        return Finding(
            id=STALE_DATA,
            severity=Severity.HIGH if fail else Severity.INFO,
            location=source.description,
            message=f"the advisory data of {source.description} is {_age(age)} old (newest "
            f"record {newest:%Y-%m-%d}), older than max_age {_max_age(self.settings)}"
            + ("; the gate fails closed" if fail else "; results may miss new advisories"),
            remediation="run 'shipyard advisories import PATH' with current data",
            blocking=fail,
            details={"source": source.name, "age_s": round(age), "max_age_s": round(limit)},
        )

    def _candidates(
        self,
        sources: Iterable[AdvisorySource],
        queries: list[PackageVersion],
        findings: list[Finding],
    ) -> dict[PackageVersion, list[Advisory]]:
        merged: dict[PackageVersion, dict[str, Advisory]] = {}
        for source in sources:
            if not queries:
                break
            try:
                answer = source.advisories(queries)
            except AdvisorySourceError as exc:
                findings.append(_source_failed(source, exc))
                continue
            for query, advisories in answer.items():
                bucket = merged.setdefault(query, {})
                for advisory in advisories:
                    known = bucket.get(advisory.id)
                    if known is None or advisory.modified > known.modified:
                        bucket[advisory.id] = advisory
        return {query: list(bucket.values()) for query, bucket in merged.items()}

    def _findings_for(
        self,
        dependency: Dependency,
        candidates: Sequence[Advisory],
        ignores: Mapping[str, IgnoredAdvisory],
        used_ignores: set[str],
        today: date,
    ) -> list[Finding]:
        assert dependency.version is not None
        version = dependency.version
        eco, name = dependency.ecosystem, dependency.name
        matched = [a for a in candidates if is_affected(a, eco, name, version)]
        if not matched:
            return []
        groups = _merge_aliases(matched)
        counted: list[Advisory] = []
        for group in groups:
            entry = _ignore_for(group, ignores)
            if entry is None or entry.until < today:
                counted.extend(group.advisories)
        clears_all = smallest_upgrade(counted, eco, name, version) if counted else None
        unknown = Severity(self.settings.unknown_severity)
        fail_on = Severity(self.settings.fail_on)
        findings = []
        for group in groups:
            entry = _ignore_for(group, ignores)
            if entry is not None:
                used_ignores.add(entry.id.upper())
            ignored = entry is not None and entry.until >= today
            vectors = [
                vector
                for advisory in group.advisories
                for affected in entries_for(advisory, eco, name)
                for vector in affected.severity
            ] or [vector for advisory in group.advisories for vector in advisory.severity]
            severity = compute_severity(group.advisories, vectors, unknown)
            findings.append(
                _vulnerability(
                    dependency,
                    group,
                    severity,
                    fixed=fixed_versions(group.advisories, eco, name, version),
                    upgrade=smallest_upgrade(group.advisories, eco, name, version),
                    clears_all=clears_all,
                    last_affected=last_affected_versions(group.advisories, eco, name),
                    blocking=not ignored and severity.severity.at_least(fail_on),
                    ignored=entry if ignored else None,
                )
            )
        return findings


def _merge_aliases(advisories: Sequence[Advisory]) -> list[_Group]:
    """Groups of advisories that share an id or alias, in a stable order."""
    groups: list[tuple[set[str], list[Advisory]]] = []
    for advisory in sorted(advisories, key=lambda a: a.id):
        ids = set(advisory.ids)
        joined = [group for group in groups if group[0] & ids]
        for group in joined:
            groups.remove(group)
            ids |= group[0]
        members = [member for group in joined for member in group[1]] + [advisory]
        groups.append((ids, members))
    found = [_Group(tuple(sorted(members, key=lambda a: a.id))) for _, members in groups]
    return sorted(found, key=lambda group: group.primary)


def _ignore_for(group: _Group, ignores: Mapping[str, IgnoredAdvisory]) -> IgnoredAdvisory | None:
    for advisory_id in sorted(group.ids):
        if advisory_id in ignores:
            return ignores[advisory_id]
    return None


def _vulnerability(
    dependency: Dependency,
    group: _Group,
    severity: ComputedSeverity,
    *,
    fixed: list[str],
    upgrade: str | None,
    clears_all: str | None,
    last_affected: list[str],
    blocking: bool,
    ignored: IgnoredAdvisory | None,
) -> Finding:
    primary = group.primary
    aliases = sorted(group.ids - {primary.upper()})
    title = next(a.title for a in group.advisories if a.id == primary)
    package = f"{dependency.name} {dependency.version}"
    if upgrade is not None:
        remediation = f"upgrade {dependency.name} to {upgrade}"
        if clears_all is not None and clears_all != upgrade:
            remediation += f" ({clears_all} clears every advisory for {dependency.name})"
    elif last_affected:
        remediation = (
            f"no fixed version is known; versions after {last_affected[-1]} are not affected"
        )
    else:
        remediation = f"no fixed version of {dependency.name} is known"
    if severity.score is not None:
        scored = f"{severity.source} {severity.score:g}"
    elif severity.source == "database":
        scored = "the database's rating"
    else:
        scored = "no severity in the advisory: unknown_severity"
    message = f"{package}: {title} ({severity.severity.value}, {scored})"
    details: dict[str, Any] = {
        "package": dependency.name,
        "ecosystem": dependency.ecosystem,
        "version": dependency.version,
        "aliases": aliases,
        "advisories": [a.id for a in group.advisories],
        "fixed_versions": fixed,
        "upgrade": upgrade,
        "upgrade_clears_all": clears_all,
        "severity_source": severity.source,
        "score": severity.score,
        "vector": severity.vector,
        "references": sorted({url for a in group.advisories for url in a.references})[:10],
    }
    if severity.problem:
        details["severity_problem"] = severity.problem
    suppression = None
    if ignored is not None:
        suppression = f"ignored until {ignored.until.isoformat()}: {ignored.reason}"
    return Finding(
        id=primary,
        severity=severity.severity,
        location=dependency.location,
        message=message,
        remediation=remediation,
        blocking=blocking,
        suppression=suppression,
        details=details,
    )


def _unpinned(dependency: Dependency) -> Finding:
    return Finding(
        id=UNPINNED,
        severity=Severity.INFO,
        location=dependency.location,
        message=f"{dependency.requirement or dependency.name} is not checked: "
        f"{dependency.unpinned_reason or 'no single version is pinned'}",
        remediation="pin an exact version (==) or commit a lockfile",
        details={"package": dependency.name, "ecosystem": dependency.ecosystem},
    )


def _unreadable_version(dependency: Dependency) -> Finding:
    return Finding(
        id=UNPINNED,
        severity=Severity.INFO,
        location=dependency.location,
        message=f"{dependency.name} {dependency.version} is not a valid {dependency.ecosystem} "
        "version; it was checked against listed versions only",
        remediation="pin a version the registry publishes",
        details={"package": dependency.name, "ecosystem": dependency.ecosystem},
    )


def _source_failed(source: AdvisorySource, error: AdvisorySourceError) -> Finding:
    return Finding(
        id=SOURCE_FAILED,
        severity=Severity.HIGH,
        location=source.description,
        message=f"{error.message}; the gate fails closed",
        remediation=error.hint,
        blocking=True,
        details={"source": source.name},
    )


def _expired(entry: IgnoredAdvisory) -> Finding:
    return Finding(
        id=EXPIRED_IGNORE,
        severity=Severity.INFO,
        location="shipyard.yaml: gates.vulnerabilities.ignore",
        message=f"the ignore of {entry.id} expired on {entry.until.isoformat()}; "
        "the advisory counts again",
        remediation="upgrade the package, or renew the entry with a new 'until' and reason",
        details={"id": entry.id, "until": entry.until.isoformat(), "reason": entry.reason},
    )


def _verdict(
    findings: list[Finding],
    files: Sequence[str],
    total: int,
    pinned: int,
    *,
    sbom: bool = False,
    elsewhere: int = 0,
) -> Verdict:
    if not files:
        findings = [*findings, no_dependency_files("dependency")]
    counted = [f for f in findings if f.counts]
    vulnerable = [f for f in counted if not f.id.startswith("SHIPYARD-")]
    ignored = len(findings) - len(counted)
    where = files[0] if sbom and files else count_of(len(files), "file")
    parts = [
        f"{'1 dependency' if total == 1 else f'{total} dependencies'} in {where}",
        f"{len(vulnerable)} known vulnerabilit{'ies' if len(vulnerable) != 1 else 'y'}",
    ]
    if total - pinned:
        parts.append(f"{total - pinned} not pinned")
    if ignored:
        parts.append(f"{ignored} ignored")
    if elsewhere:
        parts.append(f"{elsewhere} only for other environments, not checked")
    if not files:
        parts = ["no dependency files found; nothing was checked"]
    return Verdict.of(findings, ", ".join(parts))


_MARKER_VARIABLES = frozenset(get_args(MarkerVariable)) | {"extra"}
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def for_target(marker: str | None, environment: Mapping[MarkerVariable, str]) -> bool:
    """Whether a dependency with ``marker`` is installed in the target ``environment``.

    Only a marker whose every variable the environment gives is evaluated; anything else (no
    environment configured, a variable it does not give, a marker that cannot be evaluated)
    counts as installed, so that the gate never skips what it cannot rule out."""
    if not marker or not environment:
        return True
    given = {str(name): value for name, value in environment.items()}
    names = set(_NAME.findall(_QUOTED.sub(" ", marker))) & _MARKER_VARIABLES
    if not names <= given.keys():
        return True
    try:
        return Marker(marker).evaluate(given)
    except (InvalidMarker, ValueError, TypeError):
        return True


def _age(seconds: float) -> str:
    days = int(seconds // 86_400)
    if days >= 2:
        return f"{days} days"
    hours = int(seconds // 3600)
    return f"{hours} hours" if hours >= 1 else f"{int(seconds // 60)} minutes"


def _max_age(settings: VulnerabilityGateSettings) -> str:
    return format_duration(settings.max_age)
