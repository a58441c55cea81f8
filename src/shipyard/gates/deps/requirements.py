"""``requirements*.txt``: pip's requirement files, with ``-r`` includes, hashes and markers.

A line pins a version when its only specifier is ``==V`` (or ``===V``) without a wildcard.
Markers are kept, not evaluated here: which interpreter a release will meet is the gate's
setting (``gates.vulnerabilities.environment``), not the reader's. pip options other than
``-r`` are skipped. An include or constraint file outside the repository is refused: a
committed ``-r ../../etc/passwd`` must not make a scan read the machine's files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from packaging.requirements import InvalidRequirement, Requirement

from shipyard.gates.deps.interface import (
    Dependency,
    DependencyReader,
    MalformedDependencyFile,
    parsed_hash,
    read_text,
    refuse_outside,
    relative_name,
)

MAX_INCLUDE_DEPTH = 20
"""How deep ``-r`` includes may nest before the reader assumes a loop."""

_COMMENT = re.compile(r"(^|\s)#.*$")
_HASH_OPTION = re.compile(r"\s--hash[=\s](?P<hash>\S+)")
_INCLUDE = re.compile(r"^(?:-r|--requirement)(?:\s*=\s*|\s+|(?=\S))(?P<path>\S+)$")
_CONSTRAINT = re.compile(r"^(?:-c|--constraint)(?:\s*=\s*|\s+|(?=\S))(?P<path>\S+)$")
_SKIPPED_OPTIONS = (
    "-c",
    "--constraint",
    "-i",
    "--index-url",
    "--extra-index-url",
    "--no-index",
    "-f",
    "--find-links",
    "--pre",
    "--trusted-host",
    "--no-binary",
    "--only-binary",
    "--prefer-binary",
    "--require-hashes",
    "--use-feature",
    "--hash",
    "-e",
    "--editable",
    "--config-settings",
    "--global-option",
)


class RequirementsReader(DependencyReader):
    """Reads pip requirement files and the files they include."""

    name: ClassVar[str] = "requirements"

    def read(self, path: Path, root: Path) -> list[Dependency]:
        """Every requirement in ``path`` and, recursively, in the files it includes."""
        return self.read_within(path, root, root)

    def read_within(self, path: Path, root: Path, repository: Path) -> list[Dependency]:
        """``read``, refusing ``path`` or any file it names with ``-r``/``-c`` outside
        ``repository``."""
        refuse_outside(path, root, repository)
        found: list[Dependency] = []
        self._read(path, root, repository, found, (), set())
        return found

    def included_files(self, path: Path, root: Path) -> set[Path]:
        """The files ``path`` includes with ``-r``, directly or not (not ``path`` itself)."""
        seen: set[Path] = set()
        self._read(path, root, root, [], (), seen)
        seen.discard(path.resolve())
        return seen

    def _read(
        self,
        path: Path,
        root: Path,
        repository: Path,
        found: list[Dependency],
        chain: tuple[Path, ...],
        seen: set[Path],
    ) -> None:
        resolved = path.resolve()
        name = relative_name(path, root)
        if resolved in chain:
            raise MalformedDependencyFile(
                f"{name}: includes itself through "
                + " -> ".join(relative_name(p, root) for p in (*chain, resolved)),
                hint="remove one of the -r lines that form the loop",
            )
        if len(chain) > MAX_INCLUDE_DEPTH:
            raise MalformedDependencyFile(f"{name}: -r includes nest too deeply")
        if resolved in seen:
            return
        seen.add(resolved)
        if not path.is_file():
            raise MalformedDependencyFile(
                f"{relative_name(chain[-1], root) if chain else name}: includes {name}, "
                "which does not exist",
                hint="fix the path of the -r line (it is relative to the including file)",
            )
        for number, line in _logical_lines(read_text(path, root)):
            include = _INCLUDE.match(line)
            if include:
                target = path.parent / include.group("path")
                refuse_outside(target, root, repository, where=f"{name}:{number}")
                self._read(target, root, repository, found, (*chain, resolved), seen)
                continue
            constraint = _CONSTRAINT.match(line)
            if constraint:
                target = path.parent / constraint.group("path")
                refuse_outside(target, root, repository, where=f"{name}:{number}")
                continue
            if line.startswith("-"):
                option = re.split(r"[\s=]", line, maxsplit=1)[0]
                if option in _SKIPPED_OPTIONS:
                    continue
                raise MalformedDependencyFile(
                    f"{name}:{number}: unknown option {option!r}",
                    hint="write one requirement per line, such as 'requests==2.32.3'",
                )
            found.append(_requirement(line, name, number))


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines with comments removed and ``\\``-continuations joined, with their first number."""
    lines: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        stripped = _COMMENT.sub("", raw).rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        joined = (pending + stripped).strip()
        pending = ""
        if joined:
            lines.append((start, joined))
    if pending.strip():
        lines.append((start, pending.strip()))
    return lines


def _requirement(line: str, file: str, number: int) -> Dependency:
    text = _HASH_OPTION.sub("", f" {line}").strip()
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        raise MalformedDependencyFile(
            f"{file}:{number}: {text!r} is not a requirement: {exc}",
            hint="write a requirement such as 'requests==2.32.3'",
        ) from None
    marker = str(requirement.marker) if requirement.marker is not None else None
    if requirement.url:
        return Dependency(
            "PyPI",
            requirement.name,
            None,
            file,
            number,
            text,
            "installed from a URL, not a registry version",
            marker=marker,
        )
    specifiers = list(requirement.specifier)
    if (
        len(specifiers) == 1
        and specifiers[0].operator in ("==", "===")
        and not specifiers[0].version.endswith(".*")
    ):
        hashes = tuple(
            dict.fromkeys(
                digest
                for match in _HASH_OPTION.finditer(f" {line}")
                if (digest := parsed_hash(match.group("hash"))) is not None
            )
        )
        return Dependency(
            "PyPI",
            requirement.name,
            specifiers[0].version,
            file,
            number,
            text,
            hashes=hashes,
            marker=marker,
        )
    reason = "no version is given" if not specifiers else f"'{requirement.specifier}' is a range"
    return Dependency("PyPI", requirement.name, None, file, number, text, reason, marker=marker)
