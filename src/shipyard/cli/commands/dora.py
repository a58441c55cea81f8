"""``shipyard dora``: the five DORA metrics of each environment over a period, with their bands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli.context import Context
from shipyard.cli.options import FileOption, JsonOption
from shipyard.cli.output import Output
from shipyard.core.config import ShipyardConfig, find_config, load_config, parse_duration
from shipyard.core.errors import ArgumentError
from shipyard.core.git import Git
from shipyard.monitor import dora
from shipyard.monitor.dora import History, Metric, Period, Scorecard

LABELS = {
    "deployment_frequency": "deployment frequency",
    "lead_time": "lead time for changes",
    "change_failure_rate": "change failure rate",
    "recovery_time": "failed deployment recovery time",
    "rework_rate": "rework rate",
}


def _duration(value: str) -> timedelta:
    try:
        parsed = parse_duration(value)
    except ValueError as error:  # pydantic's custom error is a ValueError
        raise typer.BadParameter(f"{value!r} is not a duration; write 7d, 30d or 12h") from error
    if parsed <= timedelta(0):
        raise typer.BadParameter(f"{value!r} is no time at all; write 7d, 30d or 12h")
    return parsed


SinceOption = Annotated[
    timedelta,
    typer.Option(
        "--since",
        parser=_duration,
        metavar="DURATION",
        show_default="30d",
        help="How far back to look (e.g. 7d, 30d, 90d).",
    ),
]
ReworkOption = Annotated[
    timedelta,
    typer.Option(
        "--rework-window",
        parser=_duration,
        metavar="DURATION",
        show_default="1d",
        help="A deployment this soon after a failure counts as rework.",
    ),
]
EnvOption = Annotated[
    str | None, typer.Option("--env", "-e", metavar="ENV", help="Only this environment.")
]


def dora_command(
    env: EnvOption = None,
    since: SinceOption = timedelta(days=30),
    rework_window: ReworkOption = dora.REWORK_WINDOW,
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """The DORA metrics of each environment: deployment frequency, lead time for changes,
    change failure rate, failed deployment recovery time and rework rate, with their bands."""
    out = Output(json_mode=json_)
    ctx = Context()
    config = project_config(file, ctx)
    period = Period.last(since, end=datetime.now(UTC))
    history = read_history(ctx, config.project, since=period.start, out=out)
    names = chosen_environments(config, history, env)
    cards = [dora.compute(history, name, period, rework_window=rework_window) for name in names]
    if json_:
        out.json(
            {
                "project": config.project,
                **period.as_json(),
                "rework_window_s": rework_window.total_seconds(),
                "environments": [card.as_json() for card in cards],
            }
        )
        return
    if not cards:
        out.line(f"{config.project} has no environments yet; add some to shipyard.yaml")
        return
    for card in cards:
        _print(out, config.project, card)


def project_config(file: Path | None, ctx: Context) -> ShipyardConfig:
    """The project's configuration: ``--file``, or shipyard.yaml searched upwards."""
    return load_config((file or find_config(ctx.cwd, stop=ctx.state.repo_root)).resolve())


def read_history(ctx: Context, project: str, *, since: datetime, out: Output) -> History:
    """The project's history from the store, with the commits git knows of."""
    root = ctx.state.repo_root
    if root is None:
        out.warn("no git repository here, so the lead time for changes cannot be measured")
    return dora.load_history(ctx.store, project, None if root is None else Git(root), since=since)


def chosen_environments(config: ShipyardConfig, history: History, env: str | None) -> list[str]:
    """The environments to show: shipyard.yaml's, then any others that were deployed to."""
    known = list(dict.fromkeys([*config.environments, *history.environments()]))
    if env is None:
        return known
    if env not in known:
        raise ArgumentError(
            f"{config.project} has no environment {env!r}",
            hint=f"the environments are: {', '.join(known) or 'none yet'}",
        )
    return [env]


def _print(out: Output, project: str, card: Scorecard) -> None:
    period = card.period
    title = (
        f"{project} · {card.environment} · {period.start:%Y-%m-%d %H:%M} → "
        f"{period.end:%Y-%m-%d %H:%M} UTC ({_length(period.end - period.start)})"
    )
    out.table(
        ["metric", "value", "band", "basis"],
        [[LABELS[m.name], show_value(m), show_band(m), basis(m)] for m in card.metrics],
        title=title,
    )


def show_value(metric: Metric) -> str:
    """A metric's value for people: 2.5/day, 3.0/week, 4h10m, 25%, or 'no data'."""
    if metric.value is None:
        return "no data"
    if metric.unit == "per_day":
        if metric.value >= 1:
            return f"{metric.value:.1f}/day"
        return f"{metric.value * 7:.1f}/week"
    if metric.unit == "seconds":
        return _length(timedelta(seconds=metric.value))
    return f"{metric.value:.0%}"


def show_band(metric: Metric) -> str:
    """The band's name, or '-' when there is none (no data, or no band for the metric)."""
    return "-" if metric.band is None else metric.band.value


def basis(metric: Metric) -> str:
    """What the figure rests on, in words."""
    c = metric.counts
    match metric.name:
        case "deployment_frequency":
            return _plural(c["deployments"], "successful deployment")
        case "lead_time":
            return _plural(c["changes"], "change")
        case "change_failure_rate":
            return f"{c['failed']} of {_plural(c['deployments'], 'deployment')} failed"
        case "recovery_time":
            apart = f", {c['not_restored']} not restored yet" if c["not_restored"] else ""
            return _plural(c["recoveries"], "recovery", "recoveries") + apart
        case _:
            return f"{c['rework']} of {_plural(c['deployments'], 'deployment')} unplanned"


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def _length(value: timedelta) -> str:
    """2d03h, 4h10m, 12m30s, 40s."""
    seconds = int(value.total_seconds())
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"
