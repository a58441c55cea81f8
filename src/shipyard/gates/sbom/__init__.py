"""The software bill of materials: CycloneDX 1.6 JSON of a project's dependencies.

Built from the dependency files of a workspace (a working tree or an unpacked release): a
component per package with its package URL, version, license and hashes, the dependency graph
as the lockfiles record it, and Shipyard and the project in the metadata. A release stores it
as a blob and signs it; ``shipyard scan --release`` reads it back. The document is written as
plain JSON in time linear in the packages (cyclonedx-python-lib's writer checks its graph in
quadratic time) and validated against the CycloneDX schemas that library ships.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from shipyard import __version__
from shipyard.core.config import ShipyardConfig
from shipyard.gates.deps import Dependency, PackageRef, read_dependencies, repository_root
from shipyard.gates.deps.cyclonedx import LOCATION_PROPERTY
from shipyard.gates.documents import TooDeeplyNested, parse_json
from shipyard.gates.licenses import LicenseReport, collect_licenses, package_key, unique

SPEC_VERSION = "1.6"
"""The CycloneDX specification version Shipyard writes."""

UNPINNED_PROPERTY = "shipyard:unpinned"
"""The component property that says why a dependency has no single version."""

COMMIT_PROPERTY = "shipyard:commit"
"""The metadata property that records the commit the SBOM describes."""

_HASH_ALGORITHMS = {
    "md5": "MD5",
    "sha1": "SHA-1",
    "sha256": "SHA-256",
    "sha384": "SHA-384",
    "sha512": "SHA-512",
}


@dataclass(frozen=True)
class Sbom:
    """A generated SBOM: its JSON bytes and what went into it."""

    document: bytes
    components: int
    edges: int
    files: tuple[str, ...]
    unpinned: tuple[Dependency, ...]
    unlicensed: tuple[Dependency, ...]
    license_problem: str | None = None


def build_sbom(
    workspace: Path,
    config: ShipyardConfig,
    *,
    version: str | None = None,
    commit: str | None = None,
    source_dir: Path | None = None,
    timestamp: datetime | None = None,
) -> Sbom:
    """The CycloneDX 1.6 JSON SBOM of the dependencies declared in ``workspace``.

    Licenses come from the same sources as the licenses gate (``gates.licenses``), read
    leniently: a broken interpreter leaves licenses out and is reported, it does not stop it.
    """
    scan = read_dependencies(workspace, repository=repository_root(workspace, source_dir))
    dependencies = unique(scan.dependencies)
    settings = config.gates.licenses if config.gates is not None else None
    report = collect_licenses(dependencies, settings, source_dir or workspace, strict=False)
    licenses = _licenses(report)
    root: dict[str, Any] = {
        "bom-ref": f"{config.project}@{version or 'working-tree'}",
        "name": config.project,
        "type": "application",
    }
    if version is not None:
        root["version"] = version
    if commit:
        root["properties"] = [{"name": COMMIT_PROPERTY, "value": commit}]
    components: list[tuple[Dependency, dict[str, Any]]] = []
    unlicensed: list[Dependency] = []
    for dependency in dependencies:
        found = licenses.get(dependency, [])
        component = _component(dependency, found)
        if component is not None:
            components.append((dependency, component))
            if not found:
                unlicensed.append(dependency)
    graph, edges = _graph(root["bom-ref"], components)
    document = {
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": uuid.uuid4().urn,
        "version": 1,
        "metadata": {
            "timestamp": (timestamp or datetime.now(UTC)).isoformat(),
            "tools": {
                "components": [{"name": "shipyard", "type": "application", "version": __version__}]
            },
            "component": root,
        },
        "components": sorted((c for _, c in components), key=lambda c: str(c["bom-ref"])),
        "dependencies": graph,
    }
    return Sbom(
        # Without indent, so that the C encoder writes it: indenting is ten times slower.
        document=json.dumps(document, ensure_ascii=False).encode("utf-8") + b"\n",
        components=len(components),
        edges=edges,
        files=scan.files,
        unpinned=tuple(d for d, _ in components if d.version is None),
        unlicensed=tuple(unlicensed),
        license_problem=report.problem,
    )


def validate_sbom(document: bytes) -> list[str]:
    """The problems the CycloneDX 1.6 JSON schema finds in ``document`` (none when valid)."""
    try:
        data = parse_json(document.decode("utf-8"))
    except TooDeeplyNested as exc:
        return [f"not a CycloneDX document: {exc}"]
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"not JSON: {exc}"]
    return [_schema_error(error) for error in _schema_validator().iter_errors(data)]


@cache
def _schema_validator() -> Any:
    """The CycloneDX 1.6 strict JSON schema, compiled once, offline (its references to the
    SPDX, JSF and cryptography schemas resolve to the copies cyclonedx-python-lib ships)."""
    import jsonschema_rs
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.schema._res import BOM_JSON_STRICT, CRYPTOGRAPHY_DEFS, JSF, SPDX_JSON

    def load(path: str | None) -> Any:
        assert path is not None
        return json.loads(Path(path).read_text(encoding="utf-8"))

    registry = jsonschema_rs.Registry(
        [
            (f"http://cyclonedx.org/schema/{Path(path).name}", load(path))
            for path in (SPDX_JSON, JSF, CRYPTOGRAPHY_DEFS)
        ]
    )
    return jsonschema_rs.Draft7Validator(
        load(BOM_JSON_STRICT[SchemaVersion.V1_6]),
        registry=registry,
        validate_formats=True,
        offline=True,
    )


def sbom_summary(document: bytes) -> dict[str, Any]:
    """What a stored SBOM holds: its spec version and how many components and edges."""
    data = parse_json(document)
    components = data.get("components") or []
    edges = sum(len(entry.get("dependsOn") or []) for entry in data.get("dependencies") or [])
    return {
        "spec_version": data.get("specVersion"),
        "components": len(components),
        "edges": edges,
        "unversioned": sum(1 for c in components if not c.get("version")),
    }


def _schema_error(error: Any) -> str:
    path = "/".join(str(part) for part in getattr(error, "instance_path", ()) or ())
    message = getattr(error, "message", None) or str(error)
    if len(message) > 200:
        # The message quotes the offending value (all components, say) before the reason.
        message = f"{message[:60]} … {message[-100:]}"
    return f"{path or '(document)'}: {message}"


def _licenses(report: LicenseReport) -> dict[Dependency, list[dict[str, Any]]]:
    found: dict[Dependency, list[dict[str, Any]]] = {}
    for item in report.licenses:
        declared = item.declared
        if declared.expression is not None:
            found[item.dependency] = [_license(declared.expression.text)]
        elif declared.raw and "\n" not in declared.raw and len(declared.raw) <= 200:
            found[item.dependency] = [{"license": {"name": declared.raw}}]
    return found


@cache
def _license(expression: str) -> dict[str, Any]:
    """A license entry: an SPDX id CycloneDX knows, else an SPDX expression, else a name."""
    from cyclonedx.contrib.license.factories import LicenseFactory
    from cyclonedx.model.license import LicenseExpression

    made = LicenseFactory().make_from_string(expression)
    if isinstance(made, LicenseExpression):
        return {"expression": made.value}
    if made.id is not None:
        return {"license": {"id": made.id}}
    return {"license": {"name": made.name}}


def _component(dependency: Dependency, licenses: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The component of one dependency; None for an ecosystem without package URLs here."""
    purl = _purl(dependency)
    if purl is None:
        return None
    name, group = _name_and_group(dependency)
    ref = str(purl.to_string())
    component: dict[str, Any] = {"bom-ref": ref, "type": "library", "name": name}
    if group is not None:
        component["group"] = group
    if dependency.version is not None:
        component["version"] = dependency.version
    hashes = [
        {"alg": _HASH_ALGORITHMS[alg], "content": hex_}
        for alg, _, hex_ in (digest.partition(":") for digest in dependency.hashes)
        if alg in _HASH_ALGORITHMS
    ]
    if hashes:
        component["hashes"] = hashes
    if licenses:
        component["licenses"] = licenses
    component["purl"] = ref
    properties = [{"name": LOCATION_PROPERTY, "value": dependency.location}]
    if dependency.unpinned_reason:
        properties.append({"name": UNPINNED_PROPERTY, "value": dependency.unpinned_reason})
    component["properties"] = properties
    return component


