"""The local executor on its own: what it reports for attempts that cannot start."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

from shipyard.ci.executors import EXECUTORS
from shipyard.ci.executors.interface import AttemptOutcome, AttemptRequest
from shipyard.ci.model import JobSpec, StepSpec


class _Collected:
    """A log sink that keeps what it is given."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    @property
    def limit_exceeded(self) -> bool:
        return False

    def write(self, text: str, stream: Literal["out", "err"]) -> None:
        self.lines.append(text)

    def note(self, text: str) -> None:
        self.lines.append(text)


def _attempt(tmp_path: Path, run: str, env: dict[str, str]) -> tuple[AttemptOutcome, _Collected]:
    step = StepSpec(name="t", run=run)
    job = JobSpec(id="t", name="t", steps=(step,), shell=("sh", "-e", "-c"))  # noqa: S604
    log = _Collected()
    request = AttemptRequest(
        run_id=1,
        job=job,
        attempt=1,
        workspace=tmp_path,
        env={"PATH": "/usr/bin:/bin", **env},
        log=log,
    )
    return asyncio.run(EXECUTORS["local"]().execute(request)), log


def test_a_nul_in_the_environment_fails_the_attempt_clearly(tmp_path: Path) -> None:
    outcome, log = _attempt(tmp_path, "echo hi", {"BAD": "a\0b"})
    assert outcome.status == "error"
    assert outcome.failure_kind == "infrastructure"
    assert "NUL" in (outcome.message or "")
    assert any("NUL" in line for line in log.lines)


def test_a_nul_in_the_command_fails_the_attempt_clearly(tmp_path: Path) -> None:
    outcome, _ = _attempt(tmp_path, "echo a\0b", {})
    assert outcome.status == "error"
    assert "the command holds a NUL" in (outcome.message or "")
