"""The ``pipeline`` section of ``shipyard.yaml``: jobs, their DAG, matrices and defaults.

This is the validated raw form. It checks what can be checked on the data alone — names,
types, ``needs`` that point at real jobs, cycles, matrix sizes — and leaves expressions and
command lookup to the CI pillar, which builds the runtime pipeline from it.
"""

from __future__ import annotations

import itertools
import math
import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from shipyard.core.config.problems import config_value_error, did_you_mean
from shipyard.core.config.types import ByteSize, Duration, StrictModel

DEFAULT_RETENTION = timedelta(days=30)
"""How long runs, logs and unused cache entries are kept unless ``pipeline.retention`` says."""

MAX_MATRIX_JOBS = 256
"""A matrix may expand to at most this many jobs."""

SHELLS = ("bash", "sh", "python")
"""Shell names accepted as a string in ``shell``; a list gives a full command instead."""

FailureKind = Literal["exit", "timeout", "infrastructure"]
FAILURE_KINDS: tuple[FailureKind, ...] = ("exit", "timeout", "infrastructure")
"""What a job can fail of, for ``retry.on``."""

_JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_MATRIX_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


def _check_job_name(value: str) -> str:
    if not _JOB_NAME.fullmatch(value):
        raise config_value_error(
            f"{value!r} is not a job name",
            hint="use 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit",
        )
    return value


def _check_env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise config_value_error(
            f"{value!r} is not an environment variable name",
            hint="use letters, digits and '_', not starting with a digit",
        )
    return value


def _refuse_nul(value: str, what: str, at: tuple[str | int, ...] = ()) -> None:
    """No program can be given a NUL character: in a command, argument or value it is a
    mistake that would otherwise only show when the job starts."""
    if "\0" in value:
        raise config_value_error(
            f"{what} contains a NUL character (\\0), which no program can be given",
            hint="remove it; a script that needs the byte can write it, as in printf '\\0'",
            at=at,
        )


def _check_text(value: str) -> str:
    _refuse_nul(value, "the text")
    return value


def _check_relative_path(value: str) -> str:
    _refuse_nul(value, "the path")
    parts = value.replace("\\", "/").split("/")
    if value.startswith("/") or ".." in parts or not value.strip():
        raise config_value_error(
            f"{value!r} must be a folder inside the repository",
            hint="write a relative path such as 'src' or 'services/api', without '..'",
        )
    return value


def _check_glob(value: str) -> str:
    _refuse_nul(value, "the pattern")
    text = value.strip()
    parts = text.replace("\\", "/").split("/")
    if not text or text.startswith("/") or ".." in parts:
        raise config_value_error(
            f"{value!r} must stay inside the workspace",
            hint="write a relative pattern such as 'dist/*.whl' or 'src/**', without '..'",
        )
    return text


def _scalar_text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_scalar(value: str | int | float | bool) -> str:
    text = _scalar_text(value)
    _refuse_nul(text, "the value")
    return text


def _check_command(value: str) -> str:
    _refuse_nul(value, "the command")
    if not value.strip():
        raise config_value_error("the command is empty", hint="write the command to run")
    return value


JobName = Annotated[str, AfterValidator(_check_job_name)]
EnvName = Annotated[str, AfterValidator(_check_env_name)]
Scalar = Annotated[str | int | float | bool, AfterValidator(_check_scalar)]
Text = Annotated[str, AfterValidator(_check_text)]
Command = Annotated[str, AfterValidator(_check_command)]
RelativePath = Annotated[str, AfterValidator(_check_relative_path)]
Glob = Annotated[str, AfterValidator(_check_glob)]


class Step(StrictModel):
    """One named command of a job that has several."""

    name: Text | None = None
    run: Command


class Retry(StrictModel):
    """How often a failed job is tried again, and for which kinds of failure."""

    max: int = Field(ge=1, le=10)
    on: tuple[FailureKind, ...] = FAILURE_KINDS


