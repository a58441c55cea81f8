"""Recreate: stop the old version, then start the new one (a short outage, no second copy)."""

from __future__ import annotations

from shipyard.cd.deployments import EnvironmentState
from shipyard.cd.strategies.base import (
    StepContext,
    Strategy,
    new_instances,
    serving_only,
    watch,
)
from shipyard.cd.targets import Release
from shipyard.cd.traffic import Weights


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
        new = new_instances(ctx)
        if not ctx.did("switched"):
            address = ctx.router.set_weights(Weights.all_to(ctx.release.version, new))
            ctx.done("switched", address=address)
        watch(ctx, ctx.before.active_version)
        return serving_only(ctx, new, ctx.progress.get("address"))

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
