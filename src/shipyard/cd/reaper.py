"""The reaper: stops warm versions when their rollback window ends, without waiting for a command.

``python -m shipyard.cd.reaper --state-dir DIR`` runs under the state directory's supervisor
(``ensure_reaper`` adds it when a deployment leaves a version warm). It sleeps until the next
window ends, then records in the store and the audit log that the version is no longer warm,
and stops its instances. It never starts anything and never touches a version that serves.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from shipyard.cd.supervisor import ProgramSpec, Supervisor, SupervisorError
from shipyard.core.state import StateDir

PROGRAM = "reaper"
"""The reaper's program name under the supervisor."""

ACTOR = "shipyard-reaper"
"""Who the audit log names for what the reaper does."""

POLL_S = 5.0
"""The longest sleep: a window that begins meanwhile is noticed within it."""

_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "SHIPYARD_BLOBS")


def ensure_reaper(state: StateDir, environ: Mapping[str, str] | None = None) -> None:
    """Run the reaper of ``state`` under its supervisor, unless it runs already."""
    environment = dict(os.environ if environ is None else environ)
    supervisor = Supervisor.for_state(state)
    with contextlib.suppress(SupervisorError):
        if supervisor.status(PROGRAM).running:
            return
    database = environment.get("SHIPYARD_DATABASE_URL", "").strip()
    supervisor.add(
        ProgramSpec(
            name=PROGRAM,
            argv=(sys.executable, "-m", "shipyard.cd.reaper", "--state-dir", str(state.root)),
            cwd=state.root,
            env={key: environment[key] for key in _KEEP if key in environment},
            # The URL may hold a password: it goes to the owner-only environment file.
            secret_env={"SHIPYARD_DATABASE_URL": database} if database else {},
            autorestart=True,
            start_secs=1,
        )
    )


def run(state: StateDir, stop: threading.Event) -> None:
    """Retire expired warm versions until ``stop`` is set."""
    # Imported here: ``ensure_reaper`` is called by commands that need none of this.
    from shipyard.cd import delivery, deployments
    from shipyard.cd.targets.local import LocalTarget
    from shipyard.core.store import open_store

    store = open_store(state)
    target = LocalTarget(state)
    while not stop.is_set():
        for retired in delivery.retire_expired(store, target, actor=ACTOR):
            sys.stdout.write(
                f"stopped {retired.project} {retired.warm_version} in {retired.environment}: "
                f"its rollback window ended at {retired.warm_until}\n"
            )
            sys.stdout.flush()
        due = deployments.next_warm_expiry(store)
        wait = POLL_S
        if due is not None:
            wait = min(POLL_S, max((due - datetime.now(UTC)).total_seconds(), 0.0) + 0.05)
        stop.wait(wait)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the reaper until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m shipyard.cd.reaper", description=__doc__)
    parser.add_argument("--state-dir", required=True, type=Path, help="the state directory")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    run(StateDir(root=args.state_dir.resolve(), repo_root=None, git_common_dir=None), stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
