"""The delivery report: one self-contained HTML page of charts and tables that people look at.

DORA's figures and their trend, the deployments with their rollbacks and incidents, the gates
that failed, pipeline durations and flaky jobs. Charts are drawn with matplotlib as inline SVG
whose text is drawn as paths, so the page needs no script, font or network to be read.
matplotlib is imported only when a chart is drawn; nothing here writes to the store.
"""

from __future__ import annotations

import html
import io
import math
import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select

from shipyard.core.errors import ArgumentError
from shipyard.core.store.tables import gate_results, gate_runs, runs
from shipyard.monitor import dora
from shipyard.monitor.dora import DAY, WEEK, Band, History, Period, Scorecard

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

BAND_COLOURS = {
    Band.ELITE: "#1b5e20",
    Band.HIGH: "#2e7d32",
    Band.MEDIUM: "#f9a825",
    Band.LOW: "#c62828",
}
STATUS_STYLE = {  # (label, marker, colour) of a deployment on the timeline
    ("deploy", "succeeded"): ("deployed", "o", "#2e7d32"),
    ("deploy", "rolled_back"): ("rolled back", "X", "#c62828"),
    ("deploy", "failed"): ("failed", "v", "#6a1b9a"),
    ("rollback", "succeeded"): ("rollback", "<", "#ef6c00"),
    ("rollback", "rolled_back"): ("rollback undone", "<", "#c62828"),
    ("rollback", "failed"): ("rollback failed", "<", "#6a1b9a"),
}
RUN_COLOURS = {"passed": "#2e7d32", "failed": "#c62828", "cancelled": "#9e9e9e"}
INCIDENT_COLOUR = "#ef9a9a"
MOST_FLAKY = 12
"""How many of the flakiest jobs the chart shows."""
NO_ENVIRONMENTS = "no environments yet"
NO_DEPLOYMENTS = "no deployment finished in this period"
NO_GATE_FAILURES = "no gate failed in this period"
NO_RUNS = "no pipeline run finished in this period"
NO_FLAKY_JOBS = "no flaky job in this period"


@dataclass(frozen=True)
class PipelineRun:
    """A finished pipeline run: how it ended, when, and how long it took."""

    id: int
    status: str
    finished_at: datetime
    duration_s: float


@dataclass(frozen=True)
class GateFailure:
    """How often one gate failed in gate runs of one kind (release, deploy), and how many of
    those failures a person overrode."""

    gate: str
    kind: str
    failures: int
    overridden: int


@dataclass(frozen=True)
class FlakyJob:
    """A job recorded as flaky: it failed, then passed with the same cache key
    (``shipyard runs flaky``)."""

    name: str
    job: str
    run: int
    attempts: int
    commit: str

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> FlakyJob:
        """One entry of ``ci.runs.flaky_jobs``."""
        return cls(
            name=str(value["name"]),
            job=str(value["job"]),
            run=int(value["run"]),
            attempts=int(value["attempts"]),
            commit=str(value["commit"]),
        )


@dataclass(frozen=True)
class ReportData:
    """Everything one report shows."""

    project: str
    period: Period
    generated_at: datetime
    environments: tuple[str, ...]
    history: History
    runs: tuple[PipelineRun, ...] = ()
    gate_failures: tuple[GateFailure, ...] = ()
    flaky: tuple[FlakyJob, ...] = ()
    rework_window: timedelta = dora.REWORK_WINDOW


# -- readers ----------------------------------------------------------------------------------


def read_runs(conn: Connection, project: str, period: Period) -> tuple[PipelineRun, ...]:
    """The project's pipeline runs that finished in ``period``, oldest first."""
    rows = conn.execute(
        select(runs.c.id, runs.c.status, runs.c.started_at, runs.c.finished_at)
        .where(
            runs.c.project == project,
            runs.c.started_at.is_not(None),
            runs.c.finished_at >= period.start,
            runs.c.finished_at < period.end,
        )
        .order_by(runs.c.finished_at, runs.c.id)
    )
    return tuple(
        PipelineRun(
            id=int(row.id),
            status=row.status,
            finished_at=row.finished_at,
            duration_s=(row.finished_at - row.started_at).total_seconds(),
        )
        for row in rows
    )


