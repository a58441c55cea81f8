"""``shipyard policy eval``: the policies over a release and an environment, input and result.

It builds the same input document a deployment's policy check builds (from the store: the
release's record, gate results and SBOM, the release the environment runs now) and shows it
with every ``deny`` message. It records nothing: it is how a person writes and checks a policy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cd import deployments
from shipyard.cli.context import Context
from shipyard.cli.options import FileOption, JsonOption
from shipyard.cli.output import Output
from shipyard.core.config import ShipyardConfig, did_you_mean, find_config, load_config
from shipyard.core.errors import ArgumentError, GitError
from shipyard.core.git import Git
from shipyard.gates import GateContext
from shipyard.gates.policy import (
    Denial,
    PolicyError,
    PolicyGate,
    evaluate,
    load_policies,
    policy_input,
)
from shipyard.release import publish, records

app = typer.Typer(help="Policy as code: evaluate the Rego policies.", no_args_is_help=True)


@app.callback()
def policy() -> None:
    """Policy as code: the Rego v1 policies that deploy checks evaluate (gates.policy)."""


@app.command("eval")
def eval_policy(
    release: Annotated[
        str, typer.Option("--release", metavar="VERSION", help="The release to judge.")
    ],
    env: Annotated[
        str,
        typer.Option("--env", "-e", metavar="ENV", help="The environment it would deploy to."),
    ],
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Evaluate the policies as a deployment of RELEASE to ENV would: show the input and every
    deny message (exit 1 when one denies, 2 when a policy is wrong)."""
    out = Output(json_mode=json_)
    ctx = Context()
    path = (file or find_config(ctx.cwd, stop=ctx.state.repo_root)).resolve()
    config = load_config(path)
    _check_environment(config, env)
    for note in publish.reconcile_in(ctx.state, ctx.store, config.project, actor=ctx.actor):
        out.warn(note)
    record = records.get(ctx.store, config.project, release)
    active = deployments.environment(ctx.store, config.project, env).active_version
    running = records.get(ctx.store, config.project, active) if active else None
    context = GateContext(
        workspace=path.parent,
        config=config,
        state_root=ctx.state.ensure().root,
        release=record.version,
        environment=env,
        commit=record.commit,
        actor=ctx.actor,
        deployment={
            "id": None,
            "project": config.project,
            "environment": env,
            "version": record.version,
            "kind": "deploy",
            "status": None,
            "previous_version": active,
            "actor": ctx.actor,
        },
        release_record=_release_document(record, path.parent),
        running=_release_document(running, path.parent) if running is not None else None,
    )
    document = policy_input(context)
    paths = PolicyGate.for_context(context).settings.paths
    try:
        policies = load_policies(context.source_dir, paths)
        denials = evaluate(policies, document)
    except PolicyError as error:
        if json_:
            out.json({"input": document, "error": _error_json(error)})
            raise typer.Exit(2) from None
        raise
    if json_:
        out.json(
            {
                "input": document,
                "policies": [{"file": p.name, "package": p.package} for p in policies],
                "deny": [denial.as_json() for denial in denials],
                "allowed": not denials,
            }
        )
    else:
        _show(out, document, [p.name for p in policies], denials, release, env)
    if denials:
        raise typer.Exit(1)


def _check_environment(config: ShipyardConfig, env: str) -> None:
    if env in config.environments:
        return
    known = list(config.environments)
    raise ArgumentError(
        f"{config.project} has no environment {env!r}",
        hint=did_you_mean(env, known)
        or f"the environments in shipyard.yaml are: {', '.join(known) or 'none'}",
    )


def _release_document(record: records.ReleaseRecord, where: Path) -> dict[str, Any]:
    """A release's record as a deployment's checks see it, with its commit's author."""
    try:
        author = Git(where).run("log", "-1", "--format=%ae", record.commit).strip() or None
    except GitError:
        author = None  # the commit is not in this clone: the input says so with null
    return {**record.as_json(), "author": author}


def _error_json(error: PolicyError) -> dict[str, Any]:
    return {
        "message": error.message,
        "hint": error.hint,
        "problems": [problem.as_json() for problem in error.problems],
    }


def _show(
    out: Output,
    document: dict[str, Any],
    files: list[str],
    denials: list[Denial],
    release: str,
    env: str,
) -> None:
    shown = dict(document)
    sbom = shown.get("sbom")
    if isinstance(sbom, dict) and sbom.get("components"):
        # Every component would bury the rest; --json shows them.
        count = len(sbom["components"])
        shown["sbom"] = {**sbom, "components": f"({count} listed; --json shows them)"}
    out.line("input:")
    for text in json.dumps(shown, indent=2, ensure_ascii=False).splitlines():
        out.line(f"  {text}")
    out.line("")
    out.line(f"policies: {', '.join(files)}")
    if not denials:
        out.success(f"allowed: no policy denies {release} in {env}")
        return
    out.line(f"denied: {len(denials)} deny message{'s' if len(denials) != 1 else ''}")
    out.table(
        ["package", "message", "file"],
        [[f"data.{d.package}.deny", d.message, ", ".join(d.files)] for d in denials],
    )
