"""Fixtures for core tests: real git repositories built with the git command itself.

Names differ from the suite-wide fixtures in tests/conftest.py on purpose (no overriding).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

AUTHOR = ("Ada Lovelace", "ada@example.com")
COMMITTER = ("Release Bot", "bot@example.com")
DATE = "2024-01-02T03:04:05+02:00"


@dataclass(frozen=True)
class Repo:
    """A real git repository in a temporary directory, driven by the git command directly."""

    path: Path

    def git(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        """Run git here, fail the test if it fails, and return its stripped output."""
        result = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, f"git {args} failed: {result.stderr}"
        return result.stdout.strip()

    def write(self, name: str, text: str) -> Path:
        """Write a file (creating folders) relative to the repository root."""
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def commit(
        self,
        message: str,
        files: Mapping[str, str] | None = None,
        *,
        author: tuple[str, str] = AUTHOR,
        date: str = DATE,
    ) -> str:
        """Write ``files``, stage everything and commit; return the new commit's sha."""
        for name, text in (files or {}).items():
            self.write(name, text)
        self.git("add", "--all")
        env = {
            "GIT_AUTHOR_NAME": author[0],
            "GIT_AUTHOR_EMAIL": author[1],
            "GIT_AUTHOR_DATE": date,
            "GIT_COMMITTER_NAME": COMMITTER[0],
            "GIT_COMMITTER_EMAIL": COMMITTER[1],
            "GIT_COMMITTER_DATE": date,
        }
        self.git("commit", "--quiet", "--allow-empty", "--no-verify", "-m", message, env=env)
        return self.git("rev-parse", "HEAD")


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


def _init(path: Path) -> Repo:
    path.mkdir(parents=True, exist_ok=True)
    repo = Repo(path)
    repo.git("init", "--quiet", "--initial-branch=main")
    return repo


@pytest.fixture
def new_repo(tmp_path: Path, isolated_git: None) -> Callable[[str], Repo]:
    """A factory: ``new_repo(name)`` creates an empty repository under the test's tmp_path."""

    def make(name: str) -> Repo:
        return _init(tmp_path / name)

    return make


@pytest.fixture
def empty_repo(tmp_path: Path, isolated_git: None) -> Repo:
    """An empty repository on branch main, with no commit yet."""
    return _init(tmp_path / "empty-repo")


@pytest.fixture
def tree_marker() -> Iterator[tuple[str, str]]:
    """A fresh tree marker; anything still carrying it after the test is SIGKILLed."""
    value = ("SHIPYARD_TEST_TREE", os.urandom(16).hex())
    yield value
    for process in psutil.process_iter():
        try:
            if process.environ().get(value[0]) == value[1] and process.pid != os.getpid():
                process.send_signal(signal.SIGKILL)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