def _purl(dependency: Dependency) -> Any:
    from packageurl import PackageURL

    if dependency.ecosystem == "PyPI":
        return PackageURL(
            type="pypi", name=canonicalize_name(dependency.name), version=dependency.version
        )
    if dependency.ecosystem == "npm":
        name, group = _name_and_group(dependency)
        return PackageURL(type="npm", namespace=group, name=name, version=dependency.version)
    return None


def _name_and_group(dependency: Dependency) -> tuple[str, str | None]:
    if dependency.ecosystem == "npm" and dependency.name.startswith("@") and "/" in dependency.name:
        group, _, name = dependency.name.partition("/")
        return name, group
    return dependency.name, None


def _graph(
    root: str, components: Sequence[tuple[Dependency, Mapping[str, Any]]]
) -> tuple[list[dict[str, Any]], int]:
    """Who depends on whom, and the number of edges; the root depends on every package
    nobody else needs. Requirements resolve through an index by name; packages are told
    apart by identity, as hashing a whole ``Dependency`` thousands of times is not free."""
    by_name: dict[tuple[str, str], list[Dependency]] = {}
    refs: dict[int, str] = {}
    for dependency, component in components:
        key = (dependency.ecosystem, package_key(dependency.ecosystem, dependency.name))
        by_name.setdefault(key, []).append(dependency)
        refs[id(dependency)] = component["bom-ref"]
    needed: set[str] = set()
    graph: dict[str, dict[str, None]] = {}
    edges = 0
    for dependency, component in components:
        targets = graph.setdefault(component["bom-ref"], {})
        for required in dependency.requires:
            target = _resolve(required, dependency, by_name)
            if target is not None and (name := refs[id(target)]) not in targets:
                targets[name] = None
                edges += 1
        needed.update(targets)
    tops = [c["bom-ref"] for _, c in components if c["bom-ref"] not in needed]
    graph.setdefault(root, {}).update(dict.fromkeys(tops))
    entries = []
    for ref in sorted(graph):
        entry: dict[str, Any] = {"ref": ref}
        if graph[ref]:
            entry["dependsOn"] = sorted(graph[ref])
        entries.append(entry)
    return entries, edges + len(tops)


def _resolve(
    ref: PackageRef, source: Dependency, by_name: Mapping[tuple[str, str], Sequence[Dependency]]
) -> Dependency | None:
    """The package ``ref`` names: same ecosystem and name, from the same file, version if given."""
    key = (source.ecosystem, package_key(source.ecosystem, ref.name))
    matches = [d for d in by_name.get(key, ()) if d is not source]
    if ref.version is not None:
        matches = [d for d in matches if d.version == ref.version] or matches
    same_file = [d for d in matches if d.file == source.file]
    chosen = same_file or matches
    return chosen[0] if chosen else None
