"""The root model of ``shipyard.yaml``: one field per section.

Each section (``pipeline``, ``release``, ``gates``, ``service``, ``environments``,
``notifications``) lives in its own module beside this one and is added here as one field;
a section checks its own cross-references in its model validators. This module holds no
section's details and no loading logic.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from shipyard.core.config.delivery import Environments, Service, check_environments
from shipyard.core.config.gates import Gates
from shipyard.core.config.notifications import Notifications
from shipyard.core.config.pipeline import Pipeline
from shipyard.core.config.release import Release
from shipyard.core.config.types import ProjectName, StrictModel


class ShipyardConfig(StrictModel):
    """The validated contents of one project's ``shipyard.yaml``."""

    project: ProjectName
    pipeline: Pipeline | None = None
    release: Release | None = None
    gates: Gates | None = None
    service: Service | None = None
    environments: Environments = Field(default_factory=dict)
    notifications: Notifications = Field(default_factory=list)

    @model_validator(mode="after")
    def _environments_have_a_service(self) -> ShipyardConfig:
        check_environments(self.environments, self.service)
        return self
