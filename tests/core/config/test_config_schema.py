"""Key paths and allowed keys, read from the models' annotations."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from shipyard.core.config import Duration, ShipyardConfig, StrictModel, allowed_keys, key_paths


class Metric(StrictModel):
    """A test-only list item."""

    name: str
    max: float | None = None


class Analysis(StrictModel):
    """A test-only nested section holding a list of models."""

    interval: Duration
    metrics: list[Metric] = Field(default_factory=list)


class Tree(StrictModel):
    """A test-only model that refers to itself."""

    label: str
    children: tuple[Tree, ...] = ()


class Blue(StrictModel):
    """A test-only union member."""

    window: Duration


class Environment(StrictModel):
    """A test-only section with aliases, unions and annotated members."""

    target: Literal["local"] = "local"
    analysis: Annotated[Analysis | None, Field(description="optional")] = None
    strategy: bool | Blue = False
    if_: str | None = Field(default=None, alias="if")
    env: dict[str, str] = Field(default_factory=dict)


class Root(StrictModel):
    """A test-only root."""

    project: str
    environments: dict[str, Environment] = Field(default_factory=dict)
    tree: Tree | None = None


def test_key_paths_walk_models_mappings_lists_and_unions() -> None:
    assert key_paths(Root) == [
        "project",
        "environments",
        "environments.<name>.target",
        "environments.<name>.analysis",
        "environments.<name>.analysis.interval",
        "environments.<name>.analysis.metrics",
        "environments.<name>.analysis.metrics[].name",
        "environments.<name>.analysis.metrics[].max",
        "environments.<name>.strategy",
        "environments.<name>.strategy.window",
        "environments.<name>.if",
        "environments.<name>.env",
        "tree",
        "tree.label",
        "tree.children",
    ]


def test_key_paths_of_the_root_model() -> None:
    paths = key_paths(ShipyardConfig)
    assert paths[0] == "project"
    assert "pipeline.jobs.<name>.run[].run" in paths
    assert "pipeline.jobs.<name>.matrix.<name>" in paths


def test_allowed_keys_follow_a_pydantic_location() -> None:
    assert allowed_keys(Root, ()) == ["project", "environments", "tree"]
    assert allowed_keys(Root, ("environments", "prod")) == [
        "target",
        "analysis",
        "strategy",
        "if",
        "env",
    ]
    assert allowed_keys(Root, ("environments", "prod", "analysis", "metrics", 2)) == ["name", "max"]
    assert allowed_keys(Root, ("environments", "prod", "strategy", "Blue")) == ["window"]
    assert allowed_keys(Root, ("tree", "children", 0, "children", 1)) == ["label", "children"]


def test_allowed_keys_of_something_that_is_not_a_mapping() -> None:
    assert allowed_keys(Root, ("project",)) == []
    assert allowed_keys(Root, ("environments", "prod", "env")) == []
