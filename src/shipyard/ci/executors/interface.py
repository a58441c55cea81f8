"""The executor interface: run one attempt of a job spec in a workspace and report how it ended.

An executor writes the attempt's output to a log sink and returns an outcome; it records
nothing in the store itself, so the scheduler stays the one writer of run state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from shipyard.ci.model import JobSpec
from shipyard.core.errors import HostError

AttemptStatus = Literal["passed", "failed", "timed_out", "cancelled", "error"]
FailureKind = Literal["exit", "timeout", "infrastructure", "log_limit", "cancelled"]


class ExecutorError(HostError):
    """An executor could not run an attempt at all (not a failure of the job's commands)."""


class LogSink(Protocol):
    """Where an attempt's output goes: split into lines, masked, time-stamped, capped."""

    @property
    def limit_exceeded(self) -> bool:
        """Whether the log cap was reached (the attempt must then fail)."""
        ...

    def write(self, text: str, stream: Literal["out", "err"]) -> None:
        """Append a chunk of output from one stream."""
        ...

    def note(self, text: str) -> None:
        """Append a line written by Shipyard itself."""
        ...


@dataclass(frozen=True)
class AttemptRequest:
    """One attempt to run: the job, where, with which environment, logging to which sink."""

    run_id: int
    job: JobSpec
    attempt: int
    workspace: Path
    env: Mapping[str, str]
    log: LogSink


@dataclass(frozen=True)
class AttemptOutcome:
    """How an attempt ended."""

    status: AttemptStatus
    exit_code: int | None = None
    failure_kind: FailureKind | None = None
    message: str | None = None

    @property
    def passed(self) -> bool:
        """Whether the attempt succeeded."""
        return self.status == "passed"


class Executor(ABC):
    """Runs attempts of jobs; cancelling the awaiting task stops the attempt completely."""

    @abstractmethod
    async def execute(self, request: AttemptRequest) -> AttemptOutcome:
        """Run every step of the job in order; stop at the first failing step."""

    async def close(self) -> None:  # noqa: B027 - optional for executors with nothing to do
        """Finish whatever the executor still does in the background (called at run end)."""
