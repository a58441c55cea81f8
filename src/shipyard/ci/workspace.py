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
import threading
from pathlib import Path

from shipyard.core.errors import GitError, HostError
from shipyard.core.git import Git

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class WorkspaceError(HostError):
    """A workspace could not be created or removed."""


class RunWorkspace:
    """The checkout of one run and the per-job copies made from it.

    An isolated workspace checks the commit out only when the first job needs it, so a run
    whose jobs all come from the cache touches no files.
    """

    def __init__(
        self, root: Path, *, isolated: bool, git: Git | None = None, commit: str | None = None
    ) -> None:
        self.root = root
        self.isolated = isolated
        self.git = git
        self.commit = commit
        self._lock = threading.Lock()
        self._checked_out = not isolated

    @property
    def source(self) -> Path:
        """The pristine checkout (or the working tree itself in place)."""
        return self.root / "source" if self.isolated else self.root

    @classmethod
    def create(cls, git: Git, root: Path, commit: str) -> RunWorkspace:
        """A workspace that checks ``commit`` out under ``root`` when first needed."""
        return cls(root, isolated=True, git=git, commit=commit)

    @classmethod
    def in_place(cls, toplevel: Path) -> RunWorkspace:
        """Run in the user's working tree, as it is (``--worktree``)."""
        return cls(toplevel, isolated=False)

    def checkout(self) -> Path:
        """Check the commit out as a detached worktree (once); returns where."""
        with self._lock:
            if self._checked_out:
                return self.source
            assert self.git is not None and self.commit is not None
            if self.root.exists():
                shutil.rmtree(self.root)
            self.root.mkdir(parents=True)
            try:
                self.git.worktree_add(self.source, self.commit, detach=True)
            except GitError as exc:
                shutil.rmtree(self.root, ignore_errors=True)
                raise WorkspaceError(
                    f"cannot check out {self.commit[:12]} into {self.source}: {exc.message}",
                    hint="check free disk space and 'git worktree list'",
                ) from exc
            self._checked_out = True
            return self.source

    def for_job(self, job_id: str) -> Path:
        """A fresh folder for one job: a copy of the checkout (or the tree itself in place)."""
        if not self.isolated:
            return self.source
        source = self.checkout()
        target = self.root / "jobs" / job_folder(job_id)
        if target.exists():
            shutil.rmtree(target)
        try:
            shutil.copytree(source, target, symlinks=True)
        except OSError as exc:
            shutil.rmtree(target, ignore_errors=True)
            raise WorkspaceError(
                f"cannot prepare the workspace of {job_id}: {exc}",
                hint="check free disk space under the state directory",
            ) from exc
        return target

    def remove(self) -> None:
        """Delete the checkout and every job copy; unregister the worktree."""
        if not self.isolated or not self._checked_out:
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
