"""A real git project whose pipeline runs through the real CI engine, for tests."""

from __future__ import annotations

import asyncio
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.ci import runs
from shipyard.ci.logs import read_log
from shipyard.ci.runner import RunRequest, execute, prepare_run
from shipyard.core import state as state_dir
from shipyard.core.store import Store
from support import git


@dataclass
class Project:
    """A git repository with a shipyard.yaml, and the store its runs are recorded in."""

    path: Path
    store: Store
    env: dict[str, str] = field(default_factory=dict)

    @property
    def state(self) -> state_dir.StateDir:
        """The state directory of the project."""
        return state_dir.locate(self.path)

    def commit(
        self, pipeline: str, files: dict[str, str] | None = None, message: str = "ci: change"
    ) -> str:
        """Write shipyard.yaml (project + the given pipeline YAML) and files; commit them."""
        config = "project: demo\npipeline:\n" + textwrap.indent(textwrap.dedent(pipeline), "  ")
        (self.path / "shipyard.yaml").write_text(config)
        for name, text in (files or {}).items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return git(self.path, "rev-parse", "HEAD").strip()

    def run(self, **request: Any) -> tuple[runs.Run, dict[str, runs.RunJob]]:
        """Run the pipeline through the real engine; return the run and its jobs by id."""
        prepared = prepare_run(self.path, RunRequest(**request), self.state)
        run = asyncio.run(execute(prepared, store=self.store, state=self.state, actor="tester"))
        return run, {job.job_id: job for job in runs.jobs_of(self.store, run.id)}

    def log(self, run_id: int, job_id: str, attempt: int | None = None) -> str:
        """The text of a job's log (its last attempt unless told)."""
        tried = runs.attempts_of(self.store, run_id, job_id)
        chosen = tried[-1] if attempt is None else tried[attempt - 1]
        return "\n".join(line.text for line in read_log(Path(chosen.log_path)))
