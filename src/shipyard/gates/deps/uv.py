"""``uv.lock``: every ``[[package]]`` from a registry is pinned; git and path sources are not.

The project itself and workspace members (editable or virtual sources) are skipped. uv marks
the edges of the dependency graph, not the packages: a package is installed where some path
from a workspace member to it has every edge's marker true, and that is its marker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from packaging.utils import canonicalize_name

from shipyard.gates.deps.interface import Dependency, DependencyReader, relative_name
from shipyard.gates.deps.markers import as_marker, reachable
from shipyard.gates.deps.tomlfiles import (
    entries,
    hashes_of,
    load_toml,
    locked_package,
    requires_of,
    table_lines,
    text_field,
)


class UvLockReader(DependencyReader):
    """Reads ``uv.lock``: every ``[[package]]`` from a registry is pinned."""

    name: ClassVar[str] = "uv.lock"

    def read(self, path: Path, root: Path) -> list[Dependency]:
        """The packages of the lock; the project itself and workspace members are skipped."""
        data, text = load_toml(path, root)
        file = relative_name(path, root)
        lines = table_lines(text, "package")
        found = []
        packages = entries(data, "package", file)
        markers = _install_markers(packages)
        for index, entry in enumerate(packages):
            line = lines[index] if index < len(lines) else None
            name = text_field(entry, "name", file, line)
            source = entry.get("source")
            source = source if isinstance(source, Mapping) else {}
            if "editable" in source or "virtual" in source:
                continue
            found.append(
                locked_package(
                    name,
                    entry.get("version"),
                    file,
                    line,
                    installed_from=None
                    if "registry" in source
                    else next(iter(source), "an unknown source"),
                    hashes=hashes_of(entry.get("sdist"), entry.get("wheels")),
                    requires=requires_of(entry.get("dependencies")),
                    marker=markers.get(index),
                )
            )
        return found


def _install_markers(packages: Sequence[Mapping[str, Any]]) -> dict[int, str | None]:
    """Each package's marker (by index), from the edges leading to it from the workspace."""
    by_name: dict[str, list[int]] = {}
    by_version: dict[tuple[str, str], int] = {}
    for index, entry in enumerate(packages):
        name, version = entry.get("name"), entry.get("version")
        if isinstance(name, str):
            by_name.setdefault(canonicalize_name(name), []).append(index)
            if isinstance(version, str):
                by_version[(canonicalize_name(name), version)] = index
    edges: dict[int, list[tuple[int, str | None]]] = {}
    roots = []
    for index, entry in enumerate(packages):
        source = entry.get("source")
        if isinstance(source, Mapping) and ("editable" in source or "virtual" in source):
            roots.append(index)
        for item in _edges_of(entry):
            name, version, marker = item.get("name"), item.get("version"), item.get("marker")
            if not isinstance(name, str):
                continue
            if isinstance(version, str) and (canonicalize_name(name), version) in by_version:
                targets = [by_version[(canonicalize_name(name), version)]]
            else:
                targets = by_name.get(canonicalize_name(name), [])
            edge_marker = marker if isinstance(marker, str) and marker.strip() else None
            edges.setdefault(index, []).extend((t, edge_marker) for t in targets)
    if not roots:  # a lock of no project: nothing says when anything is installed
        return {}
    return {index: as_marker(condition) for index, condition in reachable(roots, edges).items()}


def _edges_of(entry: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """What a package pulls in: its dependencies, and those of every extra and dependency
    group (an extra or group may be asked for; counting it keeps the gate on the safe side)."""
    found: list[Mapping[str, Any]] = []
    lists: list[Any] = [entry.get("dependencies")]
    for table in ("optional-dependencies", "dev-dependencies"):
        groups = entry.get(table)
        if isinstance(groups, Mapping):
            lists += list(groups.values())
    for items in lists:
        if isinstance(items, list):
            found += [item for item in items if isinstance(item, Mapping)]
    return found
