"""Executors run one attempt of one job; the scheduler never knows which kind it talks to.

The registry maps the name used in configuration to the class. Only ``local`` exists today;
a distributed executor plugs in here without touching the scheduler.
"""

from __future__ import annotations

from shipyard.ci.executors.interface import (
    AttemptOutcome,
    AttemptRequest,
    Executor,
    ExecutorError,
    LogSink,
)
from shipyard.ci.executors.local import LocalExecutor

EXECUTORS: dict[str, type[Executor]] = {"local": LocalExecutor}
"""Executors by the name configuration uses."""

__all__ = [
    "EXECUTORS",
    "AttemptOutcome",
    "AttemptRequest",
    "Executor",
    "ExecutorError",
    "LocalExecutor",
    "LogSink",
]
