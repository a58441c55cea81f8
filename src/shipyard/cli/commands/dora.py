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
from shipyard.monitor.dora import History, Period, Scorecard


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
        f"{period.end:%Y-%m-%d %H:%M} UTC ({dora.show_length(period.end - period.start)})"
    )
    out.table(
        ["metric", "value", "band", "basis"],
        [
            [dora.LABELS[m.name], dora.show_value(m), dora.show_band(m), dora.show_basis(m)]
            for m in card.metrics
        ],
        title=title,
    )
