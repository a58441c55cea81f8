"""``shipyard hook``: start a run for every new commit, from git itself."""

from __future__ import annotations

from typing import Annotated

import typer

from shipyard.ci import hooks
from shipyard.cli.context import Context
from shipyard.cli.options import JsonOption
from shipyard.cli.output import Output
from shipyard.core import audit
from shipyard.core.errors import ArgumentError
from shipyard.core.git import Git

app = typer.Typer(
    help="Git hooks that run the pipeline (or the release flow) on every commit.",
    no_args_is_help=True,
)


@app.command("install")
def install(
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Keep an existing hook as *.before-shipyard and call it first."
        ),
    ] = False,
    flow: Annotated[
        bool,
        typer.Option(
            "--flow",
            help="Carry each new commit on the release branches through the whole release "
            "flow (shipyard release --commit); other branches only run the pipeline.",
        ),
    ] = False,
    branch: Annotated[
        list[str] | None,
        typer.Option(
            "--branch",
            metavar="NAME",
            help="A release branch for --flow (repeatable; default: the branch checked out).",
        ),
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Install a post-commit hook (post-receive in a bare repository) that starts runs."""
    out = Output(json_mode=json_)
    ctx = Context()
    git = Git(ctx.cwd)
    if branch and not flow:
        raise ArgumentError("--branch names release branches for --flow", hint="add --flow")
    release_branches: list[str] = []
    if flow:
        release_branches = list(dict.fromkeys(branch or ()))
        if not release_branches:
            current = git.current_branch()
            if current is None:
                raise ArgumentError(
                    "HEAD is detached, so there is no branch to release from",
                    hint="name the release branches: --flow --branch main",
                )
            release_branches = [current]
    state = ctx.state.ensure()
    hook = hooks.install(git, state_root=state.root, force=force, release_branches=release_branches)
    with ctx.store.write() as conn:
        audit.append(
            conn,
            actor=ctx.actor,
            action="hook.installed",
            subject=f"hook:{hook.kind}",
            details={
                "path": str(hook.path),
                "chained": hook.backup.exists(),
                "release_branches": release_branches,
            },
        )
    if json_:
        out.json(
            {
                "hook": hook.kind,
                "path": str(hook.path),
                "chained": hook.backup.exists(),
                "release_branches": release_branches,
            }
        )
        return
    out.success(f"installed {hook.kind} hook at {hook.path}")
    if release_branches:
        out.line(
            f"every new commit on {', '.join(release_branches)} now goes through "
            "'shipyard release' in the background (watch with 'shipyard releases list'); "
            "other commits start 'shipyard run'"
        )
    else:
        out.line(
            "every new commit now starts 'shipyard run' in the background; "
            "watch with 'shipyard runs list'"
        )


@app.command("uninstall")
def uninstall(json_: JsonOption = False) -> None:
    """Remove Shipyard's hook, restoring the one it replaced."""
    out = Output(json_mode=json_)
    ctx = Context()
    removed = hooks.uninstall(Git(ctx.cwd))
    if removed is not None:
        with ctx.store.write() as conn:
            audit.append(
                conn,
                actor=ctx.actor,
                action="hook.uninstalled",
                subject=f"hook:{removed.kind}",
                details={"path": str(removed.path)},
            )
    if json_:
        out.json({"removed": removed is not None, "path": str(removed.path) if removed else None})
    elif removed is None:
        out.line("no Shipyard hook is installed")
    else:
        restored = " (the earlier hook is back)" if removed.path.exists() else ""
        out.success(f"removed {removed.path}{restored}")
