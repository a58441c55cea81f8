"""The whole loop in one call: a commit's release, then every environment in promotion order.

``ship`` cuts the release (``orchestrator.release``: pipeline, release gates, signed bundle),
then for each environment waits out its ``promote_from`` soak, asks for the deployment as
``shipyard deploy`` does (deploy checks, approvals) and sees it through (the controller: the
canary, its analysis, the watch). Its progress is a small JSON file under the state
directory, replaced atomically at every step, so that a resumed ship never releases twice and
drives on a deployment that was in progress. It prints nothing: it tells ``on_progress``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from shipyard.cd import deployments
from shipyard.cd.checks import DeployChecks
from shipyard.cd.controller import Controller, DeploymentFailed, LeaseHeld, driver_alive
from shipyard.cd.delivery import request_deploy, retire_expired
from shipyard.cd.deployments import Deployment, DeploymentStatus, EnvironmentState
from shipyard.cd.promotion import promotion_order, refusal, say, soak_for
from shipyard.cd.reaper import ensure_reaper
from shipyard.cd.settings import DeploySettings, settings_for
from shipyard.cd.strategies.canary import Canary
from shipyard.cd.targets import target_for
from shipyard.ci.executors import AttemptOutcome
from shipyard.ci.model import JobSpec
from shipyard.core import measurements
from shipyard.core.config import ShipyardConfig
from shipyard.core.errors import (
    ArgumentError,
    CheckFailed,
    GitError,
    ShipyardError,
    UserError,
    WaitingForPerson,
)
from shipyard.core.git import Git
from shipyard.core.repoconfig import config_location, load_committed
from shipyard.core.state import StateDir
from shipyard.core.store import Store
from shipyard.orchestrator.release import ReleaseRequest, release
from shipyard.release import records

SHIPS_DIR = "ships"
"""The folder of the state directory that holds each project's ship record."""

RECORD_FORMAT = 1
POLL_S = 0.25
"""How often a deployment driven elsewhere, and the rollout shown, are looked at again."""
SOAK_TICK_S = 1.0
"""How often the time left of a soak is told while it is waited for."""


class ShipStatus(StrEnum):
    """Where a ship is; the values are what its record and JSON hold."""

    RUNNING = "running"
    STOPPED = "stopped"
    """Interrupted (Ctrl-C, a crash, an error that was not a failed check): it can resume."""
    WAITING = "waiting"
    """Waiting for a person (an approval, a paused deployment): it can resume after."""
    FAILED = "failed"
    SHIPPED = "shipped"


RESUMABLE = frozenset({ShipStatus.RUNNING, ShipStatus.STOPPED, ShipStatus.WAITING})


class StageState(StrEnum):
    """Where one stage of a ship is."""

    PENDING = "pending"
    RUNNING = "running"
    PASSED = "passed"
    SKIPPED = "skipped"
    FAILED = "failed"
    WAITING = "waiting"


class NothingToShip(UserError):
    """The commit has no release and no commit since the last release calls for one."""


class NothingToResume(UserError):
    """``--resume`` was asked, but the project's last ship ended (or there was none)."""


class ShipInProgress(UserError):
    """Another ``shipyard ship`` of the project is running in this state directory."""


class ShipRecordInvalid(UserError):
    """The ship record under the state directory cannot be read."""


class ShipWaiting(WaitingForPerson):
    """The ship stopped until a person acts; ``shipyard ship --resume`` goes on after."""


class ShipFailed(CheckFailed):
    """A stage of the ship failed (pipeline, gate, deploy check, a rolled-back deployment)."""


@dataclass(frozen=True)
class ShipRequest:
    """What ``shipyard ship`` was asked to do, and where."""

    cwd: Path
    state: StateDir
    store: Store
    actor: str
    ref: str | None = None
    """The commit to ship (default HEAD); not with ``resume``."""
    resume: bool = False
    """Continue the project's last ship instead of starting one."""
    to: str | None = None
    """The last environment to reach (default: the last in promotion order)."""
    config_file: Path | None = None


