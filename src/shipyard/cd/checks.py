"""Deploy checks: what must hold before a release may start running in an environment.

On every path that changes what an environment runs (deploy, promote, rollback, the
auto-deploy of a release) the release's signature and digests are verified and its signing key
must be trusted there; then every configured gate of kind ``deploy`` judges it. The verdicts
are one gate run, recorded and audited; a failure refuses the deployment (exit 1) unless a
person overrides that gate with a reason, which is never allowed for the signature.

Approvals are the other deploy check: the environment's ``approval`` rule is frozen with the
deployment, and approvals (signed or not) are counted against it. Nothing here starts or
drives a deployment.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shipyard.cd import deployments
from shipyard.cd.deployments import Deployment, DeploymentStatus
from shipyard.cd.settings import DeploySettings
from shipyard.core import approvals, audit
from shipyard.core.approvals import Approval, ApprovalRule, Tally
from shipyard.core.blobs import BlobError, BlobStore
from shipyard.core.config import ShipyardConfig
from shipyard.core.config.delivery import Approval as ApprovalConfig
from shipyard.core.errors import (
    ArgumentError,
    CheckFailed,
    ConfigError,
    GitError,
    NotFoundError,
    WaitingForPerson,
)
from shipyard.core.git import Git
from shipyard.core.identity import validate_actor_name
from shipyard.core.state import StateDir
from shipyard.core.store import Store
from shipyard.gates.interface import (
    Finding,
    GateContext,
    GateResult,
    Severity,
    Status,
    configured_gates,
    gate_named,
)
from shipyard.gates.records import GateRun, override_gate, record_gate_run, release_sbom
from shipyard.gates.records import release_workspace as unpack_release
from shipyard.gates.runner import run_gates
from shipyard.release import records
from shipyard.release.keys import (
    InsecureKeyFile,
    KeyFileInvalid,
    Keyring,
    PublicKey,
    SigningError,
    SigningKey,
    SigningKeyMissing,
)
from shipyard.release.records import ReleaseRecord
from shipyard.release.verification import verify

SIGNATURE = "signature"
"""The built-in check of every deployment: the release verifies, signed by a trusted key."""

APPROVER_KEY_ENV = "SHIPYARD_APPROVER_KEY"
"""Names the approver's private key file that ``shipyard approve --sign`` signs with."""

APPROVER_PASSPHRASE_ENV = "SHIPYARD_APPROVER_KEY_PASSPHRASE"  # noqa: S105 - a variable's name
"""The passphrase of an encrypted approver key."""

_SIGNATURE_FINDING = "SHIPYARD-SIGNATURE"
_UNTRUSTED_FINDING = "SHIPYARD-UNTRUSTED-KEY"


class DeployChecksFailed(CheckFailed):
    """A deploy check failed and was not overridden: the release is not deployed (exit 1)."""


class ApprovalRequired(WaitingForPerson):
    """The deployment waits until its approvals suffice (exit 3)."""


@dataclass(frozen=True)
class DeployChecks:
    """What the deploy checks of one request judge by, beyond the release and the environment.

    ``project_dir`` is the project's folder in the working tree (where the approvers folder
    and the gates' relative paths are), ``git`` the repository that tells who wrote the
    release's commit, and ``overrides`` the failed gates a person lets through, with why.
    """

    config: ShipyardConfig
    project_dir: Path | None = None
    git: Git | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)


# --- the checks --------------------------------------------------------------------------


def run_checks(
    store: Store,
    state: StateDir,
    checks: DeployChecks | None,
    settings: DeploySettings,
    record: ReleaseRecord,
    *,
    actor: str,
    kind: str,
    deployment: Deployment | None = None,
    approved: Sequence[Mapping[str, Any]] = (),
) -> GateRun:
    """Run the signature check and every configured deploy gate; record them as one gate run.

    ``checks`` None judges the signature alone, with the keyring's trust. Overrides apply to
    failed gates only; ``DeployChecksFailed`` names each failure that stands, with its findings.
    """
    run = judge(
        store,
        state,
        checks,
        settings,
        record,
        actor=actor,
        kind=kind,
        deployment=deployment,
        approved=approved,
    )
    if run.blocked:
        raise refusal(run, settings, record)
    return run


