"""The local advisory index: OSV records compiled into one SQLite file under the state directory.

An import reads a folder or zip of OSV JSON or YAML (libyaml when present), checks every
record and replaces the index by one atomic rename, so a failed import keeps the old one. A
record file over ``MAX_RECORD_BYTES`` is refused, and a ``modified`` time after the import
counts as the import's time.
Lookups go by ecosystem and package name; nothing here decides whether a version is affected.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import yaml

from shipyard.core.config.gates import VulnerabilityGateSettings
from shipyard.gates.advisories.interface import AdvisorySource, Freshness, PackageVersion
from shipyard.gates.advisories.model import (
    Advisory,
    InvalidAdvisory,
    parse_advisory,
    trusted_advisory,
)
from shipyard.gates.advisories.versions import (
    SUPPORTED_ECOSYSTEMS,
    listed_versions,
    normalize_name,
)
from shipyard.gates.documents import TooDeeplyNested, check_nesting, parse_json
from shipyard.gates.interface import AdvisorySourceError

try:
    from yaml import CBaseLoader as _YamlLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import BaseLoader as _YamlLoader  # type: ignore[assignment]

INDEX_FORMAT = "3"
"""The layout of the index file; an index of another layout must be imported again."""

RECORD_SUFFIXES = (".json", ".yaml", ".yml")
"""The files an import reads; everything else in the folder or zip is left alone."""

MAX_RECORD_BYTES = 32 * 1024 * 1024
"""The largest record file (or zip member) an import reads; OSV records are a few kilobytes."""

_IMPORT_HINT = "run 'shipyard advisories import PATH' with a folder or zip of OSV records"
_SHOWN_PROBLEMS = 10


class AdvisoryImportError(AdvisorySourceError):
    """Advisory files could not be read or are not valid OSV; nothing was imported."""


def index_dir(state_root: Path) -> Path:
    """Where advisory data lives in a state directory."""
    return state_root / "advisories"


def index_path(state_root: Path) -> Path:
    """The local index file of a state directory."""
    return index_dir(state_root) / "index.sqlite"


@dataclass(frozen=True)
class ImportSummary:
    """What an import did: how many records, what was skipped, and how current the data is."""

    source: str
    records: int
    packages: int
    newest_modified: datetime | None
    imported_at: datetime
    withdrawn: int = 0
    duplicates: int = 0
    other_ecosystems: Mapping[str, int] = field(default_factory=dict)
    invalid: tuple[str, ...] = ()
    future_modified: tuple[str, ...] = ()
    """Records whose ``modified`` time is after the import; the data's age ignores it."""

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "source": self.source,
            "records": self.records,
            "packages": self.packages,
            "newest_modified": _iso(self.newest_modified),
            "imported_at": _iso(self.imported_at),
            "withdrawn_skipped": self.withdrawn,
            "duplicates": self.duplicates,
            "other_ecosystems_skipped": dict(self.other_ecosystems),
            "invalid_skipped": list(self.invalid),
            "future_modified": list(self.future_modified),
        }


@dataclass(frozen=True)
class IndexStatus:
    """What the local index holds and how old its data is."""

    path: Path
    source: str
    records: int
    packages: int
    newest_modified: datetime | None
    imported_at: datetime

    @property
    def freshness(self) -> Freshness:
        """The index's freshness, for staleness checks."""
        return Freshness(self.newest_modified, self.imported_at, self.records)

    def as_json(self, now: datetime) -> dict[str, Any]:
        """A JSON-ready form, with the data's age at ``now`` in seconds."""
        return {
            "path": str(self.path),
            "source": self.source,
            "records": self.records,
            "packages": self.packages,
            "newest_modified": _iso(self.newest_modified),
            "imported_at": _iso(self.imported_at),
            "age_s": round(self.freshness.age(now), 3),
        }


