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

from pydantic import ValidationError

from shipyard.core.config import ShipyardConfig
from shipyard.core.config.delivery import Analysis
from shipyard.core.errors import ConfigError


@dataclass(frozen=True)
class DeploySettings:
    """The service and environment settings of one deployment."""

    project: str
    environment: str
    target: str
    strategy: str
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
    strategy_options: Mapping[str, Any] = field(default_factory=dict)
    """The chosen strategy's options as written in JSON; the strategy parses them itself."""
    analysis: Mapping[str, Any] | None = None
    """The environment's ``analysis`` section as JSON (None: nothing is measured or judged)."""
    watch_s: float = 0.0
    """How long the analysis watches the new version once it serves everything (``watch``)."""
    feedback_path: str | None = None
    """Where the router takes users' feedback (``feedback.path``); None: feedback is off."""

    def as_json(self) -> dict[str, Any]:
        """The JSON stored with the deployment."""
        data = asdict(self)
        data["env"] = dict(self.env)
        data["secrets"] = list(self.secrets)
        data["strategy_options"] = dict(self.strategy_options)
        data["analysis"] = None if self.analysis is None else dict(self.analysis)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeploySettings:
        """Read settings stored by ``as_json``, or in the flat shape of earlier versions."""
        values = dict(data)
        values["secrets"] = tuple(values.get("secrets", ()))
        # Before each strategy owned its options, blue-green's were flattened in here.
        window = values.pop("rollback_window_s", None)
        preview = values.pop("preview", None)
        if "strategy_options" not in values:
            options: dict[str, Any] = {}
            if values.get("strategy") == "blue_green":
                if window is not None:
                    options["rollback_window"] = f"{round(float(window) * 1000)}ms"
                if preview is not None:
                    options["preview"] = bool(preview)
            values["strategy_options"] = options
        return cls(**values)

    def analysis_config(self) -> Analysis | None:
        """The analysis the deployment was made with, parsed again; None without one."""
        if self.analysis is None:
            return None
        try:
            return Analysis.model_validate(dict(self.analysis))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "analysis"
            raise ConfigError(
                f"the analysis recorded with the deployment is not valid: {where}: {first['msg']}",
                hint="deploy again with the analysis fixed in shipyard.yaml",
            ) from None

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
    variables = {key: str(value) for key, value in service.env.items()}
    variables.update({key: str(value) for key, value in env.env.items()})
    return DeploySettings(
        project=config.project,
        environment=environment,
        target=env.target,
        strategy=env.strategy.name,
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
        strategy_options=env.strategy.options.model_dump(mode="json", exclude_none=True),
        analysis=env.analysis.model_dump(mode="json", exclude_none=True) if env.analysis else None,
        watch_s=env.watch.total_seconds() if env.watch else 0.0,
        feedback_path=env.feedback.path if env.feedback else None,
    )