def judge(
    store: Store,
    state: StateDir,
    checks: DeployChecks | None,
    settings: DeploySettings,
    record: ReleaseRecord,
    *,
    actor: str,
    kind: str,
    deployment: Deployment | None = None,
    approved: Sequence[Mapping[str, Any]] = (),
) -> GateRun:
    """``run_checks`` without the refusal: the recorded gate run, blocked or not.

    The deploy gates judge only a release whose signature check passed: an unverified bundle
    is never unpacked.
    """
    overrides = dict(checks.overrides) if checks is not None else {}
    names = configured_gates(checks.config, "deploy") if checks is not None else []
    _check_overrides(overrides, names, settings.environment)
    started = datetime.now(UTC)
    signature = signature_result(state, record, trusted_keys(checks, settings.environment))
    results = [signature]
    if names and checks is not None and signature.status is Status.PASS:
        with _release_tree(store, state, record, settings.project_dir) as (tree, sbom):
            context = GateContext(
                workspace=tree,
                config=checks.config,
                state_root=state.root,
                release=record.version,
                environment=settings.environment,
                commit=record.commit,
                project_dir=checks.project_dir,
                sbom=sbom,
                actor=actor,
                deployment=_deployment_document(settings, record, kind, actor, deployment, store),
                release_record=release_document(
                    state, record, author=_author_or_none(checks, record)
                ),
                running=_running_document(store, state, settings, checks),
                approvals=list(approved),
                read_artifact=artifact_reader(store, state, settings.project),
            )
            results += run_gates(context, names)
    return record_gate_run(
        store,
        kind="deploy",
        project=settings.project,
        actor=actor,
        results=results,
        started_at=started,
        finished_at=datetime.now(UTC),
        subject=deployment.subject
        if deployment is not None
        else f"deploy:{settings.project}/{settings.environment}@{record.version}",
        release=record.version,
        environment=settings.environment,
        commit=record.commit,
        overrides=overrides,
    )


def summary(run: GateRun) -> dict[str, Any]:
    """What a deployment records of its checks: the gate run, and each check's verdict."""
    return {
        "gate_run": run.id,
        "status": run.status,
        "results": [
            {
                "check": result.gate,
                "status": result.status.value,
                "summary": result.summary,
                "overridden_by": result.overridden_by,
                "override_reason": result.override_reason,
            }
            for result in run.results
        ],
    }


def refusal(run: GateRun, settings: DeploySettings, record: ReleaseRecord) -> DeployChecksFailed:
    """The error that refuses a deployment: each failed check with its findings, and a way on."""
    failed = [result for result in run.results if result.blocks]
    parts = [f"{result.gate}: {_findings_text(result)}" for result in failed]
    overridable = [result.gate for result in failed if result.gate != SIGNATURE]
    if any(result.gate == SIGNATURE for result in failed):
        hint = (
            "a signature check cannot be overridden: deploy a release that verifies "
            f"('shipyard verify {record.version}') and is signed by a key "
            f"environments.{settings.environment}.trusted_keys lists"
        )
    else:
        flags = " ".join(f"--override {name}" for name in overridable)
        hint = (
            "fix the findings, or let them through with a reason (audited): "
            f'{flags} --reason "why this may go out"'
        )
    checks = "check" if len(failed) == 1 else "checks"
    return DeployChecksFailed(
        f"{settings.project} {record.version} is not deployed to {settings.environment}: "
        f"the deploy {checks} failed (gate run #{run.id}): " + "; ".join(parts),
        hint=hint,
    )


def _findings_text(result: GateResult) -> str:
    blocking = [finding for finding in result.findings if finding.counts and finding.blocking]
    shown = [finding.message for finding in blocking[:3]]
    more = len(blocking) - len(shown)
    text = "; ".join(shown) or result.summary
    return text + (f" (and {more} more)" if more > 0 else "")


