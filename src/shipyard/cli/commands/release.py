"""``shipyard release``, ``version``, ``changelog``, ``releases`` and ``verify``."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Annotated

import typer

from shipyard.cli.context import Context
from shipyard.cli.live import JobLines
from shipyard.cli.options import FileOption, JsonOption
from shipyard.cli.output import Output
from shipyard.core.blobs import BlobStore
from shipyard.core.config import CONFIG_FILE_NAME, find_config, load_config
from shipyard.core.errors import ArgumentError, ConfigError
from shipyard.core.git import Git
from shipyard.core.repoconfig import config_location, load_committed
from shipyard.gates.metrics import recorded_metrics
from shipyard.orchestrator.release import ReleaseRequest
from shipyard.orchestrator.release import release as cut_release
from shipyard.release import planning, publish, records
from shipyard.release.keys import Keyring
from shipyard.release.verification import verify as verify_release

releases_app = typer.Typer(help="Recorded releases: list, show.", no_args_is_help=True)

PrereleaseOption = Annotated[
    str | None,
    typer.Option(
        "--prerelease", metavar="TOKEN", help="Make a prerelease such as 1.3.0-rc.1 (token: rc)."
    ),
]


def release(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the version and changelog; change nothing.")
    ] = False,
    prerelease: PrereleaseOption = None,
    run: Annotated[
        int | None,
        typer.Option(
            "--run", metavar="RUN", help="Release the artifacts of this passed run of HEAD."
        ),
    ] = None,
    override: Annotated[
        list[str] | None,
        typer.Option(
            "--override", metavar="GATE", help="Let a failing gate through (needs --reason)."
        ),
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why the overridden gate may ship.")] = None,
    no_tag: Annotated[
        bool, typer.Option("--no-tag", help="Record the release, make no tag.")
    ] = False,
    push: Annotated[bool, typer.Option("--push", help="Push the tag to origin.")] = False,
    no_deploy: Annotated[
        bool, typer.Option("--no-deploy", help="Do not deploy to the environments marked auto.")
    ] = False,
    jobs: Annotated[int | None, typer.Option("-j", "--jobs", min=1)] = None,
    commit: Annotated[
        str | None,
        typer.Option(
            "--commit",
            metavar="REF",
            help="Release this commit instead of HEAD, from its own tree (the working tree "
            "is not used).",
        ),
    ] = None,
    branch: Annotated[
        str | None,
        typer.Option(
            "--branch",
            metavar="NAME",
            help="The branch the commit is on (for channels); if it has moved past the "
            "commit, nothing is released.",
        ),
    ] = None,
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Release HEAD (or --commit): next version, pipeline, gates, signed bundle, changelog, tag."""
    out = Output(json_mode=json_)
    ctx = Context()
    overrides = dict.fromkeys(override or (), reason or "")
    if override and not (reason or "").strip():
        raise ArgumentError("--override needs --reason", hint='add --reason "why this may ship"')
    request = ReleaseRequest(
        prerelease=prerelease,
        dry_run=dry_run,
        run_id=run,
        overrides=overrides,
        tag=not no_tag,
        push=push,
        concurrency=jobs,
        config_file=file,
        deploy=not no_deploy,
        commit=commit,
        branch=branch,
    )
    outcome = cut_release(
        Path.cwd(),
        state=ctx.state,
        store=ctx.store,
        actor=ctx.actor,
        request=request,
        observer=None if json_ else JobLines(out),
    )
    for note in outcome.reconciled:
        out.warn(note)
    for warning in outcome.plan.next.warnings:
        out.warn(warning)
    if json_:
        out.json(outcome.as_json())
        return
    if not outcome.released:
        out.line(outcome.reason)
        if dry_run and outcome.plan.version:
            out.line("")
            out.line(outcome.plan.changelog)
        return
    record = outcome.record
    assert record is not None
    out.success(
        f"released {record.project} {record.version}"
        f"{' as ' + record.tag if record.tag else ''} from {record.commit[:12]}"
    )
    out.line(f"  bundle   {record.bundle}")
    out.line(f"  signed   by key {record.key_id[:16] if record.key_id else '-'}")
    if outcome.gate_run:
        out.line(f"  gates    {outcome.gate_run.status}")
    for deployment in outcome.deployments:
        out.line(f"  deployed to {deployment.environment}: {deployment.status}")
    for soak in outcome.held_back:
        out.line(f"  not deployed to {soak.environment} yet: {soak.describe()}")
        out.line(f"    (shipyard promote {soak.version} --to {soak.environment} once it has)")


