"""The ``gates`` section of ``shipyard.yaml``: which release gates and deploy checks run.

This is the validated raw form: levels, durations, ignore entries, secret rules, license lists,
interpreter paths, policy folders and metric bounds. It knows no gate's code; the gates pillar
builds the runtime gates from it and decides what an expired ignore, stale data, an unknown
license, a denying policy or a regressed metric means.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from shipyard.core.config.delivery import MetricName
from shipyard.core.config.problems import config_value_error, describe_value, did_you_mean
from shipyard.core.config.types import ByteSize, Duration, StrictModel

SeverityLevel = Literal["low", "medium", "high", "critical"]
"""A severity a setting may name, from the least to the most severe."""

ADVISORY_SOURCES = ("local", "osv-api")
"""The advisory sources ``gates.vulnerabilities.sources`` may name."""

MarkerVariable = Literal[
    "os_name",
    "sys_platform",
    "platform_machine",
    "platform_python_implementation",
    "platform_release",
    "platform_system",
    "platform_version",
    "python_version",
    "python_full_version",
    "implementation_name",
    "implementation_version",
]
"""The PEP 508 environment-marker variables a target environment may give."""

_ADVISORY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def _check_advisory_id(value: str) -> str:
    if not _ADVISORY_ID.fullmatch(value):
        raise config_value_error(
            f"{value!r} is not an advisory id",
            hint="write the id as the advisory gives it, such as GHSA-xxxx-xxxx-xxxx or "
            "PYSEC-2024-1 or CVE-2024-12345",
        )
    return value


def _check_reason(value: str) -> str:
    if not value.strip():
        raise config_value_error(
            "the reason is empty", hint="say why this advisory does not apply, for the audit log"
        )
    return value


def _check_source(value: str) -> str:
    if value not in ADVISORY_SOURCES:
        raise config_value_error(
            f"{value!r} is not an advisory source",
            hint=did_you_mean(value, ADVISORY_SOURCES)
            or f"the sources are: {', '.join(ADVISORY_SOURCES)}",
        )
    return value


AdvisoryId = Annotated[str, AfterValidator(_check_advisory_id)]
Reason = Annotated[str, AfterValidator(_check_reason)]
SourceName = Annotated[str, AfterValidator(_check_source)]


class IgnoredAdvisory(StrictModel):
    """One advisory not to act on, why, and until when."""

    id: AdvisoryId
    reason: Reason
    until: date


class OsvApiSettings(StrictModel):
    """Where the OSV API is and how long to wait for it."""

    url: str = "https://api.osv.dev"
    timeout: Duration = timedelta(seconds=20)

    @model_validator(mode="after")
    def _check_url(self) -> OsvApiSettings:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", self.url):
            raise config_value_error(
                f"{self.url!r} is not an http(s) URL",
                hint="write the API's base URL, such as https://api.osv.dev",
                at=("url",),
            )
        return self


class VulnerabilityGateSettings(StrictModel):
    """The known-vulnerabilities gate: what fails it, what is ignored, which data it trusts."""

    fail_on: SeverityLevel = "high"
    unknown_severity: SeverityLevel = "high"
    max_age: Duration = timedelta(days=7)
    on_stale: Literal["fail", "warn"] = "fail"
    ignore: tuple[IgnoredAdvisory, ...] = ()
    sources: tuple[SourceName, ...] = ("local",)
    osv_api: OsvApiSettings = Field(default_factory=OsvApiSettings)
    environment: dict[MarkerVariable, Annotated[str, Field(min_length=1)]] = Field(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _check(self) -> VulnerabilityGateSettings:
        if not self.sources:
            raise config_value_error(
                "no advisory source is named",
                hint=f"name at least one of: {', '.join(ADVISORY_SOURCES)}",
                at=("sources",),
            )
        for index, name in enumerate(self.sources):
            if name in self.sources[:index]:
                raise config_value_error(
                    f"the source {name!r} is named twice", at=("sources", index)
                )
        seen: dict[str, int] = {}
        for index, entry in enumerate(self.ignore):
            key = entry.id.upper()
            if key in seen:
                raise config_value_error(
                    f"{entry.id} is ignored twice (also at ignore[{seen[key]}])",
                    hint="keep one entry per advisory",
                    at=("ignore", index, "id"),
                )
            seen[key] = index
        return self


_RULE_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")

DEFAULT_SECRETS_BASELINE = ".shipyard-secrets-baseline.json"
"""Where the secrets baseline lives, relative to the project's folder, unless configured."""


def _check_rule_id(value: str) -> str:
    if not _RULE_ID.fullmatch(value):
        raise config_value_error(
            f"{value!r} is not a rule id",
            hint="use 1 to 64 lower-case letters, digits, '.', '_' and '-', such as acme-api-key",
        )
    return value


