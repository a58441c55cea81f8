"""Runs whose driver died: found by the recorded driver process, recorded as failed (driver lost).

A run is driven by the ``shipyard run`` process that recorded it. When that process is gone
(killed, crashed, the machine restarted) nobody will ever finish the run, so whoever reads runs
notices it, records it, and stops what the dead driver's jobs left running. A run whose driver
lives is never touched.
"""

from __future__ import annotations

import contextlib
import signal
import socket

import psutil

from shipyard.ci import runs
from shipyard.core.errors import ProcessError
from shipyard.core.process import kill_tree, marked_processes
from shipyard.core.store import Store

RUN_TREE_VARIABLE = "SHIPYARD_RUN_TREE"
"""The environment variable that marks every process of one run's jobs."""

_CLOCK_SLACK_S = 1.0
_KILL_GRACE_S = 3.0


def run_marker(run: runs.Run) -> tuple[str, str]:
    """The ``(name, value)`` environment marker that every process of the run's jobs carries."""
    return RUN_TREE_VARIABLE, f"{run.id}-{run.created_at.timestamp():.6f}"


def driver_alive(run: runs.Run) -> bool:
    """Whether the process that recorded the run may still be driving it.

    Only the driver's own host can tell (runs of a shared PostgreSQL store may be driven
    elsewhere); a run with no recorded pid is never judged. A pid is reused once its process
    is gone: a process of that pid that started after the run was recorded is somebody else.
    """
    if run.driver_pid is None:
        return True
    if run.driver_host is not None and run.driver_host != this_host():
        return True
    try:
        process = psutil.Process(run.driver_pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        started = process.create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
    return started <= run.created_at.timestamp() + _CLOCK_SLACK_S


def this_host() -> str:
    """The name a driver records as its host."""
    return socket.gethostname()


def lost_message(run: runs.Run) -> str:
    """What a run whose driver is gone is recorded with."""
    return f"driver lost: process {run.driver_pid} ended without finishing the run"


def was_lost(run: runs.Run) -> bool:
    """Whether the run was recorded as failed because its driver was gone."""
    return run.status == "failed" and run.message == lost_message(run)


def reconcile(store: Store, *, actor: str) -> list[runs.Run]:
    """Record every unfinished run whose driver is gone as failed (driver lost) and stop what
    its jobs left running; the runs so recorded."""
    recorded: list[runs.Run] = []
    for run in runs.unfinished_runs(store):
        if driver_alive(run):
            continue
        lost = runs.driver_lost(store, run.id, actor=actor, message=lost_message(run))
        _stop_leftovers(run)
        if lost is not None:
            recorded.append(lost)
    return recorded


def _stop_leftovers(run: runs.Run) -> None:
    marker = run_marker(run)
    found = marked_processes(marker)
    if found:
        # One call stops every process that carries the marker, and their descendants.
        with contextlib.suppress(ProcessError):
            kill_tree(found[0], signal=signal.SIGTERM, grace=_KILL_GRACE_S, marker=marker)
