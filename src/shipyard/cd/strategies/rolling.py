"""Rolling: the old version's instances replaced a batch at a time behind the router.

At most ``max_surge`` instances run beyond ``service.instances`` and at most
``max_unavailable`` fewer serve; a new instance is healthy and routed before an old one leaves
the routing table, and an old one is stopped only after it left (the router lets its requests
in flight finish). Every batch is recorded in the progress, so a driver that takes over
continues with the batch its predecessor was in. It never touches the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.cd.deployments import EnvironmentState
from shipyard.cd.instances import InstanceRef
from shipyard.cd.settings import DeploySettings
from shipyard.cd.strategies.base import StepContext, Strategy, serving_only, watch
from shipyard.cd.targets import Release, TargetError
from shipyard.cd.traffic import Weights
from shipyard.core.config.delivery import Rolling as RollingOptions

ROLL = "roll"
"""The key of the rolling update's own record in the deployment's progress."""


@dataclass(frozen=True)
class Roll:
    """Where a rolling update stands: the instances of each version and the batch under way.

    ``old``: the old version's instances still routed; ``retiring``: old ones being taken out
    (out of the table, then stopped); ``new``: new instances healthy and routed; ``starting``:
    new ones of the batch under way, started but not yet healthy and routed.
    """

    old: tuple[InstanceRef, ...]
    new: tuple[InstanceRef, ...] = ()
    retiring: tuple[InstanceRef, ...] = ()
    starting: tuple[InstanceRef, ...] = ()
    batch: int = 0

    def as_json(self) -> dict[str, Any]:
        """The JSON kept in the deployment's progress."""
        return {
            "old": [i.as_json() for i in self.old],
            "new": [i.as_json() for i in self.new],
            "retiring": [i.as_json() for i in self.retiring],
            "starting": [i.as_json() for i in self.starting],
            "batch": self.batch,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Roll:
        """Read a roll written by ``as_json``."""

        def refs(key: str) -> tuple[InstanceRef, ...]:
            return tuple(InstanceRef.from_json(i) for i in data.get(key, []))

        return cls(
            old=refs("old"),
            new=refs("new"),
            retiring=refs("retiring"),
            starting=refs("starting"),
            batch=int(data.get("batch", 0)),
        )


def plan_retire(roll: Roll, wanted: int, options: RollingOptions) -> int:
    """How many old instances may leave now without fewer than ``wanted - max_unavailable``
    serving (all that remain once every new instance serves)."""
    if len(roll.new) >= wanted:
        return len(roll.old)
    serving = len(roll.old) + len(roll.new)
    return max(0, min(len(roll.old), serving - (wanted - options.max_unavailable)))


def plan_start(roll: Roll, wanted: int, options: RollingOptions) -> int:
    """How many new instances may start now without more than ``wanted + max_surge`` running."""
    running = len(roll.old) + len(roll.new)
    return max(0, min(wanted - len(roll.new), wanted + options.max_surge - running))


class Rolling(Strategy):
    """Replace the old version's instances a batch at a time, never below the minimum serving."""

    name = "rolling"

    @classmethod
    def options(cls, settings: DeploySettings) -> RollingOptions:
        """The surge and unavailability the deployment was made with."""
        return cls.parse_options(settings, RollingOptions)

    def deploy(self, ctx: StepContext) -> EnvironmentState:
        """Roll batch by batch until only new instances serve; stop the version kept warm."""
        options = self.options(ctx.settings)
        wanted = ctx.settings.instances
        if not ctx.did("prepared"):
            root = ctx.target.prepare(ctx.release, ctx.settings)
            ctx.done("prepared", root=str(root))
        roll = self._roll(ctx)
        while True:
            ctx.checkpoint()
            if roll.retiring:
                roll = self._retire(ctx, roll)
            elif roll.starting:
                roll = self._bring_in(ctx, roll)
            elif count := plan_retire(roll, wanted, options):
                roll = self._record(
                    ctx, Roll(roll.old[count:], roll.new, roll.old[:count], (), roll.batch)
                )
            elif count := plan_start(roll, wanted, options):
                roll = self._start(ctx, roll, count)
            else:
                break
        watch(ctx, ctx.before.active_version)
        if ctx.before.warm_version and not ctx.did("retired"):
            # The version kept warm before this deployment stayed reachable until the end.
            if not ctx.did("switched"):
                weights = Weights.by_instances([(ctx.release.version, roll.new)])
                ctx.done("switched", address=ctx.router.set_weights(weights))
            ctx.target.stop(ctx.warm_instances())
            ctx.done("retired")
        return serving_only(ctx, roll.new, ctx.progress.get("address"))

    def undo(self, ctx: StepContext) -> None:
        """Traffic back to the old version's remaining instances, as many as before (started
        again if some were stopped), then the new instances stopped."""
        data = ctx.progress.get(ROLL)
        if data is None:  # nothing was started or taken out yet
            return
        roll = Roll.from_json(data)
        old_version = ctx.before.active_version
        new = [*roll.new, *roll.starting]
        if roll.retiring:
            ctx.target.stop(roll.retiring)  # already out of the table, or about to be
        remaining = [*roll.old, *self._restore(ctx, len(ctx.active_instances()) - len(roll.old))]
        if old_version and remaining:
            # All traffic back in one change, and only then are the new instances stopped.
            weights = Weights.by_instances([(old_version, remaining)]).with_idle(
                ctx.before.warm_version, ctx.warm_instances()
            )
            ctx.router.set_weights(weights)
        ctx.target.stop(new)
        if remaining != ctx.active_instances():
            ctx.progress["restored"] = [i.as_json() for i in remaining]
            ctx.save(ctx.progress)

    # The steps of one batch, each recorded before the next.

    def _roll(self, ctx: StepContext) -> Roll:
        data = ctx.progress.get(ROLL)
        if data is not None:
            return Roll.from_json(data)
        old = tuple(ctx.active_instances()) if ctx.before.active_version else ()
        return self._record(ctx, Roll(old=old))

    def _record(self, ctx: StepContext, roll: Roll) -> Roll:
        ctx.progress[ROLL] = roll.as_json()
        ctx.save(ctx.progress)
        return roll

    def _start(self, ctx: StepContext, roll: Roll, count: int) -> Roll:
        """Start the next batch of new instances (a batch started again replaces itself)."""
        started = ctx.target.start(
            ctx.release,
            ctx.settings,
            Path(ctx.progress["root"]),
            f"d{ctx.deployment_id}",
            count=count,
            first=len(roll.new),
        )
        return self._record(
            ctx, Roll(roll.old, roll.new, roll.retiring, tuple(started), roll.batch + 1)
        )

    def _bring_in(self, ctx: StepContext, roll: Roll) -> Roll:
        """Wait until the batch's instances are healthy, then route to them beside the rest."""
        ctx.target.wait_healthy(roll.starting, ctx.settings)
        new = (*roll.new, *roll.starting)
        self._route(ctx, roll.old, new)
        return self._record(ctx, Roll(roll.old, new, (), (), roll.batch))

    def _retire(self, ctx: StepContext, roll: Roll) -> Roll:
        """Take old instances out of the table first, then stop them once they left it."""
        if roll.old or roll.new:
            self._route(ctx, roll.old, roll.new)
        # Removed from the table, an instance gets no new request; the service's stop signal
        # and grace period let the requests it still carries finish.
        ctx.target.stop(roll.retiring)
        return self._record(ctx, Roll(roll.old, roll.new, (), (), roll.batch))

    def _route(
        self, ctx: StepContext, old: Sequence[InstanceRef], new: Sequence[InstanceRef]
    ) -> None:
        """Weights in proportion to each version's serving instances; the warm one kept idle."""
        weights = Weights.by_instances(
            [(ctx.before.active_version or ctx.release.version, old), (ctx.release.version, new)]
        ).with_idle(ctx.before.warm_version, ctx.warm_instances())
        ctx.done("routed", address=ctx.router.set_weights(weights))

    def _restore(self, ctx: StepContext, missing: int) -> list[InstanceRef]:
        """Start ``missing`` instances of the old version again (after some were stopped)."""
        old_version = ctx.before.active_version
        if missing <= 0 or not old_version:
            return []
        bundle = ctx.progress.get("previous_bundle")
        if not (bundle and ctx.previous_settings):
            raise TargetError(
                f"{missing} instance(s) of {old_version} were stopped and cannot be started "
                "again: the deployment does not record the previous release",
                hint=f"deploy it again: shipyard rollback --env {ctx.settings.environment}",
            )
        release = Release(ctx.settings.project, old_version, str(bundle))
        root = ctx.target.prepare(release, ctx.previous_settings)
        back = ctx.target.start(
            release, ctx.previous_settings, root, f"d{ctx.deployment_id}r", count=missing
        )
        ctx.target.wait_healthy(back, ctx.previous_settings)
        return back