def _check_overrides(overrides: Mapping[str, str], names: Sequence[str], environment: str) -> None:
    if SIGNATURE in overrides:
        raise ArgumentError(
            "the signature check cannot be overridden: a release that does not verify, or is "
            "signed by a key the environment does not trust, is never deployed",
            hint=f"drop --override {SIGNATURE}",
        )
    for name, reason in overrides.items():
        if not reason.strip():
            raise ArgumentError(
                f"overriding {name!r} needs a reason", hint='add --reason "why this may go out"'
            )
    unknown = sorted(set(overrides) - set(names))
    for name in unknown:
        gate_named(name)  # a name no gate has: UnknownGate, with a suggestion
    if unknown:
        raise ArgumentError(
            f"--override names {', '.join(unknown)}, which "
            f"{'is' if len(unknown) == 1 else 'are'} not among the deploy checks of {environment}",
            hint=f"the checks run are: {', '.join([SIGNATURE, *names])} "
            f"({SIGNATURE} cannot be overridden)",
        )


# --- signature and trust -------------------------------------------------------------------


def trusted_keys(checks: DeployChecks | None, environment: str) -> tuple[str, ...] | None:
    """The key ids the environment trusts (None: every key of the repository's keyring)."""
    if checks is None or environment not in checks.config.environments:
        return None
    listed = checks.config.environments[environment].trusted_keys
    return None if listed is None else tuple(listed)


def signature_result(
    state: StateDir, record: ReleaseRecord, trusted: Sequence[str] | None
) -> GateResult:
    """The signature check: every digest and the signature verify, by a trusted key."""
    started = datetime.now(UTC)
    name = f"{record.project} {record.version}"
    findings: list[Finding] = []
    try:
        report = verify(
            record, blobs=BlobStore.for_state(state), keyring=Keyring.for_state(state), git=None
        )
    except (SigningError, BlobError) as error:
        findings.append(_signature_finding(f"{name} does not verify: {error.message}", error.hint))
    else:
        findings += [
            _signature_finding(f"{name} does not verify: {problem}", details={"kind": problem.kind})
            for problem in report.problems
        ]
    if record.key_id is not None and trusted is not None and record.key_id not in trusted:
        findings.append(
            Finding(
                id=_UNTRUSTED_FINDING,
                severity=Severity.CRITICAL,
                location=f"key {record.key_id}",
                message=f"{name} is signed by key {record.key_id[:16]}, which this environment "
                "does not trust (it is not in its trusted_keys)",
                remediation="deploy a release signed by a trusted key, or add the key's id to "
                "trusted_keys if it may be trusted again",
                blocking=True,
            )
        )
    summary = (
        f"signed by trusted key {record.key_id[:16]}; every digest verifies"
        if not findings and record.key_id
        else f"{len(findings)} problem{'s' if len(findings) != 1 else ''}"
    )
    return GateResult(
        gate=SIGNATURE,
        status=Status.FAIL if findings else Status.PASS,
        findings=tuple(findings),
        summary=summary,
        duration_s=(datetime.now(UTC) - started).total_seconds(),
    )


def _signature_finding(
    message: str, hint: str | None = None, details: Mapping[str, Any] | None = None
) -> Finding:
    return Finding(
        id=_SIGNATURE_FINDING,
        severity=Severity.CRITICAL,
        location="signature",
        message=message,
        remediation=hint
        or "see 'shipyard verify VERSION'; a release that does not verify is never deployed",
        blocking=True,
        details=dict(details or {}),
    )


# --- what the deploy gates see ---------------------------------------------------------------


def release_document(
    state: StateDir, record: ReleaseRecord, *, author: str | None = None
) -> dict[str, Any]:
    """A release as deploy gates see it: its record, its gate results read back, its signer and
    the author of its commit (None when unknown)."""
    results: list[Any] = []
    if record.gate_results:
        try:
            results = json.loads(BlobStore.for_state(state).read_bytes(record.gate_results))
        except (BlobError, ValueError):
            results = []  # the signature check reports a missing or modified blob
    return {
        **record.as_json(),
        "gate_results_digest": record.gate_results,
        "gate_results": results,
        "signer": record.key_id,
        "releaser": record.actor,
        "author": author,
    }


