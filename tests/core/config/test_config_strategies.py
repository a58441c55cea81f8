"""The strategy options of an environment: canary steps and rolling batches, and their errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from shipyard.core.config import ConfigInvalid, load_config_text
from shipyard.core.config.delivery import Canary, PauseForPerson, Rolling

Rejecter = Callable[..., ConfigInvalid]

HEAD = "project: web\nservice: {command: 'python -m app --port {port}'}\nenvironments:\n"


def strategy(text: str) -> str:
    return HEAD + "  prod:\n    strategy:\n" + text


def test_canary_steps_are_read_as_written() -> None:
    config = load_config_text(
        strategy(
            "      canary:\n"
            "        steps: [{weight: 10, pause: 30s}, {weight: 50, pause: 1m}, {pause: {}},"
            " {weight: 100}]\n"
        )
    )
    chosen = config.environments["prod"].strategy
    assert chosen.name == "canary"
    canary = chosen.canary
    assert isinstance(canary, Canary)
    assert [(s.weight, s.pause) for s in canary.steps] == [
        (10, timedelta(seconds=30)),
        (50, timedelta(minutes=1)),
        (None, PauseForPerson()),
        (100, None),
    ]
    assert canary.plan == [
        (10, timedelta(seconds=30)),
        (50, timedelta(minutes=1)),
        (50, PauseForPerson()),
        (100, None),
    ]


def test_a_last_step_below_100_is_followed_by_100() -> None:
    canary = Canary.model_validate({"steps": [{"weight": 20, "pause": "1s"}]})
    assert canary.plan == [(20, timedelta(seconds=1)), (100, None)]


def test_canary_options_round_trip_through_json() -> None:
    canary = Canary.model_validate({"steps": [{"weight": 5, "pause": "500ms"}, {"pause": {}}]})
    stored = canary.model_dump(mode="json", exclude_none=True)
    assert stored == {"steps": [{"weight": 5, "pause": "500ms"}, {"pause": {}}]}
    assert Canary.model_validate(stored) == canary


def test_a_step_with_neither_weight_nor_pause(reject: Rejecter) -> None:
    error = reject(strategy("      canary: {steps: [{weight: 10}, {}]}\n"))
    [problem] = error.problems
    assert problem.line == 6
    assert problem.path == "environments.prod.strategy.canary.steps[1]"
    assert problem.message == "a step needs a weight, a pause or both"


def test_weights_must_not_go_down(reject: Rejecter) -> None:
    error = reject(
        strategy(
            "      canary:\n        steps:\n          - {weight: 50}\n          - {pause: 1s}\n"
            "          - {weight: 20}\n"
        )
    )
    [problem] = error.problems
    assert (problem.line, problem.path) == (10, "environments.prod.strategy.canary.steps[2].weight")
    assert problem.message == "weight 20 is below 50, the weight of an earlier step"
    assert problem.hint is not None and "non-decreasing" in problem.hint


def test_weights_are_1_to_100(reject: Rejecter) -> None:
    error = reject(strategy("      canary: {steps: [{weight: 0}, {weight: 101}]}\n"))
    paths = [p.path for p in error.problems]
    assert paths == [
        "environments.prod.strategy.canary.steps[0].weight",
        "environments.prod.strategy.canary.steps[1].weight",
    ]


def test_a_pause_with_keys_or_not_a_duration(reject: Rejecter) -> None:
    error = reject(
        strategy(
            "      canary:\n        steps:\n          - {weight: 10, pause: {for: 1m}}\n"
            "          - {weight: 20, pause: soon}\n"
        )
    )
    first, second = error.problems
    assert (first.line, first.path) == (8, "environments.prod.strategy.canary.steps[0].pause")
    assert first.message == "pause: {} takes no keys"
    assert (second.line, second.path) == (9, "environments.prod.strategy.canary.steps[1].pause")
    assert second.message == "'soon' is not a duration"


def test_a_canary_needs_steps(reject: Rejecter) -> None:
    error = reject(strategy("      canary: {steps: []}\n"))
    [problem] = error.problems
    assert problem.path == "environments.prod.strategy.canary.steps"
    missing = reject(strategy("      canary: {}\n"))
    assert missing.problems[0].path == "environments.prod.strategy.canary.steps"


def test_rolling_defaults_and_limits(reject: Rejecter) -> None:
    config = load_config_text(strategy("      rolling: {}\n"))
    assert config.environments["prod"].strategy.options == Rolling(max_surge=1, max_unavailable=0)
    error = reject(strategy("      rolling: {max_surge: 0, max_unavailable: 0}\n"))
    [problem] = error.problems
    assert problem.path == "environments.prod.strategy.rolling"
    assert "cannot both be 0" in problem.message


def test_two_strategies_are_refused(reject: Rejecter) -> None:
    error = reject(strategy("      rolling: {}\n      canary: {steps: [{weight: 10}]}\n"))
    assert error.problems[0].message == "choose exactly one strategy"