@dataclass(frozen=True)
class Look:
    """The latest verdict of one metric of a deployment's analysis, with its numbers."""

    metric: str
    phase: str
    verdict: str
    value: float | None
    baseline_value: float | None
    threshold: str
    reason: str

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "metric": self.metric,
            "phase": self.phase,
            "verdict": self.verdict,
            "value": self.value,
            "baseline_value": self.baseline_value,
            "threshold": self.threshold,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Rollout:
    """How far a deployment is: its status, step, traffic weights and latest verdicts."""

    deployment: int
    environment: str
    version: str
    strategy: str
    status: str
    stable: str | None
    step: str | None
    """``step 1 of 3 (10%)``, ``watch window``…; None when the strategy has no steps."""
    weights: Mapping[str, int]
    """The share of the traffic each version gets (as the deployment set it), percent."""
    looks: tuple[Look, ...] = ()

    def describe(self) -> str:
        """One line for a person: the step and the weights."""
        details = [self.step] if self.step else []
        if self.weights:
            details.append(" · ".join(f"{v} {w}%" for v, w in self.weights.items()))
        head = f"deployment {self.deployment} {self.status} ({self.strategy})"
        return f"{head}: {', '.join(details)}" if details else head

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "deployment": self.deployment,
            "environment": self.environment,
            "version": self.version,
            "strategy": self.strategy,
            "status": self.status,
            "stable": self.stable,
            "step": self.step,
            "weights": dict(self.weights),
            "looks": [look.as_json() for look in self.looks],
        }


@dataclass(frozen=True)
class ShipEvent:
    """Something ``on_progress`` is told while a ship goes on.

    ``kind`` is ``start`` (what is shipped where), ``stage`` (a stage changed ``status``),
    ``job`` (a pipeline job of the release changed ``status``), ``note`` (what the deployment
    controller says), ``rollout`` (a deployment moved: ``rollout``) or ``soak`` (``left_s``
    seconds of a soak are left).
    """

    kind: str
    stage: str
    message: str = ""
    status: str | None = None
    job: str | None = None
    rollout: Rollout | None = None
    left_s: float | None = None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "kind": self.kind,
            "stage": self.stage,
            "message": self.message,
            "status": self.status,
            "job": self.job,
            "rollout": self.rollout.as_json() if self.rollout else None,
            "left_s": self.left_s,
        }


@dataclass(frozen=True)
class StageResult:
    """One stage as it stands: ``release``, ``soak ENV`` or ``deploy ENV``."""

    name: str
    status: StageState
    message: str = ""
    deployment: int | None = None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "name": self.name,
            "status": self.status.value,
            "message": self.message,
            "deployment": self.deployment,
        }


@dataclass(frozen=True)
class ShipRecord:
    """A ship's progress as kept under the state directory (what ``--resume`` reads)."""

    project: str
    commit: str
    ref: str
    environments: tuple[str, ...]
    status: ShipStatus
    stage: str
    started_at: datetime
    updated_at: datetime
    to: str | None = None
    version: str | None = None
    released: bool = False
    """Whether this ship cut the release (False: it shipped one made before)."""
    deployments: Mapping[str, int] = field(default_factory=dict)
    message: str | None = None
    hint: str | None = None
    pid: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The record's file contents."""
        return {
            "format": RECORD_FORMAT,
            "project": self.project,
            "commit": self.commit,
            "ref": self.ref,
            "environments": list(self.environments),
            "to": self.to,
            "status": self.status.value,
            "stage": self.stage,
            "version": self.version,
            "released": self.released,
            "deployments": dict(self.deployments),
            "message": self.message,
            "hint": self.hint,
            "pid": self.pid,
            "started_at": self.started_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ShipRecord:
        """Read a record back; KeyError, TypeError or ValueError when it is not one."""
        if data.get("format") != RECORD_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, not {RECORD_FORMAT}")
        return cls(
            project=str(data["project"]),
            commit=str(data["commit"]),
            ref=str(data["ref"]),
            environments=tuple(str(name) for name in data["environments"]),
            to=None if data.get("to") is None else str(data["to"]),
            status=ShipStatus(data["status"]),
            stage=str(data["stage"]),
            version=None if data.get("version") is None else str(data["version"]),
            released=bool(data.get("released", False)),
            deployments={str(k): int(v) for k, v in dict(data.get("deployments", {})).items()},
            message=data.get("message"),
            hint=data.get("hint"),
            pid=data.get("pid"),
            started_at=datetime.fromisoformat(str(data["started_at"])),
            updated_at=datetime.fromisoformat(str(data["updated_at"])),
        )


@dataclass(frozen=True)
class ShipOutcome:
    """How a ship ended: shipped, failed at a stage, or waiting for a person there."""

    status: ShipStatus
    project: str
    commit: str
    version: str | None
    released: bool
    """Whether this call cut the release (False: it was made before, by an earlier run of
    the ship or by 'shipyard release')."""
    resumed: bool
    stages: tuple[StageResult, ...]
    deployments: Mapping[str, int]
    stopped_at: str | None = None
    message: str = ""
    hint: str | None = None
    record: Path | None = None

    @property
    def reached(self) -> tuple[str, ...]:
        """The environments that run the version now, in order."""
        return tuple(
            stage.name.removeprefix("deploy ")
            for stage in self.stages
            if stage.name.startswith("deploy ")
            and stage.status in (StageState.PASSED, StageState.SKIPPED)
        )

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "status": self.status.value,
            "project": self.project,
            "commit": self.commit,
            "version": self.version,
            "released": self.released,
            "resumed": self.resumed,
            "reached": list(self.reached),
            "stopped_at": self.stopped_at,
            "message": self.message,
            "hint": self.hint,
            "stages": [stage.as_json() for stage in self.stages],
            "deployments": dict(self.deployments),
            "record": str(self.record) if self.record else None,
        }


