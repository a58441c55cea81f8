"""What every strategy shares: the step context over a deployment's progress, and the ABC.

A strategy reads and writes the deployment's progress after every step, so a driver that
takes over after a crash continues where the last one stopped. Between steps it calls the
checkpoint, where a requested pause or abort takes effect. Strategies never touch the store.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from shipyard.cd.deployments import EnvironmentState
from shipyard.cd.settings import DeploySettings
from shipyard.cd.targets import InstanceRef, Release, Target
from shipyard.cd.traffic import TrafficRouter
from shipyard.core.errors import ConfigError

Options = TypeVar("Options", bound=BaseModel)


class StrategyOptionsInvalid(ConfigError):
    """The options a deployment recorded for its strategy do not parse."""


@dataclass
class StepContext:
    """What a strategy works with: the deployment's settings, release, target and progress."""

    deployment_id: int
    settings: DeploySettings
    release: Release
    target: Target
    before: EnvironmentState
    progress: MutableMapping[str, Any]
    save: Callable[[Mapping[str, Any]], None]
    checkpoint: Callable[[], None]
    previous_settings: DeploySettings | None = None
    notes: list[str] = field(default_factory=list)
    wait: Callable[[float], None] = time.sleep
    """Let seconds pass; a pause or abort asked meanwhile takes effect at once (as checkpoint)."""
    wait_for_person: Callable[[str, str], None] = lambda point, why: None
    """Pause the deployment at ``point`` (saying ``why``) until a person resumes it; returns
    at once if a person resumed it there already."""
    observer: Callable[[StepContext, str, float, float, str | None], None] | None = None
    """Judges the new version while time passes (the analysis); None: time only passes."""

    def observe(self, phase: str, left: float, planned: float, baseline: str | None) -> None:
        """Spend what is ``left`` of a ``planned`` number of seconds while the analysis (if
        any) judges the new version against ``baseline`` (the stable version): it raises when
        the new version fails, pauses for a person when it cannot tell, and after a driver
        took over it makes the looks the planned time has that are not recorded yet."""
        if self.observer is None:
            if left > 0:
                self.wait(left)
        else:
            self.observer(self, phase, left, planned, baseline)

    def done(self, step: str, **values: Any) -> None:
        """Record that ``step`` is done (with what it produced) before going on."""
        self.progress.update(values)
        self.progress.setdefault("steps", [])
        if step not in self.progress["steps"]:
            self.progress["steps"] = [*self.progress["steps"], step]
        self.save(self.progress)

    @property
    def router(self) -> TrafficRouter:
        """The environment's traffic router, through the target."""
        return self.target.router(self.settings)

    def did(self, step: str) -> bool:
        """Whether ``step`` was done already (by this driver or one before it)."""
        return step in self.progress.get("steps", [])

    def instances(self, key: str) -> list[InstanceRef]:
        """Instances recorded in the progress under ``key``."""
        return [InstanceRef.from_json(item) for item in self.progress.get(key, [])]

    def active_instances(self) -> list[InstanceRef]:
        """The instances of the version the environment ran when the deployment began."""
        return [InstanceRef.from_json(i) for i in self.before.instances.get("active", [])]

    def warm_instances(self) -> list[InstanceRef]:
        """The instances of the version kept warm when the deployment began."""
        return [InstanceRef.from_json(i) for i in self.before.instances.get("warm", [])]


class Strategy(ABC):
    """How a new version replaces the running one."""

    name: ClassVar[str]

    @classmethod
    def parse_options(cls, settings: DeploySettings, model: type[Options]) -> Options:
        """The strategy's own options, read from what the deployment recorded."""
        try:
            return model.model_validate(dict(settings.strategy_options))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "options"
            raise StrategyOptionsInvalid(
                f"the {cls.name} options recorded with the deployment are not valid: "
                f"{where}: {first['msg']}",
                hint="deploy again with the strategy's options fixed in shipyard.yaml",
            ) from None

    @abstractmethod
    def deploy(self, ctx: StepContext) -> EnvironmentState:
        """Bring the new version in; return what the environment runs afterwards."""

    @abstractmethod
    def undo(self, ctx: StepContext) -> None:
        """Put back what the environment ran before (after a failure or an abort)."""


def new_instances(ctx: StepContext) -> list[InstanceRef]:
    if not ctx.did("prepared"):
        root = ctx.target.prepare(ctx.release, ctx.settings)
        ctx.done("prepared", root=str(root))
    ctx.checkpoint()
    if not ctx.did("started"):
        started = ctx.target.start(
            ctx.release, ctx.settings, Path(ctx.progress["root"]), f"d{ctx.deployment_id}"
        )
        ctx.done("started", new=[i.as_json() for i in started])
    ctx.checkpoint()
    instances = ctx.instances("new")
    if not ctx.did("healthy"):
        ctx.target.wait_healthy(instances, ctx.settings)
        ctx.done("healthy")
    return instances


def watch(ctx: StepContext, baseline: str | None) -> None:
    """The watch window: the new version serves everything and the analysis keeps judging it,
    while what it replaced can still take the traffic back. Timed from when it began, so a
    driver that takes over watches only what is left. A first deployment is not watched:
    there is nothing to go back to (``baseline`` is None)."""
    if ctx.settings.watch_s <= 0 or baseline is None or ctx.did("watched"):
        return
    if "watch_began" not in ctx.progress:
        ctx.progress["watch_began"] = datetime.now(UTC).isoformat()
        ctx.save(ctx.progress)
    began = datetime.fromisoformat(str(ctx.progress["watch_began"]))
    left = ctx.settings.watch_s - (datetime.now(UTC) - began).total_seconds()
    ctx.observe("watch", left, ctx.settings.watch_s, baseline)
    ctx.done("watched")


def serving_only(
    ctx: StepContext, new: Sequence[InstanceRef], address: str | None
) -> EnvironmentState:
    """What the environment runs once the new version serves alone, nothing kept warm."""
    return EnvironmentState(
        project=ctx.settings.project,
        environment=ctx.settings.environment,
        active_version=ctx.release.version,
        active_deployment=ctx.deployment_id,
        warm_version=None,
        warm_deployment=None,
        warm_until=None,
        instances={"active": [i.as_json() for i in new], "warm": []},
        router={"address": address},
        since=datetime.now(UTC),
    )
