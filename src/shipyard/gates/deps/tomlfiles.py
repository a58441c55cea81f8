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

from shipyard.gates.deps.interface import MalformedDependencyFile, read_text, relative_name

_TABLE_ARRAY = re.compile(r"^\s*\[\[\s*(?P<name>[A-Za-z0-9_.-]+)\s*\]\]\s*(#.*)?$")


def load_toml(path: Path, root: Path) -> tuple[dict[str, Any], str]:
    """A TOML file's data and text; ``MalformedDependencyFile`` naming the line if invalid."""
    text = read_text(path, root)
    try:
        return tomllib.loads(text), text
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
