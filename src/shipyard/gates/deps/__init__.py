"""Dependency readers: find a project's dependency files and read what each one pins.

``READERS`` maps each file kind to its reader; ``read_dependencies`` walks a workspace
(skipping hidden folders, ``node_modules`` and virtual environments) and reads every file a
reader knows. ``pyproject.toml`` is read only where no Python lockfile sits beside it. A
stored CycloneDX SBOM is read only when named (``scan_dependencies``), never found by a walk.
No file outside the workspace's repository is read (``repository_root``), symlinks included.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from shipyard.gates.deps.cyclonedx import CycloneDxReader
from shipyard.gates.deps.interface import (
    Dependency,
    DependencyReader,
    MalformedDependencyFile,
    PackageRef,
    relative_name,
)
from shipyard.gates.deps.npm import PackageLockReader
from shipyard.gates.deps.poetry import PoetryLockReader
from shipyard.gates.deps.pylock import PylockReader
from shipyard.gates.deps.pyproject import PyprojectReader
from shipyard.gates.deps.requirements import RequirementsReader
from shipyard.gates.deps.uv import UvLockReader
from shipyard.gates.interface import Finding, Severity

READERS: dict[str, DependencyReader] = {
    reader.name: reader
    for reader in (
        RequirementsReader(),
        UvLockReader(),
        PoetryLockReader(),
        PylockReader(),
        PackageLockReader(),
        PyprojectReader(),
        CycloneDxReader(),
    )
}
"""One reader per kind of dependency file, by the kind's name."""

_REQUIREMENTS = re.compile(r"requirements[\w.-]*\.(?:txt|in)", re.IGNORECASE)
_PYLOCK = re.compile(r"pylock(?:\.[^.]+)?\.toml")
_PYTHON_LOCKS = ("uv.lock", "poetry.lock")
_SKIPPED_FOLDERS = {"node_modules", "__pycache__", "site-packages", "venv", "env"}


NO_DEPENDENCIES = "SHIPYARD-NO-DEPENDENCIES"
"""The finding id of a workspace in which no dependency file was found."""


def no_dependency_files(unchecked: str) -> Finding:
    """The finding of a workspace without dependency files: no ``unchecked`` (``dependency``,
    ``license``) was checked."""
    return Finding(
        id=NO_DEPENDENCIES,
        severity=Severity.INFO,
        location=".",
        message=f"no dependency file was found, so no {unchecked} was checked",
        remediation="commit a lockfile or requirements file (requirements*.txt, uv.lock, "
        "poetry.lock, pylock.toml, package-lock.json)",
    )


@dataclass(frozen=True)
class DependencyScan:
    """The dependency files found in a workspace and what they declare."""

    files: tuple[str, ...]
    dependencies: tuple[Dependency, ...]


def reader_for(path: Path) -> DependencyReader | None:
    """The reader of a file, by its name and folder; None for files no reader knows."""
    name = path.name
    if _REQUIREMENTS.fullmatch(name) or (
        path.parent.name == "requirements" and name.endswith(".txt")
    ):
        return READERS["requirements"]
    if name == "uv.lock":
        return READERS["uv.lock"]
    if name == "poetry.lock":
        return READERS["poetry.lock"]
    if _PYLOCK.fullmatch(name):
        return READERS["pylock.toml"]
    if name in ("package-lock.json", "npm-shrinkwrap.json"):
        return READERS["package-lock.json"]
    if name == "pyproject.toml":
        return READERS["pyproject.toml"]
    if name.endswith((".cdx.json", ".bom.json")):
        return READERS["cyclonedx"]
    return None


def find_dependency_files(root: Path) -> list[Path]:
    """Every dependency file under ``root`` that a reader knows, in a stable order."""
    found: list[Path] = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(
            name
            for name in subfolders
            if not name.startswith(".")
            and name not in _SKIPPED_FOLDERS
            and not (Path(folder) / name / "pyvenv.cfg").exists()
        )
        names = set(files)
        has_lock = any(n in names for n in _PYTHON_LOCKS) or any(
            _PYLOCK.fullmatch(n) for n in names
        )
        for name in sorted(names):
            path = Path(folder) / name
            reader = reader_for(path)
            if reader is None or reader.name == "cyclonedx":
                continue
            if name == "pyproject.toml" and has_lock:
                continue
            found.append(path)
    return found


def repository_root(workspace: Path, source_dir: Path | None = None) -> Path:
    """The repository that holds ``workspace``: the folder dependency files may name files in.

    That is the nearest folder above ``source_dir`` (the project's folder in the working tree;
    default: the workspace) that holds ``.git``. When the workspace is a copy of the project
    (an unpacked release bundle), the same number of folders above the copy. Without a
    repository, the workspace itself.
    """
    source = (source_dir or workspace).resolve()
    top = next((folder for folder in (source, *source.parents) if (folder / ".git").exists()), None)
    if top is None:
        return workspace.resolve()
    inner = source.relative_to(top).parts
    copy = workspace.resolve()
    if copy == source:
        return top
    if inner and copy.parts[-len(inner) :] == inner:
        return Path(*copy.parts[: -len(inner)])
    return copy


def read_dependencies(
    root: Path, files: list[Path] | None = None, *, repository: Path | None = None
) -> DependencyScan:
    """Read the given files (default: every file found under ``root``).

    A file, or a file it includes, outside ``repository`` (default: ``repository_root(root)``)
    is a ``MalformedDependencyFile``.
    """
    inside = repository if repository is not None else repository_root(root)
    chosen = find_dependency_files(root) if files is None else files
    seen: set[tuple[str, str, str | None, str]] = set()
    dependencies: list[Dependency] = []
    for path in chosen:
        reader = reader_for(path)
        if reader is None:
            raise MalformedDependencyFile(
                f"{relative_name(path, root)}: Shipyard does not know how to read this file",
                hint="name a requirements*.txt, uv.lock, poetry.lock, pylock.toml, "
                "package-lock.json or pyproject.toml",
            )
        for dependency in reader.read_within(path, root, inside):
            key = (
                dependency.ecosystem,
                dependency.name.lower(),
                dependency.version,
                dependency.location,
            )
            if key not in seen:
                seen.add(key)
                dependencies.append(dependency)
    return DependencyScan(
        files=tuple(relative_name(path, root) for path in chosen),
        dependencies=tuple(dependencies),
    )


def scan_dependencies(
    workspace: Path, sbom: Path | None = None, *, source_dir: Path | None = None
) -> DependencyScan:
    """The dependencies of a workspace, or of a stored SBOM when one is given.

    ``source_dir`` is the project's folder in the working tree when the workspace is a copy;
    it tells where the repository ends (``repository_root``)."""
    if sbom is None:
        return read_dependencies(workspace, repository=repository_root(workspace, source_dir))
    found = READERS["cyclonedx"].read(sbom, sbom.parent)
    return DependencyScan(files=(f"the stored SBOM ({sbom.name})",), dependencies=tuple(found))


__all__ = [
    "READERS",
    "Dependency",
    "DependencyReader",
    "DependencyScan",
    "MalformedDependencyFile",
    "PackageRef",
    "find_dependency_files",
    "read_dependencies",
    "reader_for",
    "repository_root",
    "scan_dependencies",
]
