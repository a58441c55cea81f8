"""Workspaces: where a run's jobs execute — the exact commit, never the user's dirty tree.

An isolated run checks the commit out once as a git worktree under the state directory and
gives each job its own copy, so one job's files reach another only as declared artifacts.
``--worktree`` runs every job in the user's working tree instead. Removal leaves no worktree
registered in the repository.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from shipyard.core.errors import GitError, HostError
from shipyard.core.git import Git

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class WorkspaceError(HostError):
    """A workspace could not be created or removed."""


@dataclass(frozen=True)
class RunWorkspace:
    """The checkout of one run and the per-job copies made from it."""

    root: Path
    source: Path
    isolated: bool
    git: Git | None = None

    @classmethod
    def create(cls, git: Git, root: Path, commit: str) -> RunWorkspace:
        """Check ``commit`` out as a detached worktree under ``root``."""
        source = root / "source"
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        try:
            git.worktree_add(source, commit, detach=True)
        except GitError as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise WorkspaceError(
                f"cannot check out {commit[:12]} into {source}: {exc.message}",
                hint="check free disk space and 'git worktree list'",
            ) from exc
        return cls(root=root, source=source, isolated=True, git=git)

    @classmethod
    def in_place(cls, toplevel: Path) -> RunWorkspace:
        """Run in the user's working tree, as it is (``--worktree``)."""
        return cls(root=toplevel, source=toplevel, isolated=False)

    def for_job(self, job_id: str) -> Path:
        """A fresh folder for one job: a copy of the checkout (or the tree itself in place)."""
        if not self.isolated:
            return self.source
        target = self.root / "jobs" / job_folder(job_id)
        if target.exists():
            shutil.rmtree(target)
        try:
            shutil.copytree(self.source, target, symlinks=True)
        except OSError as exc:
            shutil.rmtree(target, ignore_errors=True)
            raise WorkspaceError(
                f"cannot prepare the workspace of {job_id}: {exc}",
                hint="check free disk space under the state directory",
            ) from exc
        return target

    def remove(self) -> None:
        """Delete the checkout and every job copy; unregister the worktree."""
        if not self.isolated:
            return
        if self.git is not None:
            try:
                self.git.worktree_remove(self.source, force=True)
            except GitError:
                shutil.rmtree(self.source, ignore_errors=True)
                self.git.worktree_prune()
        shutil.rmtree(self.root, ignore_errors=True)


def job_folder(job_id: str) -> str:
    """A folder name for a job id that is safe on every filesystem and never collides."""
    readable = _UNSAFE.sub("_", job_id).strip("._")[:60] or "job"
    digest = hashlib.sha256(job_id.encode()).hexdigest()[:8]
    return f"{readable}-{digest}" if readable != job_id else readable
