"""The warm switch: a rollback to the version kept warm, all traffic back to it at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shipyard.cd.deployments import EnvironmentState
from shipyard.cd.strategies.base import StepContext, Strategy
from shipyard.cd.strategies.blue_green import BlueGreen
from shipyard.cd.targets import InstanceUnhealthy
from shipyard.cd.traffic import Weights


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
            warm_until=now + max(_rollback_window(ctx), timedelta(seconds=60)),
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


def _rollback_window(ctx: StepContext) -> timedelta:
    """How long the version switched away from stays warm: blue-green's window, if it is that."""
    if ctx.settings.strategy == BlueGreen.name:
        return BlueGreen.options(ctx.settings).rollback_window
    return timedelta(0)


def _weights(ctx: StepContext, to_warm: bool) -> Weights:
    """All traffic to the warm version (or back to the active one), the other kept reachable."""
    warm = (ctx.before.warm_version or "", ctx.warm_instances())
    active = (ctx.before.active_version or "", ctx.active_instances())
    chosen, idle = (warm, active) if to_warm else (active, warm)
    return Weights.all_to(*chosen).with_idle(*idle)
