"""``environments.<env>.analysis`` and ``watch``: what is read, and the errors of bad metrics."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from shipyard.core.config import ConfigInvalid, load_config_text
from shipyard.core.config.delivery import Analysis

Rejecter = Callable[..., ConfigInvalid]

HEAD = "project: web\nservice: {command: 'python -m app --port {port}'}\nenvironments:\n  prod:\n"


def analysis(*metrics: str, extra: str = "") -> str:
    lines = "".join(f"        - {metric}\n" for metric in metrics)
    return HEAD + f"    analysis:\n{extra}      metrics:\n{lines}"


def test_analysis_and_watch_are_read_as_written() -> None:
    config = load_config_text(
        analysis(
            "{name: error_rate, provider: builtin, max: 0.01, min_requests: 50}",
            "{name: latency_p95, provider: builtin, max_increase: 20%}",
            "{name: p99, provider: prometheus, query: 'histogram_quantile(0.99, x)', max: 0.3}",
            "{name: score, provider: http, url: 'http://127.0.0.1:9/s', path: a.b, min: 0.9}",
            "{name: queue, provider: command, command: ./depth.sh, max: 10}",
            extra="      interval: 30s\n      failure_limit: 0\n      inconclusive_limit: 5\n",
        )
        + "    watch: 10m\n"
    )
    environment = config.environments["prod"]
    assert environment.watch == timedelta(minutes=10)
    chosen = environment.analysis
    assert chosen is not None
    assert (chosen.interval, chosen.failure_limit, chosen.inconclusive_limit) == (
        timedelta(seconds=30),
        0,
        5,
    )
    by_name = {metric.name: metric for metric in chosen.metrics}
    assert list(by_name) == ["error_rate", "latency_p95", "p99", "score", "queue"]
    assert (by_name["error_rate"].max, by_name["error_rate"].min_requests) == (0.01, 50)
    assert by_name["latency_p95"].max_increase == pytest.approx(0.2)
    assert by_name["p99"].query == "histogram_quantile(0.99, x)"
    assert (by_name["score"].url, by_name["score"].path, by_name["score"].min) == (
        "http://127.0.0.1:9/s",
        "a.b",
        0.9,
    )
    assert by_name["queue"].command == "./depth.sh"


def test_defaults_and_no_watch() -> None:
    config = load_config_text(analysis("{name: error_rate, provider: builtin, max: 0.01}"))
    environment = config.environments["prod"]
    assert environment.watch is None
    assert environment.analysis is not None
    assert environment.analysis.interval == timedelta(seconds=10)
    assert (environment.analysis.failure_limit, environment.analysis.inconclusive_limit) == (2, 3)


@pytest.mark.parametrize(
    ("written", "fraction"),
    [("20%", 0.2), ("150%", 1.5), ("0.25", 0.25), ("2", 2.0), ("0%", 0.0)],
)
def test_max_increase_is_a_percentage_or_a_fraction(written: str, fraction: float) -> None:
    chosen = Analysis.model_validate(
        {"metrics": [{"name": "latency_p95", "provider": "builtin", "max_increase": written}]}
    )
    assert chosen.metrics[0].max_increase == pytest.approx(fraction)


def test_analysis_round_trips_through_json() -> None:
    chosen = Analysis.model_validate(
        {
            "interval": "15s",
            "metrics": [{"name": "latency_p95", "provider": "builtin", "max_increase": "20%"}],
        }
    )
    stored = chosen.model_dump(mode="json", exclude_none=True)
    assert stored["interval"] == "15s"
    assert stored["metrics"][0]["max_increase"] == "20%"
    assert Analysis.model_validate(stored) == chosen


def test_a_metric_without_a_threshold(reject: Rejecter) -> None:
    [problem] = reject(analysis("{name: error_rate, provider: builtin}")).problems
    assert problem.line == 7
    assert problem.path == "environments.prod.analysis.metrics[0]"
    assert problem.message == "metric 'error_rate' has no threshold"
    assert problem.hint is not None and "max_increase" in problem.hint


def test_a_metric_whose_min_is_above_its_max(reject: Rejecter) -> None:
    [problem] = reject(analysis("{name: score, provider: builtin, min: 0.9, max: 0.1}")).problems
    assert problem.path == "environments.prod.analysis.metrics[0].min"
    assert "no value could pass" in problem.message


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        ("{name: p99, provider: prometheus, max: 1}", "the prometheus provider needs query"),
        ("{name: s, provider: http, url: 'http://x/', max: 1}", "the http provider needs path"),
        ("{name: s, provider: http, path: a, max: 1}", "the http provider needs url"),
        ("{name: q, provider: command, max: 1}", "the command provider needs command"),
    ],
)
def test_a_provider_without_its_keys(reject: Rejecter, metric: str, message: str) -> None:
    [problem] = reject(analysis(metric)).problems
    assert problem.line == 7
    assert problem.message == message
    assert problem.hint is not None


def test_a_key_of_another_provider(reject: Rejecter) -> None:
    [problem] = reject(
        analysis("{name: error_rate, provider: builtin, max: 1, query: up}")
    ).problems
    assert problem.path == "environments.prod.analysis.metrics[0].query"
    assert problem.message == "query is for the prometheus provider, not builtin"


def test_a_provider_of_a_plugin_is_accepted_with_its_name() -> None:
    config = load_config_text(analysis("{name: apdex, provider: datadog, min: 0.9, query: x}"))
    assert config.environments["prod"].analysis is not None


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("-5%", "an increase cannot be negative, got -5%"),
        ("lots", "'lots' is not an increase"),
        ("'nan%'", "'nan%' is not an increase"),
    ],
)
def test_a_bad_max_increase(reject: Rejecter, written: str, message: str) -> None:
    [problem] = reject(
        analysis(f"{{name: latency_p95, provider: builtin, max_increase: {written}}}")
    ).problems
    assert problem.path == "environments.prod.analysis.metrics[0].max_increase"
    assert problem.message == message


def test_a_metric_written_twice(reject: Rejecter) -> None:
    [problem] = reject(
        analysis(
            "{name: error_rate, provider: builtin, max: 1}",
            "{name: error_rate, provider: builtin, min: 0}",
        )
    ).problems
    assert problem.line == 8
    assert problem.path == "environments.prod.analysis.metrics[1].name"


def test_bad_names_and_limits(reject: Rejecter) -> None:
    problems = reject(
        analysis(
            "{name: Error-Rate, provider: Built In, max: 1}", extra="      failure_limit: -1\n"
        )
    ).problems
    by_path = {problem.path: problem.message for problem in problems}
    assert (
        "'Error-Rate' is not a metric name" in by_path["environments.prod.analysis.metrics[0].name"]
    )
    assert (
        "'Built In' is not a provider name"
        in by_path["environments.prod.analysis.metrics[0].provider"]
    )
    assert "environments.prod.analysis.failure_limit" in by_path


def test_an_analysis_without_metrics_and_a_short_interval(reject: Rejecter) -> None:
    problems = reject(HEAD + "    analysis: {interval: 0s, metrics: []}\n").problems
    paths = sorted(problem.path for problem in problems)
    assert paths == ["environments.prod.analysis.interval", "environments.prod.analysis.metrics"]


def test_watch_needs_an_analysis(reject: Rejecter) -> None:
    [problem] = reject(HEAD + "    watch: 10m\n").problems
    assert problem.line == 5
    assert problem.path == "environments.prod.watch"
    assert problem.message.startswith("watch needs an analysis section")


def test_a_watch_of_no_time(reject: Rejecter) -> None:
    [problem] = reject(
        analysis("{name: error_rate, provider: builtin, max: 1}") + "    watch: 0s\n"
    ).problems
    assert problem.path == "environments.prod.watch"


def test_a_builtin_metric_must_be_one_the_router_measures(reject: Rejecter) -> None:
    [problem] = reject(analysis("{name: latncy_p95, provider: builtin, max: 0.3}")).problems
    assert problem.message == "the builtin provider has no metric 'latncy_p95'"
    assert problem.hint == "did you mean 'latency_p95'?"


def test_a_prometheus_metric_may_name_its_server() -> None:
    config = load_config_text(
        analysis("{name: p99, provider: prometheus, query: up, url: 'http://prom:9090', max: 1}")
    )
    analysis_of = config.environments["prod"].analysis
    assert analysis_of is not None
    assert analysis_of.metrics[0].url == "http://prom:9090"


def judged(judge: str) -> str:
    """An analysis with one metric and ``judge`` written on line 6."""
    return analysis(
        "{name: error_rate, provider: builtin, max: 0.01}", extra=f"      judge: {judge}\n"
    )


def test_the_judge_is_thresholds_by_default_with_the_documented_settings() -> None:
    chosen = load_config_text(analysis("{name: error_rate, provider: builtin, max: 0.01}"))
    found = chosen.environments["prod"].analysis
    assert found is not None
    judge = found.judge
    assert (judge.kind, judge.alpha, judge.min_effect, judge.test) == (
        "threshold",
        0.01,
        0.01,
        "msprt",
    )
    assert (judge.tau, judge.min_samples, judge.pass_score, judge.marginal_score) == (
        0.02,
        50,
        95,
        75,
    )


def test_a_sequential_judge_is_read_as_written_and_kept_with_the_deployment() -> None:
    chosen = load_config_text(
        judged(
            "{kind: sequential, alpha: 0.05, min_effect: 0.02, test: conditional, tau: 0.05, "
            "min_samples: 200, pass_score: 90, marginal_score: 60}"
        )
    )
    found = chosen.environments["prod"].analysis
    assert found is not None
    judge = found.judge
    assert (judge.kind, judge.alpha, judge.min_effect, judge.test, judge.tau) == (
        "sequential",
        0.05,
        0.02,
        "conditional",
        0.05,
    )
    assert (judge.min_samples, judge.pass_score, judge.marginal_score) == (200, 90, 60)
    stored = found.model_dump(mode="json", exclude_none=True)
    assert Analysis.model_validate(stored).judge == judge


@pytest.mark.parametrize(
    ("judge", "key", "message"),
    [
        ("{kind: bayesian}", "kind", "expected one of 'threshold' or 'sequential'"),
        ("{alpha: 0.5}", "alpha", "must be less than 0.5, got the number 0.5"),
        ("{alpha: 0}", "alpha", "must be greater than 0, got the number 0"),
        ("{min_effect: 1}", "min_effect", "must be less than 1, got the number 1"),
        ("{test: fisher}", "test", "expected one of 'msprt' or 'conditional'"),
        ("{tau: 0}", "tau", "must be greater than 0, got the number 0"),
        ("{min_samples: 0}", "min_samples", "must be greater than or equal to 1"),
        ("{min_samples: 2.5}", "min_samples", "2.5"),
        ("{pass_score: 101}", "pass_score", "must be less than or equal to 100"),
        ("{marginal_score: -1}", "marginal_score", "must be greater than or equal to 0"),
        ("{alpha: lots}", "alpha", "expected a number, got the string 'lots'"),
    ],
)
def test_a_bad_judge_setting_is_named_at_its_line(
    reject: Rejecter, judge: str, key: str, message: str
) -> None:
    [problem] = reject(judged(judge)).problems
    assert problem.line == 6
    assert problem.path == f"environments.prod.analysis.judge.{key}"
    assert message in problem.message


def test_a_misspelt_judge_key_gets_a_did_you_mean(reject: Rejecter) -> None:
    [problem] = reject(judged("{kind: sequential, alhpa: 0.01}")).problems
    assert problem.line == 6
    assert problem.path == "environments.prod.analysis.judge.alhpa"
    assert problem.hint == "did you mean 'alpha'?"


def test_a_marginal_score_above_the_pass_score(reject: Rejecter) -> None:
    [problem] = reject(judged("{pass_score: 80, marginal_score: 90}")).problems
    assert problem.line == 6
    assert problem.path == "environments.prod.analysis.judge.marginal_score"
    assert problem.message == "marginal_score 90 is above pass_score 80"
    assert problem.hint is not None and "pass_score: 95, marginal_score: 75" in problem.hint


def test_equal_pass_and_marginal_scores_are_allowed() -> None:
    chosen = load_config_text(judged("{pass_score: 80, marginal_score: 80}"))
    found = chosen.environments["prod"].analysis
    assert found is not None
    assert (found.judge.pass_score, found.judge.marginal_score) == (80, 80)
