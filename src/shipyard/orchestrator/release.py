"""The release flow: version first, then the pipeline, the gates, and the signed release.

``shipyard release`` computes the next version, runs the pipeline with it in
``SHIPYARD_VERSION`` (or takes a passed run of the same commit), builds the bundle, runs the
release gates on it, makes its SBOM, and publishes the release in crash-safe order. Every
check that can fail runs before anything is written.
"""

from __future__ import annotations

import asyncio
import fcntl
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from shipyard.cd.checks import ApprovalRequired, DeployChecks, DeployChecksFailed
from shipyard.cd.controller import Controller
from shipyard.cd.delivery import request_deploy
from shipyard.cd.deployments import Deployment, DeploymentStatus, EnvironmentState
from shipyard.cd.deployments import get as get_deployment
from shipyard.cd.promotion import Soak, soak_for
from shipyard.cd.reaper import ensure_reaper
from shipyard.cd.settings import settings_for
from shipyard.cd.targets import target_for
from shipyard.ci import runs
from shipyard.ci.artifacts import load_set
from shipyard.ci.runner import RunRequest, execute, prepare_run
from shipyard.ci.scheduler import RunObserver
from shipyard.core.blobs import BlobStore
from shipyard.core.config import LoadedConfig
from shipyard.core.errors import ArgumentError, CheckFailed, GitError, UserError
from shipyard.core.git import Git
from shipyard.core.repoconfig import config_location, load_committed
from shipyard.core.state import StateDir
from shipyard.core.store import Store
from shipyard.gates.interface import GateContext
from shipyard.gates.records import GateRun
from shipyard.gates.runner import GateRequest, judge
from shipyard.gates.sbom import build_sbom
from shipyard.release import planning, publish, records
from shipyard.release.bundle import version_file_contents
from shipyard.release.changelog import prepend
from shipyard.release.keys import Keyring


class ReleaseBlocked(CheckFailed):
    """The release was stopped: the pipeline or a gate failed."""


@dataclass(frozen=True)
class ReleaseRequest:
    """What ``shipyard release`` was asked to do."""

    prerelease: str | None = None
    dry_run: bool = False
    run_id: int | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)
    tag: bool = True
    push: bool = False
    concurrency: int | None = None
    config_file: Path | None = None
    deploy: bool = True
    commit: str | None = None
    """Release this commit instead of HEAD (from its own tree: the working tree is not used)."""
    branch: str | None = None
    """The branch the commit is on; if the branch has moved past it, nothing is released."""


