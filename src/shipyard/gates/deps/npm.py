"""npm's ``package-lock.json`` (and ``npm-shrinkwrap.json``), lockfile versions 1, 2 and 3.

Versions 2 and 3 list every installed copy under ``packages`` (an entry's ``name`` wins for
aliases), version 1 nests ``dependencies``; linked workspace packages are skipped, and git or
file references are reported as not checked. Each entry's declared license, integrity hash and
the copies it resolves its own dependencies to (Node's nearest-``node_modules`` rule) are kept.
"""

from __future__ import annotations

import base64
import binascii
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
    PackageRef,
    checked_hash,
    read_text,
    relative_name,
)
from shipyard.gates.documents import (
    TooDeeplyNested,
    parse_json,
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
            data = parse_json(text)
        except TooDeeplyNested as exc:
            raise MalformedDependencyFile(
                f"{file}: not an npm lockfile: {exc}",
                hint="regenerate it with 'npm install --package-lock-only'",
            ) from None
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
        self._nested(dependencies, file, lines, found, "dependencies", ())
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
            requires = tuple(
                PackageRef(_package_name(packages, target, needed), _version_of(packages[target]))
                for needed in _needed(entry)
                if (target := _resolve(packages, key, needed)) is not None
            )
            found.append(
                _dependency(str(name), entry, file, lines.get(key), key, requires=requires)
            )
        return found

    def _nested(
        self,
        dependencies: Any,
        file: str,
        lines: dict[str, int],
        found: list[Dependency],
        where: str,
        scopes: tuple[Mapping[str, Any], ...],
    ) -> None:
        if not isinstance(dependencies, Mapping):
            raise MalformedDependencyFile(f"{file}: {where} must be an object")
        scopes = (dependencies, *scopes)
        for name, entry in dependencies.items():
            if not isinstance(entry, Mapping):
                raise MalformedDependencyFile(f"{file}: {where}[{name!r}] must be an object")
            inner = entry.get("dependencies")
            visible = (inner, *scopes) if isinstance(inner, Mapping) else scopes
            requires = []
            needed = entry.get("requires")
            for other in needed if isinstance(needed, Mapping) else ():
                scope = next((s for s in visible if isinstance(s.get(other), Mapping)), None)
                if scope is not None:
                    requires.append(PackageRef(str(other), _version_of(scope[other])))
            found.append(
                _dependency(name, entry, file, lines.get(name), name, requires=tuple(requires))
            )
            if "dependencies" in entry:
                self._nested(
                    entry["dependencies"],
                    file,
                    lines,
                    found,
                    f"{where}.{name}.dependencies",
                    scopes,
                )


def _needed(entry: Mapping[str, Any]) -> list[str]:
    """The names an installed package depends on: regular, optional and peer dependencies."""
    names: dict[str, None] = {}
    for field in ("dependencies", "optionalDependencies", "peerDependencies"):
        value = entry.get(field)
        if isinstance(value, Mapping):
            names.update(dict.fromkeys(str(name) for name in value))
    return list(names)


def _resolve(packages: Mapping[str, Any], key: str, name: str) -> str | None:
    """The lock key ``name`` resolves to from the package at ``key`` (nearest node_modules)."""
    base = key
    while True:
        candidate = f"{base}/node_modules/{name}" if base else f"node_modules/{name}"
        if isinstance(packages.get(candidate), Mapping):
            return candidate
        if not base:
            return None
        cut = base.rfind("node_modules/")
        base = base[:cut].rstrip("/") if cut > 0 else ""


def _package_name(packages: Mapping[str, Any], key: str, fallback: str) -> str:
    name = packages[key].get("name")
    return str(name) if isinstance(name, str) and name else fallback


def _version_of(entry: Any) -> str | None:
    version = entry.get("version") if isinstance(entry, Mapping) else None
    return version if isinstance(version, str) and version else None


def _dependency(
    name: str,
    entry: Mapping[str, Any],
    file: str,
    line: int | None,
    key: str,
    *,
    requires: tuple[PackageRef, ...],
) -> Dependency:
    version = entry.get("version")
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
    return Dependency(
        "npm",
        name,
        version,
        file,
        line,
        f"{name}@{version}",
        license=_declared_license(entry),
        hashes=_integrity(entry.get("integrity")),
        requires=requires,
    )


def _declared_license(entry: Mapping[str, Any]) -> str | None:
    """The ``license`` an entry declares; the old object and list forms are read too."""
    value = entry.get("license")
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, Mapping) and isinstance(value.get("type"), str):
        return str(value["type"]).strip() or None
    several = entry.get("licenses")
    if isinstance(several, list):
        names = [
            str(item["type"]).strip() if isinstance(item, Mapping) else str(item).strip()
            for item in several
            if isinstance(item, Mapping | str)
        ]
        names = [name for name in names if name and name != "None"]
        if names:
            return " OR ".join(f"({name})" if " " in name else name for name in names)
    return None


def _integrity(value: Any) -> tuple[str, ...]:
    """Subresource-integrity strings (``sha512-<base64>``) as ``alg:hex`` digests."""
    if not isinstance(value, str):
        return ()
    found: dict[str, None] = {}
    for part in value.split():
        algorithm, _, encoded = part.partition("-")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        digest = checked_hash(algorithm, raw.hex())
        if digest is not None:
            found[digest] = None
    return tuple(found)


def _key_lines(text: str) -> dict[str, int]:
    """The first line on which each object key appears, for locations."""
    lines: dict[str, int] = {}
    line, position = 1, 0
    for match in _KEY_LINE.finditer(text):
        line += text.count("\n", position, match.start())
        position = match.start()
        lines.setdefault(match.group("key"), line)
    return lines
