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
class PackageRef:
    """A package another package needs, by name and, when the file resolves it, version."""

    name: str
    version: str | None = None


@dataclass(frozen=True)
class Dependency:
    """One dependency as a file declares it.

    Beyond the pin, a lockfile may record the package's declared ``license`` (npm), the
    ``hashes`` of its files (``sha256:<hex>``) and what it ``requires``, for the SBOM.
    """

    ecosystem: str
    name: str
    version: str | None
    file: str
    line: int | None = None
    requirement: str = ""
    unpinned_reason: str | None = None
    license: str | None = None
    hashes: tuple[str, ...] = ()
    requires: tuple[PackageRef, ...] = ()
    marker: str | None = None
    """The PEP 508 environment marker the file gives it (``sys_platform == "win32"``), if any."""

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

    def read_within(self, path: Path, root: Path, repository: Path) -> list[Dependency]:
        """Like ``read``, refusing a file (or a file it includes) outside ``repository``."""
        refuse_outside(path, root, repository)
        return self.read(path, root)


_HEX_DIGITS = frozenset("0123456789abcdef")

HASH_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64, "sha384": 96, "sha512": 128}
"""The hash algorithms a lockfile may name, with the length of their hex digests."""


def checked_hash(algorithm: str, hex_digest: str) -> str | None:
    """``alg:hex`` for a well-formed digest of a known algorithm; None for anything else."""
    algorithm = algorithm.lower().replace("-", "")
    hex_digest = hex_digest.lower()
    length = HASH_LENGTHS.get(algorithm)
    if length is None or len(hex_digest) != length:
        return None
    if not _HEX_DIGITS.issuperset(hex_digest):
        return None
    return f"{algorithm}:{hex_digest}"


def parsed_hash(text: str) -> str | None:
    """Read ``sha256:<hex>`` (or ``sha256=<hex>``) as written in lockfiles; None if malformed."""
    for separator in (":", "="):
        algorithm, found, hex_digest = text.strip().partition(separator)
        if found:
            return checked_hash(algorithm, hex_digest)
    return None


def relative_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it, for messages and locations."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def is_inside(path: Path, repository: Path) -> bool:
    """Whether ``path``, with every symlink followed, lies in ``repository``."""
    return path.resolve().is_relative_to(repository.resolve())


def refuse_outside(path: Path, root: Path, repository: Path, *, where: str | None = None) -> None:
    """``MalformedDependencyFile`` when ``path`` (symlinks followed) leaves ``repository``.

    ``where`` (``file:line``) names the line that pointed there; else the file itself is named.
    """
    if is_inside(path, repository):
        return
    name = relative_name(path, root)
    subject = f"{where}: {name!r} is" if where else f"{name}: the file is"
    raise MalformedDependencyFile(
        f"{subject} outside the repository ({repository}); Shipyard reads no dependency file "
        "from elsewhere on this machine",
        hint="keep the file inside the repository (a symlink must not point out of it) and "
        "name it by a relative path",
    )


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
