"""Locating the state directory: main worktree, linked worktrees, hooks, SHIPYARD_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.core import state
from shipyard.core.errors import StateDirError
from support import git


def test_found_at_the_main_worktree_root_from_a_subfolder(repo: Path) -> None:
    sub = repo / "src" / "pkg"
    sub.mkdir(parents=True)
    found = state.locate(sub, env={})
    assert found.root == repo.resolve() / ".shipyard"
    assert found.repo_root == repo.resolve()


def test_linked_worktrees_share_the_main_state_dir(repo: Path, tmp_path: Path) -> None:
    other = tmp_path / "feature-tree"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(other))
    assert state.locate(other, env={}).root == repo.resolve() / ".shipyard"


def test_ensure_creates_it_private_and_excluded_from_git(repo: Path) -> None:
    found = state.locate(repo, env={}).ensure()
    assert found.root.is_dir()
    assert found.root.stat().st_mode & 0o077 == 0
    (found.root / "shipyard.db").write_text("x")
    assert git(repo, "status", "--porcelain") == ""
    exclude = (repo / ".git" / "info" / "exclude").read_text()
    assert exclude.count("/.shipyard/") == 1
    found.ensure()
    assert (repo / ".git" / "info" / "exclude").read_text().count("/.shipyard/") == 1


def test_shipyard_home_overrides(repo: Path, tmp_path: Path) -> None:
    home = tmp_path / "elsewhere"
    found = state.locate(repo, env={"SHIPYARD_HOME": str(home)})
    assert found.root == home.resolve()
    assert found.database_url({}) == f"sqlite:///{home.resolve() / 'shipyard.db'}"


def test_database_url_override() -> None:
    found = state.StateDir(root=Path("/x"), repo_root=None, git_common_dir=None)
    url = "postgresql+psycopg://postgres@127.0.0.1/test"
    assert found.database_url({"SHIPYARD_DATABASE_URL": url}) == url


def test_a_bare_repository_keeps_state_inside_it(tmp_path: Path) -> None:
    bare = tmp_path / "project.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    found = state.locate(bare, env={})
    assert found.root == bare.resolve() / ".shipyard"
    assert found.repo_root is None


def test_outside_a_repository_is_a_clear_error(tmp_path: Path) -> None:
    lonely = tmp_path / "not-a-repo"
    lonely.mkdir()
    with pytest.raises(StateDirError, match="not inside a git repository") as caught:
        state.locate(lonely, env={})
    assert caught.value.hint and "SHIPYARD_HOME" in caught.value.hint
