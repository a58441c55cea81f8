"""OSV records as immutable values, and the one reader that checks a record against the schema.

``parse_advisory`` turns decoded JSON or YAML into an ``Advisory`` or raises
``InvalidAdvisory`` naming the source and the field; it keeps only what matching, severity
and reporting use. It must not decide whether a version is affected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal

from shipyard.core.config import closest_match
from shipyard.gates.advisories.versions import SUPPORTED_ECOSYSTEMS
from shipyard.gates.interface import AdvisorySourceError

EventKind = Literal["introduced", "fixed", "last_affected", "limit"]
EVENT_KINDS: tuple[EventKind, ...] = ("introduced", "fixed", "last_affected", "limit")
RANGE_TYPES = ("ECOSYSTEM", "SEMVER", "GIT")

_FRACTION = re.compile(r"(\.\d{6})\d+")


class InvalidAdvisory(AdvisorySourceError):
    """An advisory record is not valid OSV: the message names its source and the field."""


@dataclass(frozen=True)
class Event:
    """One point on a range's timeline: a version that introduces, fixes or bounds it."""

    kind: EventKind
    version: str


@dataclass(frozen=True)
class Range:
    """An affected range: its ordering (``ECOSYSTEM``, ``SEMVER``, ``GIT``) and its events."""

    type: str
    events: tuple[Event, ...]


@dataclass(frozen=True)
class ScoreVector:
    """A quantitative severity: its type (``CVSS_V3``…) and its vector or score."""

    type: str
    score: str


@dataclass(frozen=True)
class Affected:
    """The versions of one package that an advisory affects."""

    ecosystem: str
    name: str
    ranges: tuple[Range, ...]
    versions: tuple[str, ...]
    severity: tuple[ScoreVector, ...]
    database_severity: str | None

    canonical_versions: str | None = field(default=None, compare=False, repr=False)
    """The ``versions`` in canonical spelling, each between newlines (as the index stores them)."""

    @cached_property
    def memo(self) -> dict[str, Any]:
        """Values derived once per entry by the matcher (compiled ranges, listed versions)."""
        return {}


@dataclass(frozen=True)
class Advisory:
    """One OSV record, reduced to what Shipyard uses."""

    id: str
    modified: datetime
    published: datetime | None
    withdrawn: datetime | None
    aliases: tuple[str, ...]
    summary: str
    details: str
    severity: tuple[ScoreVector, ...]
    database_severity: str | None
    affected: tuple[Affected, ...]
    references: tuple[str, ...]

    @property
    def ids(self) -> frozenset[str]:
        """The record's id and its aliases, upper-cased for comparison."""
        return frozenset({self.id.upper(), *(alias.upper() for alias in self.aliases)})

    @property
    def title(self) -> str:
        """A one-line description: the summary, else the first line of the details."""
        if self.summary.strip():
            return self.summary.strip()
        for line in self.details.splitlines():
            if line.strip():
                text = line.strip().replace("**", "")
                return text if len(text) <= 160 else text[:159] + "…"
        return self.id

    def as_json(self) -> dict[str, Any]:
        """The record in OSV's own JSON form (only the fields kept), readable by the parser."""
        record: dict[str, Any] = {
            "id": self.id,
            "modified": _iso(self.modified),
            "aliases": list(self.aliases),
            "summary": self.summary,
            "details": self.details,
            "affected": [_affected_json(a) for a in self.affected],
            "references": [{"type": "WEB", "url": url} for url in self.references],
        }
        if self.published is not None:
            record["published"] = _iso(self.published)
        if self.withdrawn is not None:
            record["withdrawn"] = _iso(self.withdrawn)
        if self.severity:
            record["severity"] = [{"type": s.type, "score": s.score} for s in self.severity]
        if self.database_severity:
            record["database_specific"] = {"severity": self.database_severity}
        return record


