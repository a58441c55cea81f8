"""The software bill of materials: CycloneDX 1.6 JSON of a project's dependencies.

Built from the dependency files of a workspace (a working tree or an unpacked release) with
cyclonedx-python-lib: a component per package with its package URL, version, license and
hashes, the dependency graph as the lockfiles record it, and Shipyard and the project in the
metadata. A release stores it as a blob and signs it; ``shipyard scan --release`` reads it back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_name

from shipyard import __version__
from shipyard.core.config import ShipyardConfig
from shipyard.gates.deps import Dependency, PackageRef, read_dependencies, repository_root
from shipyard.gates.deps.cyclonedx import LOCATION_PROPERTY
from shipyard.gates.licenses import LicenseReport, collect_licenses, package_key, unique

if TYPE_CHECKING:
    from cyclonedx.model.component import Component

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
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6

    scan = read_dependencies(workspace, repository=repository_root(workspace, source_dir))
    dependencies = unique(scan.dependencies)
    settings = config.gates.licenses if config.gates is not None else None
    report = collect_licenses(dependencies, settings, source_dir or workspace, strict=False)
    licenses = _licenses(report)
    root_properties = [Property(name=COMMIT_PROPERTY, value=commit)] if commit else []
    root = Component(
        name=config.project,
        version=version,
        type=ComponentType.APPLICATION,
        bom_ref=f"{config.project}@{version or 'working-tree'}",
        properties=root_properties,
    )
    tool = Component(name="shipyard", version=__version__, type=ComponentType.APPLICATION)
    bom = Bom(metadata=BomMetaData(component=root, timestamp=timestamp or datetime.now(UTC)))
    bom.metadata.tools.components.add(tool)
    components: dict[Dependency, Component] = {}
    for dependency in dependencies:
        purl = _purl(dependency)
        if purl is None:
            continue
        properties = [Property(name=LOCATION_PROPERTY, value=dependency.location)]
        if dependency.unpinned_reason:
            properties.append(Property(name=UNPINNED_PROPERTY, value=dependency.unpinned_reason))
        name, group = _name_and_group(dependency)
        component = Component(
            name=name,
            group=group,
            version=dependency.version,
            type=ComponentType.LIBRARY,
            purl=purl,
            bom_ref=str(purl.to_string()),
            licenses=licenses.get(dependency, []),
            hashes=[
                HashType(alg=HashAlgorithm(_HASH_ALGORITHMS[alg]), content=hex_)
                for alg, _, hex_ in (digest.partition(":") for digest in dependency.hashes)
                if alg in _HASH_ALGORITHMS
            ],
            properties=properties,
        )
        bom.components.add(component)
        components[dependency] = component
    edges = _register_graph(bom, root, components)
    document = JsonV1Dot6(bom).output_as_string(indent=2).encode("utf-8") + b"\n"
    return Sbom(
        document=document,
        components=len(components),
        edges=edges,
        files=scan.files,
        unpinned=tuple(d for d in components if d.version is None),
        unlicensed=tuple(d for d in components if not licenses.get(d)),
        license_problem=report.problem,
    )


def validate_sbom(document: bytes) -> list[str]:
    """The problems the CycloneDX 1.6 JSON schema finds in ``document`` (none when valid)."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    try:
        text = document.decode("utf-8")
        json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"not JSON: {exc}"]
    errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text, all_errors=True)
    if errors is None:
        return []
    return [_schema_error(error) for error in errors]


def sbom_summary(document: bytes) -> dict[str, Any]:
    """What a stored SBOM holds: its spec version and how many components and edges."""
    data = json.loads(document)
    components = data.get("components") or []
    edges = sum(len(entry.get("dependsOn") or []) for entry in data.get("dependencies") or [])
    return {
        "spec_version": data.get("specVersion"),
        "components": len(components),
        "edges": edges,
        "unversioned": sum(1 for c in components if not c.get("version")),
    }


def _schema_error(error: Any) -> str:
    inner = getattr(error, "data", None)
    path = "/".join(str(part) for part in getattr(inner, "absolute_path", ()) or ())
    message = getattr(inner, "message", None) or str(error)
    return f"{path or '(document)'}: {message}"


def _licenses(report: LicenseReport) -> dict[Dependency, list[Any]]:
    from cyclonedx.contrib.license.factories import LicenseFactory

    factory = LicenseFactory()
    found: dict[Dependency, list[Any]] = {}
    for item in report.licenses:
        declared = item.declared
        if declared.expression is not None:
            found[item.dependency] = [factory.make_from_string(declared.expression.text)]
        elif declared.raw and "\n" not in declared.raw and len(declared.raw) <= 200:
            found[item.dependency] = [factory.make_with_name(declared.raw)]
    return found


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


def _register_graph(bom: Any, root: Component, components: dict[Dependency, Component]) -> int:
    """Record who depends on whom; the root depends on every package nobody else needs."""
    needed: set[Dependency] = set()
    edges = 0
    candidates = list(components)
    for dependency, component in components.items():
        targets = list(
            dict.fromkeys(
                target
                for ref in dependency.requires
                if (target := _resolve(ref, dependency, candidates)) is not None
            )
        )
        needed.update(targets)
        bom.register_dependency(component, [components[target] for target in targets])
        edges += len(targets)
    tops = [component for dependency, component in components.items() if dependency not in needed]
    bom.register_dependency(root, tops)
    return edges + len(tops)


def _resolve(
    ref: PackageRef, source: Dependency, candidates: Sequence[Dependency]
) -> Dependency | None:
    """The package ``ref`` names: same ecosystem and name, from the same file, version if given."""
    key = package_key(source.ecosystem, ref.name)
    matches = [
        d
        for d in candidates
        if d.ecosystem == source.ecosystem
        and package_key(d.ecosystem, d.name) == key
        and d is not source
    ]
    if ref.version is not None:
        matches = [d for d in matches if d.version == ref.version] or matches
    same_file = [d for d in matches if d.file == source.file]
    chosen = same_file or matches
    return chosen[0] if chosen else None
