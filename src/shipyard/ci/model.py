"""The runtime pipeline: the ``pipeline`` section expanded into serializable job specs.

Matrices become one job per combination, ``needs`` point at concrete job ids, defaults are
applied and ``if`` expressions are parsed (a syntax error is a configuration error at its
column). A ``JobSpec`` is plain data so that any executor, local or remote, can run it.
"""

from __future__ import annotations

import functools
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from shipyard.ci.expressions import Expression, ExpressionError, parse
from shipyard.core.config import ConfigInvalid, ConfigProblem, LoadedConfig
from shipyard.core.config.pipeline import Job, JobDefaults

_SHELLS: dict[str, tuple[str, ...]] = {
    "bash": ("bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c"),
    "sh": ("sh", "-e", "-c"),
    "python": (sys.executable, "-c"),
}


@dataclass(frozen=True)
class StepSpec:
    """One command of a job."""

    name: str
    run: str


@dataclass(frozen=True)
class JobSpec:
    """Everything needed to run one job (one matrix combination), as plain data."""

    id: str
    name: str
    steps: tuple[StepSpec, ...]
    shell: tuple[str, ...]
    needs: tuple[str, ...] = ()
    matrix: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    condition: str | None = None
    timeout_s: float = 3600.0
    retry_max: int = 0
    retry_on: tuple[str, ...] = ()
    allow_failure: bool = False
    when: str = "on_success"
    workdir: str | None = None
    log_limit: int = 10 * 1024 * 1024
    artifacts: tuple[str, ...] = ()
    artifacts_missing: str = "fail"
    inputs: tuple[str, ...] | None = None
    tools: tuple[str, ...] = ()
    cache: bool = True

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form; ``from_json`` reverses it."""
        data = asdict(self)
        data["matrix"] = dict(self.matrix)
        data["env"] = dict(self.env)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobSpec:
        """Rebuild a spec from ``to_json`` output."""
        values = dict(data)
        values["steps"] = tuple(StepSpec(**step) for step in values["steps"])
        for key in ("shell", "needs", "secrets", "retry_on", "artifacts", "tools"):
            values[key] = tuple(values.get(key, ()))
        if values.get("inputs") is not None:
            values["inputs"] = tuple(values["inputs"])
        return cls(**values)

    def expression(self) -> Expression | None:
        """The parsed ``if`` condition, or None when the job always runs."""
        return parse(self.condition) if self.condition else None


@dataclass(frozen=True)
class PipelineSpec:
    """The jobs of one pipeline, in the order they were written (matrix instances together)."""

    project: str
    jobs: tuple[JobSpec, ...]
    project_dir: str = ""
    cache_size: int = 2 * 1024**3
    retention_s: float = 30 * 86400.0
    supersede: bool = True

    def job(self, job_id: str) -> JobSpec:
        """The job with this id."""
        for job in self.jobs:
            if job.id == job_id:
                return job
        raise KeyError(job_id)

    def select(self, names: Sequence[str]) -> PipelineSpec:
        """Only the named jobs (by name or id) and everything they need, transitively."""
        wanted = {job.id for job in self.jobs if job.id in names or job.name in names}
        pending = list(wanted)
        while pending:
            for need in self.job(pending.pop()).needs:
                if need not in wanted:
                    wanted.add(need)
                    pending.append(need)
        return PipelineSpec(
            self.project, tuple(j for j in self.jobs if j.id in wanted), self.project_dir
        )


def job_id(name: str, matrix: Mapping[str, str]) -> str:
    """The id of one matrix instance: ``test[python=3.11,os=linux]``, or the name alone."""
    if not matrix:
        return name
    return name + "[" + ",".join(f"{k}={v}" for k, v in matrix.items()) + "]"


def build_pipeline(loaded: LoadedConfig, *, project_dir: str = "") -> PipelineSpec:
    """Expand the ``pipeline`` section; raise ConfigInvalid naming every problem's position."""
    section = loaded.model.pipeline
    if section is None:
        raise ConfigInvalid(
            [
                ConfigProblem(
                    file=loaded.document.source,
                    line=1,
                    column=1,
                    path="pipeline",
                    message="this configuration has no pipeline",
                    hint="add a pipeline section, e.g. pipeline: {jobs: {test: {run: pytest}}}",
                )
            ]
        )
    problems: list[ConfigProblem] = []
    instances: dict[str, list[str]] = {}
    expanded: list[tuple[str, Job, dict[str, str]]] = []
    for name, job in section.jobs.items():
        combos = job.matrix.combinations() if job.matrix else [{}]
        instances[name] = [job_id(name, combo) for combo in combos]
        expanded.extend((name, job, combo) for combo in combos)
        if job.if_ is not None:
            try:
                parse(job.if_)
            except ExpressionError as error:
                problems.append(
                    loaded.problem(
                        ("pipeline", "jobs", name, "if"),
                        f"{error.message} (at column {error.column} of the expression)",
                        hint=error.hint,
                    )
                )
        shell = job.shell if job.shell is not None else section.defaults.shell
        missing = _missing_shell(shell)
        if missing:
            at = (
                ("pipeline", "jobs", name, "shell")
                if job.shell is not None
                else ("pipeline", "defaults", "shell")
            )
            problems.append(
                loaded.problem(
                    at,
                    f"the shell {missing!r} is not installed on this machine",
                    hint="install it, or choose another shell (bash, sh, python)",
                )
            )
    if problems:
        raise ConfigInvalid(problems)
    jobs = tuple(
        _job_spec(name, job, combo, section.defaults, instances) for name, job, combo in expanded
    )
    return PipelineSpec(
        project=loaded.model.project,
        jobs=jobs,
        project_dir=project_dir,
        cache_size=section.cache_size,
        retention_s=section.retention.total_seconds(),
        supersede=section.supersede,
    )