def artifact_reader(
    store: Store, state: StateDir, project: str
) -> Callable[[str, str], bytes | None]:
    """Reads a release's artifact by (version, path); None when it has no such artifact."""
    blobs = BlobStore.for_state(state)

    def read(version: str, path: str) -> bytes | None:
        try:
            digest = records.get(store, project, version).artifacts.get(path)
        except NotFoundError:
            return None
        return None if digest is None else blobs.read_bytes(digest)

    return read


def _running_document(
    store: Store, state: StateDir, settings: DeploySettings, checks: DeployChecks
) -> dict[str, Any] | None:
    active = deployments.environment(store, settings.project, settings.environment).active_version
    if active is None:
        return None
    try:
        running = records.get(store, settings.project, active)
    except NotFoundError:
        return None
    return release_document(state, running, author=_author_or_none(checks, running))


def _deployment_document(
    settings: DeploySettings,
    record: ReleaseRecord,
    kind: str,
    actor: str,
    deployment: Deployment | None,
    store: Store,
) -> dict[str, Any]:
    if deployment is not None:
        return deployment.as_json()
    running = deployments.environment(store, settings.project, settings.environment)
    return {
        "id": None,
        "project": settings.project,
        "environment": settings.environment,
        "version": record.version,
        "kind": kind,
        "strategy": settings.strategy,
        "status": None,
        "previous_version": running.active_version,
        "actor": actor,
    }


@contextmanager
def _release_tree(
    store: Store, state: StateDir, record: ReleaseRecord, project_dir: str
) -> Iterator[tuple[Path, Path | None]]:
    """The release's bundle unpacked (its project's folder) and its SBOM, for the gates."""
    blobs = BlobStore.for_state(state)
    with tempfile.TemporaryDirectory(prefix="shipyard-deploy-checks-") as folder:
        into = Path(folder)
        (into / "bundle").mkdir()
        root, _ = unpack_release(store, blobs, record.project, record.version, into / "bundle")
        sbom = release_sbom(store, blobs, record.project, record.version, into)
        tree = root / project_dir if project_dir else root
        yield (tree if tree.is_dir() else root), sbom


# --- approvals -------------------------------------------------------------------------------


def author_of(git: Git | None, record: ReleaseRecord) -> str:
    """The author's email of the release's commit; ``CheckFailed`` when it cannot be told."""
    if git is None:
        raise DeployChecksFailed(
            f"who wrote {record.project} {record.version}'s commit cannot be told without its "
            "repository, so not_author cannot be checked",
            hint="deploy from a working tree of the repository",
        )
    try:
        email = git.run("log", "-1", "--format=%ae", record.commit).strip()
    except GitError as error:
        raise DeployChecksFailed(
            f"who wrote {record.project} {record.version}'s commit {record.commit[:12]} cannot "
            f"be told ({error.message}), so not_author cannot be checked",
            hint="fetch the commit into this repository, then ask again",
        ) from error
    if not email:
        raise DeployChecksFailed(
            f"commit {record.commit[:12]} names no author's email, so not_author cannot be checked",
            hint="drop not_author for this environment, or release a commit with an author",
        )
    return email


def _author_or_none(checks: DeployChecks, record: ReleaseRecord) -> str | None:
    try:
        return author_of(checks.git, record)
    except DeployChecksFailed:
        return None


def approval_rule(
    checks: DeployChecks | None, settings: DeploySettings, record: ReleaseRecord
) -> ApprovalRule | None:
    """The environment's approval rule as frozen with a deployment (None: it needs none).

    The groups' members and the approvers' public keys are read from the approvers folder
    now; the author and releaser are those of ``record``.
    """
    if checks is None or settings.environment not in checks.config.environments:
        return None
    config = checks.config.environments[settings.environment].approval
    if config is None:
        return None
    folder = (checks.project_dir / config.approvers) if checks.project_dir is not None else None
    return ApprovalRule(
        required=config.required,
        not_author=config.not_author,
        not_releaser=config.not_releaser,
        groups=_groups(folder, config, settings.environment),
        signed=config.signed,
        author=author_of(checks.git, record) if config.not_author else None,
        releaser=record.actor,
        keys=approver_keys(folder) if folder is not None else {},
        approvers=config.approvers,
    )