class Matrix(StrictModel):
    """Axes (any other key, each a list of values) and the combinations to add or remove."""

    model_config = ConfigDict(extra="allow")

    include: tuple[dict[str, Scalar], ...] = ()
    exclude: tuple[dict[str, Scalar], ...] = ()

    @model_validator(mode="after")
    def _check_axes(self) -> Matrix:
        for key, values in (self.model_extra or {}).items():
            if not _MATRIX_KEY.fullmatch(key):
                raise config_value_error(
                    f"{key!r} is not a matrix axis name",
                    hint="use letters, digits, '_' and '-', starting with a letter",
                    at=(key,),
                )
            if not isinstance(values, list) or not values:
                raise config_value_error(
                    f"matrix axis {key!r} must be a non-empty list of values",
                    hint=f"write {key}: [a, b]",
                    at=(key,),
                )
            for index, value in enumerate(values):
                if isinstance(value, dict | list) or value is None:
                    raise config_value_error(
                        "a matrix value must be a string, number or true/false", at=(key, index)
                    )
                _refuse_nul(_scalar_text(value), "the value", at=(key, index))
        for kind, entries in (("include", self.include), ("exclude", self.exclude)):
            for index, entry in enumerate(entries):
                if not entry:
                    raise config_value_error(
                        f"an empty {kind} entry matches nothing", at=(kind, index)
                    )
        for index, entry in enumerate(self.exclude):
            unknown = [key for key in entry if key not in self.axes]
            if unknown:
                raise config_value_error(
                    f"exclude names {unknown[0]!r}, which is not an axis of this matrix",
                    hint=did_you_mean(unknown[0], list(self.axes)),
                    at=("exclude", index),
                )
        expanded = self._expand()
        if isinstance(expanded, int) or len(expanded) > MAX_MATRIX_JOBS:
            count = f"at least {expanded}" if isinstance(expanded, int) else str(len(expanded))
            raise config_value_error(
                f"the matrix expands to {count} jobs, more than {MAX_MATRIX_JOBS}",
                hint="split it into several jobs, or 'exclude' combinations",
            )
        if not expanded:
            raise config_value_error(
                "the matrix expands to no jobs at all",
                hint="check 'exclude': it removes every combination",
            )
        return self

    @property
    def axes(self) -> dict[str, tuple[str, ...]]:
        """The axes in the order written, values as text."""
        return {
            key: tuple(_scalar_text(v) for v in values)
            for key, values in (self.model_extra or {}).items()
        }

    def combinations(self) -> list[dict[str, str]]:
        """The cartesian product of the axes, minus ``exclude``, plus ``include``."""
        expanded = self._expand()
        if isinstance(expanded, int):
            raise ValueError(f"the matrix expands to more than {MAX_MATRIX_JOBS} jobs")
        return expanded

    def _expand(self) -> list[dict[str, str]] | int:
        """The combinations; or, once there are more than the limit, a lower bound of their
        number (the rest is never built)."""
        found = _surviving(self.axes, self.exclude, MAX_MATRIX_JOBS + 1)
        if isinstance(found, int):
            return found
        for entry in self.include:
            extra = {k: _scalar_text(v) for k, v in entry.items()}
            if extra not in found:
                found.append(extra)
        return found


_MATRIX_WORK = 100_000
"""The most branches the expansion of one matrix may look at before it gives up."""


def _surviving(
    axes: dict[str, tuple[str, ...]], exclude: tuple[dict[str, Scalar], ...], limit: int
) -> list[dict[str, str]] | int:
    """The combinations of ``axes`` that no ``exclude`` entry removes, in product order; or,
    as soon as there are at least ``limit``, a lower bound of their number.

    The product is never built: branches that an entry removes are cut whole, and a branch
    no entry can touch is counted by multiplication, so a matrix of 10 axes of 10 values is
    refused at once.
    """
    names = list(axes)
    if not names:
        return []
    # Entries as {axis position: positions of the values it names}; one naming a value the
    # axis does not have removes nothing.
    entries: list[dict[int, frozenset[int]]] = []
    for entry in exclude:
        wanted: dict[int, frozenset[int]] = {}
        for key, scalar in entry.items():
            text = _scalar_text(scalar)
            wanted[names.index(key)] = frozenset(
                i for i, written in enumerate(axes[key]) if written == text
            )
        if all(wanted.values()):
            entries.append(wanted)
    # Axes that entries name come first, so that removed branches are cut near the root.
    order = sorted(range(len(names)), key=lambda axis: -sum(axis in e for e in entries))
    depth_of = {axis: depth for depth, axis in enumerate(order)}
    last = [max(depth_of[axis] for axis in entry) for entry in entries]
    sizes = [len(axes[names[axis]]) for axis in order]
    picks: list[tuple[int, ...]] = []  # value positions, in ``order``
    count = 0
    work = 0
    pending: list[tuple[tuple[int, ...], tuple[int, ...]]] = [((), tuple(range(len(entries))))]
    while pending:
        chosen, live = pending.pop()
        work += 1
        depth = len(chosen)
        if not live:
            rest = math.prod(sizes[depth:])
            if count + rest >= limit:
                return count + rest
            picks.extend(chosen + tail for tail in itertools.product(*map(range, sizes[depth:])))
            count += rest
            continue
        if work > _MATRIX_WORK:
            raise config_value_error(
                f"the matrix has {math.prod(sizes)} combinations before 'exclude', too many "
                "to expand",
                hint="split it into several jobs with smaller matrices",
            )
        axis = order[depth]
        for position in reversed(range(sizes[depth])):
            still = tuple(
                index
                for index in live
                if axis not in entries[index] or position in entries[index][axis]
            )
            if any(last[index] == depth for index in still):
                continue  # an entry matches every axis chosen so far: the branch is removed
            pending.append(((*chosen, position), still))
    # Back to the order of the axes as written, then product order.
    rows = sorted(tuple(pick[depth_of[axis]] for axis in range(len(names))) for pick in picks)
    return [{name: axes[name][row[axis]] for axis, name in enumerate(names)} for row in rows]


