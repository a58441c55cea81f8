"""The dependency reader interface: one reader per file format, each naming what it pinned.

A dependency without a single pinned version carries the reason instead, so the gate reports
it rather than guessing; a malformed file is a ``MalformedDependencyFile`` naming file and
line.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from shipyard.gates.interface import DependencyError


class MalformedDependencyFile(DependencyError):
    """A lockfile or requirements file cannot be parsed; the message says where and why."""


@dataclass(frozen=True)
class Dependency:
    """One dependency as a file declares it."""

    ecosystem: str
    name: str
    version: str | None
    file: str
    line: int | None = None
    requirement: str = ""
    unpinned_reason: str | None = None

    @property
    def location(self) -> str:
        """``file:line`` (or the file alone when the line is unknown)."""
        return f"{self.file}:{self.line}" if self.line else self.file

    @property
    def pinned(self) -> bool:
        """Whether the file names exactly one version."""
        return self.version is not None


class DependencyReader(ABC):
    """Reads the dependencies of one kind of file."""

    name: ClassVar[str]

    @abstractmethod
    def read(self, path: Path, root: Path) -> list[Dependency]:
        """The dependencies ``path`` declares; ``root`` makes the names in results relative."""


def relative_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it, for messages and locations."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def read_text(path: Path, root: Path) -> str:
    """A dependency file's text; ``MalformedDependencyFile`` if it is not readable UTF-8."""
    name = relative_name(path, root)
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MalformedDependencyFile(
            f"{name}: not UTF-8 text (byte {exc.start})", hint="save the file as UTF-8"
        ) from None
    except OSError as exc:
        raise MalformedDependencyFile(f"{name}: cannot be read: {exc.strerror}") from None