def import_advisories(
    path: Path, state_root: Path, *, skip_invalid: bool = False, now: datetime | None = None
) -> ImportSummary:
    """Compile the OSV records in a folder or zip at ``path`` into the state's index."""
    moment = now or datetime.now(UTC)
    records: dict[str, Advisory] = {}
    problems: list[str] = []
    withdrawn = duplicates = 0
    other: Counter[str] = Counter()
    for name, raw in _read_records(path):
        try:
            advisory = parse_advisory(raw, name)
        except InvalidAdvisory as exc:
            problems.append(exc.message)
            continue
        if advisory.withdrawn is not None:
            withdrawn += 1
            continue
        ecosystems = {entry.ecosystem.split(":")[0] for entry in advisory.affected}
        if not ecosystems & set(SUPPORTED_ECOSYSTEMS):
            for ecosystem in ecosystems or {"(none)"}:
                other[ecosystem] += 1
            continue
        known = records.get(advisory.id)
        if known is not None:
            duplicates += 1
            if known.modified >= advisory.modified:
                continue
        records[advisory.id] = advisory
    if problems and not skip_invalid:
        shown = "\n  ".join(problems[:_SHOWN_PROBLEMS])
        more = len(problems) - _SHOWN_PROBLEMS
        extra = f"\n  … and {more} more" if more > 0 else ""
        raise AdvisoryImportError(
            f"{len(problems)} of the records in {path} are not valid OSV; nothing was "
            f"imported:\n  {shown}{extra}",
            hint="fix the records, or pass --skip-invalid to import the others",
        )
    if not records:
        raise AdvisoryImportError(
            f"{path} holds no OSV advisory for {' or '.join(SUPPORTED_ECOSYSTEMS)}",
            hint="give a folder or zip of OSV records (.json, .yaml), such as a clone of "
            "the PyPA advisory database",
        )
    future = tuple(sorted(a.id for a in records.values() if a.modified > moment))
    newest = min(max(advisory.modified for advisory in records.values()), moment)
    packages = _write_index(records, state_root, source=str(path), newest=newest, now=moment)
    return ImportSummary(
        source=str(path),
        records=len(records),
        packages=packages,
        newest_modified=newest,
        imported_at=moment,
        withdrawn=withdrawn,
        duplicates=duplicates,
        other_ecosystems=dict(other),
        invalid=tuple(problems),
        future_modified=future,
    )


def index_status(state_root: Path) -> IndexStatus:
    """The index's contents and age; ``AdvisorySourceError`` when there is none."""
    path = index_path(state_root)
    with _open_index(path) as conn:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    try:
        return IndexStatus(
            path=path,
            source=meta["source"],
            records=int(meta["records"]),
            packages=int(meta["packages"]),
            newest_modified=_parse_time(meta.get("newest_modified")),
            imported_at=_parse_time(meta["imported_at"]) or datetime.now(UTC),
        )
    except (KeyError, ValueError) as exc:
        raise AdvisorySourceError(
            f"the local advisory index {path} is damaged ({exc})", hint=_IMPORT_HINT
        ) from None


class LocalIndex(AdvisorySource):
    """The ``local`` source: the index compiled by ``shipyard advisories import``."""

    name: ClassVar[str] = "local"
    description: ClassVar[str] = "the local advisory index"

    def __init__(self, state_root: Path) -> None:
        self.state_root = state_root
        self.path = index_path(state_root)

    @classmethod
    def from_settings(cls, settings: VulnerabilityGateSettings, state_root: Path) -> LocalIndex:
        """The index of the state directory (settings are not needed)."""
        return cls(state_root)

    def freshness(self) -> Freshness:
        """How old the imported data is."""
        return index_status(self.state_root).freshness

    def advisories(
        self, packages: Sequence[PackageVersion]
    ) -> Mapping[PackageVersion, Sequence[Advisory]]:
        """Every indexed record that names each package (any version)."""
        wanted: dict[tuple[str, str], list[PackageVersion]] = {}
        for package in packages:
            wanted.setdefault(package.key, []).append(package)
        bodies: dict[tuple[str, str], list[str]] = {}
        with _open_index(self.path) as conn:
            keys = list(wanted)
            for start in range(0, len(keys), 400):
                chunk = keys[start : start + 400]
                clause = " OR ".join("(p.ecosystem = ? AND p.name = ?)" for _ in chunk)
                params = [part for key in chunk for part in key]
                rows = conn.execute(
                    "SELECT p.ecosystem, p.name, r.body FROM packages p "  # noqa: S608 - placeholders only
                    f"JOIN records r ON r.id = p.id WHERE {clause}",
                    params,
                )
                for ecosystem, name, body in rows:
                    bodies.setdefault((ecosystem, name), []).append(body)
        parsed: dict[str, Advisory] = {}
        result: dict[PackageVersion, Sequence[Advisory]] = {}
        for key, versions in wanted.items():
            found = [self._parse(body, parsed) for body in bodies.get(key, [])]
            for package in versions:
                result[package] = found
        return result

    def _parse(self, body: str, cache: dict[str, Advisory]) -> Advisory:
        if body in cache:
            return cache[body]
        try:
            advisory = trusted_advisory(json.loads(body))
        except (ValueError, KeyError, TypeError, AttributeError, StopIteration) as exc:
            raise AdvisorySourceError(
                f"the local advisory index {self.path} is damaged: {exc}", hint=_IMPORT_HINT
            ) from None
        cache[body] = advisory
        return advisory


