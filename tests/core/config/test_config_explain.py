"""Validation errors point at the key path and line, and say what to write instead."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Literal

from pydantic import Field, model_validator

from shipyard.core.config import (
    ConfigInvalid,
    Duration,
    Percentage,
    StrictModel,
    config_value_error,
    did_you_mean,
    parse_yaml,
    validate_document,
)

Rejecter = Callable[..., ConfigInvalid]


class Step(StrictModel):
    """One step of a test-only canary."""

    weight: int
    pause: Duration | None = None


class Canary(StrictModel):
    """A test-only canary strategy: a list of steps."""

    steps: list[Step]
    max_increase: Percentage = 0.2


class Strategy(StrictModel):
    """A test-only strategy choice."""

    canary: Canary | None = None


class Sbom(StrictModel):
    """A test-only setting that may be a boolean or a mapping."""

    format: Literal["spdx", "cyclonedx"] = "spdx"


class Job(StrictModel):
    """A test-only job with an aliased key."""

    run: str
    if_: str | None = Field(default=None, alias="if")
    needs: list[str] = Field(default_factory=list)


class Environment(StrictModel):
    """A test-only environment."""

    target: str = "local"
    timeout: Duration = timedelta(minutes=10)
    strategy: Strategy = Strategy()
    sbom: bool | Sbom = False
    promote_from: str | None = None
    auto: bool = False


class Root(StrictModel):
    """A test-only root with nested mappings, lists of models and a cross-reference."""

    project: str
    environments: dict[str, Environment] = Field(default_factory=dict)
    jobs: dict[str, Job] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _promote_from_known_environments(self) -> Root:
        for name, environment in self.environments.items():
            source = environment.promote_from
            if source is not None and source not in self.environments:
                raise config_value_error(
                    f"there is no environment '{source}' to promote from {{here}}",
                    hint=did_you_mean(source, self.environments),
                    at=("environments", name, "promote_from"),
                )
        return self


NESTED = """\
project: demo
environments:
  production:
    strategy:
      canary:
        steps:
          - {weight: 10, pause: 30s}
          - weight: 50
            pause: 10 minutes
          - {weight: ten}
          - {pause: 1s}
