"""The state directory: where Shipyard keeps its database, blobs, logs, keys and workspaces.

It is ``.shipyard/`` at the root of the main worktree, found through ``git rev-parse
--git-common-dir`` so that linked worktrees and git hooks find the same one; ``SHIPYARD_HOME``
overrides. This module finds and prepares the directory; it does not open the database.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shipyard.core.errors import GitError, StateDirError
from shipyard.core.git import Git

STATE_DIR_NAME = ".shipyard"


@dataclass(frozen=True)
class StateDir:
    """A located state directory and the repository it belongs to (if any)."""

    root: Path
    repo_root: Path | None
    git_common_dir: Path | None

    @property
    def database_path(self) -> Path:
        """The SQLite database used when SHIPYARD_DATABASE_URL is not set."""
        return self.root / "shipyard.db"

    @property
    def logs(self) -> Path:
        """Job and service logs."""
        return self.root / "logs"

    @property
    def blobs(self) -> Path:
        """The content-addressed blob store (``SHIPYARD_BLOBS`` overrides)."""
        override = os.environ.get("SHIPYARD_BLOBS")
        return Path(override) if override else self.root / "blobs"

    @property
    def keys(self) -> Path:
        """Public keys and the per-directory secrets Shipyard generates."""
        return self.root / "keys"

    @property
    def workspaces(self) -> Path:
        """Isolated worktrees of pipeline runs."""
        return self.root / "workspaces"

    def database_url(self, env: Mapping[str, str] | None = None) -> str:
        """``SHIPYARD_DATABASE_URL`` if set, else the SQLite file in this directory."""
        environ = os.environ if env is None else env
        url = environ.get("SHIPYARD_DATABASE_URL", "").strip()
        return url or f"sqlite:///{self.database_path}"

    def ensure(self) -> StateDir:
        """Create the directory (owner-only) and keep it out of git; returns self."""
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            ignore = self.root / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# Shipyard's state: never committed.\n*\n", encoding="utf-8")
        except OSError as exc:
            raise StateDirError(
                f"cannot create the state directory {self.root}: {exc.strerror}",
                hint="make the folder writable, or set SHIPYARD_HOME to a writable folder",
            ) from exc
        if self.git_common_dir is not None and self.repo_root is not None:
            _exclude_from_git(self.git_common_dir, self.root, self.repo_root)
        return self


def locate(start: Path | None = None, env: Mapping[str, str] | None = None) -> StateDir:
    """Find the state directory for the repository containing ``start`` (default: cwd)."""
    environ = os.environ if env is None else env
    origin = (start or Path.cwd()).resolve()
    home = environ.get("SHIPYARD_HOME", "").strip()
    common_dir = _common_dir(origin)
    repo_root = _main_worktree(common_dir) if common_dir else None
    if home:
        return StateDir(
            root=Path(home).expanduser().resolve(), repo_root=repo_root, git_common_dir=common_dir
        )
    if common_dir is None:
        raise StateDirError(
            f"{origin} is not inside a git repository",
            hint="run Shipyard inside a git repository ('git init'), or set SHIPYARD_HOME",
        )
    base = repo_root if repo_root is not None else common_dir
    return StateDir(root=base / STATE_DIR_NAME, repo_root=repo_root, git_common_dir=common_dir)


def _common_dir(origin: Path) -> Path | None:
    try:
        return Git(origin).common_dir()
    except GitError:
        return None


def _main_worktree(common_dir: Path) -> Path | None:
    """The main worktree of a repository, or None for a bare repository."""
    try:
        if Git(common_dir).is_bare():
            return None
    except GitError:
        return None
    if common_dir.name == ".git":
        return common_dir.parent
    return None


def _exclude_from_git(common_dir: Path, root: Path, repo_root: Path) -> None:
    try:
        relative = root.relative_to(repo_root)
    except ValueError:
        return
    line = f"/{relative.as_posix()}/"
    exclude = common_dir / "info" / "exclude"
    try:
        existing = exclude.read_text(encoding="utf-8") if exclude.exists() else ""
        if line in existing.splitlines():
            return
        exclude.parent.mkdir(parents=True, exist_ok=True)
        prefix = "" if not existing or existing.endswith("\n") else "\n"
        with exclude.open("a", encoding="utf-8") as handle:
            handle.write(f"{prefix}{line}\n")
    except OSError as exc:
        raise StateDirError(
            f"cannot add {line} to {exclude}: {exc.strerror}",
            hint="make .git/info writable",
        ) from exc
