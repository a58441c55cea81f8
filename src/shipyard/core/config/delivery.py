"""The ``service`` and ``environments`` sections: what runs, and where and how it is deployed.

Validated raw form only; the CD and monitor pillars build their runtime objects from it. It
checks the command's ``{port}`` placeholder, signal names, strategy shapes, port numbers and
analysis metrics' thresholds and provider keys (provider names are the monitor pillar's to check).
"""

from __future__ import annotations

import math
import re
import signal
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from shipyard.core.config.pipeline import EnvName, Scalar
from shipyard.core.config.problems import config_value_error, describe_value, did_you_mean
from shipyard.core.config.types import Duration, StrictModel, format_duration, parse_duration

_ENV_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")


def _check_command(value: str) -> str:
    if not value.strip():
        raise config_value_error("the command is empty", hint="write the command that serves")
    if "{port}" not in value:
        raise config_value_error(
            "the command must contain {port}, where Shipyard puts each instance's port",
            hint="for example: python -m app --port {port}",
        )
    return value


def _check_signal(value: str) -> str:
    name = value.upper().removeprefix("SIG")
    if f"SIG{name}" not in signal.Signals.__members__:
        raise config_value_error(
            f"{value!r} is not a signal",
            hint=did_you_mean(f"SIG{name}", list(signal.Signals.__members__))
            or "write TERM, INT, QUIT or HUP",
        )
    return name


def _check_path(value: str) -> str:
    if not value.startswith("/"):
        raise config_value_error(f"{value!r} must be a URL path", hint="write /healthz")
    return value


def _check_env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise config_value_error(
            f"{value!r} is not an environment name",
            hint="use lower-case letters, digits and '-', starting with a letter (staging)",
        )
    return value


ServiceCommand = Annotated[str, AfterValidator(_check_command)]
SignalName = Annotated[str, AfterValidator(_check_signal)]
UrlPath = Annotated[str, AfterValidator(_check_path)]
EnvironmentName = Annotated[str, AfterValidator(_check_env_name)]


class Health(StrictModel):
    """How an instance shows it is ready: an HTTP path that answers 2xx."""

    http: UrlPath = "/healthz"
    timeout: Duration = timedelta(seconds=30)
    interval: Duration = timedelta(milliseconds=500)


class Stop(StrictModel):
    """How an instance is stopped: a signal, then a grace period before SIGKILL."""

    signal: SignalName = "TERM"
    grace: Duration = timedelta(seconds=10)


class Service(StrictModel):
    """The ``service`` section: the command that serves, how many, and how to check it."""

    setup: str | None = None
    command: ServiceCommand
    health: Health = Field(default_factory=Health)
    instances: int = Field(default=1, ge=1, le=32)
    env: dict[EnvName, Scalar] = Field(default_factory=dict)
    stop: Stop = Field(default_factory=Stop)

    @field_validator("health", mode="before")
    @classmethod
    def _health_path_alone(cls, value: object) -> object:
        """``health: /healthz`` is short for ``health: {http: /healthz}``."""
        return {"http": value} if isinstance(value, str) else value


class BlueGreen(StrictModel):
    """Start the new version beside the old, switch all traffic at once, keep the old warm."""

    rollback_window: Duration = timedelta(minutes=10)
    preview: bool = True


class Recreate(StrictModel):
    """Stop the old version, then start the new one (a short outage)."""


class Rolling(StrictModel):
    """Replace instances one batch at a time behind the router, each healthy before the next."""

    max_surge: int = Field(default=1, ge=0, le=32)
    max_unavailable: int = Field(default=0, ge=0, le=32)

    @model_validator(mode="after")
    def _makes_progress(self) -> Rolling:
        if self.max_surge == 0 and self.max_unavailable == 0:
            raise config_value_error(
                "max_surge and max_unavailable cannot both be 0: no instance could be replaced",
                hint="write max_surge: 1 (start one new instance before stopping an old one)",
            )
        return self


class PauseForPerson(StrictModel):
    """``pause: {}``: the deployment pauses until a person resumes it."""


def _parse_pause(value: object) -> object:
    if value is None or isinstance(value, PauseForPerson | timedelta):
        return value
    if isinstance(value, dict):
        if value:
            raise config_value_error(
                "pause: {} takes no keys",
                hint="write pause: {} to wait for 'shipyard deployments resume', "
                "or a duration such as 30s",
            )
        return PauseForPerson()
    return parse_duration(value)


