"""Fixtures for CI tests: a real git project whose pipeline runs through the real engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cisupport import Project
from shipyard.core import state as state_dir
from shipyard.core.store import open_store


@pytest.fixture
def project(repo: Path) -> Iterator[Project]:
    """A project in the suite's repository, with its store migrated."""
    state = state_dir.locate(repo).ensure()
    store = open_store(state)
    yield Project(path=repo, store=store)
    store.dispose()
