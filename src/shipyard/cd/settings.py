"""What a deployment needs from the configuration, frozen when the deployment is created.

The settings travel with the deployment record (secrets by name, never by value), so that a
driver that takes over, or a rollback to this version later, uses exactly the configuration
that went with it rather than whatever ``shipyard.yaml`` says today.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from shipyard.core.config import ShipyardConfig
from shipyard.core.errors import ConfigError


@dataclass(frozen=True)
class DeploySettings:
    """The service and environment settings of one deployment."""

    project: str
    environment: str
    target: str
    strategy: str
    rollback_window_s: float
    preview: bool
    setup: str | None
    command: str
    health_path: str
    health_timeout_s: float
    health_interval_s: float
    instances: int
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    stop_signal: str = "TERM"
    stop_grace_s: float = 10.0
    router_host: str = "127.0.0.1"
    router_port: int | None = None
    on_busy: str = "queue"
    project_dir: str = ""
    promote_from: str | None = None
    """The environment a release must have run healthy in first (``promote_from.env``)."""
    soak_s: float = 0.0
    """How long it must have run healthy there (``promote_from.soak``)."""

    def as_json(self) -> dict[str, Any]:
        """The JSON stored with the deployment."""
        data = asdict(self)
        data["env"] = dict(self.env)
        data["secrets"] = list(self.secrets)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeploySettings:
        """Read settings stored by ``as_json``."""
        values = dict(data)
        values["secrets"] = tuple(values.get("secrets", ()))
        return cls(**values)

    @property
    def router_key(self) -> str:
        """The router's name under the state directory: one per project and environment."""
        return re.sub(r"[^A-Za-z0-9_-]", "-", f"{self.project}-{self.environment}")


def settings_for(
    config: ShipyardConfig, environment: str, *, project_dir: str = ""
) -> DeploySettings:
    """The settings of ``environment`` from a configuration; a clear error if it has none."""
    if environment not in config.environments:
        known = ", ".join(config.environments) or "none"
        raise ConfigError(
            f"{config.project} has no environment {environment!r}",
            hint=f"the environments in shipyard.yaml are: {known}",
        )
    if config.service is None:
        raise ConfigError(
            "shipyard.yaml has no service section, so nothing can be deployed",
            hint="add service: {command: python -m app --port {port}}",
        )
    service, env = config.service, config.environments[environment]
    blue_green = env.strategy.blue_green
    variables = {key: str(value) for key, value in service.env.items()}
    variables.update({key: str(value) for key, value in env.env.items()})
    return DeploySettings(
        project=config.project,
        environment=environment,
        target=env.target,
        strategy=env.strategy.name,
        rollback_window_s=blue_green.rollback_window.total_seconds() if blue_green else 0.0,
        preview=blue_green.preview if blue_green else False,
        setup=service.setup,
        command=service.command,
        health_path=service.health.http,
        health_timeout_s=service.health.timeout.total_seconds(),
        health_interval_s=service.health.interval.total_seconds(),
        instances=service.instances,
        env=variables,
        secrets=tuple(env.secrets),
        stop_signal=service.stop.signal,
        stop_grace_s=service.stop.grace.total_seconds(),
        router_host=env.router.host,
        router_port=env.router.port,
        on_busy=env.on_busy,
        project_dir=project_dir,
        promote_from=env.promote_from.env if env.promote_from else None,
        soak_s=env.promote_from.soak.total_seconds() if env.promote_from else 0.0,
    )
