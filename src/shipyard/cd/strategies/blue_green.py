"""Blue-green: the new version beside the old, health-checked, optionally previewed, then all
traffic at once; the old version stays warm for the rollback window."""

from __future__ import annotations

from datetime import UTC, datetime

from shipyard.cd.deployments import EnvironmentState
from shipyard.cd.settings import DeploySettings
from shipyard.cd.strategies.base import StepContext, Strategy, new_instances, watch
from shipyard.cd.traffic import Weights
from shipyard.core.config.delivery import BlueGreen as BlueGreenOptions


class BlueGreen(Strategy):
    """New beside old, health-checked, optionally previewed, then all traffic at once."""

    name = "blue_green"

    @classmethod
    def options(cls, settings: DeploySettings) -> BlueGreenOptions:
        """The rollback window and preview the deployment was made with."""
        return cls.parse_options(settings, BlueGreenOptions)

    def deploy(self, ctx: StepContext) -> EnvironmentState:
        """Start, check, preview, switch; keep the old version warm for the window."""
        options = self.options(ctx.settings)
        new = new_instances(ctx)
        old_version, old = ctx.before.active_version, ctx.active_instances()
        ctx.checkpoint()
        keeps_old = bool(old_version and old and old_version != ctx.release.version)
        if options.preview and not ctx.did("previewed"):
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
        watch(ctx, old_version if keeps_old else None)
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
            warm_until=now + options.rollback_window if keeps_old else None,
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