def read_gate_failures(conn: Connection, project: str, period: Period) -> tuple[GateFailure, ...]:
    """How often each gate failed in the project's gate runs started in ``period``."""
    rows = conn.execute(
        select(
            gate_results.c.gate,
            gate_runs.c.kind,
            func.count().label("failures"),
            func.count(gate_results.c.overridden_by).label("overridden"),
        )
        .join(gate_runs, gate_runs.c.id == gate_results.c.run_id)
        .where(
            gate_runs.c.project == project,
            gate_results.c.status == "fail",
            gate_runs.c.started_at >= period.start,
            gate_runs.c.started_at < period.end,
        )
        .group_by(gate_results.c.gate, gate_runs.c.kind)
        .order_by(gate_results.c.gate, gate_runs.c.kind)
    )
    return tuple(
        GateFailure(row.gate, row.kind, int(row.failures), int(row.overridden)) for row in rows
    )


# -- the page ---------------------------------------------------------------------------------


def write(data: ReportData, path: Path) -> Path:
    """Write the report to ``path`` (whole: a reader never sees half a page); its path."""
    target = path.expanduser()
    if target.is_dir():
        raise ArgumentError(
            f"{target} is a directory", hint="give a file name, such as -o report.html"
        )
    if not target.parent.is_dir():
        raise ArgumentError(
            f"cannot write {target}: the directory {target.parent} does not exist",
            hint="create it first, or give another path with -o",
        )
    page = render(data)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        partial.write_text(page, encoding="utf-8")
        partial.replace(target)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise ArgumentError(
            f"cannot write {target}: {error.strerror or error}",
            hint="choose a path you may write to, with -o",
        ) from None
    return target


