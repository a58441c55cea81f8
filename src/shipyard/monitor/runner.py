"""One look of an analysis: measure every metric of the new version, judge it, say why.

A look asks each metric's provider for the new version's value and, where a metric compares
with the stable version (``max_increase``), for the stable version's value at the same time.
When the stable version has no value now (it gets no traffic once the new version serves
everything), the value it had earlier in the deployment stands in, and the reason says so.
Nothing here waits or stores: the deployment's driver decides when to look and records what
a look found. ``replay`` rebuilds where an analysis stands from what was recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import groupby

from shipyard.core.config.delivery import Analysis, AnalysisMetric
from shipyard.core.errors import ShipyardError
from shipyard.core.measurements import RecordedMeasurement
from shipyard.core.secrets import Masker
from shipyard.monitor import sequential
from shipyard.monitor.analysis import AnalysisRun, Threshold, Verdict, VerdictKind, judge
from shipyard.monitor.providers import (
    Measurement,
    MetricQuery,
    MetricsError,
    ProviderSources,
    TrafficSnapshot,
    provider_for,
)
from shipyard.monitor.providers.interface import DEFAULT_MIN_REQUESTS

_FIELDS = ("query", "url", "path", "command")


@dataclass(frozen=True)
class MetricLook:
    """One metric at one look: the limits, both versions' measurements and the verdict."""

    metric: str
    threshold: Threshold
    canary: Measurement
    baseline: Measurement | None
    verdict: Verdict
    evidence: Mapping[str, float] | None = None
    """The numbers behind a sequential verdict (None for a threshold's)."""
    rule: str = ""
    """What judged it, as stored and shown: the limits, or the sequential test."""

    @property
    def judged_by(self) -> str:
        """The rule as a person reads it (the threshold's limits unless a test judged)."""
        return self.rule or self.threshold.describe()


def look(
    analysis: Analysis,
    *,
    environment: str,
    version: str,
    baseline_version: str | None,
    sources: ProviderSources,
    earlier_baselines: Mapping[str, float] | None = None,
    masker: Masker | None = None,
    step_evidence: Mapping[str, Sequence[Mapping[str, float]]] | None = None,
    last_look: bool = True,
) -> list[MetricLook]:
    """Measure and judge every metric of ``analysis`` for ``version`` once, in order.

    With ``judge: sequential``, the builtin metrics it knows are compared with the stable
    version statistically while both serve (``step_evidence``: each metric's evidence from the
    step's earlier looks); without traffic of the stable version, thresholds judge them.
    """
    earlier = earlier_baselines or {}
    found: list[MetricLook] = []
    window = _window(sources)
    for metric in analysis.metrics:
        threshold = Threshold.of(metric)
        before = (step_evidence or {}).get(metric.name, ())
        if (
            baseline_version
            and baseline_version != version
            and window is not None
            and sequential.applies(analysis.judge, metric.provider, metric.name)
            and (_serves(window, baseline_version) or before)
        ):
            judged = sequential.judge_look(
                analysis.judge,
                metric.name,
                window,
                version=version,
                baseline=baseline_version,
                earlier=before,
                last=last_look,
            )
            source = f"builtin {metric.name} of {version} against {baseline_version}"
            canary = (
                Measurement.of(judged.canary_value, source)
                if judged.canary_value is not None
                else Measurement.no_data("no requests", source)
            )
            stable = (
                Measurement.of(judged.baseline_value, source)
                if judged.baseline_value is not None
                else Measurement.no_data("no requests", source)
            )
            chosen = analysis.judge
            rule = (
                f"sequential {chosen.test}, alpha {chosen.alpha:g}, "
                f"min_effect {chosen.min_effect:g}"
                if metric.name == "error_rate"
                else f"sequential Mann-Whitney, alpha {chosen.alpha:g}"
            )
            verdict = replace(judged.verdict, final=True)
            found.append(
                MetricLook(metric.name, threshold, canary, stable, verdict, judged.evidence, rule)
            )
            continue
        canary = _measure(metric, environment, version, baseline_version, sources, masker)
        baseline = None
        if metric.max_increase is not None and baseline_version and baseline_version != version:
            baseline = _measure(metric, environment, baseline_version, None, sources, masker)
            if baseline.value is None and metric.name in earlier:
                baseline = Measurement.of(
                    earlier[metric.name],
                    f"{baseline_version}'s value measured earlier in this deployment "
                    f"(now: {baseline.reason})",
                )
        verdict = judge(metric.name, threshold, canary, baseline)
        found.append(MetricLook(metric.name, threshold, canary, baseline, verdict))
    return found


def _window(sources: ProviderSources) -> TrafficSnapshot | None:
    """The router's traffic of this look, when there is a router and it could be read."""
    if sources.traffic is None:
        return None
    try:
        return sources.traffic()
    except ShipyardError:
        return None


def _serves(window: TrafficSnapshot, version: str) -> bool:
    traffic = window.versions.get(version)
    return traffic is not None and traffic.requests > 0


def baselines(
    analysis: Analysis,
    *,
    environment: str,
    baseline_version: str,
    sources: ProviderSources,
    masker: Masker | None = None,
) -> dict[str, float]:
    """The stable version's value of each metric that compares with it, where there is one."""
    values: dict[str, float] = {}
    for metric in analysis.metrics:
        if metric.max_increase is None:
            continue
        measured = _measure(metric, environment, baseline_version, None, sources, masker)
        if measured.value is not None:
            values[metric.name] = measured.value
    return values


def check_providers(analysis: Analysis, sources: ProviderSources) -> None:
    """Raise a clear error, before anything is deployed, for a provider that cannot be built."""
    for index, metric in enumerate(analysis.metrics):
        provider_for(metric.provider, sources, where=f"analysis.metrics[{index}].provider")


def replay(
    start: AnalysisRun,
    recorded: Sequence[RecordedMeasurement],
    resumed_after: Iterable[int] = (),
) -> tuple[AnalysisRun, int]:
    """Where an analysis stands after what was recorded, and how many looks that was.

    The measurements of one look share their time; ``resumed_after`` holds the number of
    looks after which a person resumed a paused analysis (its inconclusive rows start again).
    """
    resumes = set(resumed_after)
    run, looks = start, 0
    if 0 in resumes:
        run = run.resumed()
    for _at, rows in groupby(recorded, key=lambda row: row.measured_at):
        verdicts = {
            row.metric: Verdict(
                VerdictKind(row.verdict), row.reason, final=row.evidence is not None
            )
            for row in rows
        }
        run = run.after(verdicts)
        looks += 1
        if looks in resumes:
            run = run.resumed()
    return run, looks


def _measure(
    metric: AnalysisMetric,
    environment: str,
    version: str,
    baseline_version: str | None,
    sources: ProviderSources,
    masker: Masker | None,
) -> Measurement:
    """The provider's measurement, or no data saying why (a provider error is no data)."""
    source = f"{metric.provider} {metric.name} of {version}"
    fields = {name: value for name in _FIELDS if (value := getattr(metric, name)) is not None}
    try:
        query = MetricQuery(
            metric.name,
            environment,
            version,
            baseline=baseline_version,
            fields=fields,
            min_requests=(
                metric.min_requests if metric.min_requests is not None else DEFAULT_MIN_REQUESTS
            ),
        )
        measured = provider_for(metric.provider, sources).measure(query)
    except MetricsError as error:
        why = error.message + (f" ({error.hint})" if error.hint else "")
        measured = Measurement.no_data(why, source)
    if masker is None:
        return measured
    return replace(
        measured,
        source=masker.mask(measured.source),
        reason=None if measured.reason is None else masker.mask(measured.reason),
    )