def _format_pause(value: timedelta | PauseForPerson) -> str | dict[str, object]:
    return {} if isinstance(value, PauseForPerson) else format_duration(value)


Pause = Annotated[
    timedelta | PauseForPerson,
    BeforeValidator(_parse_pause),
    PlainSerializer(_format_pause, when_used="json"),
]
"""A step's pause: a duration (``30s``), or ``{}`` to wait for a person."""


class CanaryStep(StrictModel):
    """One step of a canary: a share of the traffic for the new version, then a pause."""

    weight: int | None = Field(default=None, ge=1, le=100)
    pause: Pause | None = None


class Canary(StrictModel):
    """The new version beside the stable one, its share of the traffic raised step by step.

    A step without a weight keeps the share of the step before; a last step below 100 is
    followed by an implied ``{weight: 100}``.
    """

    steps: list[CanaryStep] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _steps_make_sense(self) -> Canary:
        highest = 0
        for index, step in enumerate(self.steps):
            if step.weight is None and step.pause is None:
                raise config_value_error(
                    "a step needs a weight, a pause or both",
                    hint="write {weight: 10, pause: 30s}, {pause: {}} or {weight: 100}",
                    at=("steps", index),
                )
            if step.weight is not None and step.weight < highest:
                raise config_value_error(
                    f"weight {step.weight} is below {highest}, the weight of an earlier step",
                    hint="a canary only gains traffic: give the steps non-decreasing weights "
                    "(abort the deployment to send everything back)",
                    at=("steps", index, "weight"),
                )
            highest = step.weight if step.weight is not None else highest
        return self

    @property
    def plan(self) -> list[tuple[int, timedelta | PauseForPerson | None]]:
        """The steps as run, each as (weight, pause), ending at 100 (added if not written)."""
        planned: list[tuple[int, timedelta | PauseForPerson | None]] = []
        weight = 0
        for step in self.steps:
            weight = step.weight if step.weight is not None else weight
            planned.append((weight, step.pause))
        if weight < 100:
            planned.append((100, None))
        return planned


STRATEGY_NAMES = ("recreate", "blue_green", "rolling", "canary")
"""The strategies ``environments.<env>.strategy`` may choose, in the order the docs list them."""


class Strategy(StrictModel):
    """Exactly one strategy, and that strategy's own options."""

    recreate: Recreate | None = None
    blue_green: BlueGreen | None = None
    rolling: Rolling | None = None
    canary: Canary | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Strategy:
        chosen = [name for name in STRATEGY_NAMES if getattr(self, name) is not None]
        if len(chosen) != 1:
            raise config_value_error(
                "choose exactly one strategy" if chosen else "no strategy is chosen",
                hint="write one of strategy: {blue_green: {}}, {recreate: {}}, {rolling: {}} "
                "or {canary: {steps: [...]}}",
            )
        return self

    @property
    def name(self) -> str:
        """The chosen strategy's name."""
        return next(name for name in STRATEGY_NAMES if getattr(self, name) is not None)

    @property
    def options(self) -> StrictModel:
        """The chosen strategy's options."""
        chosen = getattr(self, self.name)
        assert isinstance(chosen, StrictModel)
        return chosen


class Router(StrictModel):
    """Where the environment's traffic router listens."""

    port: int | None = Field(default=None, ge=1, le=65535)
    host: str = "127.0.0.1"


class PromoteFrom(StrictModel):
    """Where a release must have run healthy, and for how long, before it may come here."""

    env: EnvironmentName
    soak: Duration = timedelta(0)


_METRIC_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
INCREASE_FORMS = "a percentage such as 20% or 150%, or a fraction such as 0.2"
"""The forms ``max_increase`` may be written in, as shown in error messages."""

PROVIDER_FIELDS: dict[str, tuple[str, ...]] = {
    "builtin": (),
    "prometheus": ("query",),
    "http": ("url", "path"),
    "command": ("command",),
}
"""The keys each provider Shipyard ships needs in a metric; other names are checked later."""

PROVIDER_OPTIONAL_FIELDS: dict[str, tuple[str, ...]] = {"prometheus": ("url",)}
"""Keys a provider may take besides those it needs (Prometheus's address, by default
http://127.0.0.1:9090)."""

BUILTIN_METRICS = (
    "error_rate",
    "request_rate",
    "latency_p50",
    "latency_p90",
    "latency_p95",
    "latency_p99",
    "complaint_rate",
    "feedback_score",
)
"""The metrics the builtin provider measures from the router, by the name a metric uses
(``complaint_rate`` and ``feedback_score`` from the users' feedback: see ``feedback``)."""