def _groups(
    folder: Path | None, config: ApprovalConfig, environment: str
) -> dict[str, tuple[str, ...]]:
    groups: dict[str, tuple[str, ...]] = {}
    for name in config.groups:
        where = f"{config.approvers}/groups/{name}.txt"
        if folder is None:
            raise ConfigError(
                f"{environment}'s approvals count members of {name}, but {where} cannot be read "
                "without a working tree",
                hint="deploy from a working tree of the repository",
            )
        path = folder / "groups" / f"{name}.txt"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(
                f"{environment}'s approvals count members of {name}, but {where} does not exist",
                hint=f"list the members in {where}, one identity (email) a line",
            ) from None
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"cannot read {where}: {error}") from error
        members = []
        for number, line in enumerate(text.splitlines(), start=1):
            entry = line.split("#", 1)[0].strip()
            if entry:
                members.append(validate_actor_name(entry, origin=f"{where}:{number}"))
        groups[name] = tuple(members)
    return groups


def approver_keys(folder: Path) -> dict[str, tuple[str, ...]]:
    """Each approver's public keys (PEM) from ``folder/NAME.pub`` (NAME: their identity)."""
    keys: dict[str, tuple[str, ...]] = {}
    if not folder.is_dir():
        return keys
    for path in sorted(folder.glob("*.pub")):
        if path.is_file():
            keys[path.name.removesuffix(".pub")] = tuple(
                key.pem() for key in read_public_keys(path.read_bytes(), source=str(path))
            )
    return keys


def read_public_keys(data: bytes, *, source: str) -> list[PublicKey]:
    """The ed25519 public keys of a file: one PEM block, or OpenSSH lines (``ssh-ed25519 …``)."""
    if b"-----BEGIN" in data:
        return [PublicKey.from_pem(data, source=source)]
    found = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            loaded = serialization.load_ssh_public_key(text.encode())
        except (ValueError, UnsupportedAlgorithm) as error:
            raise KeyFileInvalid(
                f"{source}:{number} is not a public key",
                hint="write an 'ssh-ed25519 AAAA…' line, or a PEM '-----BEGIN PUBLIC KEY-----' "
                "block",
            ) from error
        if not isinstance(loaded, Ed25519PublicKey):
            raise KeyFileInvalid(
                f"{source}:{number} holds a {type(loaded).__name__}, not an ed25519 key",
                hint="approvals are signed with ed25519 keys only",
            )
        found.append(PublicKey.of(loaded))
    if not found:
        raise KeyFileInvalid(f"{source} holds no public key", hint="add the approver's key")
    return found


