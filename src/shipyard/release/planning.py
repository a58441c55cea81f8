"""From the ``release`` section to the next version and its changelog: one place for both.

``shipyard version``, ``shipyard run`` (``SHIPYARD_VERSION``), ``shipyard changelog`` and
``shipyard release`` all ask here, so they always agree. Nothing here writes anything.
"""

from __future__ import annotations

import datetime
import posixpath
from dataclasses import dataclass

from shipyard.core.config.release import Release
from shipyard.core.git import Git
from shipyard.release.changelog import render_release, render_unreleased
from shipyard.release.versioning import (
    NextVersion,
    VersioningError,
    channel_token,
    next_version,
)


@dataclass(frozen=True)
class VersionPlan:
    """The next version of a project and the changelog section that goes with it."""

    next: NextVersion
    token: str | None
    changelog: str

    @property
    def version(self) -> str | None:
        """The next version's text, or None when no commit calls for a release."""
        return str(self.next.version) if self.next.version else None

    @property
    def current(self) -> str | None:
        """The newest released version's text, or None before the first release."""
        return str(self.next.current) if self.next.current else None


def settings(section: Release | None) -> Release:
    """The release settings of a configuration (defaults when it has no ``release``)."""
    return section if section is not None else Release()


def plan(
    git: Git,
    section: Release | None,
    *,
    project_dir: str = "",
    branch: str | None = None,
    prerelease: str | None = None,
    ref: str = "HEAD",
    today: datetime.date | None = None,
) -> VersionPlan:
    """Which version comes next on ``ref``, and its changelog section."""
    release = settings(section)
    token = prerelease if prerelease is not None else channel_token(branch, release.channels)
    paths = _repository_paths(release.paths, project_dir)
    result = next_version(
        git,
        tag_format=release.tag_format,
        initial_version=release.initial_version,
        bump_table=dict(release.bump),
        major_on_zero=release.major_on_zero,
        prerelease=token,
        paths=paths,
        ref=ref,
    )
    day = today or datetime.datetime.now(datetime.UTC).date()
    if result.version is not None:
        changelog = render_release(result.version, day, result.commits)
    else:
        changelog = render_unreleased(result.commits)
    return VersionPlan(next=result, token=token, changelog=changelog)


def run_version(plan_: VersionPlan, section: Release | None) -> str:
    """What jobs see as ``SHIPYARD_VERSION``: the next version, else the current one."""
    if plan_.version:
        return plan_.version
    return plan_.current or settings(section).initial_version


def _repository_paths(paths: list[str], project_dir: str) -> tuple[str, ...]:
    """``release.paths`` (relative to the project's folder) as paths from the repository root."""
    chosen = []
    for path in paths:
        joined = posixpath.normpath(posixpath.join(project_dir or ".", path))
        if posixpath.isabs(path) or joined == ".." or joined.startswith("../"):
            raise VersioningError(
                f"release.paths lists {path!r}, which leads outside the repository"
                + (f" from the project folder {project_dir}" if project_dir else ""),
                hint="list folders of the repository, relative to the folder of shipyard.yaml",
            )
        if joined != ".":
            chosen.append(joined)
    return tuple(chosen)
