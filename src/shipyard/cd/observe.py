"""Observing a new version while time passes: the analysis of a canary step and of the watch.

A strategy asks to observe for some seconds (a canary step's pause, the watch window once the
new version serves everything). Without an ``analysis`` section that is only waiting. With
one, the time is cut into looks of at least ``analysis.interval``; after each, every metric is
measured and judged (``monitor.runner``) and every measurement is stored before anything is
decided, so a driver that takes over after a crash rebuilds the analysis from the store and
goes on where it was. Too many failures in a row raise ``AnalysisFailed`` (the controller
rolls back and opens an incident); too many inconclusive looks pause the deployment for a
person, and a person's resume lets it go on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shipyard.cd.router.stats import RouterStats
from shipyard.cd.strategies.base import StepContext
from shipyard.cd.traffic import TrafficRouter
from shipyard.core import measurements
from shipyard.core.config.delivery import Analysis
from shipyard.core.errors import CheckFailed, ConfigError, ShipyardError
from shipyard.core.secrets import Masker
from shipyard.core.store import Store
from shipyard.monitor.analysis import AnalysisRun, RunOutcome, VerdictKind
from shipyard.monitor.providers import ProviderSources, TrafficSnapshot, VersionTraffic
from shipyard.monitor.runner import MetricLook, baselines, check_providers, look, replay

RESUMED = "analysis_resumed"
"""Progress key: the number of looks after which a person resumed a paused analysis."""

BASELINES = "analysis_baselines"
"""Progress key: the stable version's latest value of each metric that compares with it."""

WATCH = "watch"
"""The phase of the watch window (canary steps are ``step N``)."""

FAILED = "analysis_failed"
"""Progress key: why the analysis failed the new version (kept for a driver taking over)."""


class AnalysisFailed(CheckFailed):
    """The analysis judged the new version worse than allowed; it is rolled back."""


def traffic_snapshot(stats: RouterStats) -> TrafficSnapshot:
    """The router's statistics as the builtin metric provider reads them (weighted traffic and
    the feedback attributed to it)."""
    return TrafficSnapshot(
        {
            name: VersionTraffic(
                requests=version.requests,
                statuses={
                    status: count
                    for status, count in version.responses.items()
                    if status in ("1xx", "2xx", "3xx", "4xx", "5xx")
                },
                latencies=tuple(version.sample),
                window_seconds=version.window_seconds,
                complaints=version.complaints,
                scores=version.scores,
                score_sum=version.score_sum,
            )
            for name, version in stats.versions.items()
        }
    )


def _step_evidence(
    recorded: Sequence[measurements.RecordedMeasurement], phase: str
) -> dict[str, list[Mapping[str, float]]]:
    """Each metric's evidence from the looks of ``phase`` recorded so far, oldest first."""
    evidence: dict[str, list[Mapping[str, float]]] = {}
    for row in recorded:
        if row.phase == phase and row.evidence is not None:
            evidence.setdefault(row.metric, []).append(row.evidence)
    return evidence


def _decided_early(analysis: Analysis, phase: str, found: list[MetricLook]) -> bool:
    """Whether a canary step may end before its time: the sequential judge ruled the effects
    out (every metric passed, at least one by a sequential test). A watch never ends early:
    it is there for what shows only later."""
    return (
        analysis.judge.kind == "sequential"
        and phase != WATCH
        and any(item.evidence is not None for item in found)
        and all(item.verdict.kind is VerdictKind.PASSED for item in found)
    )


class _Window:
    """The router's statistics read once per look, each read starting a new window."""

    def __init__(self, router: TrafficRouter) -> None:
        self._router = router

    def take(self) -> ProviderSources:
        """What the providers read for the window that ends now (a new one begins)."""
        try:
            snapshot = traffic_snapshot(self._router.statistics(reset=True))
        except ShipyardError as error:
            failure = error

            def unreadable() -> TrafficSnapshot:
                raise failure

            return ProviderSources(traffic=unreadable)
        return ProviderSources(traffic=lambda: snapshot)


