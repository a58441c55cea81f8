"""Shared by the delivery tests: a store to drive deployments in, and a service's settings.

With ``shipyard.cd.targets.FakeTarget`` the controller and the strategies are tested in
milliseconds; a few tests still deploy real processes (tests/cd/test_deploy.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from shipyard.cd.settings import DeploySettings
from shipyard.core.state import StateDir
from shipyard.core.store import Store, open_store


def make_store(root: Path) -> tuple[StateDir, Store]:
    """A fresh state directory (outside any repository) and its migrated SQLite store."""
    state = StateDir(root=root, repo_root=None, git_common_dir=None)
    return state, open_store(state)


def settings(
    environment: str = "staging", strategy: str = "blue_green", **changes: object
) -> DeploySettings:
    """The settings of a two-instance example service in ``environment``."""
    values: dict[str, object] = {
        "project": "webapp",
        "environment": environment,
        "target": "local",
        "strategy": strategy,
        "strategy_options": {"rollback_window": "10m", "preview": False}
        if strategy == "blue_green"
        else {},
        "setup": None,
        "command": "python3 -m app --port {port}",
        "health_path": "/healthz",
        "health_timeout_s": 5.0,
        "health_interval_s": 0.1,
        "instances": 2,
    }
    values.update(changes)
    return DeploySettings(**values)  # type: ignore[arg-type]


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "webapp"
"""The example service the real end-to-end deploys release and run."""


def copy_example(repo: Path) -> None:
    """Put the example service's files (its code, VERSION and pyproject.toml) in ``repo``."""
    for item in ("app", "VERSION", "pyproject.toml"):
        source = EXAMPLE / item
        if source.is_dir():
            shutil.copytree(source, repo / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, repo / item)