def load_approver_key(path: Path, passphrase: str | None = None) -> SigningKey:
    """An approver's ed25519 private key (PKCS#8 PEM or OpenSSH), readable by its owner only."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise SigningKeyMissing(
            f"cannot open the approver key {path}: {error.strerror}",
            hint=f"name your private key with --key FILE or {APPROVER_KEY_ENV}",
        ) from error
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            raise KeyFileInvalid(f"{path} is not a regular file", hint="name the key file itself")
        if opened.st_mode & 0o077:
            raise InsecureKeyFile(
                f"the approver key {path} is readable by other users "
                f"(mode {stat.S_IMODE(opened.st_mode):04o})",
                hint=f"run 'chmod 600 {path}'",
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read()
    finally:
        os.close(fd)
    password = passphrase.encode() if passphrase else None
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            loaded: object = serialization.load_ssh_private_key(data, password=password)
        else:
            loaded = serialization.load_pem_private_key(data, password=password)
    except UnsupportedAlgorithm as error:
        raise KeyFileInvalid(
            f"the approver key {path} cannot be read: {error}",
            hint="an encrypted OpenSSH key needs the Python package bcrypt (pip install bcrypt); "
            "or sign with an encrypted PEM key (openssl genpkey -algorithm ed25519 -aes256)",
        ) from error
    except (TypeError, ValueError) as error:
        raise KeyFileInvalid(
            f"the approver key {path} cannot be read: {error}",
            hint=f"an encrypted key needs {APPROVER_PASSPHRASE_ENV}; the key must be ed25519",
        ) from error
    if not isinstance(loaded, Ed25519PrivateKey):
        raise KeyFileInvalid(
            f"the approver key {path} holds a {type(loaded).__name__}, not an ed25519 key",
            hint="approvals are signed with ed25519 keys: ssh-keygen -t ed25519",
        )
    return SigningKey.of(loaded)


def signature_verifier(deployment: Deployment, rule: ApprovalRule) -> approvals.Verifier:
    """Says why a signed approval does not hold for ``deployment`` (None when it holds)."""

    def why_not(approval: Approval) -> str | None:
        if approval.statement is None or approval.signature is None:
            return f"{approval.approver}'s approval is not signed"
        try:
            said = json.loads(approval.statement)
            signature = base64.b64decode(approval.signature, validate=True)
        except (ValueError, binascii.Error):
            return f"{approval.approver}'s signed approval cannot be read"
        expected = {
            "_type": approvals.STATEMENT_TYPE,
            "deployment": deployment.id,
            "project": deployment.project,
            "environment": deployment.environment,
            "version": deployment.version,
            "release": deployment.settings.get("bundle"),
            "approver": approval.approver,
        }
        if not isinstance(said, dict) or any(said.get(k) != v for k, v in expected.items()):
            return f"{approval.approver}'s signed statement is not about this deployment"
        for pem in rule.keys_of(approval.approver):
            key = PublicKey.from_pem(pem.encode(), source=f"{rule.approvers}/")
            if key.verifies(signature, approval.statement.encode()):
                return None
        return (
            f"{approval.approver}'s signature does not verify with a key listed for them in "
            f"{rule.approvers}/"
        )

    return why_not


def rule_of(deployment: Deployment) -> ApprovalRule | None:
    """The approval rule frozen with a deployment (None: it needs no approval)."""
    frozen = deployment.settings.get("approval")
    return ApprovalRule.from_json(frozen) if frozen else None


def approval_tally(store: Store, deployment: Deployment) -> Tally | None:
    """A deployment's approvals counted against its rule (None: it needs no approval)."""
    rule = rule_of(deployment)
    if rule is None:
        return None
    with store.read() as conn:
        recorded = approvals.for_deployment(conn, deployment.id)
    return approvals.tally(rule, recorded, signature_verifier(deployment, rule))


def approvals_seen(store: Store, deployment: Deployment) -> list[dict[str, Any]]:
    """A deployment's approvals as deploy gates see them, oldest first: ``signed`` only when
    the signature verifies with a key listed for the approver, ``counts`` and ``why_not`` as
    the environment's rule judges them."""
    tally = approval_tally(store, deployment)
    if tally is None:
        return []
    rule = tally.rule
    verify = signature_verifier(deployment, rule)
    return [
        {
            **counted.as_json(),
            "signed": counted.approval.signed and verify(counted.approval) is None,
        }
        for counted in tally.approvals
    ]