def _check_regex(value: str) -> str:
    try:
        pattern = re.compile(value)
    except re.error as exc:
        raise config_value_error(
            f"{value!r} is not a regular expression: {exc}",
            hint="write a Python regular expression; quote it in single quotes in YAML",
        ) from None
    if pattern.fullmatch("") is not None:
        raise config_value_error(
            f"{value!r} matches an empty string, so it would match every line",
            hint="make the pattern require at least one character",
        )
    return value


def _check_keyword(value: str) -> str:
    if not value.strip():
        raise config_value_error("a keyword is empty", hint="remove it, or write a word")
    return value


def _check_relative_path(value: str) -> str:
    if not value.strip() or value.startswith("/") or ".." in value.replace("\\", "/").split("/"):
        raise config_value_error(
            f"{value!r} must be a path inside the project's folder",
            hint="write a relative path without '..', such as .shipyard-secrets-baseline.json",
        )
    return value


def _check_pattern(value: str) -> str:
    if not value.strip() or value.startswith("/"):
        raise config_value_error(
            f"{value!r} is not a path pattern",
            hint="write a pattern relative to the project's folder, such as tests/fixtures/**",
        )
    return value


def _check_license_entry(value: str) -> str:
    if not value.strip():
        raise config_value_error(
            "a license entry is empty", hint="write an SPDX id such as MIT or Apache-2.0"
        )
    return value.strip()


def _check_interpreter(value: str) -> str:
    if not value.strip():
        raise config_value_error(
            "the interpreter path is empty",
            hint="name the project's interpreter or virtual environment, such as .venv/bin/python",
        )
    return value


def _switch(value: Any) -> Any:
    """``true`` turns a gate on with its defaults, ``false`` (like leaving it out) turns it off."""
    if value is True:
        return {}
    if value is False:
        return None
    return value


RuleId = Annotated[str, AfterValidator(_check_rule_id)]
Regex = Annotated[str, AfterValidator(_check_regex)]
Keyword = Annotated[str, AfterValidator(_check_keyword)]
RelativePath = Annotated[str, AfterValidator(_check_relative_path)]
PathPattern = Annotated[str, AfterValidator(_check_pattern)]
LicenseEntry = Annotated[str, AfterValidator(_check_license_entry)]
Interpreter = Annotated[str, AfterValidator(_check_interpreter)]


class SecretRule(StrictModel):
    """A project secret rule: a regular expression, a keyword pre-filter, an entropy floor."""

    id: RuleId
    regex: Regex
    keywords: tuple[Keyword, ...] = ()
    entropy: Annotated[float, Field(ge=0, le=8)] | None = None
    description: str = ""


class SecretGateSettings(StrictModel):
    """The secrets gate: what is scanned, the project's own rules, and the baseline file."""

    history: bool = False
    rules: tuple[SecretRule, ...] = ()
    exclude: tuple[PathPattern, ...] = ()
    baseline: RelativePath = DEFAULT_SECRETS_BASELINE
    max_file_size: ByteSize = 5 * 1024 * 1024

    @model_validator(mode="after")
    def _check(self) -> SecretGateSettings:
        seen: dict[str, int] = {}
        for index, rule in enumerate(self.rules):
            if rule.id in seen:
                raise config_value_error(
                    f"the rule id {rule.id!r} is used twice (also at rules[{seen[rule.id]}])",
                    hint="give each rule its own id",
                    at=("rules", index, "id"),
                )
            seen[rule.id] = index
        return self


class LicenseGateSettings(StrictModel):
    """The licenses gate: which licenses may ship, and where dependencies' licenses come from."""

    allow: tuple[LicenseEntry, ...] = ()
    deny: tuple[LicenseEntry, ...] = ()
    python: Interpreter | None = None
    overrides: dict[str, LicenseEntry] = Field(default_factory=dict)
    unknown: Literal["fail", "warn"] = "fail"

    @model_validator(mode="after")
    def _check(self) -> LicenseGateSettings:
        allowed = {entry.lower(): index for index, entry in enumerate(self.allow)}
        for index, entry in enumerate(self.deny):
            if entry.lower() in allowed:
                raise config_value_error(
                    f"{entry} is both allowed (allow[{allowed[entry.lower()]}]) and denied",
                    hint="keep it in one of the two lists",
                    at=("deny", index),
                )
        return self


class SbomGateSettings(StrictModel):
    """The SBOM gate: how strictly a bill of materials must pin what it lists."""

    unpinned: Literal["fail", "warn"] = "warn"


DEFAULT_POLICY_PATHS = ("policies/",)
"""Where the Rego policies live, relative to the project's folder, unless configured."""


def _inside_project(value: str, example: str) -> str:
    if not value.strip() or value.startswith("/") or ".." in value.replace("\\", "/").split("/"):
        raise config_value_error(
            f"{value!r} must be a path inside the project's folder",
            hint=f"write a relative path without '..', such as {example}",
        )
    return value


def _check_policy_path(value: str) -> str:
    return _inside_project(value, "policies/ or policies/deploy.rego")


def _check_artifact_file(value: str) -> str:
    return _inside_project(value, "eval.json or reports/eval.json, as the pipeline stores it")