"""


def lines_of(error: ConfigInvalid) -> list[str]:
    """The message of the error, one problem a line."""
    return str(error).splitlines()


def test_errors_inside_nested_lists_name_the_index_and_line(reject: Rejecter) -> None:
    assert lines_of(reject(NESTED, Root)) == [
        "shipyard.yaml:9:20: environments.production.strategy.canary.steps[1].pause: "
        "'10 minutes' is not a duration "
        "(hint: write 500ms, 30s, 10m, 1h, 1h30m or 2d (a bare number means seconds))",
        "shipyard.yaml:10:22: environments.production.strategy.canary.steps[2].weight: "
        "expected a whole number, got the string 'ten'",
        "shipyard.yaml:11:13: environments.production.strategy.canary.steps[3].weight: "
        "this required key is missing "
        "(hint: add 'weight:' under 'environments.production.strategy.canary.steps[3]')",
    ]


def test_problems_are_structured(reject: Rejecter) -> None:
    first = reject(NESTED, Root).problems[0]
    assert first.file == "shipyard.yaml"
    assert (first.line, first.column) == (9, 20)
    assert first.path == "environments.production.strategy.canary.steps[1].pause"
    assert first.message == "'10 minutes' is not a duration"
    assert first.hint is not None


def test_all_problems_are_reported_sorted_by_line(reject: Rejecter) -> None:
    error = reject(
        "project: demo\n"
        "jobs:\n"
        "  test: {run: pytest, nedes: [lint]}\n"
        "environments:\n"
        "  staging: {timout: 5m}\n"
        "  production:\n"
        "    Target: local\n"
        "    stratgy: {}\n"
        "    color: blue\n",
        Root,
    )
    assert [(p.line, p.path, p.hint) for p in error.problems] == [
        (3, "jobs.test.nedes", "did you mean 'needs'?"),
        (5, "environments.staging.timout", "did you mean 'timeout'?"),
        (7, "environments.production.Target", "did you mean 'target'?"),
        (8, "environments.production.stratgy", "did you mean 'strategy'?"),
        (
            9,
            "environments.production.color",
            "remove it; the keys allowed here are: auto, promote_from, sbom, strategy, target, "
            "timeout",
        ),
    ]
    assert all(p.message.startswith("unknown key '") for p in error.problems)


def test_unknown_key_points_at_the_key(reject: Rejecter) -> None:
    line = lines_of(reject("project: demo\njobs:\n  lint:\n    run: ruff\n    iff: x\n", Root))
    assert line == [
        "shipyard.yaml:5:5: jobs.lint.iff: unknown key 'iff' (hint: did you mean 'if'?)"
    ]


def test_a_misspelt_required_key_is_reported_once(reject: Rejecter) -> None:
    assert lines_of(reject("projct: demo\n", Root)) == [
        "shipyard.yaml:1:1: projct: unknown key 'projct' (hint: did you mean 'project'?)"
    ]


def test_missing_key_points_at_the_mapping_that_should_hold_it(reject: Rejecter) -> None:
    assert lines_of(reject("project: demo\njobs:\n  lint:\n    needs: []\n", Root)) == [
        "shipyard.yaml:3:3: jobs.lint.run: this required key is missing "
        "(hint: add 'run:' under 'jobs.lint')"
    ]


def test_missing_top_level_key(reject: Rejecter) -> None:
    assert lines_of(reject("# demo\njobs: {}\n", Root)) == [
        "shipyard.yaml:2:1: project: this required key is missing "
        "(hint: add 'project:' at the top level)"
    ]


def test_wrong_types_say_what_was_expected_and_given(reject: Rejecter) -> None:
    error = reject(
        "project: 3.10\n"
        "jobs:\n"
        "  lint: {run: ruff, needs: lint}\n"
        "  test:\n"
        "environments:\n"
        "  staging: {auto: maybe}\n"
        "  production: [target, local]\n",
        Root,
    )
    assert lines_of(error) == [
        "shipyard.yaml:1:10: project: expected a string, got the number 3.1 "
        "(hint: put the value in quotes to keep it as text)",
        "shipyard.yaml:3:28: jobs.lint.needs: expected a list, got the string 'lint' "
        "(hint: write a list: [a, b] or one '- item' per line)",
        "shipyard.yaml:4:3: jobs.test: expected a mapping, got an empty value (null) "
        "(hint: write the keys of 'test' on the lines below it, indented, or remove 'test')",
        "shipyard.yaml:6:19: environments.staging.auto: expected true or false, "
        "got the string 'maybe' (hint: write true or false)",
        "shipyard.yaml:7:3: environments.production: expected a mapping, got a list "
        "(hint: write 'key: value' lines, without '- ' in front)",
    ]


def test_messages_carry_no_pydantic_noise(reject: Rejecter) -> None:
    text = str(reject(NESTED.replace("weight: 50", "weight: [50]"), Root))
    for noise in ("errors.pydantic.dev", "Input should", "type=", "For further information"):
        assert noise not in text


def test_union_reports_what_any_member_accepts(reject: Rejecter) -> None:
    assert lines_of(reject("project: demo\nenvironments:\n  qa: {sbom: 5}\n", Root)) == [
        "shipyard.yaml:3:14: environments.qa.sbom: expected true or false or a mapping, "
        "got the number 5 (hint: write true or false)"
    ]


def test_union_reports_the_member_that_fits_the_input(reject: Rejecter) -> None:
    error = reject("project: demo\nenvironments:\n  qa:\n    sbom: {fromat: spdx}\n", Root)
    assert lines_of(error) == [
        "shipyard.yaml:4:12: environments.qa.sbom.fromat: unknown key 'fromat' "
        "(hint: did you mean 'format'?)"
    ]


def test_choices_suggest_the_closest(reject: Rejecter) -> None:
    error = reject("project: demo\nenvironments:\n  qa:\n    sbom: {format: spdxx}\n", Root)
    assert lines_of(error) == [
        "shipyard.yaml:4:20: environments.qa.sbom.format: expected one of 'spdx' or "
        "'cyclonedx', got the string 'spdxx' (hint: did you mean 'spdx'?)"
    ]


def test_cross_reference_points_at_the_referring_key(reject: Rejecter) -> None:
    error = reject(
        "project: demo\nenvironments:\n  staging: {}\n  production:\n    promote_from: stagin\n",
        Root,
    )
    assert lines_of(error) == [
        "shipyard.yaml:5:19: environments.production.promote_from: there is no environment "
        "'stagin' to promote from {here} (hint: did you mean 'staging'?)"
    ]


def test_values_repeated_through_an_alias_point_at_the_anchor(reject: Rejecter) -> None:
    error = reject(
        "project: demo\nenvironments:\n  staging: &env\n    timeout: soon\n  production: *env\n",
        Root,
    )
    assert [(p.line, p.path) for p in error.problems] == [
        (4, "environments.production.timeout"),
        (4, "environments.staging.timeout"),
    ]


def test_validation_of_a_good_document() -> None:
    document = parse_yaml(
        "project: demo\n"
        "jobs:\n"
        "  lint: {run: ruff check ., if: \"branch == 'main'\"}\n"
        "environments:\n"
        "  staging: {}\n"
        "  production:\n"
        "    promote_from: staging\n"
        "    sbom: {format: cyclonedx}\n"
        "    strategy:\n"
        "      canary: {steps: [{weight: 10, pause: 30s}, {weight: 100}], max_increase: 20%}\n",
        "shipyard.yaml",
    )
    root = validate_document(document, Root)
    assert root.jobs["lint"].if_ == "branch == 'main'"
    production = root.environments["production"]
    assert production.sbom == Sbom(format="cyclonedx")
    assert production.strategy.canary is not None
    assert production.strategy.canary.steps[0].pause == timedelta(seconds=30)
    assert production.strategy.canary.max_increase == 0.2
