"""A CycloneDX JSON bill of materials read back as dependencies, to re-scan a shipped release.

Components are identified by their package URL; PyPI and npm ones become dependencies with
their versions, licenses, hashes and what they depend on. Where Shipyard wrote the SBOM, each
component carries the file and line it came from, so findings point at the original lockfile.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from packageurl import PackageURL

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

LOCATION_PROPERTY = "shipyard:location"
"""The component property that records where a dependency was declared (``file:line``)."""

PURL_ECOSYSTEMS = {"pypi": "PyPI", "npm": "npm"}
"""The package URL types Shipyard reads, with the OSV ecosystem each stands for."""

_HASH_NAMES = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
}


class CycloneDxReader(DependencyReader):
    """Reads the components of a CycloneDX JSON document (any spec version from 1.4)."""

    name: ClassVar[str] = "cyclonedx"

    def read(self, path: Path, root: Path) -> list[Dependency]:
        """Every component with a package URL; others are reported as not checked."""
        file = relative_name(path, root)
        try:
            data = parse_json(read_text(path, root))
        except TooDeeplyNested as exc:
            raise MalformedDependencyFile(f"{file}: not a CycloneDX JSON document: {exc}") from None
        except json.JSONDecodeError as exc:
            raise MalformedDependencyFile(
                f"{file}:{exc.lineno}: the SBOM is not valid JSON: {exc.msg}"
            ) from None
        if not isinstance(data, Mapping) or data.get("bomFormat") != "CycloneDX":
            raise MalformedDependencyFile(f"{file}: not a CycloneDX JSON document")
        components = list(_components(data.get("components"), file))
        by_ref = {
            str(component["bom-ref"]): component
            for component in components
            if isinstance(component.get("bom-ref"), str)
        }
        graph = _graph(data.get("dependencies"), file)
        return [
            _dependency(component, file, [by_ref[r] for r in graph.get(ref, ()) if r in by_ref])
            for component in components
            for ref in [str(component.get("bom-ref", ""))]
        ]


def _components(value: Any, file: str) -> Iterator[Mapping[str, Any]]:
    if value is None:
        return
    if not isinstance(value, list):
        raise MalformedDependencyFile(f"{file}: 'components' must be a list")
    for component in value:
        if not isinstance(component, Mapping):
            raise MalformedDependencyFile(f"{file}: a component is not an object")
        yield component
        yield from _components(component.get("components"), file)


def _graph(value: Any, file: str) -> dict[str, list[str]]:
    if value is None:
        return {}
    if not isinstance(value, list):
        raise MalformedDependencyFile(f"{file}: 'dependencies' must be a list")
    graph: dict[str, list[str]] = {}
    for entry in value:
        if isinstance(entry, Mapping) and isinstance(entry.get("ref"), str):
            needed = entry.get("dependsOn")
            graph[entry["ref"]] = [str(r) for r in needed] if isinstance(needed, list) else []
    return graph


def _dependency(
    component: Mapping[str, Any], file: str, needs: list[Mapping[str, Any]]
) -> Dependency:
    name = str(component.get("name") or "")
    where, line = _location(component, file)
    purl_text = component.get("purl")
    if not isinstance(purl_text, str) or not purl_text:
        return Dependency("unknown", name, None, where, line, name, "the SBOM gives no package URL")
    try:
        purl = PackageURL.from_string(purl_text)
    except ValueError as exc:
        return Dependency(
            "unknown",
            name,
            None,
            where,
            line,
            purl_text,
            f"'{purl_text}' is not a package URL: {exc}",
        )
    ecosystem = PURL_ECOSYSTEMS.get(purl.type)
    package = _package_name(purl)
    if ecosystem is None:
        return Dependency(
            purl.type, package, None, where, line, purl_text, f"pkg:{purl.type} is not scanned"
        )
    version = purl.version or _text(component.get("version"))
    if not version:
        return Dependency(ecosystem, package, None, where, line, purl_text, "no version")
    return Dependency(
        ecosystem,
        package,
        version,
        where,
        line,
        purl_text,
        license=_license(component.get("licenses")),
        hashes=_hashes(component.get("hashes")),
        requires=tuple(_ref(other) for other in needs),
    )


def _package_name(purl: PackageURL) -> str:
    if purl.type == "npm" and purl.namespace:
        return f"{purl.namespace}/{purl.name}"
    return str(purl.name)


def _ref(component: Mapping[str, Any]) -> PackageRef:
    purl_text = component.get("purl")
    if isinstance(purl_text, str):
        try:
            purl = PackageURL.from_string(purl_text)
        except ValueError:
            pass
        else:
            return PackageRef(_package_name(purl), purl.version)
    return PackageRef(str(component.get("name") or ""), _text(component.get("version")))


def _location(component: Mapping[str, Any], file: str) -> tuple[str, int | None]:
    properties = component.get("properties")
    for item in properties if isinstance(properties, list) else ():
        if isinstance(item, Mapping) and item.get("name") == LOCATION_PROPERTY:
            value = str(item.get("value") or "")
            path, _, line = value.rpartition(":")
            if path and line.isdigit():
                return path, int(line)
            if value:
                return value, None
    return file, None


def _license(value: Any) -> str | None:
    if not isinstance(value, list):
        return None
    choices = []
    for item in value:
        if not isinstance(item, Mapping):
            continue
        if isinstance(item.get("expression"), str):
            choices.append(item["expression"])
            continue
        license_ = item.get("license")
        if isinstance(license_, Mapping):
            text = _text(license_.get("id")) or _text(license_.get("name"))
            if text:
                choices.append(text)
    if not choices:
        return None
    if len(choices) == 1:
        return str(choices[0])
    return " OR ".join(f"({choice})" for choice in choices)


def _hashes(value: Any) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for item in value if isinstance(value, list) else ():
        if isinstance(item, Mapping):
            algorithm = _HASH_NAMES.get(str(item.get("alg")))
            content = _text(item.get("content"))
            if algorithm and content and (digest := checked_hash(algorithm, content)):
                found[digest] = None
    return tuple(found)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
