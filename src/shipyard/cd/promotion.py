"""Promotion between environments: a release reaches an environment with ``promote_from`` only
after it has run healthy in the environment named there for the soak time.

Reads deployments and environment state from the store; it starts and records nothing itself
(``delivery.request_deploy`` calls it before it records a deployment).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shipyard.cd import deployments
from shipyard.cd.settings import DeploySettings
from shipyard.core.config import ShipyardConfig
from shipyard.core.config.types import format_duration
from shipyard.core.errors import CheckFailed, ConfigError
from shipyard.core.store import Store

UNHEALTHY = frozenset({"failed", "rolled_back"})
"""Final statuses of a deployment that show the version did not run healthy."""


class PromotionRefused(CheckFailed):
    """The release has not run healthy for the soak time where the environment promotes from."""


@dataclass(frozen=True)
class Soak:
    """How far a release is through the soak an environment asks of it."""

    version: str
    environment: str
    source: str
    soak: timedelta
    since: datetime | None
    """When it started running healthy in ``source`` (None: it does not run healthy there)."""
    left: timedelta
    why_not: str | None
    """Why it does not qualify at all (None when it runs healthy in ``source``)."""

    @property
    def ready(self) -> bool:
        """Whether the release may be deployed to ``environment`` now."""
        return self.why_not is None and self.left <= timedelta(0)

    def describe(self) -> str:
        """One sentence a person reads: whether it qualifies, and why or how long is left."""
        rule = (
            f"{self.version} may reach {self.environment} only after it has run healthy in "
            f"{self.source} for {say(self.soak)}"
        )
        if self.why_not is not None:
            return f"{rule}: {self.why_not}"
        if self.ready:
            return f"{self.version} has run healthy in {self.source} for {say(self.soak)} or more"
        since = f"{self.since:%Y-%m-%d %H:%M:%S} UTC" if self.since else "-"
        return f"{rule}: {say(self.left)} left (healthy there since {since})"

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "version": self.version,
            "environment": self.environment,
            "promote_from": self.source,
            "soak_s": self.soak.total_seconds(),
            "healthy_since": self.since.isoformat() if self.since else None,
            "left_s": max(self.left, timedelta(0)).total_seconds(),
            "ready": self.ready,
            "message": self.describe(),
        }


def say(duration: timedelta) -> str:
    """A duration as a person reads it, in whole seconds rounded up (``4m10s``)."""
    return format_duration(timedelta(seconds=math.ceil(duration.total_seconds())))


def soak_of(
    store: Store,
    project: str,
    environment: str,
    source: str,
    soak: timedelta,
    version: str,
    *,
    now: datetime | None = None,
) -> Soak:
    """How long ``version`` has run healthy in ``source``, against the ``soak`` it needs.

    It counts from when the deployment that made it the active version of ``source`` succeeded;
    a later failed or rolled-back deployment of it there starts the count again, and a rollback
    or another version in ``source`` means it does not run there.
    """
    now = now or datetime.now(UTC)

    def refused(why: str) -> Soak:
        return Soak(version, environment, source, soak, None, soak, why)

    state = deployments.environment(store, project, source)
    if state.active_version != version or state.active_deployment is None:
        runs = f"{source} runs {state.active_version}" if state.active_version else ""
        going = [
            d
            for d in deployments.for_environment(store, project, source, limit=20)
            if d.version == version and not d.finished
        ]
        if going:
            return refused(
                f"its deployment {going[0].id} to {source} is {going[0].status}"
                + (f" ({runs} until it succeeds)" if runs else "")
            )
        return refused(
            f"{source} runs {state.active_version}, not {version}"
            if state.active_version
            else f"{source} runs nothing"
        )
    active = deployments.get(store, state.active_deployment)
    if active.status != "succeeded" or active.finished_at is None:
        return refused(f"its deployment {active.id} to {source} is {active.status}")
    since = active.finished_at
    for later in deployments.for_environment(store, project, source, limit=500):
        if later.id <= active.id:
            break
        if later.version == version and later.status in UNHEALTHY and later.finished_at:
            since = max(since, later.finished_at)
    return Soak(version, environment, source, soak, since, since + soak - now, None)


def soak_for(
    store: Store, settings: DeploySettings, version: str, *, now: datetime | None = None
) -> Soak | None:
    """The soak an environment's settings ask of ``version`` (None when it has no promote_from)."""
    if settings.promote_from is None:
        return None
    return soak_of(
        store,
        settings.project,
        settings.environment,
        settings.promote_from,
        timedelta(seconds=settings.soak_s),
        version,
        now=now,
    )


def refusal(soak: Soak) -> PromotionRefused:
    """The error that refuses a deployment whose soak has not passed, with the ways forward."""
    if soak.why_not is not None:
        hint = (
            f"promote it there first (shipyard promote {soak.version} --to {soak.source}), "
            f"or override with a reason: shipyard promote {soak.version} --to "
            f"{soak.environment} --force --reason TEXT"
        )
    else:
        hint = (
            f"try again in {say(soak.left)}, or override with a reason: shipyard promote "
            f"{soak.version} --to {soak.environment} --force --reason TEXT"
        )
    return PromotionRefused(soak.describe(), hint=hint)


def promotion_order(config: ShipyardConfig) -> list[str]:
    """The environments ``shipyard promote VERSION`` goes through, in order.

    Those linked by ``promote_from`` (each after the one it promotes from, in file order
    otherwise); if no environment has ``promote_from``, the ``auto`` environments in file order.
    """
    environments = config.environments
    sources = {
        name: environment.promote_from.env
        for name, environment in environments.items()
        if environment.promote_from is not None
    }
    linked = set(sources) | set(sources.values())
    if not linked:
        auto = [name for name, environment in environments.items() if environment.auto]
        if not auto:
            raise ConfigError(
                f"{config.project} has no environment to promote through",
                hint="give an environment promote_from: {env: staging, soak: 10m}, mark "
                "environments auto: true, or name one with --to ENV",
            )
        return auto
    order: list[str] = []
    while len(order) < len(linked):  # the config has no cycle (checked when it was loaded)
        order.append(
            next(
                name
                for name in environments
                if name in linked
                and name not in order
                and (name not in sources or sources[name] in order)
            )
        )
    return order
