"""``shipyard analysis show``: a deployment's measurements by metric, with verdicts and scores.

It explains what the analysis recorded — each metric's series, the judge it was made with, a
Kayenta-like score of each phase's last look, the numbers behind a sequential verdict — and
judges nothing again: the verdicts shown are the ones the deployment acted on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import typer

from shipyard.cd import deployments
from shipyard.cd.settings import DeploySettings
from shipyard.cli.context import Context
from shipyard.cli.options import JsonOption
from shipyard.cli.output import Output
from shipyard.core import measurements
from shipyard.core.config.delivery import Judge
from shipyard.core.errors import ConfigError
from shipyard.core.measurements import RecordedMeasurement
from shipyard.monitor.statistics import Decision, DecisionKind, Score, score
from shipyard.monitor.statistics.decision import number, percent

app = typer.Typer(help="Analysis of deployments: measurements and verdicts.", no_args_is_help=True)

EvidenceOption = Annotated[
    bool,
    typer.Option("--evidence", help="Add a column with the numbers behind sequential verdicts."),
]

_TIME = "%Y-%m-%d %H:%M:%S UTC"

_COUNTED = {
    "pass": DecisionKind.PASSED,
    "fail": DecisionKind.FAILED,
    "inconclusive": DecisionKind.INCONCLUSIVE,
}
"""The verdicts a score knows; ``undecided`` (a sequential test still looking) is listed apart."""


@dataclass(frozen=True)
class PhaseScore:
    """The score of one phase's last look (``step 2``, ``watch``), and its undecided metrics."""

    phase: str
    last_look: datetime
    score: Score
    undecided: tuple[str, ...]

    def describe(self) -> str:
        """The score as a sentence, the metrics it leaves out named."""
        if self.score.value is not None:
            parts = [self.score.describe()]
        else:
            parts = ["no data: no metric passed or failed"]
            if self.score.inconclusive:
                parts.append(f"inconclusive, not counted: {', '.join(self.score.inconclusive)}")
        if self.undecided:
            parts.append(f"undecided, not counted: {', '.join(self.undecided)}")
        return f"{self.phase} (last look {self.last_look.strftime(_TIME)}): {'; '.join(parts)}"

    def as_json(self) -> dict[str, Any]:
        """The score as plain JSON values."""
        return {
            "phase": self.phase,
            "last_look": self.last_look.isoformat(),
            "score": self.score.value,
            "label": self.score.label.value,
            "pass_score": self.score.pass_at,
            "marginal_score": self.score.marginal_at,
            "passed": list(self.score.passed),
            "failed": list(self.score.failed),
            "undecided": list(self.undecided),
            "inconclusive": list(self.score.inconclusive),
        }


@app.callback()
def analysis() -> None:
    """Analysis of deployments: measurements and verdicts."""


@app.command("show")
def show(
    deployment_id: Annotated[int, typer.Argument(metavar="DEPLOYMENT")],
    json_: JsonOption = False,
    evidence: EvidenceOption = False,
) -> None:
    """Each metric's measurements of a deployment, and the score of each phase's last look.

    Text shows value, stable value, threshold, verdict and why; ``--evidence`` adds the
    numbers behind sequential verdicts, which ``--json`` always has.
    """
    out = Output(json_mode=json_)
    store = Context().store
    deployment = deployments.get(store, deployment_id)
    with store.read() as conn:
        found = measurements.for_deployment(conn, deployment_id)
    judge = _recorded_judge(deployment, out)
    scores = phase_scores(found, judge or Judge())
    series: dict[str, list[RecordedMeasurement]] = {}
    for measurement in found:
        series.setdefault(measurement.metric, []).append(measurement)
    if json_:
        out.json(
            {
                "deployment": _deployment_json(deployment),
                "judge": None if judge is None else judge.model_dump(mode="json"),
                "scores": [phase.as_json() for phase in scores],
                "metrics": [
                    {"metric": name, "measurements": [m.as_json() for m in rows]}
                    for name, rows in series.items()
                ],
            }
        )
        return
    out.line(_heading(deployment))
    if not series:
        out.line(
            f"deployment {deployment_id} has no measurements: its environment has no analysis, "
            "or the analysis has not measured anything yet"
        )
        return
    if judge is not None:
        out.line(_describe_judge(judge))
    out.line()
    out.line("score of each phase's last look:")
    for phase in scores:
        out.line(f"  {phase.describe()}")
    columns = ["time", "phase", "value", "stable", "threshold", "verdict", "reason"]
    for name, rows in series.items():
        out.line()
        out.table(
            [*columns, "evidence"] if evidence else columns,
            [_row(m, evidence=evidence) for m in rows],
            title=f"{name}: {_tally(rows)}",
        )


def phase_scores(found: Sequence[RecordedMeasurement], judge: Judge) -> list[PhaseScore]:
    """Each phase's score at its last look, in the order the phases began.

    ``found`` is oldest first, as stored; the measurements of one look share their time.
    Undecided and inconclusive metrics are named but not counted.
    """
    last_looks: dict[str, list[RecordedMeasurement]] = {}
    for row in found:
        look = last_looks.setdefault(row.phase, [])
        if look and look[0].measured_at != row.measured_at:
            look.clear()
        look.append(row)
    scores = []
    for phase, rows in last_looks.items():
        decisions = {
            row.metric: Decision(_COUNTED[row.verdict], row.reason)
            for row in rows
            if row.verdict in _COUNTED
        }
        scored = score(decisions, pass_at=judge.pass_score, marginal_at=judge.marginal_score)
        undecided = tuple(row.metric for row in rows if row.verdict == "undecided")
        scores.append(PhaseScore(phase, rows[0].measured_at, scored, undecided))
    return scores


