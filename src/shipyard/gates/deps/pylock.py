"""``pylock.toml`` (PEP 751): ``[[packages]]`` with a version from an index are pinned.

Packages from a VCS, a directory or an archive are reported as not checked. A package's
``marker`` says where it is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from shipyard.gates.deps.interface import (
    Dependency,
    DependencyReader,
    MalformedDependencyFile,
    relative_name,
)
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


class PylockReader(DependencyReader):
    """Reads ``pylock.toml`` (PEP 751): ``[[packages]]`` with a version from an index."""

    name: ClassVar[str] = "pylock.toml"

    def read(self, path: Path, root: Path) -> list[Dependency]:
        """The packages of the lock."""
        data, text = load_toml(path, root)
        file = relative_name(path, root)
        if "lock-version" not in data:
            raise MalformedDependencyFile(
                f"{file}: not a PEP 751 lockfile: 'lock-version' is missing"
            )
        lines = table_lines(text, "packages")
        found = []
        for index, entry in enumerate(entries(data, "packages", file)):
            line = lines[index] if index < len(lines) else None
            name = text_field(entry, "name", file, line)
            found.append(
                locked_package(
                    name,
                    entry.get("version"),
                    file,
                    line,
                    installed_from=next(
                        (k for k in ("vcs", "directory", "archive") if k in entry), None
                    ),
                    hashes=hashes_of(entry.get("sdist"), entry.get("wheels")),
                    requires=requires_of(entry.get("dependencies")),
                    marker=any_of([_text(entry.get("marker"))]),
                )
            )
        return found


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
