"""``shipyard analysis show``: a deployment's measurements, metric by metric, with verdicts."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from shipyard.cd import deployments
from shipyard.cli.context import Context
from shipyard.cli.options import JsonOption
from shipyard.cli.output import Output
from shipyard.core import measurements
from shipyard.core.measurements import RecordedMeasurement

app = typer.Typer(help="Analysis of deployments: measurements and verdicts.", no_args_is_help=True)


@app.callback()
def analysis() -> None:
    """Analysis of deployments: measurements and verdicts."""


@app.command("show")
def show(
    deployment_id: Annotated[int, typer.Argument(metavar="DEPLOYMENT")], json_: JsonOption = False
) -> None:
    """Each metric's measurements of a deployment: value, stable value, threshold, verdict, why."""
    out = Output(json_mode=json_)
    store = Context().store
    deployment = deployments.get(store, deployment_id)
    with store.read() as conn:
        found = measurements.for_deployment(conn, deployment_id)
    series: dict[str, list[RecordedMeasurement]] = {}
    for measurement in found:
        series.setdefault(measurement.metric, []).append(measurement)
    if json_:
        out.json(
            {
                "deployment": _deployment_json(deployment),
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
    for name, rows in series.items():
        out.line()
        out.table(
            ["time", "phase", "value", "stable", "threshold", "verdict", "reason"],
            [
                [
                    m.measured_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                    m.phase,
                    _number(m.value),
                    "-" if m.baseline_version is None else _number(m.baseline_value),
                    m.threshold,
                    m.verdict,
                    m.reason,
                ]
                for m in rows
            ],
            title=f"{name}: {_tally(rows)}",
        )


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
