"""Fixtures for the version tests: real git repositories built with the git command itself.

Every commit gets its own fixed date, a second after the previous one, so logs are ordered.
Names differ from the suite-wide fixtures in tests/conftest.py on purpose (no overriding).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shipyard.core.git import Git

AUTHOR = ("Ada Lovelace", "ada@example.com")
START = 1_767_225_600  # 2026-01-01T00:00:00Z


@dataclass
class Repo:
    """A real git repository in a temporary directory, driven by the git command directly."""

    path: Path
    clock: list[int] = field(default_factory=lambda: [START])

    @property
    def api(self) -> Git:
        """Shipyard's git wrapper on this repository."""
        return Git(self.path)

    def git(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        """Run git here, fail the test if it fails, and return its stripped output."""
        result = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env={**os.environ, **self._dates(), **(env or {})},
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, f"git {args} failed: {result.stderr}"
        return result.stdout.strip()

    def commit(self, message: str, files: Mapping[str, str] | None = None) -> str:
        """Write ``files`` (by default a new file of its own), commit, return the sha."""
        self.clock[0] += 1
        for name, text in (files or {f"changes/{self.clock[0]}.txt": "change\n"}).items():
            path = self.path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self.git("add", "--all")
        self.git("commit", "--quiet", "--allow-empty", "--no-verify", "-m", message)
        return self.git("rev-parse", "HEAD")

    def tag(self, name: str, ref: str = "HEAD", *, annotated: bool = True) -> None:
        """Create tag ``name`` on ``ref``, annotated unless told otherwise."""
        if annotated:
            self.git("tag", "--annotate", "--message", f"release {name}", name, ref)
        else:
            self.git("tag", name, ref)

    def merge(self, branch: str, message: str) -> str:
        """Merge ``branch`` into the current branch with a merge commit; return its sha."""
        self.clock[0] += 1
        self.git("merge", "--quiet", "--no-ff", "--no-edit", "-m", message, branch)
        return self.git("rev-parse", "HEAD")

    def _dates(self) -> dict[str, str]:
        stamp = f"@{self.clock[0]} +0000"
        return {
            "GIT_AUTHOR_NAME": AUTHOR[0],
            "GIT_AUTHOR_EMAIL": AUTHOR[1],
            "GIT_AUTHOR_DATE": stamp,
            "GIT_COMMITTER_NAME": AUTHOR[0],
            "GIT_COMMITTER_EMAIL": AUTHOR[1],
            "GIT_COMMITTER_DATE": stamp,
        }


@pytest.fixture
def isolated_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make git ignore the machine's configuration and any repository outside the test."""
    home = tmp_path_factory.mktemp("home")
    (home / ".gitconfig").write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path_factory.getbasetemp()))
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_repo(tmp_path: Path, isolated_git: None) -> Callable[[str], Repo]:
    """A factory: ``make_repo(name)`` creates an empty repository on branch main."""

    def make(name: str = "project") -> Repo:
        path = tmp_path / name
        path.mkdir(parents=True)
        repo = Repo(path)
        repo.git("init", "--quiet", "--initial-branch=main")
        return repo

    return make


@pytest.fixture
def git_project(make_repo: Callable[[str], Repo]) -> Repo:
    """An empty repository on branch main, with no commit yet."""
    return make_repo("project")
