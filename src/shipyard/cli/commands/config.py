"""``shipyard init`` and ``shipyard validate``: write and check ``shipyard.yaml``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from shipyard.ci.model import build_pipeline
from shipyard.cli.context import Context
from shipyard.cli.options import FileOption, JsonOption
from shipyard.cli.output import Output
from shipyard.core.config import find_config, load, load_config, starter_config
from shipyard.core.errors import ArgumentError

CONFIG_NAME = "shipyard.yaml"


def validate(file: FileOption = None, json_: JsonOption = False) -> None:
    """Check shipyard.yaml: syntax, keys, types, cross-references, and what 'run' checks."""
    out = Output(json_mode=json_)
    path = file if file is not None else _find(Path.cwd())
    loaded = load(path)
    config = loaded.model
    if config.pipeline is not None:
        # The very function 'shipyard run' builds its pipeline with: what it refuses, so does this.
        build_pipeline(loaded)
    if json_:
        out.json({"valid": True, "file": str(path), "project": config.project})
        return
    out.success(f"{path}: valid configuration for project {config.project!r}")


def init(
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing shipyard.yaml.")
    ] = False,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="The project folder (default: the repository's top level)."),
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Write a shipyard.yaml that works for this repository."""
    out = Output(json_mode=json_)
    ctx = Context()
    root = directory.resolve() if directory else (ctx.state.repo_root or Path.cwd())
    target = root / CONFIG_NAME
    if target.exists() and not force:
        raise ArgumentError(
            f"{target} already exists",
            hint="edit it, or run 'shipyard init --force' to replace it",
        )
    starter = starter_config(root)
    target.write_text(starter.yaml, encoding="utf-8")
    load_config(target)
    if json_:
        out.json({"file": str(target), **starter.as_json()})
        return
    out.success(f"wrote {target}")
    for line in starter.describe():
        out.line(f"  {line}")
    shown = os.path.relpath(target, ctx.cwd)
    out.line(
        f"next: 'shipyard validate', then commit it: 'git add {shown} && git commit -m "
        f'"ci: add shipyard.yaml"\' (runs and releases read the committed configuration)'
    )


def _find(cwd: Path) -> Path:
    return find_config(cwd, stop=Context(cwd=cwd).state.repo_root)
