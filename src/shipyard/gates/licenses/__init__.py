"""The licenses of a project's dependencies, and the gate that holds them to the team's lists.

``collect_licenses`` finds each dependency's license from a named source (an override, the
lockfile, the stored SBOM, or the metadata installed in the configured interpreter);
``spdx`` parses and judges expressions; the gate turns that into findings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from shipyard.core.config.gates import LicenseGateSettings
from shipyard.gates.deps import Dependency
from shipyard.gates.licenses.sources import (
    DeclaredLicense,
    InstalledPackage,
    InterpreterNotFound,
    LicenseSourceError,
    declared_license,
    from_text,
    installed_packages,
    interpreter_path,
)
from shipyard.gates.licenses.spdx import InvalidLicense, LicenseExpression, Policy


@dataclass(frozen=True)
class DependencyLicense:
    """One dependency with the license found for it (or why none was)."""

    dependency: Dependency
    declared: DeclaredLicense
    installed_version: str | None = None


@dataclass(frozen=True)
class LicenseReport:
    """The licenses of a set of dependencies, and why installed metadata was not read, if not."""

    licenses: tuple[DependencyLicense, ...]
    interpreter: Path | None = None
    problem: str | None = None


def package_key(ecosystem: str, name: str) -> str:
    """How a package is matched across files, overrides and metadata."""
    return canonicalize_name(name) if ecosystem == "PyPI" else name.lower()


def unique(dependencies: Iterable[Dependency]) -> list[Dependency]:
    """Each package at each version once, at the first place it is declared."""
    seen: dict[tuple[str, str, str | None], Dependency] = {}
    for dependency in dependencies:
        key = (dependency.ecosystem, package_key(dependency.ecosystem, dependency.name))
        seen.setdefault((*key, dependency.version), dependency)
    return list(seen.values())


def collect_licenses(
    dependencies: Iterable[Dependency],
    settings: LicenseGateSettings | None,
    base: Path,
    *,
    strict: bool = True,
    recorded_in: str | None = None,
) -> LicenseReport:
    """Find each unique dependency's license; ``base`` resolves a relative interpreter path.

    With ``strict``, an interpreter that cannot be used raises ``LicenseSourceError``; else the
    report carries the problem and the Python packages stay unknown. ``recorded_in`` names
    where the licenses the dependencies carry were read (a stored SBOM), for messages.
    """
    chosen = unique(dependencies)
    overrides = _overrides(settings.overrides if settings else {})
    installed: Mapping[str, InstalledPackage] | None = None
    interpreter: Path | None = None
    problem: str | None = None
    if settings is not None and settings.python is not None and _needs_metadata(chosen, overrides):
        try:
            interpreter = interpreter_path(settings.python, base)
            installed = installed_packages(interpreter)
        except LicenseSourceError as exc:
            if strict:
                raise
            problem = exc.message
    elif settings is None or settings.python is None:
        problem = "gates.licenses.python is not set, so no installed metadata was read"
    found = []
    for dependency in chosen:
        key = package_key(dependency.ecosystem, dependency.name)
        if key in overrides:
            found.append(DependencyLicense(dependency, overrides[key]))
        elif dependency.license is not None:
            source = recorded_in or dependency.file
            found.append(DependencyLicense(dependency, from_text(dependency.license, source)))
        elif dependency.ecosystem == "PyPI":
            found.append(_from_metadata(dependency, installed, interpreter, problem))
        else:
            found.append(
                DependencyLicense(
                    dependency,
                    DeclaredLicense(
                        None,
                        dependency.file,
                        problem=f"{dependency.file} records no license for it",
                    ),
                )
            )
    return LicenseReport(tuple(found), interpreter, problem)


def _needs_metadata(dependencies: list[Dependency], overrides: Mapping[str, object]) -> bool:
    return any(
        d.ecosystem == "PyPI"
        and d.license is None
        and package_key(d.ecosystem, d.name) not in overrides
        for d in dependencies
    )


def _overrides(configured: Mapping[str, str]) -> dict[str, DeclaredLicense]:
    found: dict[str, DeclaredLicense] = {}
    for name, text in configured.items():
        declared = from_text(text, "gates.licenses.overrides")
        found[canonicalize_name(name)] = declared
        found[name.lower()] = declared
    return found


def _from_metadata(
    dependency: Dependency,
    installed: Mapping[str, InstalledPackage] | None,
    interpreter: Path | None,
    problem: str | None,
) -> DependencyLicense:
    if installed is None:
        return DependencyLicense(
            dependency, DeclaredLicense(None, "metadata", problem=problem or "no metadata")
        )
    package = installed.get(canonicalize_name(dependency.name))
    if package is None:
        return DependencyLicense(
            dependency,
            DeclaredLicense(
                None,
                "metadata",
                problem=f"it is not installed in {interpreter}, so its metadata is unknown",
            ),
        )
    return DependencyLicense(dependency, declared_license(package), package.version)


__all__ = [
    "DeclaredLicense",
    "DependencyLicense",
    "InstalledPackage",
    "InterpreterNotFound",
    "InvalidLicense",
    "LicenseExpression",
    "LicenseReport",
    "LicenseSourceError",
    "Policy",
    "collect_licenses",
    "package_key",
    "unique",
]