def parse_advisory(raw: Any, source: str) -> Advisory:
    """Check a decoded OSV record and return it as an ``Advisory``; ``source`` names it."""
    reader = _Reader(source)
    record = reader.mapping(raw, "")
    advisory_id = reader.text(record.get("id"), "id", required=True)
    reader.where = f"{source} ({advisory_id})" if advisory_id else source
    modified = reader.timestamp(record.get("modified"), "modified", required=True)
    assert modified is not None
    affected_raw = reader.items(record.get("affected"), "affected")
    affected = tuple(
        reader.affected(item, f"affected[{index}]") for index, item in enumerate(affected_raw)
    )
    return Advisory(
        id=advisory_id,
        modified=modified,
        published=reader.timestamp(record.get("published"), "published"),
        withdrawn=reader.timestamp(record.get("withdrawn"), "withdrawn"),
        aliases=tuple(
            reader.text(alias, f"aliases[{index}]", required=True)
            for index, alias in enumerate(reader.items(record.get("aliases"), "aliases"))
        ),
        summary=reader.text(record.get("summary"), "summary"),
        details=reader.text(record.get("details"), "details"),
        severity=reader.scores(record.get("severity"), "severity"),
        database_severity=_rating(record.get("database_specific")),
        affected=affected,
        references=tuple(
            url
            for index, item in enumerate(reader.items(record.get("references"), "references"))
            if (url := reader.text(reader.mapping(item, f"references[{index}]").get("url"), ""))
        ),
    )


def trusted_advisory(record: Mapping[str, Any]) -> Advisory:
    """Rebuild an ``Advisory`` from :meth:`Advisory.as_json` output that was checked before.

    The local index stores only records that ``parse_advisory`` accepted, so reading them back
    skips the checks; a damaged index raises ``KeyError``, ``TypeError`` or ``ValueError``.
    """
    return Advisory(
        id=record["id"],
        modified=_time(record["modified"]),
        published=_time(record["published"]) if "published" in record else None,
        withdrawn=_time(record["withdrawn"]) if "withdrawn" in record else None,
        aliases=tuple(record["aliases"]),
        summary=record["summary"],
        details=record["details"],
        severity=tuple(ScoreVector(s["type"], s["score"]) for s in record.get("severity", ())),
        database_severity=(record.get("database_specific") or {}).get("severity"),
        affected=tuple(
            Affected(
                ecosystem=entry["package"]["ecosystem"],
                name=entry["package"]["name"],
                ranges=tuple(
                    Range(
                        type=r["type"],
                        events=tuple(Event(*next(iter(e.items()))) for e in r["events"]),
                    )
                    for r in entry["ranges"]
                ),
                versions=tuple(entry["versions"]),
                severity=tuple(
                    ScoreVector(s["type"], s["score"]) for s in entry.get("severity", ())
                ),
                database_severity=(entry.get("database_specific") or {}).get("severity"),
                canonical_versions=entry.get("canonical_versions"),
            )
            for entry in record["affected"]
        ),
        references=tuple(ref["url"] for ref in record["references"]),
    )


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


