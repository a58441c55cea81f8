"""``shipyard scan``: run the configured gates over the working tree and show the verdicts.

``--release VERSION`` judges a shipped release instead: its bundle, and its stored SBOM for
the dependency gates, against today's advisory data.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli.context import Context
from shipyard.cli.live import format_seconds
from shipyard.cli.options import FileOption, JsonOption
from shipyard.cli.output import Output
from shipyard.core.blobs import BlobStore
from shipyard.core.config import find_config, load
from shipyard.core.errors import ArgumentError, GitError, StateDirError
from shipyard.core.git import Git
from shipyard.gates import (
    GateContext,
    GateFailed,
    GateRequest,
    GateRun,
    Status,
    judge,
    to_sarif,
)
from shipyard.gates.records import release_sbom, release_workspace
from shipyard.release import publish

_STATUS_MARK = {Status.PASS: "✓", Status.WARN: "!", Status.FAIL: "✗"}


def scan(
    gate: Annotated[
        list[str] | None,
        typer.Option(
            "--gate", metavar="NAME", help="Run only this gate (repeatable); default: all."
        ),
    ] = None,
    release: Annotated[
        str | None,
        typer.Option(
            "--release",
            metavar="VERSION",
            help="Judge a recorded release instead (its bundle and stored SBOM).",
        ),
    ] = None,
    sarif: Annotated[
        Path | None,
        typer.Option("--sarif", metavar="FILE", help="Write SARIF 2.1.0 to FILE ('-': stdout)."),
    ] = None,
    override: Annotated[
        list[str] | None,
        typer.Option("--override", metavar="GATE", help="Let this failed gate through (audited)."),
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option("--reason", metavar="TEXT", help="Why the overridden gate may pass."),
    ] = None,
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Run the release gates over the working tree (exit 1 when a gate fails)."""
    if json_ and sarif is not None and str(sarif) == "-":
        raise ArgumentError("--json and --sarif - both want stdout", hint="choose one")
    out = Output(json_mode=json_ or (sarif is not None and str(sarif) == "-"))
    overrides = _overrides(override or [], reason)
    ctx = Context()
    path = file if file is not None else find_config(Path.cwd(), stop=ctx.state.repo_root)
    loaded = load(path)
    with tempfile.TemporaryDirectory(prefix="shipyard-scan-") as tmp:
        project_dir = path.resolve().parent
        workspace, commit = project_dir, _head(project_dir)
        sbom: Path | None = None
        if release is not None:
            blobs = BlobStore.for_state(ctx.state)
            project = loaded.model.project
            for note in publish.reconcile_in(ctx.state, ctx.store, project, actor=ctx.actor):
                out.warn(note)  # a release a crash left half-published is finished or failed
            workspace, commit = release_workspace(ctx.store, blobs, project, release, Path(tmp))
            sbom = release_sbom(ctx.store, blobs, project, release, Path(tmp))
            if sbom is None and not json_:
                out.warn(
                    f"release {release} has no stored SBOM (it was cut before SBOMs were "
                    "recorded); its bundle's dependency files are scanned instead"
                )
        request = GateRequest(
            context=GateContext(
                workspace=workspace,
                config=loaded.model,
                state_root=ctx.state.ensure().root,
                commit=commit,
                release=release,
                project_dir=project_dir,
                sbom=sbom,
            ),
            names=tuple(gate or ()),
            overrides=overrides,
        )
        _judge_and_report(request, ctx, out, json_, sarif, path)


def _judge_and_report(
    request: GateRequest, ctx: Context, out: Output, json_: bool, sarif: Path | None, path: Path
) -> None:
    """Run the gates, record them, and print the verdicts (exit 1 when one blocks)."""
    workspace = request.context.workspace
    overrides = request.overrides
    if not request.chosen():
        if json_:
            out.json({"gate_run": None, "results": [], "blocked": False})
        elif sarif is None or str(sarif) != "-":
            out.warn(
                f"no gates are configured in {path}; add 'gates: {{vulnerabilities: {{}}}}' "
                "or pass --gate vulnerabilities"
            )
        return
    if not out.json_mode:
        out.line(f"running {', '.join(request.chosen())} on {workspace} …")
    run = judge(ctx.store, request, actor=ctx.actor)
    for name in overrides:
        if not run.result(name).overridden:
            out.warn(f"--override {name}: the gate did not fail, so nothing was overridden")
    if sarif is not None:
        _write_sarif(sarif, run, path.name)
    if json_:
        out.json(run.as_json())
        if run.blocked:
            raise typer.Exit(1)
        return
    if sarif is not None and str(sarif) == "-":
        if run.blocked:
            raise typer.Exit(1)
        return
    _show(out, run)
    if sarif is not None:
        out.line(f"SARIF written to {sarif}")
    if run.blocked:
        failed = [r.gate for r in run.results if r.blocks]
        raise GateFailed(
            f"gate run #{run.id}: {', '.join(failed)} failed",
            hint="fix the findings marked 'blocks', or let the release through with "
            f'--override {failed[0]} --reason "why"',
        )


def _overrides(names: list[str], reason: str | None) -> dict[str, str]:
    if names and (reason is None or not reason.strip()):
        raise ArgumentError(
            "--override needs a reason", hint='add --reason "why this may ship anyway"'
        )
    if reason is not None and not names:
        raise ArgumentError("--reason is only used with --override GATE")
    return dict.fromkeys(names, reason or "")


def _head(workspace: Path) -> str | None:
    try:
        return Git(workspace).head_commit()
    except (GitError, StateDirError):
        return None


def _write_sarif(target: Path, run: GateRun, config_name: str) -> None:
    text = json.dumps(to_sarif(run.results, config_file=config_name), indent=2) + "\n"
    if str(target) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ArgumentError(f"cannot write the SARIF file {target}: {exc.strerror}") from None


def _show(out: Output, run: GateRun) -> None:
    out.table(
        ["gate", "verdict", "time", "summary"],
        [
            [
                r.gate,
                f"{_STATUS_MARK[r.status]} {r.status.value}"
                + (f" (overridden by {r.overridden_by})" if r.overridden else ""),
                format_seconds(r.duration_s),
                r.summary,
            ]
            for r in run.results
        ],
        title=f"gate run #{run.id} ({run.subject})",
    )
    rows = []
    for result in run.results:
        for finding in sorted(
            result.findings, key=lambda f: (not f.blocking, -f.severity.rank, f.location, f.id)
        ):
            if finding.suppression is not None:
                effect = "ignored"
            elif finding.blocking:
                effect = "blocks"
            else:
                effect = "warns"
            rows.append(
                [
                    finding.severity.value,
                    effect,
                    finding.id,
                    finding.location,
                    finding.message,
                    finding.suppression or finding.remediation or "",
                ]
            )
    if rows:
        out.table(["severity", "effect", "id", "where", "finding", "fix"], rows, title="findings")
    verdict = {"pass": "passed", "warn": "passed with warnings", "overridden": "overridden"}
    if run.status in verdict:
        text = f"gate run #{run.id} {verdict[run.status]}"
        if run.status == "pass":
            out.success(text)
        else:
            out.line(text)