def version(
    prerelease: PrereleaseOption = None,
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Print the next version (stdout) and why (stderr): which commits bump what, or why none."""
    out = Output(json_mode=json_)
    plan, project = _plan(file, prerelease)
    bumps = list(zip(plan.next.commits, plan.next.levels, strict=True))
    data = {
        "project": project,
        "version": plan.version,
        "current": plan.current,
        "released": plan.version is not None,
        "bump": plan.next.level.name.lower(),
        "prerelease": plan.token,
        "reasons": list(plan.next.reasons),
        "warnings": list(plan.next.warnings),
        "commits": [
            {"sha": commit.sha, "title": commit.title, "bump": level.name.lower()}
            for commit, level in bumps
        ],
    }
    if json_:
        out.json(data)
        return
    for warning in plan.next.warnings:
        out.warn(warning)
    # The answer alone on stdout, so that $(shipyard version) is the version; the why beside it.
    answer = plan.version or f"no release (current: {plan.current or 'none'})"
    out.stdout.write(answer + "\n")
    out.stdout.flush()
    why = [f"  {reason}" for reason in plan.next.reasons]
    if bumps:
        since = plan.next.current_tag or "the start"
        why.append(f"  commits since {since}:")
        width = max(len(level.name) for _, level in bumps)
        why += [
            f"    {level.name.lower():<{width}}  {commit.short_sha}  {commit.title}"
            for commit, level in bumps
        ]
    out.stderr.write("".join(f"{line}\n" for line in why))
    out.stderr.flush()


def changelog(
    unreleased: Annotated[
        bool, typer.Option("--unreleased", help="Only the changes since the last release.")
    ] = False,
    prerelease: PrereleaseOption = None,
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Print the changelog: the next release's section, or what is unreleased."""
    out = Output(json_mode=json_)
    plan, project = _plan(file, prerelease)
    text = plan.changelog
    if unreleased and plan.version:
        from shipyard.release.changelog import render_unreleased

        text = render_unreleased(plan.next.commits)
    if json_:
        out.json({"project": project, "version": plan.version, "changelog": text})
        return
    out.stdout.write(text if text.endswith("\n") else text + "\n")


@releases_app.command("list")
def list_releases(file: FileOption = None, json_: JsonOption = False) -> None:
    """List the releases of this project, newest first."""
    out = Output(json_mode=json_)
    ctx = Context()
    project = _project_name(file, ctx)
    _reconcile(ctx, project, out)
    found = records.all_of(ctx.store, project)
    if json_:
        out.json([r.as_json() for r in found])
        return
    if not found:
        out.line(f"{project} has no releases yet; cut one with 'shipyard release'")
        return
    out.table(
        ["version", "status", "tag", "commit", "run", "published", "by"],
        [
            [
                r.version,
                r.status,
                r.tag or "-",
                r.commit[:12],
                f"#{r.run_id}" if r.run_id else "",
                r.published_at.isoformat(timespec="seconds") if r.published_at else "",
                r.actor,
            ]
            for r in found
        ],
    )


@releases_app.command("show")
def show_release(
    version_: Annotated[str, typer.Argument(metavar="VERSION")],
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Show one release: commit, bundle, artifacts, signature, metric gates and changelog."""
    out = Output(json_mode=json_)
    ctx = Context()
    project = _project_name(file, ctx)
    _reconcile(ctx, project, out)
    record = records.get(ctx.store, project, version_)
    metrics = recorded_metrics(ctx.store, project, record.version)
    if json_:
        out.json({**record.as_json(), "metrics": [metric.as_json() for metric in metrics]})
        return
    out.table(
        ["", ""],
        [
            ["version", record.version],
            ["status", record.status],
            ["tag", record.tag or "-"],
            ["commit", record.commit],
            ["run", f"#{record.run_id}" if record.run_id else "-"],
            ["bundle", record.bundle],
            ["signed statement", record.envelope or "-"],
            ["key", record.key_id or "-"],
            ["by", record.actor],
        ],
    )
    if record.artifacts:
        out.table(["artifact", "digest"], sorted(record.artifacts.items()))
    if metrics:
        out.table(
            ["environment", "metric", "value", "running", "verdict", "gate run"],
            [
                [
                    m.environment or "-",
                    m.metric,
                    _metric_value(m.value),
                    f"{m.running_version} {_metric_value(m.running_value)}"
                    if m.running_version
                    else "-",
                    m.verdict + (f" (overridden by {m.overridden_by})" if m.overridden_by else ""),
                    f"#{m.gate_run}",
                ]
                for m in metrics
            ],
            title="metric gates",
        )
    out.line(record.changelog)


def _metric_value(value: float | None) -> str:
    return "no value" if value is None else f"{value:.6g}"


def verify(
    version_: Annotated[str, typer.Argument(metavar="VERSION")],
    key: Annotated[
        Path | None,
        typer.Option("--key", metavar="PUB", help="Verify with this public key file instead."),
    ] = None,
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Check a release's signature, every digest, gate results, changelog; exit 1 naming a flaw."""
    out = Output(json_mode=json_)
    ctx = Context()
    project = _project_name(file, ctx)
    _reconcile(ctx, project, out)
    record = records.get(ctx.store, project, version_)
    report = verify_release(
        record,
        blobs=BlobStore.for_state(ctx.state),
        keyring=Keyring.for_state(ctx.state),
        git=Git(ctx.cwd),
        key_file=key,
    )
    subjects = len(report.statement.subjects) if report.statement else 0
    if json_:
        out.json(
            {
                "version": record.version,
                "ok": report.ok,
                "subjects": subjects,
                "problems": [
                    {"kind": p.kind.value, "message": p.message, "name": p.name}
                    for p in report.problems
                ],
                "notes": list(report.notes),
            }
        )
    elif report.ok:
        for note in report.notes:
            out.warn(note)
        out.success(
            f"{record.project} {record.version} verifies: signature by "
            f"{', '.join(k[:16] for k in report.keyids)}, {subjects} "
            f"subject{'' if subjects == 1 else 's'}, commit {record.commit[:12]}"
        )
    else:
        out.error(f"{record.project} {record.version} does not verify:")
        for problem in report.problems:
            out.error(f"  {problem}")
    if not report.ok:
        raise typer.Exit(1)


def _reconcile(ctx: Context, project: str, out: Output) -> None:
    """Finish or fail the releases a crash left pending, before reading any release."""
    for note in publish.reconcile_in(ctx.state, ctx.store, project, actor=ctx.actor):
        out.warn(note)


def _plan(file: Path | None, prerelease: str | None) -> tuple[planning.VersionPlan, str]:
    ctx = Context()
    git = Git(ctx.cwd)
    relative, path = config_location(ctx.cwd, file, toplevel=git.toplevel())
    assert path is not None  # a working tree's configuration is a file on disk
    config = load_config(path)
    folder = relative.parent.as_posix()
    plan = planning.plan(
        git,
        config.release,
        project_dir="" if folder == "." else folder,
        branch=git.current_branch(),
        prerelease=prerelease,
    )
    return plan, config.project


def _project_name(file: Path | None, ctx: Context) -> str:
    state = ctx.state
    if file is None and state.repo_root is None and state.git_common_dir is not None:
        # A bare repository has no working tree: its HEAD commit's configuration names it.
        git = Git(state.git_common_dir)
        head = git.find_commit("HEAD")
        if head is None:
            raise ConfigError(
                f"the bare repository {state.git_common_dir} has no commit yet",
                hint="push a commit that holds shipyard.yaml, or pass --file PATH",
            )
        hint = "push a commit that holds it, or pass --file PATH"
        relative = PurePosixPath(CONFIG_FILE_NAME)
        return load_committed(git, head, relative, hint=hint).model.project
    return load_config(file or find_config(ctx.cwd, stop=state.repo_root)).project
