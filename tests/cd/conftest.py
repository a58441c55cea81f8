"""Fixtures shared by the delivery tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.core.state import StateDir
from shipyard.core.store import open_store


@pytest.fixture(scope="session")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database (made once per test process), copied by tests that need a
    fresh store in milliseconds."""
    root = tmp_path_factory.mktemp("template") / "state"
    open_store(StateDir(root=root, repo_root=None, git_common_dir=None)).dispose()
    return root / "shipyard.db"