class _Reader:
    """Reads one record, raising ``InvalidAdvisory`` at the first field that is wrong."""

    def __init__(self, source: str) -> None:
        self.where = source

    def fail(self, path: str, message: str) -> InvalidAdvisory:
        at = f"{path}: " if path else ""
        return InvalidAdvisory(
            f"{self.where}: {at}{message}",
            hint="fix or remove the record; OSV's schema is at https://ossf.github.io/osv-schema/",
        )

    def mapping(self, value: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a mapping, got {_kind(value)}")
        return value

    def items(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list, got {_kind(value)}")
        return value

    def text(self, value: Any, path: str, *, required: bool = False) -> str:
        if value is None:
            if required:
                raise self.fail(path, "is missing")
            return ""
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {_kind(value)}")
        if required and not value.strip():
            raise self.fail(path, "is empty")
        return value

    def timestamp(self, value: Any, path: str, *, required: bool = False) -> datetime | None:
        if value is None:
            if required:
                raise self.fail(path, "is missing")
            return None
        if isinstance(value, datetime):
            moment = value
        else:
            text = self.text(value, path)
            try:
                moment = datetime.fromisoformat(_FRACTION.sub(r"\1", text.strip()))
            except ValueError:
                raise self.fail(
                    path, f"{text!r} is not an RFC 3339 timestamp such as 2024-05-01T12:00:00Z"
                ) from None
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    def scores(self, value: Any, path: str) -> tuple[ScoreVector, ...]:
        found = []
        for index, item in enumerate(self.items(value, path)):
            entry = self.mapping(item, f"{path}[{index}]")
            found.append(
                ScoreVector(
                    type=self.text(entry.get("type"), f"{path}[{index}].type", required=True),
                    score=self.text(entry.get("score"), f"{path}[{index}].score", required=True),
                )
            )
        return tuple(found)

    def affected(self, value: Any, path: str) -> Affected:
        entry = self.mapping(value, path)
        package = self.mapping(entry.get("package"), f"{path}.package")
        ecosystem = self.text(package.get("ecosystem"), f"{path}.package.ecosystem", required=True)
        name = self.text(package.get("name"), f"{path}.package.name", required=True)
        near = closest_match(ecosystem.split(":")[0], SUPPORTED_ECOSYSTEMS)
        if near is not None and near != ecosystem and near.lower() == ecosystem.lower():
            raise self.fail(
                f"{path}.package.ecosystem",
                f"unknown ecosystem {ecosystem!r}; ecosystem names are case-sensitive: "
                f"did you mean {near!r}?",
            )
        ranges = tuple(
            self.range(item, f"{path}.ranges[{index}]")
            for index, item in enumerate(self.items(entry.get("ranges"), f"{path}.ranges"))
        )
        versions = tuple(
            self.text(item, f"{path}.versions[{index}]", required=True)
            for index, item in enumerate(self.items(entry.get("versions"), f"{path}.versions"))
        )
        return Affected(
            ecosystem=ecosystem,
            name=name,
            ranges=ranges,
            versions=versions,
            severity=self.scores(entry.get("severity"), f"{path}.severity"),
            database_severity=_rating(entry.get("database_specific"))
            or _rating(entry.get("ecosystem_specific")),
        )

    def range(self, value: Any, path: str) -> Range:
        entry = self.mapping(value, path)
        kind = self.text(entry.get("type"), f"{path}.type", required=True)
        if kind not in RANGE_TYPES:
            raise self.fail(
                f"{path}.type", f"unknown range type {kind!r}; OSV defines {', '.join(RANGE_TYPES)}"
            )
        raw_events = self.items(entry.get("events"), f"{path}.events")
        if not raw_events:
            raise self.fail(f"{path}.events", "a range needs at least one event")
        events = []
        for index, item in enumerate(raw_events):
            event = self.mapping(item, f"{path}.events[{index}]")
            keys = [key for key in event if key in EVENT_KINDS]
            if len(keys) != 1 or len(event) != 1:
                raise self.fail(
                    f"{path}.events[{index}]",
                    "an event has exactly one of introduced, fixed, last_affected or limit, "
                    f"not {', '.join(map(str, event)) or 'none'}",
                )
            kind_of_event: EventKind = keys[0]
            version = self.text(event[kind_of_event], f"{path}.events[{index}].{kind_of_event}")
            if not version.strip():
                raise self.fail(f"{path}.events[{index}].{kind_of_event}", "is empty")
            events.append(Event(kind_of_event, version.strip()))
        if not any(event.kind == "introduced" for event in events):
            raise self.fail(f"{path}.events", "a range needs an 'introduced' event")
        kinds = {event.kind for event in events}
        if {"fixed", "last_affected"} <= kinds:
            raise self.fail(
                f"{path}.events", "a range has either 'fixed' or 'last_affected' events, not both"
            )
        return Range(type=kind, events=tuple(events))


def _rating(value: Any) -> str | None:
    if isinstance(value, Mapping):
        rating = value.get("severity")
        if isinstance(rating, str) and rating.strip():
            return rating.strip()
    return None


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _affected_json(affected: Affected) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "package": {"ecosystem": affected.ecosystem, "name": affected.name},
        "ranges": [
            {"type": r.type, "events": [{e.kind: e.version} for e in r.events]}
            for r in affected.ranges
        ],
        "versions": list(affected.versions),
    }
    if affected.severity:
        entry["severity"] = [{"type": s.type, "score": s.score} for s in affected.severity]
    if affected.database_severity:
        entry["database_specific"] = {"severity": affected.database_severity}
    return entry