# --- the record --------------------------------------------------------------------------


def record_path(state: StateDir, project: str) -> Path:
    """Where the ship record of ``project`` is kept."""
    return state.root / SHIPS_DIR / f"project-{project}.json"


def last_ship(state: StateDir, project: str) -> ShipRecord | None:
    """The record of the project's last ship (None if it never shipped here)."""
    path = record_path(state, project)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ShipRecordInvalid(
            f"cannot read the ship record {path}: {error.strerror}",
            hint="make it readable, or delete it to start afresh with 'shipyard ship'",
        ) from error
    try:
        return ShipRecord.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ShipRecordInvalid(
            f"the ship record {path} is not one this version of Shipyard wrote ({error})",
            hint="delete it and run 'shipyard ship' again (releases and deployments are kept "
            "in the store; nothing is released twice)",
        ) from error


def _save(state: StateDir, record: ShipRecord) -> None:
    """Write the record in one step: a crash leaves the old file or the new, never half."""
    path = record_path(state, record.project)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".ship-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(record.as_json(), file, indent=2)
            file.flush()
            os.fsync(file.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _one_ship(state: StateDir, project: str) -> Iterator[None]:
    """Hold the project's ship lock (an flock: a crash or Ctrl-C lets it go)."""
    state.ensure()
    folder = state.root / SHIPS_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    with (folder / f"project-{project}.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ShipInProgress(
                f"another 'shipyard ship' of {project} is running",
                hint="wait for it to end; to take over, stop it (Ctrl-C) and run "
                "'shipyard ship --resume'",
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- the flow ----------------------------------------------------------------------------


def ship(request: ShipRequest, *, on_progress: Callable[[ShipEvent], None]) -> ShipOutcome:
    """Ship a commit to every environment in promotion order, or say where and why it stopped.

    Mistakes in the request or the configuration raise (``UserError``); a stage that fails or
    waits for a person ends the ship with an outcome that says which and how to go on. Ctrl-C
    leaves the record resumable and lets ``KeyboardInterrupt`` through.
    """
    if request.resume and request.ref is not None:
        raise ArgumentError(
            "--resume continues the last ship, of the commit it started with",
            hint="drop REF, or drop --resume to ship REF",
        )
    git = Git(request.cwd)
    bare = git.is_bare()
    relative, _ = config_location(
        request.cwd, request.config_file, toplevel=None if bare else git.toplevel()
    )
    project = load_committed(git, _commit(git, "HEAD"), relative).model.project
    with _one_ship(request.state, project):
        earlier = last_ship(request.state, project)
        if request.resume:
            commit, ref = _resumable(earlier, project)
        else:
            ref = request.ref or "HEAD"
            commit = _commit(git, ref)
        config = load_committed(git, commit, relative).model
        if config.project != project:
            raise UserError(
                f"{commit[:12]} is a commit of {config.project}, and HEAD of {project}",
                hint="ship from a checkout of the project it is a commit of",
            )
        project_dir = "" if str(relative.parent) == "." else str(relative.parent)
        flow = _Flow(
            request=request,
            config=config,
            project_dir=project_dir,
            checks=DeployChecks(
                config=config,
                project_dir=None if bare else git.toplevel() / project_dir,
                git=git,
            ),
            record=_record(request, earlier, config, project, commit, ref),
            emit=_Emitter(on_progress),
            set_aside=earlier if not request.resume else None,
        )
        return flow.run()


def _record(
    request: ShipRequest,
    earlier: ShipRecord | None,
    config: ShipyardConfig,
    project: str,
    commit: str,
    ref: str,
) -> ShipRecord:
    """The record this ship starts from: the last one when resuming, else a new one."""
    now = datetime.now(UTC)
    if request.resume and earlier is not None:
        to = request.to or earlier.to
        return replace(
            earlier,
            environments=_environments(config, to),
            to=to,
            status=ShipStatus.RUNNING,
            message=None,
            hint=None,
            pid=os.getpid(),
            updated_at=now,
        )
    return ShipRecord(
        project=project,
        commit=commit,
        ref=ref,
        environments=_environments(config, request.to),
        to=request.to,
        status=ShipStatus.RUNNING,
        stage="release",
        started_at=now,
        updated_at=now,
        pid=os.getpid(),
    )


def _commit(git: Git, ref: str) -> str:
    try:
        return git.resolve_commit(ref)
    except GitError as error:
        raise ArgumentError(
            f"{ref!r} is not a commit of this repository",
            hint="name a branch, tag or commit that exists ('git log --oneline' shows them)",
        ) from error


def _resumable(earlier: ShipRecord | None, project: str) -> tuple[str, str]:
    """The commit and ref of the ship ``--resume`` continues; NothingToResume if none."""
    if earlier is None:
        raise NothingToResume(
            f"{project} has no ship to resume", hint="start one: shipyard ship [REF]"
        )
    if earlier.status == ShipStatus.SHIPPED:
        raise NothingToResume(
            f"the last ship of {project} ({earlier.version}) reached "
            f"{earlier.environments[-1] if earlier.environments else 'its end'} already",
            hint="ship a new commit: shipyard ship",
        )
    if earlier.status == ShipStatus.FAILED:
        raise NothingToResume(
            f"the last ship of {project} ({earlier.version or earlier.commit[:12]}) failed at "
            f"{earlier.stage}: {earlier.message}",
            hint="fix what failed, commit, and ship the new commit: shipyard ship",
        )
    return earlier.commit, earlier.ref


def _environments(config: ShipyardConfig, to: str | None) -> tuple[str, ...]:
    """The environments to go through, in promotion order, up to ``to``."""
    order = promotion_order(config)
    if to is None:
        return tuple(order)
    if to not in order:
        raise ArgumentError(
            f"--to {to}: not an environment {config.project} promotes through",
            hint=f"the promotion order is {' → '.join(order)}",
        )
    return tuple(order[: order.index(to) + 1])


class _Emitter:
    """Calls ``on_progress`` one event at a time (the rollout watch tells it from a thread)."""

    def __init__(self, on_progress: Callable[[ShipEvent], None]) -> None:
        self._on_progress = on_progress
        self._lock = threading.Lock()

    def __call__(self, event: ShipEvent) -> None:
        with self._lock:
            self._on_progress(event)


@dataclass
class _Flow:
    """One ship as it goes: its record, its stages, and what it tells ``on_progress``."""

    request: ShipRequest
    config: ShipyardConfig
    project_dir: str
    checks: DeployChecks
    record: ShipRecord
    emit: _Emitter
    set_aside: ShipRecord | None = None
    """The project's last ship, when this one starts anew (told if it was unfinished)."""
    stages: dict[str, StageResult] = field(default_factory=dict)
    released: bool = False
    """Whether this call cut the release."""

    def run(self) -> ShipOutcome:
        """Every stage in order; a failed check or a wait for a person ends it."""
        settings = {
            name: settings_for(self.config, name, project_dir=self.project_dir)
            for name in self.record.environments
        }
        self._begin(settings)
        try:
            version = self._release()
            for environment in settings.values():
                if environment.promote_from is not None:
                    self._soak(environment, version)
                self._deliver(environment, version)
        except WaitingForPerson as error:
            return self._stopped(ShipStatus.WAITING, StageState.WAITING, error)
        except CheckFailed as error:
            return self._stopped(ShipStatus.FAILED, StageState.FAILED, error)
        except ShipyardError as error:
            self._save(status=ShipStatus.STOPPED, message=error.message, hint=error.hint)
            raise
        except KeyboardInterrupt:
            self._save(
                status=ShipStatus.STOPPED,
                message=f"interrupted during {self.record.stage}",
                hint="continue with 'shipyard ship --resume'",
            )
            raise
        self._save(status=ShipStatus.SHIPPED, stage="done", message=None, hint=None)
        reached = self.record.environments[-1] if self.record.environments else "-"
        return self._outcome(f"shipped {version} to {reached}")

    def _begin(self, settings: Mapping[str, DeploySettings]) -> None:
        """Say what is shipped where, and which stages lie ahead; record that it runs."""
        record = self.record
        self.emit(
            ShipEvent(
                kind="start",
                stage="release",
                message=f"{'resuming the ship of' if self.request.resume else 'shipping'} "
                f"{record.project} {record.commit[:12]} ({record.ref}) to "
                f"{' → '.join(record.environments)}",
            )
        )
        earlier = self.set_aside
        if earlier is not None and earlier.status in RESUMABLE:
            self.note(
                "release",
                f"the unfinished ship of {earlier.version or earlier.commit[:12]} "
                f"({earlier.status.value} at {earlier.stage}) is set aside",
            )
        for name in ("release", *_stage_names(settings)):
            self._stage(name, StageState.PENDING)
        self._save()

    # --- stages ---------------------------------------------------------------------------

    def _release(self) -> str:
        """The release of the commit: the one made before, or a new one."""
        self._save(stage="release")
        known = self._known_release()
        if known is not None:
            self._stage(
                "release",
                StageState.SKIPPED,
                f"{known.version} was released before (tag {known.tag or '-'}); not released again",
            )
            self._save(version=known.version)
            return known.version
        self._stage("release", StageState.RUNNING, "pipeline, release gates, signed bundle")
        outcome = release(
            self.request.cwd,
            state=self.request.state,
            store=self.request.store,
            actor=self.request.actor,
            request=ReleaseRequest(
                commit=self.record.commit,
                deploy=False,
                config_file=self.request.config_file,
            ),
            observer=_JobEvents(self.emit),
        )
        if outcome.released and outcome.record is not None:
            record = outcome.record
            self.released = True
            self._save(version=record.version, released=True)
            gates = f", gates {outcome.gate_run.status}" if outcome.gate_run else ""
            run = f"run #{outcome.run.id}" if outcome.run else "no pipeline"
            self._stage(
                "release",
                StageState.PASSED,
                f"released {record.version}, signed ({run}{gates}"
                + (f", tag {record.tag}" if record.tag else "")
                + ")",
            )
            return record.version
        known = self._known_release()  # reconciled by the release just now
        if known is None:
            raise NothingToShip(
                f"nothing to ship: {outcome.reason}",
                hint="commit a change whose message calls for a release (feat: …, fix: …), "
                "or ship a released commit",
            )
        self._stage("release", StageState.SKIPPED, f"{known.version} was released before")
        self._save(version=known.version)
        return known.version

    def _known_release(self) -> records.ReleaseRecord | None:
        """The published release this ship ships already: recorded, or of its commit."""
        store, project = self.request.store, self.record.project
        if self.record.version is not None:
            found = records.get(store, project, self.record.version)
            return found if found.status == records.PUBLISHED else None
        for found in records.all_of(store, project, status=records.PUBLISHED):
            if found.commit == self.record.commit:
                return found
        return None

    def _soak(self, settings: DeploySettings, version: str) -> None:
        """Wait until ``version`` has run healthy where ``settings`` promotes from long enough."""
        stage = f"soak {settings.environment}"
        if self._under_way(settings, version):
            self._stage(stage, StageState.SKIPPED, f"{settings.environment} has {version} already")
            return
        self._save(stage=stage)
        soak = soak_for(self.request.store, settings, version)
        assert soak is not None  # the environment promotes from somewhere
        self._stage(stage, StageState.RUNNING, soak.describe())
        while not soak.ready:
            if soak.why_not is not None:
                raise refusal(soak)
            left = soak.left.total_seconds()
            self.emit(
                ShipEvent(
                    kind="soak",
                    stage=stage,
                    message=f"{say(soak.left)} left of {say(soak.soak)} in {soak.source}",
                    left_s=left,
                )
            )
            time.sleep(min(SOAK_TICK_S, max(left, 0.0)))
            soak = soak_for(self.request.store, settings, version)
            assert soak is not None
        self._stage(
            stage,
            StageState.PASSED,
            f"{version} ran healthy in {soak.source} for {say(soak.soak)}",
        )

    def _under_way(self, settings: DeploySettings, version: str) -> bool:
        """Whether the environment runs ``version`` or a deployment of it is going on."""
        store, project = self.request.store, self.record.project
        if deployments.environment(store, project, settings.environment).active_version == version:
            return True
        return self._unfinished(settings, version) is not None

    def _unfinished(self, settings: DeploySettings, version: str) -> Deployment | None:
        """A deployment of ``version`` to the environment that has not ended (ours, or one a
        crash left behind before its id was recorded)."""
        recent = deployments.for_environment(
            self.request.store, self.record.project, settings.environment, limit=20
        )
        return next((d for d in recent if d.version == version and not d.finished), None)

    def _deliver(self, settings: DeploySettings, version: str) -> None:
        """Deploy ``version`` to the environment (checks first) and see it through."""
        env = settings.environment
        stage = f"deploy {env}"
        store, state = self.request.store, self.request.state
        self._save(stage=stage)
        deployment = self._unfinished(settings, version)
        if deployment is None:
            running = deployments.environment(store, self.record.project, env)
            if running.active_version == version:
                self._stage(stage, StageState.SKIPPED, f"{env} runs {version} already")
                return
            self._stage(stage, StageState.RUNNING, f"deploy checks, then {settings.strategy}")
            retire_expired(
                store,
                target_for(state, settings),
                actor=self.request.actor,
                project=self.record.project,
                environment=env,
            )
            deployment = request_deploy(
                store, state, settings, version, actor=self.request.actor, checks_with=self.checks
            )
            doing = f"deploy checks passed: deployment {deployment.id} ({deployment.strategy})"
        else:
            doing = f"deployment {deployment.id} is {deployment.status.value}: carrying on"
        self._save(deployments={**self.record.deployments, env: deployment.id})
        self._stage(stage, StageState.RUNNING, doing, deployment=deployment.id)
        finished = self._see_through(stage, deployment.id)
        if finished.status != DeploymentStatus.SUCCEEDED:
            raise ShipFailed(
                f"deployment {finished.id} of {version} to {env} {_ended(finished)}; "
                + self._traffic_after(settings, finished),
                hint=f"see 'shipyard analysis show {finished.id}' and 'shipyard deployments "
                f"show {finished.id}'; fix it and ship a new commit",
            )
        self._stage(
            stage,
            StageState.PASSED,
            f"deployment {finished.id} succeeded ({finished.strategy})",
            deployment=finished.id,
        )

    def _see_through(self, stage: str, deployment_id: int) -> Deployment:
        """Drive the deployment here, or follow the driver that has it, until it ends."""
        store = self.request.store
        controller = Controller(
            store=store,
            target_for=lambda chosen: target_for(self.request.state, chosen),
            actor=self.request.actor,
            on_event=lambda text: self.note(stage, text),
            on_saved=lambda after: _reap_when_due(self.request.state, after),
        )
        with _RolloutWatch(store, deployment_id, stage, self.emit):
            while True:
                current = deployments.get(store, deployment_id)
                if current.finished:
                    return current
                if current.status == DeploymentStatus.PAUSED and not current.requested_action:
                    raise ShipWaiting(
                        f"deployment {current.id} to {current.environment} is paused"
                        + (f": {current.message}" if current.message else ""),
                        hint=f"look at it ('shipyard analysis show {current.id}'), then "
                        f"'shipyard deployments resume {current.id}' (or abort) and "
                        "'shipyard ship --resume' to go on",
                    )
                if driver_alive(current):
                    time.sleep(POLL_S)
                    continue
                try:
                    return controller.drive(deployment_id)
                except LeaseHeld:  # another driver took it just now: follow that one
                    time.sleep(POLL_S)
                except DeploymentFailed:
                    return deployments.get(store, deployment_id)
                except WaitingForPerson as error:
                    raise ShipWaiting(
                        error.message,
                        hint=(f"{error.hint}; then " if error.hint else "")
                        + "'shipyard ship --resume' goes on from there",
                    ) from error

    def _traffic_after(self, settings: DeploySettings, finished: Deployment) -> str:
        """What serves the environment now that the deployment did not succeed."""
        previous = finished.previous_version
        env = finished.environment
        if previous is None:
            return f"{env} ran nothing before, so nothing serves there now"
        try:
            weights = target_for(self.request.state, settings).router(settings).current_weights()
        except ShipyardError:
            return f"{env} runs {previous} again (its router did not answer to confirm it)"
        if weights.get(previous) == 100:
            return f"traffic is back on the stable version, {previous}"
        shares = ", ".join(f"{v} {w}%" for v, w in weights.items()) or "nothing"
        return f"{env}'s router sends {shares}; see 'shipyard status --env {env}'"

    # --- bookkeeping ----------------------------------------------------------------------

    def note(self, stage: str, text: str) -> None:
        """Pass on what the controller (or the flow) says."""
        self.emit(ShipEvent(kind="note", stage=stage, message=text))

    def _stage(
        self, name: str, status: StageState, message: str = "", *, deployment: int | None = None
    ) -> None:
        earlier = self.stages.get(name)
        if deployment is None and earlier is not None:
            deployment = earlier.deployment
        self.stages[name] = StageResult(name, status, message, deployment)
        self.emit(ShipEvent(kind="stage", stage=name, message=message, status=status.value))

    def _save(self, **changes: Any) -> None:
        self.record = replace(self.record, **changes, updated_at=datetime.now(UTC))
        _save(self.request.state, self.record)

    def _stopped(
        self, status: ShipStatus, stage_status: StageState, error: ShipyardError
    ) -> ShipOutcome:
        stage = self.record.stage
        earlier = self.stages.get(stage)
        self._stage(
            stage,
            stage_status,
            error.message,
            deployment=earlier.deployment if earlier else None,
        )
        self._save(status=status, message=error.message, hint=error.hint)
        return self._outcome(error.message, stopped_at=stage, hint=error.hint)

    def _outcome(
        self, message: str, *, stopped_at: str | None = None, hint: str | None = None
    ) -> ShipOutcome:
        return ShipOutcome(
            status=self.record.status,
            project=self.record.project,
            commit=self.record.commit,
            version=self.record.version,
            released=self.released,
            resumed=self.request.resume,
            stages=tuple(self.stages.values()),
            deployments=dict(self.record.deployments),
            stopped_at=stopped_at,
            message=message,
            hint=hint,
            record=record_path(self.request.state, self.record.project),
        )


def _stage_names(settings: Mapping[str, DeploySettings]) -> list[str]:
    names = []
    for name, environment in settings.items():
        if environment.promote_from is not None:
            names.append(f"soak {name}")
        names.append(f"deploy {name}")
    return names


def _ended(deployment: Deployment) -> str:
    how = "was rolled back" if deployment.status == DeploymentStatus.ROLLED_BACK else "failed"
    return f"{how}: {deployment.message}" if deployment.message else how


def _reap_when_due(state: StateDir, after: EnvironmentState) -> None:
    """A version a deployment left warm is stopped by the supervised reaper on time."""
    if after.warm_until is not None:
        with contextlib.suppress(ShipyardError):  # it stays warm until a command stops it
            ensure_reaper(state)


@dataclass
class _JobEvents:
    """The release's pipeline jobs, told as ship events."""

    emit: _Emitter

    def job_started(self, job: JobSpec, attempt: int) -> None:
        """An attempt of a job started."""
        suffix = f" (attempt {attempt})" if attempt > 1 else ""
        self._tell(job, "running", f"{job.id} started{suffix}")

    def job_retrying(self, job: JobSpec, attempt: int, outcome: AttemptOutcome) -> None:
        """An attempt failed and the job will be tried again."""
        self._tell(job, "retrying", f"{job.id} attempt {attempt} {outcome.status}; retrying")

    def job_finished(
        self, job: JobSpec, status: str, reason: str | None, duration_s: float | None
    ) -> None:
        """A job reached its final status."""
        took = f" in {duration_s:.1f}s" if duration_s is not None else ""
        self._tell(job, status, f"{job.id} {status}{took}" + (f": {reason}" if reason else ""))

    def _tell(self, job: JobSpec, status: str, message: str) -> None:
        self.emit(
            ShipEvent(kind="job", stage="release", message=message, status=status, job=job.id)
        )


class _RolloutWatch:
    """While a deployment goes on, tell its rollout each time it changes (from a thread)."""

    def __init__(self, store: Store, deployment_id: int, stage: str, emit: _Emitter) -> None:
        self._store = store
        self._deployment_id = deployment_id
        self._stage = stage
        self._emit = emit
        self._stop = threading.Event()
        self._last: Rollout | None = None
        self._thread = threading.Thread(target=self._watch, name="ship-rollout", daemon=True)

    def __enter__(self) -> _RolloutWatch:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._look()  # the last word: how it ended

    def _watch(self) -> None:
        while not self._stop.is_set():
            self._look()
            self._stop.wait(POLL_S)

    def _look(self) -> None:
        # A busy database only delays the view: the next look tries again.
        with contextlib.suppress(ShipyardError, SQLAlchemyError):
            now = rollout_of(self._store, self._deployment_id)
            if now != self._last:
                self._last = now
                self._emit(
                    ShipEvent(
                        kind="rollout", stage=self._stage, message=now.describe(), rollout=now
                    )
                )


def rollout_of(store: Store, deployment_id: int) -> Rollout:
    """How far a deployment is, read from the store: step, weights, each metric's last look."""
    deployment = deployments.get(store, deployment_id)
    with store.read() as conn:
        recorded = measurements.for_deployment(conn, deployment_id)
    latest = {row.metric: row for row in recorded}  # oldest first: the last look stays
    step, weights = _position(deployment)
    return Rollout(
        deployment=deployment.id,
        environment=deployment.environment,
        version=deployment.version,
        strategy=deployment.strategy,
        status=deployment.status.value,
        stable=deployment.previous_version,
        step=step,
        weights=weights,
        looks=tuple(
            Look(
                metric=row.metric,
                phase=row.phase,
                verdict=row.verdict,
                value=row.value,
                baseline_value=row.baseline_value,
                threshold=row.threshold,
                reason=row.reason,
            )
            for row in latest.values()
        ),
    )


def _position(deployment: Deployment) -> tuple[str | None, dict[str, int]]:
    """The step a deployment is in and the weights it set (read defensively: progress written
    by another version of Shipyard may lack any of it)."""
    progress = deployment.progress
    new, stable = deployment.version, deployment.previous_version
    if deployment.status == DeploymentStatus.SUCCEEDED:
        return None, {new: 100}
    if deployment.finished:
        return None, ({stable: 100} if stable else {})
    if deployment.strategy != "canary":
        done = progress.get("steps")
        return (f"after {done[-1]}" if isinstance(done, list) and done else None), {}
    weight = progress.get("weight")
    if not isinstance(weight, int):
        return "starting the canary", {}
    weights = {new: weight}
    if stable and weight < 100:
        weights[stable] = 100 - weight
    if "watch_began" in progress:
        return "watch window", weights
    try:
        steps = Canary.steps(DeploySettings.from_json(deployment.settings["deploy"]))
    except (ShipyardError, KeyError, TypeError, ValueError):
        return None, weights
    index = progress.get("step", 0)
    if not stable or not isinstance(index, int):
        return "all at once (nothing to compare with)", weights
    if index >= len(steps):
        return "all steps done", weights
    if progress.get("routed_step") != index:
        return f"moving to {steps[index].label}", weights
    return steps[index].label, weights
