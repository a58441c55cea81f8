"""The ``gates`` section of ``shipyard.yaml``: which release gates run and how strictly.

This is the validated raw form: levels, durations, ignore entries with their expiry dates and
the names of advisory sources. It knows no gate's code; the gates pillar builds the runtime
gates from it and decides what an expired ignore or stale data means.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from shipyard.core.config.problems import config_value_error, did_you_mean
from shipyard.core.config.types import Duration, StrictModel

SeverityLevel = Literal["low", "medium", "high", "critical"]
"""A severity a setting may name, from the least to the most severe."""

ADVISORY_SOURCES = ("local", "osv-api")
"""The advisory sources ``gates.vulnerabilities.sources`` may name."""

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


class Gates(StrictModel):
    """The release gates a candidate must pass; a gate not named here does not run."""

    vulnerabilities: VulnerabilityGateSettings | None = None
