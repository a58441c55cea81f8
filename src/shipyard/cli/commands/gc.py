"""``shipyard gc``: remove old runs, logs, workspaces, cache entries and unreferenced blobs."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from shipyard.ci import retention
from shipyard.cli.context import Context
from shipyard.cli.options import DurationOption, JsonOption
from shipyard.cli.output import Output
from shipyard.core.blobs import BlobStore
from shipyard.core.config import find_config, load_config
from shipyard.core.config.pipeline import DEFAULT_RETENTION
from shipyard.core.errors import ConfigError


def gc(
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Remove; without it, only show.")
    ] = False,
    older_than: DurationOption = None,
    json_: JsonOption = False,
) -> None:
    """Show (or with --yes remove) what is older than the retention and referenced by nothing."""
    out = Output(json_mode=json_)
    ctx = Context()
    keep = older_than if older_than is not None else _configured_retention(ctx)
    blobs = BlobStore.for_state(ctx.state)
    found = retention.plan(ctx.store, ctx.state, blobs, retention=keep)
    freed = retention.apply(found, ctx.store, ctx.state, blobs, actor=ctx.actor) if yes else 0
    summary = {
        "removed": yes,
        "cutoff": found.cutoff.isoformat(),
        "runs": len(found.runs),
        "paths": [str(p) for p in found.paths],
        "cache_entries": len(found.cache_keys),
        "blobs": len(found.blobs),
        "bytes": found.bytes_by_kind,
        "total_bytes": found.total_bytes,
    }
    if json_:
        out.json(summary)
        return
    if found.empty:
        out.line(f"nothing older than {found.cutoff:%Y-%m-%d %H:%M} to remove")
        return
    out.table(
        ["what", "count", "space"],
        [
            ["runs (records)", len(found.runs), ""],
            [
                "log folders",
                sum(1 for p in found.paths if p.parent == ctx.state.logs),
                _human(found.bytes_by_kind.get("logs", 0)),
            ],
            [
                "workspaces",
                sum(1 for p in found.paths if p.parent == ctx.state.workspaces),
                _human(found.bytes_by_kind.get("workspaces", 0)),
            ],
            ["cache entries", len(found.cache_keys), ""],
            ["blobs", len(found.blobs), _human(found.bytes_by_kind.get("blobs", 0))],
        ],
    )
    if yes:
        out.success(f"removed; {_human(freed)} freed")
    else:
        out.line(f"would free {_human(found.total_bytes)}; run 'shipyard gc --yes' to remove")


def _configured_retention(ctx: Context) -> timedelta:
    """``pipeline.retention`` of this project, or the default when there is no pipeline."""
    try:
        config = load_config(find_config(ctx.cwd, stop=ctx.state.repo_root))
    except ConfigError:
        return DEFAULT_RETENTION
    return config.pipeline.retention if config.pipeline else DEFAULT_RETENTION


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