def _recorded_judge(deployment: deployments.Deployment, out: Output) -> Judge | None:
    """The judge of the analysis recorded with the deployment; None without one."""
    recorded = deployment.settings.get("deploy")
    if recorded is None:
        return None
    try:
        analysis_config = DeploySettings.from_json(recorded).analysis_config()
    except ConfigError as error:
        out.warn(f"{error.message}; the scores use the default pass and marginal scores")
        return None
    return None if analysis_config is None else analysis_config.judge


def _describe_judge(judge: Judge) -> str:
    if judge.kind == "threshold":
        return "judge: thresholds (each metric's max, min and max_increase)"
    test = (
        "an mSPRT" if judge.test == "msprt" else "the conditional test (assumes random assignment)"
    )
    return (
        f"judge: sequential while canary and stable both serve — builtin error_rate by {test}, "
        f"latencies by Mann-Whitney; alpha {judge.alpha:g} for each metric in each step, "
        f"min_effect {judge.min_effect:g}, min_samples {judge.min_samples}. Thresholds judge the "
        "other metrics and the watch."
    )


def _row(m: RecordedMeasurement, *, evidence: bool) -> list[str]:
    row = [
        m.measured_at.strftime(_TIME),
        m.phase,
        _number(m.value),
        "-" if m.baseline_version is None else _number(m.baseline_value),
        m.threshold,
        m.verdict,
        m.reason,
    ]
    return [*row, evidence_text(m.evidence)] if evidence else row


def _count(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else number(value)


_EVIDENCE_GROUPS: tuple[tuple[tuple[str, ...], Callable[..., str]], ...] = (
    (("look",), lambda look: f"look {_count(look)}"),
    (
        ("canary_errors", "canary_requests", "base_errors", "base_requests"),
        lambda ce, cr, be, br: (
            f"step so far: canary {_count(ce)}/{_count(cr)} errors, "
            f"stable {_count(be)}/{_count(br)}"
        ),
    ),
    (
        (
            "window_canary_errors",
            "window_canary_requests",
            "window_base_errors",
            "window_base_requests",
        ),
        lambda ce, cr, be, br: (
            f"this look: canary {_count(ce)}/{_count(cr)}, stable {_count(be)}/{_count(br)}"
        ),
    ),
    (("canary_share",), lambda share: f"canary share {percent(share)}"),
    (
        ("likelihood_ratio", "threshold"),
        lambda ratio, bar: f"likelihood ratio {number(ratio)} (fails at {number(bar)})",
    ),
    (
        ("difference", "lower", "upper"),
        lambda d, low, up: f"canary - stable {number(d)}, within [{number(low)}, {number(up)}]",
    ),
    (("lower", "upper"), lambda low, up: f"canary - stable within [{number(low)}, {number(up)}]"),
    (("min_effect",), lambda effect: f"min_effect {number(effect)}"),
    (("p", "alpha_look"), lambda p, bar: f"p {number(p)} (fails at or below {number(bar)})"),
    (
        ("canary_median", "base_median"),
        lambda canary, base: f"median canary {number(canary)} s, stable {number(base)} s",
    ),
    (
        ("canary_samples", "base_samples"),
        lambda canary, base: f"samples canary {_count(canary)}, stable {_count(base)}",
    ),
    (("u", "z"), lambda u, z: f"U {number(u)}, z {number(z)}"),
)
"""How the numbers of a sequential verdict read, in order; the first group that fits takes them."""

_SHOWN_ELSEWHERE = frozenset({"alpha", "canary_rate", "base_rate"})
"""Evidence the text shows already (the judge's line, the value and stable columns)."""


def evidence_text(evidence: Mapping[str, float] | None) -> str:
    """The numbers behind a verdict, grouped as a person reads them; ``-`` without any."""
    if not evidence:
        return "-"
    left = dict(evidence)
    parts = []
    for keys, shown in _EVIDENCE_GROUPS:
        if all(key in left for key in keys):
            parts.append(shown(*(left.pop(key) for key in keys)))
    parts += [
        f"{key} {number(value)}"
        for key, value in sorted(left.items())
        if key not in _SHOWN_ELSEWHERE
    ]
    return "; ".join(parts) or "-"


def _deployment_json(deployment: deployments.Deployment) -> dict[str, Any]:
    full = deployment.as_json()
    keys = ("id", "project", "environment", "version", "previous_version", "strategy", "status")
    return {key: full.get(key) for key in keys}


def _heading(deployment: deployments.Deployment) -> str:
    stable = f", stable {deployment.previous_version}" if deployment.previous_version else ""
    return (
        f"deployment {deployment.id}: {deployment.project} {deployment.version}{stable} "
        f"in {deployment.environment} ({deployment.strategy}, {deployment.status})"
    )


def _tally(rows: list[RecordedMeasurement]) -> str:
    counts = dict.fromkeys(measurements.VERDICT_NAMES, 0)
    for row in rows:
        counts[row.verdict] += 1
    return ", ".join(f"{count} {verdict}" for verdict, count in counts.items() if count)


def _number(value: float | None) -> str:
    return "no data" if value is None else f"{value:.6g}"