def render(data: ReportData) -> str:
    """The report as one HTML document with its charts inline."""
    cards = [
        dora.compute(data.history, env, data.period, rework_window=data.rework_window)
        for env in data.environments
    ]
    period = data.period
    when = (
        f"{period.start:%Y-%m-%d %H:%M} → {period.end:%Y-%m-%d %H:%M} UTC "
        f"({dora.show_length(period.end - period.start)})"
    )
    sections = [
        _section(
            "dora",
            "DORA metrics",
            _scorecards(cards)
            + _figure(
                "chart-dora-trends",
                _trend_chart(data),
                f"Each environment's figures per {_step_name(_trend_step(period))}. "
                "Definitions and bands: docs/dora.md.",
                None if data.environments else NO_ENVIRONMENTS,
            ),
        ),
        _section(
            "deployments",
            "Deployments",
            _figure(
                "chart-deployments",
                _timeline_chart(data),
                "Every finished deployment, by environment; incidents are shaded from opening "
                "until service was restored.",
                None if _finished_deployments(data) else NO_DEPLOYMENTS,
            ),
        ),
        _section(
            "gates",
            "Gate failures",
            _figure(
                "chart-gates",
                _gate_chart(data.gate_failures),
                "Failed results by gate, release gates and deploy checks apart.",
                None if data.gate_failures else NO_GATE_FAILURES,
            ),
        ),
        _section(
            "pipelines",
            "Pipelines",
            _figure(
                "chart-pipelines",
                _pipeline_chart(data),
                "Duration of each finished pipeline run; the dashed line is the median.",
                None if data.runs else NO_RUNS,
            )
            + _figure(
                "chart-flaky",
                _flaky_chart(data.flaky),
                "Jobs that failed, then passed with the same inputs: flaky, not fixed.",
                None if data.flaky else NO_FLAKY_JOBS,
            )
            + _flaky_table(data.flaky),
        ),
    ]
    title = f"{data.project} · delivery report"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title>",
            f"<style>{_STYLE}</style>",
            "</head>",
            "<body>",
            f"<header><h1>{_e(title)}</h1>",
            f"<p>{_e(when)} · generated {data.generated_at:%Y-%m-%d %H:%M} UTC by Shipyard</p>",
            "</header>",
            *sections,
            "</body>",
            "</html>",
            "",
        ]
    )


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:72rem;
padding:0 1rem;color:#212121;background:#fff}
h1{font-size:1.6rem;margin-bottom:.2rem}header p{color:#616161;margin-top:0}
h2{font-size:1.25rem;border-bottom:1px solid #e0e0e0;padding-bottom:.3rem;margin-top:2.5rem}
table{border-collapse:collapse;margin:1rem 0;font-size:.92rem}
th,td{border:1px solid #e0e0e0;padding:.35rem .6rem;text-align:left;vertical-align:top}
th{background:#fafafa}td small{color:#616161}
.band{display:inline-block;border-radius:.6rem;padding:0 .5rem;color:#fff;font-size:.8rem;
margin-left:.3rem}
.band-elite{background:#1b5e20}.band-high{background:#2e7d32}
.band-medium{background:#f9a825;color:#212121}.band-low{background:#c62828}
.band-none{background:#9e9e9e}
figure{margin:1rem 0}figure svg{max-width:100%;height:auto;display:block}
figcaption{color:#616161;font-size:.88rem}
.empty{color:#616161;font-style:italic}
"""


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}">\n<h2>{_e(title)}</h2>\n{body}\n</section>'


def _figure(anchor: str, svg: str, caption: str, empty: str | None = None) -> str:
    """A chart and its caption; ``empty`` says in words why the chart has nothing to show
    (the chart's own text is drawn, so a reader could not select or search it)."""
    note = "" if empty is None else f'<p class="empty">{_e(empty.capitalize())}.</p>\n'
    return (
        f'<figure id="{anchor}" class="chart">\n{svg}\n{note}'
        f"<figcaption>{_e(caption)}</figcaption>\n</figure>\n"
    )


def _scorecards(cards: Sequence[Scorecard]) -> str:
    if not cards:
        return '<p class="empty">No environments yet.</p>\n'
    head = "".join(f"<th>{_e(card.environment)}</th>" for card in cards)
    rows = []
    for index, name in enumerate(dora.LABELS.values()):
        cells = []
        for card in cards:
            metric = card.metrics[index]
            band = metric.band.value if metric.band else "none"
            cells.append(
                f"<td>{_e(dora.show_value(metric))}"
                f'<span class="band band-{band}">{_e(dora.show_band(metric))}</span>'
                f"<br><small>{_e(dora.show_basis(metric))}</small></td>"
            )
        rows.append(f"<tr><th>{_e(name)}</th>{''.join(cells)}</tr>")
    return (
        f'<table id="scorecards"><thead><tr><th></th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>\n"
    )


def _flaky_table(flaky: Sequence[FlakyJob]) -> str:
    if not flaky:
        return ""
    rows = "".join(
        f"<tr><td>{_e(job.job)}</td><td>{job.run}</td><td>{job.attempts}</td>"
        f"<td><code>{_e(job.commit[:12])}</code></td></tr>"
        for job in flaky
    )
    return (
        '<table id="flaky-jobs"><thead><tr><th>job</th><th>run</th><th>attempts</th>'
        f"<th>commit</th></tr></thead><tbody>{rows}</tbody></table>\n"
    )


def _e(text: str) -> str:
    return html.escape(text, quote=True)


# -- charts -----------------------------------------------------------------------------------


def _trend_step(period: Period) -> timedelta:
    if period.days >= 28:
        return WEEK
    if period.days >= 3:
        return DAY
    return timedelta(hours=1)


def _step_name(step: timedelta) -> str:
    return {WEEK: "week", DAY: "day"}.get(step, "hour")


def _trend_chart(data: ReportData) -> str:
    step = _trend_step(data.period)
    fig = _new_figure(10.0, 6.2)
    panels = fig.subplots(2, 3).flatten()
    names = list(dora.LABELS.values())
    if not data.environments:
        for ax in panels:
            ax.set_axis_off()
        _nothing(panels[1], NO_ENVIRONMENTS)
        return _svg(fig, "trends")
    width = step / DAY * 0.8 / len(data.environments)
    for number, env in enumerate(data.environments):
        colour = _palette(number)
        cards = dora.trend(data.history, env, data.period, step, rework_window=data.rework_window)
        starts = [_day_number(card.period.start) + width * number for card in cards]
        counts = [card.deployment_frequency.counts["deployments"] for card in cards]
        panels[0].bar(starts, counts, width=width, color=colour, align="edge", label=env)
        series = [
            [_hours(card.lead_time.value) for card in cards],
            [_percent(card.change_failure_rate.value) for card in cards],
            [_hours(card.recovery_time.value) for card in cards],
            [_percent(card.rework_rate.value) for card in cards],
        ]
        middles = [
            (_day_number(card.period.start) + _day_number(card.period.end)) / 2 for card in cards
        ]
        for ax, values in zip(panels[1:5], series, strict=True):
            ax.plot(middles, values, marker="o", color=colour, label=env)
    units = [
        f"successful deployments per {_step_name(step)}",
        "median, hours",
        "% of deployments",
        "median, hours",
        "% of deployments",
    ]
    for ax, name, unit in zip(panels[:5], names, units, strict=True):
        ax.set_title(name, fontsize=10)
        ax.set_ylabel(unit, fontsize=8)
        ax.set_ylim(bottom=0)
        _time_axis(ax, data.period)
    _whole_numbers(panels[0], axis="y")
    handles, labels = panels[0].get_legend_handles_labels()
    panels[5].set_axis_off()
    panels[5].legend(handles, labels, loc="center", title="environment", frameon=False)
    return _svg(fig, "trends")


def _timeline_chart(data: ReportData) -> str:
    envs = list(data.environments)
    fig = _new_figure(10.0, 1.6 + 0.7 * max(len(envs), 1))
    ax = fig.subplots()
    if not envs:
        _nothing(ax, NO_ENVIRONMENTS)
        return _svg(fig, "timeline")
    seen: set[str] = set()
    for row, env in enumerate(envs):
        spans = _incident_spans(data, env)
        if spans:
            ax.broken_barh(
                spans,
                (row - 0.3, 0.6),
                facecolors=INCIDENT_COLOUR,
                alpha=0.6,
                label="" if "incident" in seen else "incident",
            )
            seen.add("incident")
        # One collection per kind of marker: thousands of single markers draw slowly.
        marks: dict[tuple[str, str, str], list[float]] = {}
        for d in data.history.deployments:
            finished = d.finished_at
            if d.environment != env or not d.finished or finished not in data.period:
                continue
            assert finished is not None
            style = STATUS_STYLE.get((d.kind, d.status), (f"{d.kind} {d.status}", "s", "#616161"))
            marks.setdefault(style, []).append(_day_number(finished))
        for (label, marker, colour), moments in marks.items():
            ax.scatter(
                moments,
                [row] * len(moments),
                marker=marker,
                color=colour,
                s=70,
                zorder=3,
                label="" if label in seen else label,
            )
            seen.add(label)
    ax.set_yticks(range(len(envs)), envs)
    ax.set_ylim(-0.7, len(envs) - 0.3)
    ax.invert_yaxis()
    _time_axis(ax, data.period)
    ax.grid(axis="x", color="#eeeeee")
    if _finished_deployments(data):
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    else:
        ax.text(0.5, 0.5, NO_DEPLOYMENTS, ha="center", va="center", transform=ax.transAxes)
    return _svg(fig, "timeline")


def _incident_spans(data: ReportData, env: str) -> list[tuple[float, float]]:
    """Where and how long each incident of ``env`` lasted within the period, in day numbers."""
    spans = []
    for incident in data.history.incidents:
        if incident.environment != env:
            continue
        start = max(incident.opened_at, data.period.start)
        end = min(incident.restored_at or data.period.end, data.period.end)
        if end > start:
            left = _day_number(start)
            spans.append((left, _day_number(end) - left))
    return spans


def _gate_chart(failures: Sequence[GateFailure]) -> str:
    fig = _new_figure(10.0, 1.4 + 0.45 * max(len({f.gate for f in failures}), 2))
    ax = fig.subplots()
    if not failures:
        _nothing(ax, NO_GATE_FAILURES)
        return _svg(fig, "gates")
    gates = sorted({f.gate for f in failures})
    kinds = sorted({f.kind for f in failures})
    left = [0] * len(gates)
    for number, kind in enumerate(kinds):
        counts = [
            sum(f.failures for f in failures if f.gate == gate and f.kind == kind) for gate in gates
        ]
        ax.barh(gates, counts, left=left, color=_palette(number + 2), label=f"{kind} gates")
        left = [a + b for a, b in zip(left, counts, strict=True)]
    ax.set_xlabel("failed results")
    ax.invert_yaxis()
    _whole_numbers(ax)
    ax.legend(frameon=False, fontsize=8)
    return _svg(fig, "gates")


def _pipeline_chart(data: ReportData) -> str:
    fig = _new_figure(10.0, 3.4)
    ax = fig.subplots()
    if not data.runs:
        _nothing(ax, NO_RUNS)
        return _svg(fig, "pipelines")
    for status in sorted({run.status for run in data.runs}):
        chosen = [run for run in data.runs if run.status == status]
        ax.scatter(
            [_day_number(run.finished_at) for run in chosen],
            [run.duration_s / 60 for run in chosen],
            color=RUN_COLOURS.get(status, "#616161"),
            label=f"{status} ({len(chosen)})",
            s=28,
            zorder=3,
        )
    median = statistics.median(run.duration_s for run in data.runs) / 60
    ax.axhline(median, color="#424242", linestyle="--", linewidth=1, label="median")
    ax.set_ylabel("minutes")
    ax.set_ylim(bottom=0)
    _time_axis(ax, data.period)
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _svg(fig, "pipelines")


def _flaky_chart(flaky: Sequence[FlakyJob]) -> str:
    counts: dict[str, int] = {}
    for job in flaky:
        counts[job.name] = counts.get(job.name, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:MOST_FLAKY]
    fig = _new_figure(10.0, 1.4 + 0.4 * max(len(ranked), 2))
    ax = fig.subplots()
    if not ranked:
        _nothing(ax, NO_FLAKY_JOBS)
        return _svg(fig, "flaky")
    ax.barh([name for name, _ in ranked], [count for _, count in ranked], color="#ef6c00")
    ax.set_xlabel("runs in which the job was flaky")
    ax.invert_yaxis()
    _whole_numbers(ax)
    return _svg(fig, "flaky")


def _finished_deployments(data: ReportData) -> int:
    return sum(
        1
        for d in data.history.deployments
        if d.environment in data.environments and d.finished and d.finished_at in data.period
    )


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _time_axis(ax: Axes, period: Period) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    zone = period.start.tzinfo
    locator = AutoDateLocator(tz=zone, maxticks=8)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz=zone))  # type: ignore[no-untyped-call]
    ax.set_xlim(_day_number(period.start), _day_number(period.end))
    ax.tick_params(labelsize=8)


def _day_number(moment: datetime) -> float:
    """Where a moment falls on a matplotlib date axis."""
    from matplotlib.dates import date2num

    return float(date2num(moment))  # type: ignore[no-untyped-call]


def _whole_numbers(ax: Axes, axis: str = "x") -> None:
    from matplotlib.ticker import MaxNLocator

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_locator(MaxNLocator(integer=True))


def _nothing(ax: Axes, message: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#616161")


def _svg(fig: Figure, salt: str) -> str:
    """The figure as an ``<svg>`` element; its ids differ from the other charts' on the page."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": salt}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _palette(number: int) -> str:
    colours = ("#1565c0", "#00897b", "#8e24aa", "#f4511e", "#6d4c41", "#3949ab", "#c0ca33")
    return colours[number % len(colours)]


def _hours(seconds: float | None) -> float:
    return math.nan if seconds is None else seconds / 3600


def _percent(ratio: float | None) -> float:
    return math.nan if ratio is None else ratio * 100


def environments_of(configured: Iterable[str], history: History) -> tuple[str, ...]:
    """shipyard.yaml's environments, then any others that were deployed to."""
    return tuple(dict.fromkeys([*configured, *history.environments()]))