def approve(
    store: Store,
    deployment: Deployment,
    *,
    approver: str,
    reason: str | None,
    key: SigningKey | None = None,
    now: datetime | None = None,
) -> tuple[Approval, Tally]:
    """Record ``approver``'s approval (signed with ``key`` if given) and count them all.

    Refused, and not recorded, when it would not count: the environment needs no approval, the
    deployment started already, the approver is the author or releaser or in none of the
    groups, or the environment takes signed approvals only.
    """
    rule = rule_of(deployment)
    if rule is None:
        raise approvals.ApprovalError(
            f"deployment {deployment.id} to {deployment.environment} needs no approval",
            hint=f"environments.{deployment.environment}.approval sets who must approve",
        )
    if deployment.status not in (DeploymentStatus.WAITING, DeploymentStatus.PENDING):
        raise approvals.ApprovalError(
            f"deployment {deployment.id} is {deployment.status}; approvals count only before "
            "it starts",
            hint="list those waiting with 'shipyard deployments list'",
        )
    why = rule.why_not(approver)
    if why is not None:
        raise approvals.ApprovalRefused(
            f"{approver}'s approval of deployment {deployment.id} would not count: {why}",
            hint="ask somebody else to approve it",
        )
    moment = now or datetime.now(UTC)
    statement = signature = key_id = None
    if key is not None:
        listed = {
            PublicKey.from_pem(pem.encode(), source="").keyid for pem in rule.keys_of(approver)
        }
        if key.keyid not in listed:
            raise approvals.ApprovalRefused(
                f"the key {key.keyid[:16]} is not listed for {approver} in {rule.approvers}/ "
                f"(as read when deployment {deployment.id} was asked for)",
                hint=f"commit your public key as {rule.approvers}/{approver}.pub, then ask for "
                "the deployment again",
            )
        statement = approvals.statement(
            deployment_id=deployment.id,
            project=deployment.project,
            environment=deployment.environment,
            version=deployment.version,
            release_digest=str(deployment.settings.get("bundle")),
            approver=approver,
            at=moment,
        )
        signature = base64.b64encode(key.sign(statement.encode())).decode("ascii")
        key_id = key.keyid
    elif rule.signed:
        raise approvals.ApprovalRefused(
            f"{deployment.environment} takes signed approvals only",
            hint=f"approve with --sign (your key: --key FILE or {APPROVER_KEY_ENV})",
        )
    with store.write() as conn:
        approval = approvals.record(
            conn,
            deployment_id=deployment.id,
            approver=approver,
            reason=reason,
            at=moment,
            statement=statement,
            signature=signature,
            key_id=key_id,
        )
    tally = approval_tally(store, deployment)
    assert tally is not None
    return approval, tally


def recheck(
    store: Store,
    state: StateDir,
    checks: DeployChecks,
    deployment: Deployment,
    *,
    actor: str,
) -> GateRun:
    """Run the checks again as a waiting deployment is about to start, its approvals in hand.

    Time passed while it waited (a policy may judge the time, or what runs now): the gates
    overridden when it was asked for are overridden again in that person's name. A failure
    fails the deployment, which never started.
    """
    settings = DeploySettings.from_json(deployment.settings["deploy"])
    record = records.get(store, deployment.project, deployment.version)
    asked = deployment.settings.get("checks") or {}
    earlier = {
        result["check"]: result
        for result in asked.get("results", [])
        if result.get("overridden_by") and result.get("override_reason")
    }
    run = judge(
        store,
        state,
        DeployChecks(checks.config, checks.project_dir, checks.git),
        settings,
        record,
        actor=actor,
        kind=deployment.kind,
        deployment=deployment,
        approved=approvals_seen(store, deployment),
    )
    for result in run.results:
        if result.blocks and result.gate in earlier:
            old = earlier[result.gate]
            run = override_gate(
                store,
                run.id,
                result.gate,
                actor=str(old["overridden_by"]),
                reason=str(old["override_reason"]),
            )
    if run.blocked:
        refused = refusal(run, settings, record)
        deployments.transition(
            store,
            deployment.id,
            DeploymentStatus.FAILED,
            actor=actor,
            message=f"the deploy checks failed as it was about to start: {refused.message}",
        )
        raise refused
    progress = {**deployment.progress, "checks_at_start": summary(run)}
    deployments.save_progress(store, deployment.id, progress)
    return run


def record_checked(store: Store, deployment: Deployment, run: GateRun, *, actor: str) -> None:
    """Audit which gate run let a deployment through."""
    with store.write() as conn:
        audit.append(
            conn,
            actor=actor,
            action="deployment.checked",
            subject=deployment.subject,
            details={
                "gate_run": run.id,
                "status": run.status,
                "overridden": [r.gate for r in run.results if r.overridden],
            },
        )


def waiting_message(rule: ApprovalRule) -> str:
    """Why a new deployment waits: ``waiting for approval: 2 approvals, not by the author``."""
    return f"waiting for approval: {rule.describe()}"
