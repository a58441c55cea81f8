"""Canary: the new version beside the stable one, its share of the traffic raised step by step.

Each step is a checkpoint in the deployment's progress (its index, and when its pause began),
so a driver that takes over resumes in the step it was in, a timed pause with the time left.
At each timed pause the analysis (if the environment has one) judges the canary against the
stable version; at 100 % the watch window judges it once more while stable can still take the
traffic back, and only then is stable retired.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shipyard.cd.deployments import EnvironmentState
from shipyard.cd.settings import DeploySettings
from shipyard.cd.strategies.base import (
    StepContext,
    Strategy,
    new_instances,
    serving_only,
    watch,
)
from shipyard.cd.targets import InstanceRef
from shipyard.cd.traffic import Weights
from shipyard.core.config.delivery import Canary as CanaryOptions
from shipyard.core.config.delivery import PauseForPerson


@dataclass(frozen=True)
class CanaryStep:
    """One step as run: its place in the plan, the canary's weight, and what it waits for."""

    index: int
    count: int
    weight: int
    pause: timedelta | PauseForPerson | None

    @property
    def label(self) -> str:
        """How messages name the step: ``step 2 of 4 (50%)``."""
        return f"step {self.index + 1} of {self.count} ({self.weight}%)"


class Canary(Strategy):
    """New version beside the stable one; weights stepped with pauses; stable stopped at 100 %."""

    name = "canary"

    @classmethod
    def options(cls, settings: DeploySettings) -> CanaryOptions:
        """The steps the deployment was made with."""
        return cls.parse_options(settings, CanaryOptions)

    @classmethod
    def steps(cls, settings: DeploySettings) -> list[CanaryStep]:
        """The steps as run, the implied last one at 100 % included."""
        plan = cls.options(settings).plan
        return [CanaryStep(i, len(plan), weight, pause) for i, (weight, pause) in enumerate(plan)]

    def deploy(self, ctx: StepContext) -> EnvironmentState:
        """Start and check the canary, step its weight up with the pauses, then retire stable."""
        steps = self.steps(ctx.settings)
        new = new_instances(ctx)
        ctx.checkpoint()
        stable = _stable(ctx)
        if stable is None:  # nothing to compare with: the new version takes everything at once
            steps = [CanaryStep(0, 1, 100, None)]
        index = int(ctx.progress.get("step", 0))
        while index < len(steps):
            step = steps[index]
            if ctx.progress.get("routed_step") != index:
                ctx.checkpoint()
                if ctx.progress.get("weight") != step.weight:  # a pause alone keeps the weight
                    weights = _weights(ctx, stable, new, step.weight)
                    ctx.progress["address"] = ctx.router.set_weights(weights)
                ctx.progress["pause_began"] = datetime.now(UTC).isoformat()
                ctx.done("routed", routed_step=index, weight=step.weight)
            self._pause(ctx, step)
            index += 1
            ctx.progress["step"] = index
            ctx.save(ctx.progress)
        watch(ctx, stable[0] if stable else None)
        ctx.checkpoint()
        if not ctx.did("retired"):
            retired = [*ctx.warm_instances(), *(stable[1] if stable else [])]
            # Recorded first: once stable is stopping, an undo has nothing to send traffic to.
            ctx.done("retiring")
            final = Weights.all_to(ctx.release.version, new)
            if ctx.router.current_weights() != final.percentages():
                ctx.router.set_weights(final)  # stable leaves the router before it stops
            ctx.target.stop(retired)
            ctx.done("retired")
        return serving_only(ctx, new, ctx.progress.get("address"))

    def undo(self, ctx: StepContext) -> None:
        """All traffic back to stable in one change (if the canary had any), then stop it."""
        stable = _stable(ctx)
        if ctx.did("retiring"):
            return  # stable is stopped or stopping: the new version is all there is
        if ctx.did("routed") and stable is not None:
            back = Weights.all_to(*stable).with_idle(ctx.before.warm_version, ctx.warm_instances())
            ctx.router.set_weights(back)
        ctx.target.stop(ctx.instances("new"))

    def during_pause(self, ctx: StepContext, step: CanaryStep, left: float) -> None:
        """Spend what is ``left`` of a timed pause of ``step`` judging the canary against the
        stable version; pause and abort requests take effect at once."""
        assert isinstance(step.pause, timedelta)
        planned = step.pause.total_seconds()
        ctx.observe(f"step {step.index + 1}", left, planned, ctx.before.active_version)

    def _pause(self, ctx: StepContext, step: CanaryStep) -> None:
        if isinstance(step.pause, PauseForPerson):
            ctx.wait_for_person(
                f"canary-step-{step.index}",
                f"the canary waits at {step.label} for a person",
            )
        elif isinstance(step.pause, timedelta) and step.pause > timedelta(0):
            began = datetime.fromisoformat(str(ctx.progress["pause_began"]))
            left = (began + step.pause - datetime.now(UTC)).total_seconds()
            self.during_pause(ctx, step, left)
        ctx.checkpoint()


def _stable(ctx: StepContext) -> tuple[str, Sequence[InstanceRef]] | None:
    """The version that served when the deployment began, with its instances (if any)."""
    version, instances = ctx.before.active_version, ctx.active_instances()
    if not version or not instances:
        return None
    return version, instances


def _weights(
    ctx: StepContext,
    stable: tuple[str, Sequence[InstanceRef]] | None,
    new: Sequence[InstanceRef],
    weight: int,
) -> Weights:
    """``weight`` percent to the canary, the rest to stable; a warm version stays reachable."""
    if stable is None:
        return Weights.all_to(ctx.release.version, new)
    split = Weights.split(stable, (ctx.release.version, new), weight)
    return split.with_idle(ctx.before.warm_version, ctx.warm_instances())