def _check_metric_name(value: str) -> str:
    if not _METRIC_NAME.fullmatch(value):
        raise config_value_error(
            f"{value!r} is not a metric name",
            hint="use lower-case letters, digits and '_', starting with a letter (error_rate)",
        )
    return value


def _check_provider_name(value: str) -> str:
    if not _PROVIDER_NAME.fullmatch(value):
        raise config_value_error(
            f"{value!r} is not a provider name",
            hint=did_you_mean(value, PROVIDER_FIELDS)
            or f"write one of {', '.join(PROVIDER_FIELDS)}",
        )
    return value


def parse_increase(value: object) -> float:
    """Read ``20%`` or a fraction such as ``0.2`` (no upper limit), and return the fraction."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise config_value_error(
            f"expected an increase, got {describe_value(value)}", hint=f"write {INCREASE_FORMS}"
        )
    text = str(value).strip()
    per_cent = text.endswith("%")
    try:
        number = float(text.removesuffix("%").strip())
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise config_value_error(
            f"{text!r} is not an increase" if text else "an increase cannot be empty",
            hint=f"write {INCREASE_FORMS}",
        )
    if number < 0:
        raise config_value_error(
            f"an increase cannot be negative, got {text}",
            hint="max_increase limits how much worse than the stable version the canary may be",
        )
    return number / 100 if per_cent else number


def _format_increase(value: float) -> str:
    return f"{value * 100:g}%"


MetricName = Annotated[str, AfterValidator(_check_metric_name)]
ProviderName = Annotated[str, AfterValidator(_check_provider_name)]
Increase = Annotated[
    float,
    BeforeValidator(parse_increase),
    PlainSerializer(_format_increase, return_type=str, when_used="json"),
]
"""A relative increase written as ``20%`` or a fraction (``0.2``); the value is the fraction."""


class AnalysisMetric(StrictModel):
    """One metric the analysis measures, where it comes from, and the thresholds it must keep."""

    name: MetricName
    provider: ProviderName
    max: float | None = None
    min: float | None = None
    max_increase: Increase | None = None
    query: str | None = Field(default=None, min_length=1)
    url: str | None = Field(default=None, min_length=1)
    path: str | None = Field(default=None, min_length=1)
    command: str | None = Field(default=None, min_length=1)
    min_requests: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _thresholds_and_provider_keys(self) -> AnalysisMetric:
        if self.max is None and self.min is None and self.max_increase is None:
            raise config_value_error(
                f"metric {self.name!r} has no threshold",
                hint="give it max, min or max_increase, for example {name: error_rate, "
                "provider: builtin, max: 0.01}",
            )
        if self.max is not None and self.min is not None and self.min > self.max:
            raise config_value_error(
                f"min {self.min:g} is above max {self.max:g}: no value could pass",
                hint="swap them, or drop one",
                at=("min",),
            )
        if self.provider == "builtin" and self.name not in BUILTIN_METRICS:
            raise config_value_error(
                f"the builtin provider has no metric {self.name!r}",
                hint=did_you_mean(self.name, BUILTIN_METRICS)
                or f"builtin metrics are: {', '.join(BUILTIN_METRICS)}",
                at=("name",),
            )
        needed = PROVIDER_FIELDS.get(self.provider)
        if needed is None:
            return self  # a provider of a plugin: the monitor pillar checks it when it builds it
        for key in needed:
            if getattr(self, key) is None:
                raise config_value_error(
                    f"the {self.provider} provider needs {key}",
                    hint=_PROVIDER_HINTS[self.provider],
                )
        allowed = {*needed, *PROVIDER_OPTIONAL_FIELDS.get(self.provider, ())}
        others = {key for keys in PROVIDER_FIELDS.values() for key in keys} - allowed
        for key in sorted(others):
            if getattr(self, key) is not None:
                owner = next(name for name, keys in PROVIDER_FIELDS.items() if key in keys)
                raise config_value_error(
                    f"{key} is for the {owner} provider, not {self.provider}",
                    hint=f"drop {key}, or write provider: {owner}",
                    at=(key,),
                )
        return self


_PROVIDER_HINTS = {
    "prometheus": "write query: 'sum(rate(http_requests_total{version=\"{{version}}\"}[1m]))'",
    "http": "write url: http://host/metrics.json and path: a.b.value",
    "command": "write command: ./print-error-rate.sh",
}


SEQUENTIAL_METRICS = ("error_rate", "latency_p50", "latency_p90", "latency_p95", "latency_p99")
"""The builtin metrics the sequential judge compares between canary and stable statistically."""


class Judge(StrictModel):
    """How canary measurements become verdicts: fixed thresholds, or a sequential test."""

    kind: Literal["threshold", "sequential"] = "threshold"
    alpha: float = Field(default=0.01, gt=0, lt=0.5)
    min_effect: float = Field(default=0.01, gt=0, lt=1)
    test: Literal["msprt", "conditional"] = "msprt"
    tau: float = Field(default=0.02, gt=0, lt=1)
    min_samples: int = Field(default=50, ge=1, le=100_000)
    pass_score: float = Field(default=95, ge=0, le=100)
    marginal_score: float = Field(default=75, ge=0, le=100)

    @model_validator(mode="after")
    def _scores_in_order(self) -> Judge:
        if self.marginal_score > self.pass_score:
            raise config_value_error(
                f"marginal_score {self.marginal_score:g} is above pass_score {self.pass_score:g}",
                hint="a marginal score lies below a passing one: e.g. pass_score: 95, "
                "marginal_score: 75",
                at=("marginal_score",),
            )
        return self


class Analysis(StrictModel):
    """The metrics judged while a new version runs, how often, and how many misses end it."""

    interval: Duration = timedelta(seconds=10)
    failure_limit: int = Field(default=2, ge=0, le=1000)
    inconclusive_limit: int = Field(default=3, ge=0, le=1000)
    judge: Judge = Field(default_factory=Judge)
    metrics: list[AnalysisMetric] = Field(min_length=1, max_length=100)

    @field_validator("interval")
    @classmethod
    def _interval_positive(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise config_value_error("the interval must be at least 1s", hint="write interval: 10s")
        return value

    @model_validator(mode="after")
    def _names_unique(self) -> Analysis:
        seen: set[str] = set()
        for index, metric in enumerate(self.metrics):
            if metric.name in seen:
                raise config_value_error(
                    f"metric {metric.name!r} is written twice",
                    hint="give each metric its own name",
                    at=("metrics", index, "name"),
                )
            seen.add(metric.name)
        return self


_FEEDBACK_PATH = re.compile(r"/[\x21-\x7e]{0,1023}")


def _check_feedback_path(value: str) -> str:
    if not _FEEDBACK_PATH.fullmatch(value) or "?" in value or "#" in value:
        raise config_value_error(
            f"{value!r} is not a URL path for feedback",
            hint="write a path such as /.shipyard/feedback: '/' first, no spaces, '?' or '#'",
        )
    return value


class Feedback(StrictModel):
    """Users' feedback through the environment's router: a POST of a score or a complaint to
    ``path`` is counted for the version the user was served (never sent to the service)."""

    path: Annotated[str, AfterValidator(_check_feedback_path)] = "/.shipyard/feedback"


_GROUP_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_KEY_ID = re.compile(r"[0-9a-f]{64}")


def _check_group_name(value: str) -> str:
    if not _GROUP_NAME.fullmatch(value):
        raise config_value_error(
            f"{value!r} is not a group name",
            hint="use lower-case letters, digits, '.', '_' and '-' (release-managers); the "
            "members are listed in <approvers>/groups/NAME.txt",
        )
    return value


def _check_key_id(value: str) -> str:
    if not _KEY_ID.fullmatch(value):
        raise config_value_error(
            f"{value!r} is not a key id",
            hint="write a signing key's full id, 64 lower-case hex digits, as "
            "'shipyard keys list --json' prints it",
        )
    return value


def _check_approvers_folder(value: str) -> str:
    if not value.strip() or value.startswith("/") or "\\" in value:
        raise config_value_error(
            f"{value!r} is not a folder of the project",
            hint="write a path relative to the folder of shipyard.yaml: .shipyard-approvers",
        )
    if ".." in value.split("/"):
        raise config_value_error(
            f"{value!r} leaves the project's folder", hint="keep the approvers in the project"
        )
    return value


GroupName = Annotated[str, AfterValidator(_check_group_name)]
KeyId = Annotated[str, AfterValidator(_check_key_id)]


class Approval(StrictModel):
    """Who must approve a deployment to the environment before it starts.

    ``required`` different people approve; with ``not_author`` the author of the release's
    commit and with ``not_releaser`` whoever made the release do not count; with ``groups``
    only members of one of them count; with ``signed`` only approvals signed with a key listed
    in the ``approvers`` folder count.
    """

    required: int = Field(default=1, ge=1, le=20)
    not_author: bool = False
    not_releaser: bool = False
    groups: list[GroupName] = Field(default_factory=list, max_length=20)
    signed: bool = False
    approvers: Annotated[str, AfterValidator(_check_approvers_folder)] = ".shipyard-approvers"

    @field_validator("groups")
    @classmethod
    def _groups_unique(cls, value: list[str]) -> list[str]:
        for index, name in enumerate(value):
            if name in value[:index]:
                raise config_value_error(
                    f"group {name!r} is written twice", hint="name each group once", at=(index,)
                )
        return value


class Environment(StrictModel):
    """One environment: where it runs, how it is deployed, its own settings and secrets."""

    target: Literal["local"] = "local"
    auto: bool = False
    strategy: Strategy = Field(default_factory=lambda: Strategy(blue_green=BlueGreen()))
    env: dict[EnvName, Scalar] = Field(default_factory=dict)
    secrets: list[EnvName] = Field(default_factory=list)
    router: Router = Field(default_factory=Router)
    on_busy: Literal["queue", "supersede", "refuse"] = "queue"
    promote_from: PromoteFrom | None = None
    analysis: Analysis | None = None
    watch: Duration | None = None
    feedback: Feedback | None = None
    approval: Approval | None = None
    trusted_keys: list[KeyId] | None = Field(default=None, min_length=1, max_length=100)

    @field_validator("feedback", mode="before")
    @classmethod
    def _feedback_switch(cls, value: object) -> object:
        """``feedback: true`` turns it on at the default path; ``false`` leaves it off."""
        if value is True:
            return {}
        if value is False:
            return None
        return value

    @field_validator("watch")
    @classmethod
    def _watch_positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise config_value_error(
                "the watch window must be longer than 0s",
                hint="write watch: 10m, or drop watch to have no window",
            )
        return value

    @model_validator(mode="after")
    def _watch_needs_analysis(self) -> Environment:
        if self.watch is not None and self.analysis is None:
            raise config_value_error(
                "watch needs an analysis section: it is the analysis that watches",
                hint="add analysis: {metrics: [{name: error_rate, provider: builtin, max: 0.01}]}",
                at=("watch",),
            )
        return self


Environments = dict[EnvironmentName, Environment]


def check_environments(environments: Environments, service: Service | None) -> None:
    """Cross-checks of the ``environments`` section: a service to deploy, distinct ports."""
    if environments and service is None:
        first = next(iter(environments))
        raise config_value_error(
            "environments need a service section that says what to run",
            hint="add service: {command: python -m app --port {port}}",
            at=("environments", first),
        )
    taken: dict[int, str] = {}
    for name, environment in environments.items():
        port = environment.router.port
        if port is None:
            continue
        if port in taken:
            raise config_value_error(
                f"router port {port} is used by {taken[port]!r} too",
                hint="give each environment its own router port",
                at=("environments", name, "router", "port"),
            )
        taken[port] = name
    _check_promotion(environments)


def _check_promotion(environments: Environments) -> None:
    """``promote_from`` names another environment of the file, and never leads in a circle."""
    for name, environment in environments.items():
        rule = environment.promote_from
        if rule is None:
            continue
        at = ("environments", name, "promote_from", "env")
        if rule.env == name:
            raise config_value_error(
                f"{name!r} cannot be promoted from itself",
                hint="name the environment a release runs in before this one",
                at=at,
            )
        if rule.env not in environments:
            others = [other for other in environments if other != name]
            raise config_value_error(
                f"{rule.env!r} is not an environment of this file",
                hint=did_you_mean(rule.env, others)
                or f"the environments are: {', '.join(others) or 'none other'}",
                at=at,
            )
    for name in environments:
        path = [name]
        rule = environments[name].promote_from
        while rule is not None:
            if rule.env in path:
                circle = " -> ".join([*path[path.index(rule.env) :], rule.env])
                raise config_value_error(
                    f"promote_from goes round in a circle: {circle}",
                    hint="a release must start somewhere: drop promote_from from one of them",
                    at=("environments", path[-1], "promote_from", "env"),
                )
            path.append(rule.env)
            rule = environments[rule.env].promote_from