def _read_records(path: Path) -> Iterator[tuple[str, Any]]:
    """Every record file under a folder or in a zip, decoded: (name for messages, data)."""
    if not path.exists():
        raise AdvisoryImportError(f"{path} does not exist", hint=_IMPORT_HINT)
    if path.is_dir():
        files = sorted(
            item
            for item in path.rglob("*")
            if item.suffix.lower() in RECORD_SUFFIXES
            and item.is_file()
            and not any(part.startswith(".") for part in item.relative_to(path).parts)
        )
        for item in files:
            try:
                with item.open("rb") as stream:
                    raw = stream.read(MAX_RECORD_BYTES + 1)
            except OSError as exc:
                raise AdvisoryImportError(f"{item}: cannot be read: {exc.strerror}") from None
            if len(raw) > MAX_RECORD_BYTES:
                raise _too_large(str(item))
            yield from _decoded(str(item), item.suffix.lower(), raw)
        return
    if not zipfile.is_zipfile(path):
        raise AdvisoryImportError(f"{path} is neither a folder nor a zip file", hint=_IMPORT_HINT)
    try:
        with zipfile.ZipFile(path) as archive:
            for info in sorted(archive.infolist(), key=lambda i: i.filename):
                suffix = Path(info.filename).suffix.lower()
                if info.is_dir() or suffix not in RECORD_SUFFIXES:
                    continue
                name = f"{path}:{info.filename}"
                if info.file_size > MAX_RECORD_BYTES:
                    raise _too_large(name)
                with archive.open(info) as member:
                    # The size in the zip's directory may lie: never read past the cap.
                    raw = member.read(MAX_RECORD_BYTES + 1)
                if len(raw) > MAX_RECORD_BYTES:
                    raise _too_large(name)
                yield from _decoded(name, suffix, raw)
    except (zipfile.BadZipFile, OSError) as exc:
        raise AdvisoryImportError(f"{path}: the zip file cannot be read: {exc}") from None


def _yaml(raw: bytes) -> Any:
    """A YAML record; ``TooDeeplyNested`` for one that nests too deeply to build."""
    try:
        data = yaml.load(raw, Loader=_YamlLoader)  # noqa: S506 - the base loader, see above
    except RecursionError:
        raise TooDeeplyNested from None
    check_nesting(data, len(raw))
    return data


def _too_large(name: str) -> AdvisoryImportError:
    return AdvisoryImportError(
        f"{name}: larger than {MAX_RECORD_BYTES // (1024 * 1024)} MiB, which no OSV record file "
        "is; nothing was imported",
        hint="remove the file from the folder or zip (or split it into one file per record), "
        "then import again",
    )