@dataclass
class Observer:
    """Runs the analysis of a deployment's observations and records every measurement."""

    store: Store
    masker: Masker
    on_event: Callable[[str], None] = lambda _text: None

    def check(self, ctx: StepContext) -> None:
        """Refuse, before anything starts, an analysis whose providers cannot be built here."""
        analysis = ctx.settings.analysis_config()
        if analysis is not None:
            check_providers(analysis, ProviderSources(traffic=lambda: TrafficSnapshot()))

    def observe(
        self, ctx: StepContext, phase: str, left: float, planned: float, baseline: str | None
    ) -> None:
        """Judge the new version after every interval of the ``planned`` seconds of ``phase``.

        The planned time makes ``planned / interval`` looks (at least one), each a window of
        that length. Looks recorded already (by a driver before this one) are not made again;
        the ones left each take a whole window, so a takeover lengthens the phase rather than
        judge on less traffic. Without an analysis, only what is ``left`` of the time passes.
        """
        analysis = ctx.settings.analysis_config()
        if analysis is None:
            if left > 0:
                ctx.wait(left)
            return
        recorded = self._recorded(ctx)
        self._settle(ctx, analysis, recorded)
        planned_looks = max(1, round(planned / analysis.interval.total_seconds()))
        every = planned / planned_looks
        looks = planned_looks - len({row.measured_at for row in recorded if row.phase == phase})
        if looks <= 0:
            return
        judge = analysis.judge
        if (
            judge.kind == "sequential"
            and judge.test == "conditional"
            and not ctx.router.assigns_at_random()
        ):
            raise ConfigError(
                f"the conditional test assumes that requests go to a version at random, "
                f"but the router of {ctx.settings.environment} routes sticky now",
                hint="use judge: {kind: sequential, test: msprt}, or turn stickiness off "
                "(shipyard router weights)",
            )
        window = _Window(ctx.router)
        before = window.take()  # what happened before this observation: the stable's history
        if baseline and baseline != ctx.release.version:
            self._keep_baselines(
                ctx,
                baselines(
                    analysis,
                    environment=ctx.settings.environment,
                    baseline_version=baseline,
                    sources=before,
                    masker=self.masker,
                ),
            )
        for index in range(looks):
            ctx.wait(every)
            found = look(
                analysis,
                environment=ctx.settings.environment,
                version=ctx.release.version,
                baseline_version=baseline,
                sources=window.take(),
                earlier_baselines=ctx.progress.get(BASELINES, {}),
                masker=self.masker,
                step_evidence=_step_evidence(recorded, phase),
                last_look=index == looks - 1,
            )
            self._record(ctx, phase, baseline, found)
            self._keep_baselines(
                ctx,
                {
                    item.metric: item.baseline.value
                    for item in found
                    if item.baseline is not None and item.baseline.value is not None
                },
            )
            recorded = self._recorded(ctx)
            self._settle(ctx, analysis, recorded)
            if _decided_early(analysis, phase, found):
                self.on_event(f"analysis ({phase}): every metric passed; the step ends early")
                return

    def _recorded(self, ctx: StepContext) -> list[measurements.RecordedMeasurement]:
        """The deployment's measurements so far, oldest first (read once a look)."""
        with self.store.read() as conn:
            return measurements.for_deployment(conn, ctx.deployment_id)

    def _record(
        self, ctx: StepContext, phase: str, baseline: str | None, found: list[MetricLook]
    ) -> None:
        now = datetime.now(UTC)
        with self.store.write() as conn:
            for item in found:
                measurements.record(
                    conn,
                    deployment_id=ctx.deployment_id,
                    environment=ctx.settings.environment,
                    phase=phase,
                    metric=item.metric,
                    version=ctx.release.version,
                    baseline_version=baseline if item.baseline is not None else None,
                    value=item.canary.value,
                    baseline_value=item.baseline.value if item.baseline is not None else None,
                    threshold=item.judged_by,
                    verdict=item.verdict.kind.value,
                    reason=item.verdict.reason,
                    measured_at=now,
                    evidence=item.evidence,
                )
        shown = "; ".join(f"{item.verdict.kind.value}: {item.verdict.reason}" for item in found)
        self.on_event(f"analysis ({phase}): {shown}")

    def _keep_baselines(self, ctx: StepContext, values: Mapping[str, float]) -> None:
        if not values:
            return
        kept: dict[str, Any] = {**ctx.progress.get(BASELINES, {}), **values}
        ctx.progress[BASELINES] = kept
        ctx.save(ctx.progress)

    def _settle(
        self,
        ctx: StepContext,
        analysis: Analysis,
        recorded: Sequence[measurements.RecordedMeasurement],
    ) -> None:
        """Act on where the analysis stands after ``recorded``: fail, wait for a person, or
        go on."""
        resumed = [int(n) for n in ctx.progress.get(RESUMED, [])]
        run, looks = replay(AnalysisRun.start(analysis), recorded, resumed)
        if run.outcome is RunOutcome.FAIL:
            ctx.progress[FAILED] = run.reason
            ctx.save(ctx.progress)
            raise AnalysisFailed(
                f"the analysis failed {ctx.release.version}: {run.reason}",
                hint=f"see 'shipyard analysis show {ctx.deployment_id}'",
            )
        if run.outcome is RunOutcome.PAUSE:
            ctx.wait_for_person(
                f"analysis-{looks}", f"the analysis cannot tell whether it is good: {run.reason}"
            )
            ctx.progress[RESUMED] = [*resumed, looks]  # a person resumed: go on
            ctx.save(ctx.progress)