class JobDefaults(StrictModel):
    """Settings every job inherits unless it sets its own."""

    timeout: Duration = timedelta(hours=1)
    retry: Retry | None = None
    env: dict[EnvName, Scalar] = Field(default_factory=dict)
    shell: Literal["bash", "sh", "python"] | list[Text] = "bash"
    workdir: RelativePath | None = None
    log_limit: ByteSize = 10 * 1024 * 1024
    cache: bool = True
    artifacts_missing: Literal["fail", "warn"] = "fail"


class Job(StrictModel):
    """One job: what it runs, what it needs, and how it may fail."""

    run: Command | list[Command | Step]
    needs: list[JobName] = Field(default_factory=list)
    matrix: Matrix | None = None
    if_: str | None = Field(default=None, alias="if")
    env: dict[EnvName, Scalar] = Field(default_factory=dict)
    secrets: list[EnvName] = Field(default_factory=list)
    timeout: Duration | None = None
    retry: Retry | None = None
    allow_failure: bool = False
    when: Literal["on_success", "always"] = "on_success"
    workdir: RelativePath | None = None
    shell: Literal["bash", "sh", "python"] | list[Text] | None = None
    log_limit: ByteSize | None = None
    artifacts: list[Glob] = Field(default_factory=list)
    artifacts_missing: Literal["fail", "warn"] | None = None
    inputs: list[Glob] | None = None
    tools: list[Command] = Field(default_factory=list)
    cache: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> Job:
        if isinstance(self.run, list) and not self.run:
            raise config_value_error("a job needs at least one command", at=("run",))
        if isinstance(self.shell, list) and not self.shell:
            raise config_value_error("shell needs a command such as [bash, -c]", at=("shell",))
        if len(set(self.needs)) != len(self.needs):
            raise config_value_error("a job is listed twice in needs", at=("needs",))
        return self

    @property
    def steps(self) -> list[Step]:
        """The commands as named steps, in order."""
        if isinstance(self.run, str):
            return [Step(run=self.run)]
        return [item if isinstance(item, Step) else Step(run=item) for item in self.run]


class Pipeline(StrictModel):
    """The ``pipeline`` section: defaults and the jobs of the DAG."""

    defaults: JobDefaults = Field(default_factory=JobDefaults)
    jobs: dict[JobName, Job]
    cache_size: ByteSize = 2 * 1024**3
    retention: Duration = DEFAULT_RETENTION
    supersede: bool = True

    @model_validator(mode="after")
    def _check_graph(self) -> Pipeline:
        if not self.jobs:
            raise config_value_error(
                "the pipeline has no jobs",
                hint="add one, e.g. jobs: {test: {run: pytest}}",
                at=("jobs",),
            )
        names = list(self.jobs)
        for name, job in self.jobs.items():
            for index, need in enumerate(job.needs):
                if need == name:
                    raise config_value_error(
                        f"job {name!r} needs itself", at=("jobs", name, "needs", index)
                    )
                if need not in self.jobs:
                    raise config_value_error(
                        f"job {name!r} needs {need!r}, which is not a job of this pipeline",
                        hint=did_you_mean(need, names) or f"the jobs are: {', '.join(names)}",
                        at=("jobs", name, "needs", index),
                    )
        cycle = find_cycle({name: job.needs for name, job in self.jobs.items()})
        if cycle:
            loop = " → ".join([*cycle, cycle[0]])
            first = self.jobs[cycle[0]].needs.index(cycle[1 % len(cycle)])
            raise config_value_error(
                f"the jobs' needs form a loop: {loop}",
                hint="remove one of these needs so the jobs can run in some order",
                at=("jobs", cycle[0], "needs", first),
            )
        return self


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """One cycle of a dependency graph as the list of its nodes, or None if it has none."""
    done: set[str] = set()
    for start in graph:
        if start in done:
            continue
        path: list[str] = [start]
        on_path = {start}
        pending = [iter(graph.get(start, []))]
        while pending:
            nxt = next(pending[-1], None)
            if nxt is None:
                pending.pop()
                node = path.pop()
                on_path.discard(node)
                done.add(node)
                continue
            if nxt in on_path:
                return path[path.index(nxt) :]
            if nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                pending.append(iter(graph.get(nxt, [])))
    return None
