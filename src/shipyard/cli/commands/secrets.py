"""``shipyard secrets baseline``: accept the secrets found now, by hash, in the baseline file."""

from __future__ import annotations

from pathlib import Path

import typer

from shipyard.cli.context import Context
from shipyard.cli.options import FileOption, JsonOption
from shipyard.cli.output import Output
from shipyard.core.config import find_config, load
from shipyard.core.errors import GitError, StateDirError
from shipyard.core.git import Git
from shipyard.gates.interface import GateContext
from shipyard.gates.secrets import (
    SecretHit,
    baseline_path,
    read_baseline,
    scan_secrets,
    settings_of,
    write_baseline,
)

app = typer.Typer(
    help="Secrets in the project's files: the baseline of accepted ones.", no_args_is_help=True
)


@app.callback()
def secrets() -> None:
    """Secrets in the project's files: the baseline of accepted ones."""


@app.command("baseline")
def baseline(file: FileOption = None, json_: JsonOption = False) -> None:
    """Write or update the secrets baseline: every secret found now is accepted by its hash."""
    out = Output(json_mode=json_)
    ctx = Context()
    path = file if file is not None else find_config(Path.cwd(), stop=ctx.state.repo_root)
    loaded = load(path)
    project_dir = path.resolve().parent
    context = GateContext(
        workspace=project_dir,
        config=loaded.model,
        state_root=ctx.state.root,
        commit=_head(project_dir),
    )
    settings = settings_of(context)
    target = baseline_path(context, settings)
    current = read_baseline(target, settings.baseline)
    out.line(f"scanning {project_dir}{' and its history' if settings.history else ''} …")
    scan = scan_secrets(context, settings)
    change = current.updated(scan.hits)
    write_baseline(target, change.baseline)
    hits: dict[str, SecretHit] = {}
    for hit in scan.hits:
        hits.setdefault(hit.fingerprint, hit)
    if json_:
        out.json(
            {
                "baseline": str(target),
                "secrets": len(change.baseline.entries),
                "added": [_added(hits[entry.sha256]) for entry in change.added],
                "removed": [entry.as_json() for entry in change.removed],
                "not_scanned": [
                    {"path": item.path, "reason": item.reason, "commit": item.commit}
                    for item in scan.skipped
                ],
            }
        )
        return
    for item in scan.skipped:
        out.warn(f"{item.path}: {item.reason}")
    if change.added:
        out.table(
            ["rule", "where", "secret"],
            [
                [hits[entry.sha256].rule, _where(hits[entry.sha256]), hits[entry.sha256].redacted]
                for entry in change.added
            ],
            title="accepted now",
        )
    out.success(
        f"{settings.baseline}: {len(change.baseline.entries)} accepted secret"
        f"{'s' if len(change.baseline.entries) != 1 else ''} "
        f"({len(change.added)} added, {len(change.removed)} removed); commit it with the code"
    )


def _added(hit: SecretHit) -> dict[str, object]:
    return {
        "rule": hit.rule,
        "location": hit.location,
        "commit": hit.commit,
        "sha256": hit.fingerprint,
        "redacted": hit.redacted,
    }


def _where(hit: SecretHit) -> str:
    return f"{hit.location} (commit {hit.commit[:12]})" if hit.commit else hit.location


def _head(folder: Path) -> str | None:
    try:
        return Git(folder).head_commit()
    except (GitError, StateDirError):
        return None
