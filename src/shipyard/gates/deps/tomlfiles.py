"""Shared reading of TOML lockfiles: parse with line-numbered errors, find each table's line.

Used by the readers of ``uv.lock``, ``poetry.lock``, ``pylock.toml`` and ``pyproject.toml``;
it knows no lockfile's layout.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipyard.gates.deps.interface import (
    Dependency,
    MalformedDependencyFile,
    PackageRef,
    checked_hash,
    parsed_hash,
    read_text,
    relative_name,
)
from shipyard.gates.documents import (
    TooDeeplyNested,
    parse_toml,
)

_TABLE_ARRAY = re.compile(r"^\s*\[\[\s*(?P<name>[A-Za-z0-9_.-]+)\s*\]\]\s*(#.*)?$")


def load_toml(path: Path, root: Path) -> tuple[dict[str, Any], str]:
    """A TOML file's data and text; ``MalformedDependencyFile`` naming the line if invalid."""
    text = read_text(path, root)
    try:
        return parse_toml(text), text
    except TooDeeplyNested as exc:
        raise MalformedDependencyFile(
            f"{relative_name(path, root)}: not a lockfile: {exc}",
            hint="regenerate the lockfile with its tool",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise MalformedDependencyFile(
            f"{relative_name(path, root)}: not valid TOML: {exc}",
            hint="regenerate the lockfile with its tool, or fix the line named",
        ) from None


def table_lines(text: str, table: str) -> list[int]:
    """The line numbers of each ``[[table]]`` header, in order."""
    return [
        number
        for number, line in enumerate(text.splitlines(), start=1)
        if (match := _TABLE_ARRAY.match(line)) and match.group("name") == table
    ]


def entries(data: Mapping[str, Any], key: str, file: str) -> list[Mapping[str, Any]]:
    """The array of tables under ``key`` (``[[package]]``); an error if it is anything else."""
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise MalformedDependencyFile(f"{file}: '{key}' must be an array of tables")
    return value


def text_field(entry: Mapping[str, Any], key: str, file: str, line: int | None) -> str:
    """A required, non-empty string field of one table, or an error naming the line."""
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        where = f"{file}:{line}" if line else file
        raise MalformedDependencyFile(f"{where}: a package has no '{key}' string")
    return value


def hashes_of(*files: Any) -> tuple[str, ...]:
    """The well-formed digests of lock entries' files, in order, without repeats.

    A file is a table with ``hash = "sha256:…"`` (uv, Poetry) or ``hashes = {sha256 = "…"}``
    (PEP 751); lists of such tables are read item by item, and anything else is skipped.
    """
    found: dict[str, None] = {}
    for item in files:
        tables = item if isinstance(item, list) else [item]
        for table in tables:
            if not isinstance(table, Mapping):
                continue
            single = table.get("hash")
            if isinstance(single, str) and (digest := parsed_hash(single)) is not None:
                found[digest] = None
            several = table.get("hashes")
            if isinstance(several, Mapping):
                for algorithm, value in several.items():
                    if isinstance(value, str) and (digest := checked_hash(algorithm, value)):
                        found[digest] = None
    return tuple(found)


def requires_of(value: Any) -> tuple[PackageRef, ...]:
    """The packages a lock entry needs: a list of ``{name, version?}`` tables, or a name table."""
    if isinstance(value, Mapping):
        return tuple(PackageRef(str(name)) for name in value)
    if not isinstance(value, list):
        return ()
    refs = []
    for item in value:
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            version = item.get("version")
            refs.append(PackageRef(item["name"], version if isinstance(version, str) else None))
    return tuple(dict.fromkeys(refs))


def locked_package(
    name: str,
    version: object,
    file: str,
    line: int | None,
    *,
    installed_from: str | None = None,
    hashes: tuple[str, ...] = (),
    requires: tuple[PackageRef, ...] = (),
    marker: str | None = None,
) -> Dependency:
    """A PyPI package of a lockfile: pinned to ``version`` (as the lock gives it), unless that
    is not a version string or the package comes from elsewhere than an index
    (``installed_from`` git, a directory…)."""
    if installed_from is not None or not isinstance(version, str) or not version:
        reason = f"installed from {installed_from}" if installed_from else "no version"
        return Dependency("PyPI", name, None, file, line, name, reason, marker=marker)
    return Dependency(
        "PyPI",
        name,
        version,
        file,
        line,
        f"{name}=={version}",
        hashes=hashes,
        requires=requires,
        marker=marker,
    )
