"""``uv.lock``: every ``[[package]]`` from a registry is pinned; git and path sources are not.

The project itself and workspace members (editable or virtual sources) are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from shipyard.gates.deps.interface import Dependency, DependencyReader, relative_name
from shipyard.gates.deps.tomlfiles import (
    entries,
    hashes_of,
    load_toml,
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
        for index, entry in enumerate(entries(data, "package", file)):
            line = lines[index] if index < len(lines) else None
            name = text_field(entry, "name", file, line)
            source = entry.get("source")
            source = source if isinstance(source, Mapping) else {}
            if "editable" in source or "virtual" in source:
                continue
            version = entry.get("version")
            if "registry" not in source:
                kind = next(iter(source), "an unknown source")
                found.append(
                    Dependency("PyPI", name, None, file, line, name, f"installed from {kind}")
                )
            elif not isinstance(version, str) or not version:
                found.append(Dependency("PyPI", name, None, file, line, name, "no version"))
            else:
                found.append(
                    Dependency(
                        "PyPI",
                        name,
                        version,
                        file,
                        line,
                        f"{name}=={version}",
                        hashes=hashes_of(entry.get("sdist"), entry.get("wheels")),
                        requires=requires_of(entry.get("dependencies")),
                    )
                )
        return found