PolicyPath = Annotated[str, AfterValidator(_check_policy_path)]
ArtifactFile = Annotated[str, AfterValidator(_check_artifact_file)]


class PolicyGateSettings(StrictModel):
    """The policy deploy check: the Rego v1 files (or folders of them) it evaluates."""

    paths: tuple[PolicyPath, ...] = DEFAULT_POLICY_PATHS

    @model_validator(mode="after")
    def _check(self) -> PolicyGateSettings:
        if not self.paths:
            raise config_value_error(
                "no policy path is named",
                hint="name a folder of .rego files, such as policies/, or leave paths out",
                at=("paths",),
            )
        seen: dict[str, int] = {}
        for index, path in enumerate(self.paths):
            key = path.rstrip("/")
            if key in seen:
                raise config_value_error(
                    f"the path {path!r} is named twice (also at paths[{seen[key]}])",
                    at=("paths", index),
                )
            seen[key] = index
        return self


PathStep = str | int
"""One step of a value path: a key of a JSON object or an index of a JSON array."""

VALUE_PATH_FORMS = "keys and indexes like accuracy, scores.f1 or results[0].value ($: all)"
"""How a value path is written, as shown in error messages."""

_PATH_KEY = re.compile(r"[^.\[\]]+")
_PATH_INDEX = re.compile(r"\[([0-9]+)\]")


def value_path_steps(path: str) -> tuple[PathStep, ...]:
    """The steps of a path like ``a.b[0].c`` into a JSON document (``$`` alone: the whole).

    Raises ``ValueError`` saying where a malformed path goes wrong.
    """
    text = path.strip()
    if text.startswith("$"):
        text = text[1:].removeprefix(".")
        if not text:
            return ()
    steps: list[PathStep] = []
    position = 0
    while position < len(text):
        if text[position] == "[":
            index = _PATH_INDEX.match(text, position)
            if index is None:
                raise ValueError(f"expected an index like [0] at character {position + 1}")
            steps.append(int(index.group(1)))
            position = index.end()
            continue
        if steps:
            if text[position] != ".":
                raise ValueError(f"expected '.' or '[' at character {position + 1}")
            position += 1
        key = _PATH_KEY.match(text, position)
        if key is None:
            raise ValueError(f"expected a key at character {position + 1}")
        steps.append(key.group(0))
        position = key.end()
    if not steps:
        raise ValueError("the path is empty")
    return tuple(steps)


def _check_value_path(value: str) -> str:
    try:
        value_path_steps(value)
    except ValueError as error:
        raise config_value_error(
            f"{value!r} is not a value path: {error}", hint=f"write {VALUE_PATH_FORMS}"
        ) from None
    return value.strip()


def _check_bound(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise config_value_error(
            f"expected a number, got {describe_value(value)}", hint="write a number such as 0.9"
        )
    return value


ValuePath = Annotated[str, AfterValidator(_check_value_path)]
Bound = Annotated[float, BeforeValidator(_check_bound), Field(allow_inf_nan=False)]


class MetricGate(StrictModel):
    """One metric a release must meet: a number in one of its artifacts, its bounds, and how
    far it may fall behind the release the target environment runs."""

    name: MetricName
    file: ArtifactFile
    path: ValuePath
    min: Bound | None = None
    max: Bound | None = None
    no_regression: Annotated[Bound, Field(ge=0)] | None = None
    better: Literal["higher", "lower"] | None = None

    @model_validator(mode="after")
    def _check(self) -> MetricGate:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise config_value_error(
                f"min {self.min:g} is above max {self.max:g}, so no value can pass",
                hint="swap them, or drop one",
                at=("min",),
            )
        return self

    @property
    def higher_is_better(self) -> bool:
        """Which way is better: ``better`` when set, else lower when only ``max`` is set."""
        if self.better is not None:
            return self.better == "higher"
        return not (self.max is not None and self.min is None)


def _check_metric_gates(value: tuple[MetricGate, ...]) -> tuple[MetricGate, ...]:
    seen: dict[str, int] = {}
    for index, gate in enumerate(value):
        if gate.name in seen:
            raise config_value_error(
                f"the metric {gate.name!r} is named twice (also at [{seen[gate.name]}])",
                hint="give each metric its own name",
                at=(index, "name"),
            )
        seen[gate.name] = index
    return value


class Gates(StrictModel):
    """The release gates a candidate must pass and the deploy checks a deployment must pass;
    a gate not named here does not run."""

    vulnerabilities: VulnerabilityGateSettings | None = None
    secrets: Annotated[SecretGateSettings | None, BeforeValidator(_switch)] = None
    licenses: Annotated[LicenseGateSettings | None, BeforeValidator(_switch)] = None
    sbom: Annotated[SbomGateSettings | None, BeforeValidator(_switch)] = None
    policy: Annotated[PolicyGateSettings | None, BeforeValidator(_switch)] = None
    metrics: Annotated[tuple[MetricGate, ...], AfterValidator(_check_metric_gates)] | None = None
