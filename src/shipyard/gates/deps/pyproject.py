"""``pyproject.toml`` without a lockfile: ``[project]`` dependencies, extras and groups.

Read only where no lockfile sits beside it; a requirement pins only with ``==``, and every
range is reported as unpinned rather than guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from packaging.requirements import InvalidRequirement, Requirement

from shipyard.gates.deps.interface import (
    Dependency,
    DependencyReader,
    MalformedDependencyFile,
    relative_name,
)
from shipyard.gates.deps.tomlfiles import load_toml


class PyprojectReader(DependencyReader):
    """Reads ``[project]`` dependencies, optional dependencies and dependency groups."""

    name: ClassVar[str] = "pyproject.toml"

    def read(self, path: Path, root: Path) -> list[Dependency]:
        """The declared requirements; only ``==`` pins count as pinned."""
        data, text = load_toml(path, root)
        file = relative_name(path, root)
        project = data.get("project", {})
        if not isinstance(project, Mapping):
            raise MalformedDependencyFile(f"{file}: [project] must be a table")
        declared: list[tuple[str, Any]] = [("project.dependencies", project.get("dependencies"))]
        optional = project.get("optional-dependencies", {})
        if isinstance(optional, Mapping):
            declared += [(f"project.optional-dependencies.{k}", v) for k, v in optional.items()]
        groups = data.get("dependency-groups", {})
        if isinstance(groups, Mapping):
            declared += [(f"dependency-groups.{k}", v) for k, v in groups.items()]
        found = []
        for where, items in declared:
            if items is None:
                continue
            if not isinstance(items, list):
                raise MalformedDependencyFile(f"{file}: {where} must be a list of requirements")
            for item in items:
                if isinstance(item, Mapping):
                    continue  # a dependency group include, {include-group = "…"}
                found.append(_pyproject_requirement(item, file, _line_of(text, item), where))
        return found


def _line_of(text: str, item: Any) -> int | None:
    if not isinstance(item, str):
        return None
    for quote in ('"', "'"):
        position = text.find(f"{quote}{item}{quote}")
        if position >= 0:
            return text.count("\n", 0, position) + 1
    return None


def _pyproject_requirement(item: Any, file: str, line: int | None, where: str) -> Dependency:
    at = f"{file}:{line}" if line else file
    if not isinstance(item, str):
        raise MalformedDependencyFile(f"{at}: {where} holds {item!r}, not a requirement string")
    try:
        requirement = Requirement(item)
    except InvalidRequirement as exc:
        raise MalformedDependencyFile(f"{at}: {item!r} is not a requirement: {exc}") from None
    specifiers = list(requirement.specifier)
    if requirement.url:
        reason = "installed from a URL, not a registry version"
    elif (
        len(specifiers) == 1
        and specifiers[0].operator in ("==", "===")
        and not specifiers[0].version.endswith(".*")
    ):
        return Dependency("PyPI", requirement.name, specifiers[0].version, file, line, item)
    else:
        reason = (
            "no version is given and no lockfile sits beside pyproject.toml"
            if not specifiers
            else f"'{requirement.specifier}' is a range and no lockfile sits beside pyproject.toml"
        )
    return Dependency("PyPI", requirement.name, None, file, line, item, reason)