def _job_spec(
    name: str,
    job: Job,
    combo: dict[str, str],
    defaults: JobDefaults,
    instances: Mapping[str, list[str]],
) -> JobSpec:
    steps = tuple(
        StepSpec(name=step.name or _step_name(step.run, index), run=step.run)
        for index, step in enumerate(job.steps, start=1)
    )
    env = {key: str(value) for key, value in defaults.env.items()}
    env.update({key: str(value) for key, value in job.env.items()})
    retry = job.retry or defaults.retry
    return JobSpec(
        id=job_id(name, combo),
        name=name,
        steps=steps,
        shell=_shell_argv(job.shell if job.shell is not None else defaults.shell),
        needs=tuple(need_id for need in job.needs for need_id in instances[need]),
        matrix=combo,
        env=env,
        secrets=tuple(job.secrets),
        condition=job.if_,
        timeout_s=(job.timeout or defaults.timeout).total_seconds(),
        retry_max=retry.max if retry else 0,
        retry_on=tuple(retry.on) if retry else (),
        allow_failure=job.allow_failure,
        when=job.when,
        workdir=job.workdir or defaults.workdir,
        log_limit=job.log_limit or defaults.log_limit,
        artifacts=tuple(job.artifacts),
        artifacts_missing=job.artifacts_missing or defaults.artifacts_missing,
        inputs=tuple(job.inputs) if job.inputs is not None else None,
        tools=tuple(job.tools),
        cache=(job.cache if job.cache is not None else defaults.cache) and job.when != "always",
    )


def _shell_argv(shell: str | list[str]) -> tuple[str, ...]:
    return _SHELLS[shell] if isinstance(shell, str) else tuple(shell)


def _missing_shell(shell: str | list[str]) -> str | None:
    program = _shell_argv(shell)[0]
    return None if _installed(program) else program


@functools.cache
def _installed(program: str) -> bool:
    return shutil.which(program) is not None


def _step_name(command: str, index: int) -> str:
    first = command.strip().splitlines()[0] if command.strip() else f"step {index}"
    return first if len(first) <= 60 else first[:59] + "…"
