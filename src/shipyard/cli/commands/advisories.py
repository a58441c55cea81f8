"""``shipyard advisories``: import OSV advisory data for offline scans, and show how old it is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli.context import Context
from shipyard.cli.options import FileOption, JsonOption
from shipyard.cli.output import Output
from shipyard.core.config import find_config, format_duration, load_config
from shipyard.core.config.gates import VulnerabilityGateSettings
from shipyard.core.errors import ConfigError
from shipyard.gates.advisories import import_advisories, index_status

app = typer.Typer(
    help="OSV advisory data for the vulnerabilities gate: import, status.", no_args_is_help=True
)


@app.command("import")
def import_(
    path: Annotated[
        Path, typer.Argument(help="A folder or zip of OSV records (.json, .yaml), e.g. a clone.")
    ],
    skip_invalid: Annotated[
        bool,
        typer.Option("--skip-invalid", help="Import the valid records, skipping invalid ones."),
    ] = False,
    json_: JsonOption = False,
) -> None:
    """Compile OSV records into the local index used by offline scans."""
    out = Output(json_mode=json_)
    state = Context().state.ensure()
    out.line(f"importing advisories from {path} …")
    summary = import_advisories(path, state.root, skip_invalid=skip_invalid)
    if json_:
        out.json(summary.as_json())
        return
    for problem in summary.invalid:
        out.warn(f"skipped: {problem}")
    if summary.other_ecosystems:
        others = ", ".join(f"{k} ({v})" for k, v in sorted(summary.other_ecosystems.items()))
        out.line(f"skipped records of ecosystems Shipyard does not scan: {others}")
    if summary.withdrawn:
        out.line(f"skipped {summary.withdrawn} withdrawn records")
    if summary.future_modified:
        ids = ", ".join(summary.future_modified[:10])
        more = len(summary.future_modified) - 10
        out.warn(
            f"{len(summary.future_modified)} records claim to be modified after now ({ids}"
            + (f" and {more} more" if more > 0 else "")
            + "); the data's age counts from this import instead"
        )
    newest = summary.newest_modified
    out.success(
        f"imported {summary.records} advisories for {summary.packages} packages"
        + (f"; newest record modified {newest:%Y-%m-%d %H:%M} UTC" if newest else "")
    )


@app.command("status")
def status(file: FileOption = None, json_: JsonOption = False) -> None:
    """Show how many advisories the local index holds and how old the data is."""
    out = Output(json_mode=json_)
    ctx = Context()
    current = index_status(ctx.state.root)
    now = datetime.now(UTC)
    max_age, configured = _max_age(ctx, file)
    age = timedelta(seconds=current.freshness.age(now))
    stale = age > max_age
    if json_:
        out.json(
            {
                **current.as_json(now),
                "max_age_s": max_age.total_seconds(),
                "stale": stale,
            }
        )
        return
    out.table(
        ["", ""],
        [
            ["index", str(current.path)],
            ["imported from", current.source],
            ["advisories", f"{current.records} for {current.packages} packages"],
            ["newest record", _when(current.newest_modified)],
            ["imported at", _when(current.imported_at)],
            ["age", f"{_days(age)} ({'stale' if stale else 'fresh'}; max_age {configured})"],
        ],
    )
    if stale:
        out.warn(
            f"the advisory data is older than max_age {format_duration(max_age)}: the "
            "vulnerabilities gate fails until 'shipyard advisories import PATH' brings newer data"
        )


def _max_age(ctx: Context, file: Path | None) -> tuple[timedelta, str]:
    default = VulnerabilityGateSettings().max_age
    try:
        path = file if file is not None else find_config(ctx.cwd, stop=ctx.state.repo_root)
        config = load_config(path)
    except ConfigError:
        return default, f"{format_duration(default)}, the default"
    gates = config.gates
    if gates is None or gates.vulnerabilities is None:
        return default, f"{format_duration(default)}, the default"
    return gates.vulnerabilities.max_age, format_duration(gates.vulnerabilities.max_age)


def _when(moment: datetime | None) -> str:
    return "unknown" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


def _days(age: timedelta) -> str:
    if age >= timedelta(days=2):
        return f"{age.days} days"
    hours = int(age.total_seconds() // 3600)
    return f"{hours} hours" if hours else f"{int(age.total_seconds() // 60)} minutes"
