"""The ``release`` section of ``shipyard.yaml``: how versions, tags and changelogs are made.

Validated raw form only: the release pillar turns it into its runtime objects. It checks the
tag format, the initial version, the bump table and the version files' syntax.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from shipyard.core.config.problems import config_value_error
from shipyard.core.config.types import StrictModel

_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)
_TOKEN = re.compile(r"[A-Za-z][0-9A-Za-z-]{0,31}")
_LONGEST_VERSION = 256  # as release.semver.MAX_VERSION_LENGTH (core imports no pillar)
_TYPE = re.compile(r"[a-z][a-z0-9-]{0,31}")


def _check_tag_format(value: str) -> str:
    if value.count("{version}") != 1:
        raise config_value_error(
            f"{value!r} must contain {{version}} exactly once",
            hint="write something like 'v{version}' or 'api-v{version}'",
        )
    rest = value.replace("{version}", "")
    if any(ch in rest for ch in " ~^:?*[\\") or ".." in rest or "{" in rest or "}" in rest:
        raise config_value_error(
            f"{value!r} would not be a valid git tag name",
            hint="use letters, digits, '-', '_', '.' and '/' around {version}",
        )
    return value


def _check_semver(value: str) -> str:
    if len(value) > _LONGEST_VERSION:
        raise config_value_error(
            f"a version of {len(value):,} characters is too long: at most {_LONGEST_VERSION}",
            hint="write MAJOR.MINOR.PATCH, such as 0.1.0 or 1.0.0",
        )
    if not _SEMVER.fullmatch(value):
        raise config_value_error(
            f"{value!r} is not a semantic version",
            hint="write MAJOR.MINOR.PATCH, such as 0.1.0 or 1.0.0",
        )
    return value


def _check_token(value: str | None) -> str | None:
    if value is not None and not _TOKEN.fullmatch(value):
        raise config_value_error(
            f"{value!r} is not a prerelease token",
            hint="use a short word such as rc, beta or alpha",
        )
    return value


def _check_type(value: str) -> str:
    if not _TYPE.fullmatch(value):
        raise config_value_error(
            f"{value!r} is not a commit type", hint="use lower-case words such as feat or fix"
        )
    return value


def _check_version_file(value: str) -> str:
    path, _, key = value.partition(":")
    if not path or path.startswith("/") or ".." in path.split("/"):
        raise config_value_error(
            f"{value!r} must name a file inside the repository",
            hint="write 'pyproject.toml:project.version', 'package.json:version' or 'VERSION'",
        )
    if key and not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", key):
        raise config_value_error(
            f"{key!r} is not a key path", hint="write dotted keys such as project.version"
        )
    if key and not path.endswith((".toml", ".json")):
        raise config_value_error(
            f"{path!r}: a key path works in .toml and .json files",
            hint="name a plain file without a key: it then holds only the version",
        )
    return value


TagFormat = Annotated[str, AfterValidator(_check_tag_format)]
SemVerText = Annotated[str, AfterValidator(_check_semver)]
Token = Annotated[str | None, AfterValidator(_check_token)]
CommitType = Annotated[str, AfterValidator(_check_type)]
VersionFile = Annotated[str, AfterValidator(_check_version_file)]


def _default_bump() -> dict[str, Literal["major", "minor", "patch"]]:
    return {"feat": "minor", "fix": "patch", "perf": "patch"}


class Release(StrictModel):
    """The ``release`` section."""

    tag_format: TagFormat = "v{version}"
    initial_version: SemVerText = "0.1.0"
    major_on_zero: bool = False
    bump: dict[CommitType, Literal["major", "minor", "patch"]] = Field(
        default_factory=_default_bump
    )
    channels: dict[str, Token] = Field(default_factory=dict)
    paths: list[str] = Field(default_factory=lambda: ["."])
    version_files: list[VersionFile] = Field(default_factory=list)
    changelog: str | None = "CHANGELOG.md"
    commit: bool = False
