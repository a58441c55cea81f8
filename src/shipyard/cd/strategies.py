"""Deployment strategies: recreate, blue-green and the warm switch, as resumable steps.

A strategy reads and writes the deployment's progress after every step, so a driver that
takes over after a crash continues where the last one stopped. Between steps it calls the
checkpoint, where a requested pause or abort takes effect. Canary and rolling plug in here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from shipyard.cd.deployments import EnvironmentState
from shipyard.cd.settings import DeploySettings
from shipyard.cd.targets import InstanceRef, InstanceUnhealthy, Release, Target
from shipyard.cd.traffic import TrafficRouter, Weights


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

    @abstractmethod
    def deploy(self, ctx: StepContext) -> EnvironmentState:
        """Bring the new version in; return what the environment runs afterwards."""

    @abstractmethod
    def undo(self, ctx: StepContext) -> None:
        """Put back what the environment ran before (after a failure or an abort)."""


def _new_instances(ctx: StepContext) -> list[InstanceRef]:
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


class BlueGreen(Strategy):
    """New beside old, health-checked, optionally previewed, then all traffic at once."""

    name = "blue_green"

    def deploy(self, ctx: StepContext) -> EnvironmentState:
        """Start, check, preview, switch; keep the old version warm for the window."""
        new = _new_instances(ctx)
        old_version, old = ctx.before.active_version, ctx.active_instances()
        ctx.checkpoint()
        keeps_old = bool(old_version and old and old_version != ctx.release.version)
        if ctx.settings.preview and not ctx.did("previewed"):
            weights = Weights.all_to(ctx.release.version, new)
            if keeps_old and old_version:
                weights = Weights.all_to(old_version, old).with_idle(ctx.release.version, new)
            ctx.done("previewed", address=ctx.router.set_weights(weights))
            ctx.checkpoint()
        if not ctx.did("switched"):
            weights = Weights.all_to(ctx.release.version, new)
            if keeps_old:
                weights = weights.with_idle(old_version, old)
            ctx.done("switched", address=ctx.router.set_weights(weights))
        # A version warm before this deployment is older than the one now kept warm: stop it.
        if ctx.before.warm_version and not ctx.did("retired"):
            ctx.target.stop(ctx.warm_instances())
            ctx.done("retired")
        now = datetime.now(UTC)
        if old_version == ctx.release.version and old:
            ctx.target.stop(old)  # the same version deployed again: the new copies replace it
        return EnvironmentState(
            project=ctx.settings.project,
            environment=ctx.settings.environment,
            active_version=ctx.release.version,
            active_deployment=ctx.deployment_id,
            warm_version=old_version if keeps_old else None,
            warm_deployment=ctx.before.active_deployment if keeps_old else None,
            warm_until=now + timedelta(seconds=ctx.settings.rollback_window_s)
            if keeps_old
            else None,
            instances={
                "active": [i.as_json() for i in new],
                "warm": [i.as_json() for i in old] if keeps_old else [],
            },
            router={"address": ctx.progress.get("address")},
            since=now,
        )

    def undo(self, ctx: StepContext) -> None:
        """Traffic back to the old version (if it was switched), new instances stopped."""
        old_version, old = ctx.before.active_version, ctx.active_instances()
        if (ctx.did("previewed") or ctx.did("switched")) and old_version and old:
            ctx.router.set_weights(Weights.all_to(old_version, old))
        ctx.target.stop(ctx.instances("new"))


class Recreate(Strategy):
    """Stop the old version, then start the new one: simple, with a short outage."""

    name = "recreate"

    def deploy(self, ctx: StepContext) -> EnvironmentState:
        """Stop the old instances, start and check the new ones, route all traffic to them."""
        if not ctx.did("prepared"):
            root = ctx.target.prepare(ctx.release, ctx.settings)
            ctx.done("prepared", root=str(root))
        ctx.checkpoint()
        if not ctx.did("stopped_old"):
            ctx.target.stop([*ctx.active_instances(), *ctx.warm_instances()])
            ctx.done("stopped_old")
        new = _new_instances(ctx)
        address = ctx.router.set_weights(Weights.all_to(ctx.release.version, new))
        ctx.done("switched", address=address)
        now = datetime.now(UTC)
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
            since=now,
        )

    def undo(self, ctx: StepContext) -> None:
        """Stop the new instances and bring the old version back, as it was."""
        ctx.target.stop(ctx.instances("new"))
        old_version = ctx.before.active_version
        if not (ctx.did("stopped_old") and old_version and ctx.previous_settings):
            return
        bundle = ctx.progress.get("previous_bundle")
        if not bundle:
            return
        release = Release(ctx.settings.project, old_version, str(bundle))
        root = ctx.target.prepare(release, ctx.previous_settings)
        back = ctx.target.start(release, ctx.previous_settings, root, f"d{ctx.deployment_id}r")
        ctx.target.wait_healthy(back, ctx.previous_settings)
        ctx.target.router(ctx.previous_settings).set_weights(Weights.all_to(old_version, back))
        ctx.progress["restored"] = [i.as_json() for i in back]
        ctx.save(ctx.progress)


class WarmSwitch(Strategy):
    """A rollback to the version kept warm: all traffic back to it at once, nothing started."""

    name = "switch"

    def deploy(self, ctx: StepContext) -> EnvironmentState:
        """Check the warm instances answer, move the traffic, swap active and warm."""
        before, version = ctx.before, ctx.release.version
        if before.active_version == version:
            return before  # a driver before this one got as far as recording the switch
        warm, active = ctx.warm_instances(), ctx.active_instances()
        if before.warm_version != version or not warm:
            raise InstanceUnhealthy(
                f"{version} is not kept warm in {ctx.settings.environment} any more",
                hint=f"deploy it again: shipyard rollback --env {ctx.settings.environment} "
                f"--to {version}",
            )
        if not ctx.did("checked"):
            if not ctx.target.alive(warm, ctx.settings):
                raise InstanceUnhealthy(
                    f"the warm instances of {version} do not answer "
                    f"{ctx.settings.health_path}; the traffic stays on {before.active_version}",
                    hint=f"see 'shipyard service logs --env {ctx.settings.environment}'",
                )
            ctx.done("checked")
        ctx.checkpoint()
        if not ctx.did("switched"):
            # Recorded before the router is asked: an undo after a crash here moves it back.
            ctx.done("switching")
            ctx.done("switched", address=ctx.router.set_weights(_weights(ctx, True)))
        now = datetime.now(UTC)
        return EnvironmentState(
            project=ctx.settings.project,
            environment=ctx.settings.environment,
            active_version=version,
            active_deployment=before.warm_deployment,
            warm_version=before.active_version,
            warm_deployment=before.active_deployment,
            warm_until=now + timedelta(seconds=max(ctx.settings.rollback_window_s, 60.0)),
            instances={
                "active": [i.as_json() for i in warm],
                "warm": [i.as_json() for i in active],
            },
            router={"address": ctx.progress.get("address") or before.router.get("address")},
            since=now,
        )

    def undo(self, ctx: StepContext) -> None:
        """Traffic back to the version that was active (if the router may have moved it)."""
        if ctx.did("switching") and ctx.before.active_version and ctx.active_instances():
            ctx.router.set_weights(_weights(ctx, False))


def _weights(ctx: StepContext, to_warm: bool) -> Weights:
    """All traffic to the warm version (or back to the active one), the other kept reachable."""
    warm = (ctx.before.warm_version or "", ctx.warm_instances())
    active = (ctx.before.active_version or "", ctx.active_instances())
    chosen, idle = (warm, active) if to_warm else (active, warm)
    return Weights.all_to(*chosen).with_idle(*idle)


STRATEGIES: dict[str, type[Strategy]] = {
    "blue_green": BlueGreen,
    "recreate": Recreate,
    WarmSwitch.name: WarmSwitch,
}
"""Strategies by the name ``environments.<name>.strategy`` uses."""