@dataclass(frozen=True)
class ReleaseOutcome:
    """What happened: released or not, and why; the record, run and gate run if any."""

    released: bool
    reason: str
    plan: planning.VersionPlan
    project: str
    commit: str
    record: records.ReleaseRecord | None = None
    run: runs.Run | None = None
    gate_run: GateRun | None = None
    reconciled: tuple[str, ...] = ()
    deployments: tuple[Deployment, ...] = ()
    held_back: tuple[Soak, ...] = ()
    """Auto environments not deployed to because the release has not soaked where they
    promote from."""

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form (``released`` false when no commit calls for a release)."""
        return {
            "released": self.released,
            "reason": self.reason,
            "project": self.project,
            "commit": self.commit,
            "version": self.plan.version,
            "current": self.plan.current,
            "prerelease": self.plan.token,
            "changelog": self.plan.changelog,
            "warnings": list(self.plan.next.warnings),
            "release": self.record.as_json() if self.record else None,
            "run": self.run.id if self.run else None,
            "gates": self.gate_run.as_json() if self.gate_run else None,
            "reconciled": list(self.reconciled),
            "deployments": [d.as_json() for d in self.deployments],
            "held_back": [soak.as_json() for soak in self.held_back],
        }


@dataclass(frozen=True)
class _Project:
    git: Git
    loaded: LoadedConfig
    config_path: PurePosixPath
    project_dir: str
    head: str
    branch: str | None
    bare: bool = False


def release(
    cwd: Path,
    *,
    state: StateDir,
    store: Store,
    actor: str,
    request: ReleaseRequest,
    observer: RunObserver | None = None,
) -> ReleaseOutcome:
    """Cut a release of the project at ``cwd`` (or say why not); see the module docstring.

    Releases of one state directory are cut one at a time: a second waits for the first (a
    dry run, which writes nothing, does not wait)."""
    if request.dry_run:
        return _release(
            cwd, state=state, store=store, actor=actor, request=request, observer=observer
        )
    with _one_at_a_time(state):
        return _release(
            cwd, state=state, store=store, actor=actor, request=request, observer=observer
        )


def _release(
    cwd: Path,
    *,
    state: StateDir,
    store: Store,
    actor: str,
    request: ReleaseRequest,
    observer: RunObserver | None,
) -> ReleaseOutcome:
    project = _project(cwd, request)
    git, model = project.git, project.loaded.model
    blobs = BlobStore.for_state(state)
    reconciled = tuple(
        publish.reconcile(store=store, blobs=blobs, git=git, project=model.project, actor=actor)
    )
    plan = planning.plan(
        git,
        model.release,
        project_dir=project.project_dir,
        branch=project.branch,
        prerelease=request.prerelease,
        ref=project.head,
    )
    base = ReleaseOutcome(
        released=False,
        reason="",
        plan=plan,
        project=model.project,
        commit=project.head,
        reconciled=reconciled,
    )
    moved = _moved_on(git, project, request)
    if moved is not None:
        return replace(base, reason=moved)
    if plan.version is None:
        reason = plan.next.reasons[-1] if plan.next.reasons else "no commit calls for a release"
        return replace(base, reason=reason)
    if request.dry_run:
        return replace(base, reason=f"dry run: would release {plan.version}")
    settings = planning.settings(model.release)
    if settings.commit and (project.bare or request.commit is not None):
        head = None if project.bare else git.find_commit("HEAD")
        if head != project.head:
            raise ArgumentError(
                "release.commit writes the release commit on the checked-out branch, "
                f"so only HEAD can be released, not {project.head[:12]}",
                hint="check the commit out in a working tree and release from there, "
                "or set release.commit to false",
            )
    if (request.commit is None or settings.commit) and not project.bare and git.is_dirty():
        raise UserError(
            "the working tree has uncommitted changes; a release is cut from a commit",
            hint="commit or stash them, then run 'shipyard release' again "
            "(or name the commit with --commit)",
        )
    signer = Keyring.for_state(state).signer()  # a missing key stops us before anything runs
    tag = settings.tag_format.replace("{version}", plan.version)
    _check_unused(store, git, model.project, plan.version, tag, request.tag)
    files = version_file_contents(
        git, project.head, _in_project(settings.version_files, project.project_dir), plan.version
    )
    if settings.changelog:
        path = _join(project.project_dir, settings.changelog)
        files[path] = prepend(_text_at(git, project.head, path), plan.changelog).encode()
    if settings.commit:
        if request.run_id is not None:
            raise ArgumentError(
                "--run cannot be used with release.commit: the pipeline runs on the release commit",
                hint="drop --run",
            )
        project = replace(project, head=_release_commit(git, cwd, plan.version, files))
        files = {}  # the version is in the commit itself now
        base = replace(base, commit=project.head)
    run = _passed_run(cwd, state, store, actor, project, plan.version, request, observer)
    artifacts = _artifacts(store, blobs, run.id) if run else {}
    with tempfile.TemporaryDirectory(prefix="shipyard-release-") as tmp:
        folder = Path(tmp)
        draft = publish.Candidate(
            project=model.project,
            version=plan.version,
            tag=tag,
            commit=project.head,
            repository=_repository(git),
            ref=project.branch or project.head,
            run_id=run.id if run else None,
            run_started=(run.started_at or run.created_at) if run else datetime.now(UTC),
            run_finished=(run.finished_at or datetime.now(UTC)) if run else datetime.now(UTC),
            gate_run_id=None,
            gate_results=b"[]",
            artifacts=artifacts,
            changelog=plan.changelog,
            bundle_files=files,
            config_path=str(project.config_path),
            config_digest=project.loaded.digest,
        )
        bundle_path = publish.build_bundle(draft, git, folder)
        workspace = _unpack(bundle_path, folder / "tree", project, plan.version)
        gate_run = _judge(workspace, project, state, store, actor, plan, request)
        results = [r.as_json() for r in gate_run.results] if gate_run else []
        sbom = build_sbom(
            workspace,
            model,
            version=plan.version,
            commit=project.head,
            source_dir=_source_dir(project),
        )
        candidate = replace(
            draft,
            gate_run_id=gate_run.id if gate_run else None,
            gate_results=publish.gate_results_bytes(results),
            sbom=sbom.document,
        )
        record = publish.publish(
            candidate,
            bundle_path,
            store=store,
            blobs=blobs,
            git=git,
            signer=signer,
            actor=actor,
            tag=request.tag,
        )
    if request.push and request.tag:
        try:
            git.run("push", "origin", f"refs/tags/{tag}")
        except GitError as error:
            raise UserError(
                f"released {plan.version}, but pushing {tag} failed: {error.message}",
                hint=f"push it yourself: git push origin {tag}",
            ) from error
    deployed, held = (
        _auto_deploy(state, store, actor, project, plan.version) if request.deploy else ((), ())
    )
    return replace(
        base,
        released=True,
        reason=f"released {plan.version}",
        record=record,
        run=run,
        gate_run=gate_run,
        deployments=deployed,
        held_back=held,
    )


def _project(cwd: Path, request: ReleaseRequest) -> _Project:
    git = Git(cwd)
    bare = git.is_bare()
    ref = request.commit or "HEAD"
    try:
        head = git.resolve_commit(ref)
    except GitError as error:
        raise ArgumentError(
            f"{ref!r} is not a commit of this repository",
            hint="name a branch, tag or commit that exists ('git log --oneline' shows them)",
        ) from error
    relative, _ = config_location(
        cwd, request.config_file, toplevel=None if bare else git.toplevel()
    )
    loaded = load_committed(git, head, relative)
    project_dir = "" if str(relative.parent) == "." else str(relative.parent)
    branch = request.branch
    if branch is None and (request.commit is None or git.find_commit("HEAD") == head):
        branch = git.current_branch()
    return _Project(git, loaded, relative, project_dir, head, branch, bare)


def _moved_on(git: Git, project: _Project, request: ReleaseRequest) -> str | None:
    """Why nothing is released when the named branch has moved past the named commit (its
    newer commit gets a release of its own), or None."""
    if request.commit is None or request.branch is None:
        return None
    tip = git.find_commit(f"refs/heads/{request.branch}")
    if tip is None:
        raise ArgumentError(
            f"--branch {request.branch!r} is not a branch of this repository",
            hint="name the branch the commit is on",
        )
    if tip == project.head:
        return None
    if not git.is_ancestor(project.head, tip):
        raise ArgumentError(
            f"{project.head[:12]} is not on the branch {request.branch}",
            hint="name the branch the commit is on, or drop --branch",
        )
    return f"{request.branch} has moved on to {tip[:12]}; its newest commit is released instead"


@contextmanager
def _one_at_a_time(state: StateDir) -> Iterator[None]:
    """Hold the state directory's release lock (an flock: a crash releases it)."""
    state.ensure()
    with (state.root / "release.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


RELEASE_COMMIT = "chore(release): {version}"


def _release_commit(git: Git, cwd: Path, version: str, files: Mapping[str, bytes]) -> str:
    """Commit the version files and the changelog; a release commit made before (by a run
    that was interrupted) is used again rather than made twice."""
    message = RELEASE_COMMIT.format(version=version)
    head = git.resolve_commit("HEAD")
    if git.run("log", "-1", "--format=%s", head).strip() == message:
        return head
    top = git.toplevel()
    for path, data in files.items():
        (top / path).parent.mkdir(parents=True, exist_ok=True)
        (top / path).write_bytes(data)
    git.run("add", "--", *files)
    git.run("commit", "--quiet", "--message", message)
    return git.resolve_commit("HEAD")


def _auto_deploy(
    state: StateDir, store: Store, actor: str, project: _Project, version: str
) -> tuple[tuple[Deployment, ...], tuple[Soak, ...]]:
    """Deploy the new release to every environment marked ``auto``, in the order written.

    Each deployment passes the deploy checks first (a failure stops here, exit 1). One whose
    ``promote_from`` soak has not passed is held back (not a failure of the release);
    ``shipyard promote`` takes the release there later. One that waits for approvals is left
    waiting (``shipyard approve`` starts it) and the next environment is deployed.
    """
    model = project.loaded.model
    checks_with = DeployChecks(
        config=model, project_dir=None if project.bare else _source_dir(project), git=project.git
    )
    done = []
    held = []
    for name, environment in model.environments.items():
        if not environment.auto:
            continue
        settings = settings_for(model, name, project_dir=project.project_dir)
        soak = soak_for(store, settings, version)
        if soak is not None and not soak.ready:
            held.append(soak)
            continue
        try:
            created = request_deploy(
                store, state, settings, version, actor=actor, checks_with=checks_with
            )
        except DeployChecksFailed as refused:
            raise DeployChecksFailed(
                f"released {version}, but {refused.message}", hint=refused.hint
            ) from refused
        if created.status == DeploymentStatus.WAITING:
            done.append(created)
            continue
        controller = Controller(
            store=store,
            target_for=lambda chosen: target_for(state, chosen),
            actor=actor,
            on_saved=lambda after: _reap_when_due(state, after),
        )
        try:
            done.append(controller.drive(created.id))
        except ApprovalRequired:  # one ahead of it waits for approval: so does this one
            done.append(get_deployment(store, created.id))
    return tuple(done), tuple(held)


def _reap_when_due(state: StateDir, after: EnvironmentState) -> None:
    """A version an auto-deploy left warm is stopped by the supervised reaper on time."""
    if after.warm_until is not None:
        ensure_reaper(state)


def _check_unused(
    store: Store, git: Git, project: str, version: str, tag: str, tagging: bool
) -> None:
    try:
        records.get(store, project, version)
    except UserError:
        pass
    else:
        raise records.VersionTaken(
            f"{project} {version} was released before; a version is never reused",
            hint="make a new commit that bumps the version, or use 'Release-As:'",
        )
    if tagging and git.tag_commit(tag) is not None:
        raise records.VersionTaken(
            f"the tag {tag} exists already", hint=f"delete it if it is a mistake: git tag -d {tag}"
        )


def _passed_run(
    cwd: Path,
    state: StateDir,
    store: Store,
    actor: str,
    project: _Project,
    version: str,
    request: ReleaseRequest,
    observer: RunObserver | None,
) -> runs.Run | None:
    if project.loaded.model.pipeline is None and request.run_id is None:
        return None  # nothing to build: the release is the commit's tree alone
    if request.run_id is not None:
        run = runs.get_run(store, request.run_id)
        if run.commit != project.head:
            raise ArgumentError(
                f"run #{run.id} ran {run.commit[:12]}, not the commit released "
                f"({project.head[:12]})",
                hint="release the commit it ran, or run the pipeline again",
            )
        if run.status != "passed":
            raise ReleaseBlocked(
                f"run #{run.id} {run.status}; only a passed run is released",
                hint="fix it and run again, or drop --run",
            )
        return run
    run_request = RunRequest(
        ref=project.head,
        event="release",
        version=version,
        branch=project.branch,
        config_file=request.config_file,
    )
    if request.concurrency:
        run_request = replace(run_request, concurrency=request.concurrency)
    prepared = prepare_run(cwd, run_request, state)
    run = asyncio.run(execute(prepared, store=store, state=state, actor=actor, observer=observer))
    if run.status != "passed":
        raise ReleaseBlocked(
            f"the pipeline {run.status} (run #{run.id}); nothing was released",
            hint=f"see 'shipyard runs show {run.id}'",
        )
    return run


def _artifacts(store: Store, blobs: BlobStore, run_id: int) -> dict[str, str]:
    """Every artifact file of a run by path; two jobs may not disagree on one path."""
    found: dict[str, tuple[str, str]] = {}
    for job in runs.jobs_of(store, run_id):
        if not job.artifacts:
            continue
        for file in load_set(job.artifacts, blobs).files:
            earlier = found.get(file.path)
            if earlier is not None and earlier[0] != file.digest:
                raise UserError(
                    f"jobs {earlier[1]} and {job.job_id} both produced "
                    f"{file.path!r} with different contents",
                    hint="give the release's artifacts distinct names",
                )
            found[file.path] = (file.digest, job.job_id)
    return {path: digest for path, (digest, _) in found.items()}


def _unpack(bundle_path: Path, tree: Path, project: _Project, version: str) -> Path:
    """Unpack the bundle; returns the project's folder in it (what gates and the SBOM read)."""
    tree.mkdir()
    with tarfile.open(bundle_path, "r:gz") as archive:
        archive.extractall(tree, filter="data")
    return tree / f"{project.loaded.model.project}-{version}" / project.project_dir


def _source_dir(project: _Project) -> Path:
    """The project's folder in the working tree (settings' relative paths resolve here); in a
    bare repository, which has none, the repository itself."""
    if project.bare:
        return project.git.common_dir()
    return project.git.toplevel() / project.project_dir


def _judge(
    workspace: Path,
    project: _Project,
    state: StateDir,
    store: Store,
    actor: str,
    plan: planning.VersionPlan,
    request: ReleaseRequest,
) -> GateRun | None:
    """Run the configured release gates on the unpacked bundle; a failure blocks."""
    model = project.loaded.model
    if model.gates is None:
        if request.overrides:
            raise ArgumentError("--override names a gate, but no gates are configured")
        return None
    context = GateContext(
        workspace=workspace,
        config=model,
        state_root=state.root,
        release=plan.version,
        commit=project.head,
        project_dir=_source_dir(project),
    )
    gate_run = judge(
        store,
        GateRequest(context=context, kind="release", overrides=dict(request.overrides)),
        actor=actor,
        subject=f"release:{model.project}@{plan.version}",
    )
    if gate_run.blocked:
        failed = [r.gate for r in gate_run.results if r.blocks]
        raise ReleaseBlocked(
            f"release gate(s) failed: {', '.join(failed)}; nothing was released",
            hint="fix the findings ('shipyard scan'), or override with "
            f'--override {failed[0]} --reason "…"',
        )
    return gate_run


def _in_project(paths: list[str], project_dir: str) -> list[str]:
    return [_join(project_dir, spec) for spec in paths]


def _join(project_dir: str, path: str) -> str:
    return f"{project_dir}/{path}" if project_dir else path


def _text_at(git: Git, commit: str, path: str) -> str | None:
    try:
        return git.run_bytes("show", f"{commit}:{path}").decode("utf-8")
    except GitError:
        return None


def _repository(git: Git) -> str:
    remote = git.config_get("remote.origin.url")
    return remote or f"file://{git.common_dir() if git.is_bare() else git.toplevel()}"
