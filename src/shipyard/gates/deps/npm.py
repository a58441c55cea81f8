"""npm's ``package-lock.json`` (and ``npm-shrinkwrap.json``), lockfile versions 1, 2 and 3.

Versions 2 and 3 list every installed copy under ``packages`` (an entry's ``name`` wins for
aliases), version 1 nests ``dependencies``; linked workspace packages are skipped, and git or
file references are reported as not checked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from shipyard.gates.advisories.versions import version_key
from shipyard.gates.deps.interface import (
    Dependency,
    DependencyReader,
    MalformedDependencyFile,
    read_text,
    relative_name,
)

_KEY_LINE = re.compile(r'^[ \t]*"(?P<key>(?:[^"\\]|\\.)*)"\s*:\s*\{', re.MULTILINE)


class PackageLockReader(DependencyReader):
    """Reads ``package-lock.json`` (and ``npm-shrinkwrap.json``, which has the same form)."""

    name: ClassVar[str] = "package-lock.json"

    def read(self, path: Path, root: Path) -> list[Dependency]:
        """Every installed package of the lock."""
        text = read_text(path, root)
        file = relative_name(path, root)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MalformedDependencyFile(
                f"{file}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno})",
                hint="regenerate it with 'npm install --package-lock-only'",
            ) from None
        if not isinstance(data, Mapping):
            raise MalformedDependencyFile(f"{file}: expected a JSON object at the top level")
        lines = _key_lines(text)
        packages = data.get("packages")
        if packages is not None:
            if not isinstance(packages, Mapping):
                raise MalformedDependencyFile(f"{file}: 'packages' must be an object")
            return self._packages(packages, file, lines)
        dependencies = data.get("dependencies")
        if dependencies is None:
            version = data.get("lockfileVersion")
            if not isinstance(version, int):
                raise MalformedDependencyFile(
                    f"{file}: not an npm lockfile: it has no 'lockfileVersion'"
                )
            return []
        found: list[Dependency] = []
        self._nested(dependencies, file, lines, found, "dependencies")
        return found

    def _packages(
        self, packages: Mapping[str, Any], file: str, lines: dict[str, int]
    ) -> list[Dependency]:
        found = []
        for key, entry in packages.items():
            if not key or "node_modules/" not in key:
                continue  # the root project, or a workspace folder
            if not isinstance(entry, Mapping):
                raise MalformedDependencyFile(f"{file}: packages[{key!r}] must be an object")
            if entry.get("link"):
                continue
            name = entry.get("name") or key.rsplit("node_modules/", 1)[1]
            found.append(_dependency(str(name), entry.get("version"), file, lines.get(key), key))
        return found

    def _nested(
        self,
        dependencies: Any,
        file: str,
        lines: dict[str, int],
        found: list[Dependency],
        where: str,
    ) -> None:
        if not isinstance(dependencies, Mapping):
            raise MalformedDependencyFile(f"{file}: {where} must be an object")
        for name, entry in dependencies.items():
            if not isinstance(entry, Mapping):
                raise MalformedDependencyFile(f"{file}: {where}[{name!r}] must be an object")
            found.append(_dependency(name, entry.get("version"), file, lines.get(name), name))
            if "dependencies" in entry:
                self._nested(
                    entry["dependencies"], file, lines, found, f"{where}.{name}.dependencies"
                )


def _dependency(name: str, version: Any, file: str, line: int | None, key: str) -> Dependency:
    if not isinstance(version, str) or not version:
        return Dependency("npm", name, None, file, line, key, "no version")
    if version_key("npm", version) is None:
        return Dependency(
            "npm",
            name,
            None,
            file,
            line,
            f"{name}@{version}",
            f"'{version}' is not a registry version",
        )
    return Dependency("npm", name, version, file, line, f"{name}@{version}")


def _key_lines(text: str) -> dict[str, int]:
    """The first line on which each object key appears, for locations."""
    lines: dict[str, int] = {}
    line, position = 1, 0
    for match in _KEY_LINE.finditer(text):
        line += text.count("\n", position, match.start())
        position = match.start()
        lines.setdefault(match.group("key"), line)
    return lines