def _decoded(name: str, suffix: str, raw: bytes) -> Iterator[tuple[str, Any]]:
    try:
        # The base loader builds only strings, lists and mappings: safe, and versions such
        # as 1.10 stay text instead of becoming the number 1.1.
        data = parse_json(raw) if suffix == ".json" else _yaml(raw)
    except (ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if suffix == ".json" else "YAML"
        detail = " ".join(str(exc).split())
        raise AdvisoryImportError(
            f"{name}: not valid {kind}: {detail}",
            hint="fix or remove the file, then import again",
        ) from None
    if isinstance(data, list):
        for index, item in enumerate(data):
            yield f"{name}[{index}]", item
    else:
        yield name, data


def _write_index(
    records: Mapping[str, Advisory],
    state_root: Path,
    *,
    source: str,
    newest: datetime,
    now: datetime,
) -> int:
    folder = index_dir(state_root)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=".index-", suffix=".sqlite", dir=folder)
        os.close(handle)
    except OSError as exc:
        raise AdvisoryImportError(f"cannot write the index in {folder}: {exc.strerror}") from None
    temp = Path(temp_name)
    try:
        conn = sqlite3.connect(temp)
        try:
            packages = _fill(conn, records, source=source, newest=newest, now=now)
            conn.commit()
        finally:
            conn.close()
        temp.replace(index_path(state_root))
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return packages


def _fill(
    conn: sqlite3.Connection,
    records: Mapping[str, Advisory],
    *,
    source: str,
    newest: datetime,
    now: datetime,
) -> int:
    conn.executescript(
        """
        PRAGMA journal_mode = OFF;
        PRAGMA synchronous = OFF;
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE records (id TEXT PRIMARY KEY, modified TEXT NOT NULL, body TEXT NOT NULL);
        CREATE TABLE packages (ecosystem TEXT NOT NULL, name TEXT NOT NULL, id TEXT NOT NULL);
        """
    )
    conn.executemany(
        "INSERT INTO records VALUES (?, ?, ?)",
        (
            (a.id, _iso(a.modified), json.dumps(_indexed(a), separators=(",", ":")))
            for a in records.values()
        ),
    )
    links = {
        (entry.ecosystem, normalize_name(entry.ecosystem, entry.name), advisory.id)
        for advisory in records.values()
        for entry in advisory.affected
        if entry.ecosystem in SUPPORTED_ECOSYSTEMS
    }
    conn.executemany("INSERT INTO packages VALUES (?, ?, ?)", sorted(links))
    conn.execute("CREATE INDEX packages_by_name ON packages (ecosystem, name)")
    packages = len({(ecosystem, name) for ecosystem, name, _ in links})
    meta = {
        "format": INDEX_FORMAT,
        "source": source,
        "records": str(len(records)),
        "packages": str(packages),
        "newest_modified": _iso(newest),
        "imported_at": _iso(now),
    }
    conn.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
    return packages


def _indexed(advisory: Advisory) -> dict[str, Any]:
    """The stored form: OSV JSON without what a scan never reads, kept small to load fast.

    ``details`` is reduced to the title a finding shows, and each entry's ``versions`` are
    stored once, in canonical spelling (``canonical_versions``), which is what matching uses.
    """
    record = advisory.as_json()
    record["summary"] = advisory.title
    record["details"] = ""
    for entry, affected in zip(record["affected"], advisory.affected, strict=True):
        entry["canonical_versions"] = listed_versions(affected.ecosystem, affected.versions)
        entry["versions"] = []
    return record


class _IndexConnection:
    """A read-only connection to the index that checks its format on opening."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None

    def __enter__(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise AdvisorySourceError(
                f"no local advisory data: {self.path} does not exist", hint=_IMPORT_HINT
            )
        try:
            self.conn = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True)
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        except sqlite3.DatabaseError as exc:
            self.__exit__()
            raise AdvisorySourceError(
                f"the local advisory index {self.path} is damaged ({exc})", hint=_IMPORT_HINT
            ) from None
        if row is None or row[0] != INDEX_FORMAT:
            self.__exit__()
            raise AdvisorySourceError(
                f"the local advisory index {self.path} was written by another version of Shipyard",
                hint=_IMPORT_HINT,
            )
        return self.conn

    def __exit__(self, *_: object) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _open_index(path: Path) -> _IndexConnection:
    return _IndexConnection(path)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text).astimezone(UTC)
