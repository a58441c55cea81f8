"""``poetry.lock``: every ``[[package]]`` from PyPI or a private index is pinned.

Packages from git, a directory, a file or a URL are reported as not checked. Poetry 2 records
where a package is installed as ``markers``: one marker, or one per dependency group.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from shipyard.gates.deps.interface import Dependency, DependencyReader, relative_name
from shipyard.gates.deps.markers import any_of
from shipyard.gates.deps.tomlfiles import (
    entries,
    hashes_of,
    load_toml,
    locked_package,
    requires_of,
    table_lines,
    text_field,
)


class PoetryLockReader(DependencyReader):
    """Reads ``poetry.lock``: every ``[[package]]`` from PyPI or a private index is pinned."""

    name: ClassVar[str] = "poetry.lock"

    def read(self, path: Path, root: Path) -> list[Dependency]:
        """The packages of the lock."""
        data, text = load_toml(path, root)
        file = relative_name(path, root)
        lines = table_lines(text, "package")
        found = []
        metadata = data.get("metadata")
        legacy_files = metadata.get("files") if isinstance(metadata, Mapping) else None
        for index, entry in enumerate(entries(data, "package", file)):
            line = lines[index] if index < len(lines) else None
            name = text_field(entry, "name", file, line)
            version = text_field(entry, "version", file, line)
            source = entry.get("source")
            kind = source.get("type") if isinstance(source, Mapping) else None
            files = entry.get("files")
            if files is None and isinstance(legacy_files, Mapping):
                files = legacy_files.get(name)  # Poetry 1.0 to 1.4 kept them apart
            found.append(
                locked_package(
                    name,
                    version,
                    file,
                    line,
                    installed_from=kind if kind in ("git", "directory", "file", "url") else None,
                    hashes=hashes_of(files),
                    requires=requires_of(entry.get("dependencies")),
                    marker=_markers(entry),
                )
            )
        return found


def _markers(entry: Mapping[str, Any]) -> str | None:
    """Where the package is installed: its ``markers``, or any of its groups' markers when
    every group it belongs to has one (a group without a marker installs it everywhere)."""
    markers = entry.get("markers")
    if isinstance(markers, str):
        return any_of([markers])
    if not isinstance(markers, Mapping):
        return None
    groups = entry.get("groups")
    named = set(groups) if isinstance(groups, list) else set()
    if not named <= set(markers) or not all(isinstance(m, str) for m in markers.values()):
        return None
    return any_of(markers.values())
