"""Deploy checks and approvals, on real releases in a real store, driven on the fake target.

Two releases are cut with ``shipyard release`` in a real repository (signed, their bundles in
the blob store); deployments are asked for through ``delivery`` as the commands do, and driven
by the controller against the fake target. The deploy gate here is a small one of the test's
own ("probe"), configured through a gates section that has a place for it; the real policy and
metrics gates are run through the CLI in test_checks_cli.py.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shipyard.cd import checks, deployments
from shipyard.cd.checks import ApprovalRequired, DeployChecks, DeployChecksFailed
from shipyard.cd.controller import Controller
from shipyard.cd.delivery import request_deploy, warm_switch
from shipyard.cd.deployments import Deployment
from shipyard.cd.settings import settings_for
from shipyard.cd.targets import FakeTarget
from shipyard.core import approvals, audit
from shipyard.core.approvals import ApprovalRefused
from shipyard.core.blobs import BlobStore
from shipyard.core.config import ShipyardConfig, load_config_text
from shipyard.core.config.gates import Gates
from shipyard.core.errors import ArgumentError, ConfigError
from shipyard.core.git import Git
from shipyard.core.state import StateDir
from shipyard.core.state import locate as locate_state
from shipyard.core.store import Store, open_store
from shipyard.gates import GATES, Finding, Gate, GateContext, Severity, Verdict, register
from shipyard.gates.interface import UnknownGate
from shipyard.gates.records import gate_runs_of, get_gate_run
from shipyard.release.keys import SigningKey
from support import git, run_cli

RELEASER = "rel@example.com"
AUTHOR = "ada@example.com"  # the author of every commit of the test repositories

CONFIG = """project: webapp
release:
  version_files: [VERSION]
service:
  command: python3 -m app --port {{port}}
environments:
  staging:
    strategy: {{blue_green: {{rollback_window: 10m}}}}
{staging}
  production:
    strategy: {{recreate: {{}}}}
{production}
"""


class ProbeGates(Gates):
    """The gates section with a place for the test's own deploy gate."""

    probe: dict[str, Any] | None = None


class Probe(Gate):
    """A deploy gate that fails the versions it is told to deny and remembers what it saw."""

    name = "probe"
    kind = "deploy"
    seen: ClassVar[list[GateContext]] = []
    trees: ClassVar[list[str]] = []
    """The VERSION file of each tree judged, read while the gate judged it."""

    @classmethod
    def for_context(cls, context: GateContext) -> Probe:
        return cls()

    def judge(self, context: GateContext) -> Verdict:
        Probe.seen.append(context)
        Probe.trees.append((context.workspace / "VERSION").read_text().strip())
        assert isinstance(context.config.gates, ProbeGates)
        denied = (context.config.gates.probe or {}).get("deny", [])
        if context.release in denied:
            finding = Finding(
                id="PROBE-DENY",
                severity=Severity.HIGH,
                location="probe",
                message=f"{context.release} is withdrawn",
                blocking=True,
            )
            return Verdict.of([finding], "withdrawn")
        return Verdict.of([], "fine")


@pytest.fixture
def probe() -> Iterator[type[Probe]]:
    register(Probe)
    Probe.seen.clear()
    Probe.trees.clear()
    try:
        yield Probe
    finally:
        GATES.pop(Probe.name, None)


class Bench:
    """A repository with releases, its store, and a fake target to drive deployments on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state: StateDir = locate_state(path)
        self.store: Store = open_store(self.state)
        self.target = FakeTarget(self.state)

    def release(self, message: str) -> str:
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        result = run_cli("release", "--json", cwd=self.path)
        assert result.code == 0, result.output
        return str(json.loads(result.stdout)["version"])

    def config(
        self, *, staging: str = "", production: str = "", deny: tuple[str, ...] | None = None
    ) -> ShipyardConfig:
        """The configuration, with the probe gate on (denying ``deny``) unless ``deny`` is None."""
        text = CONFIG.format(staging=_indent(staging), production=_indent(production))
        config = load_config_text(text)
        if deny is None:
            return config
        return config.model_copy(update={"gates": ProbeGates(probe={"deny": list(deny)})})

    def checks(self, config: ShipyardConfig, **overrides: str) -> DeployChecks:
        return DeployChecks(config, self.path, Git(self.path), overrides=overrides)

    def ask(
        self,
        version: str,
        config: ShipyardConfig,
        environment: str = "staging",
        *,
        kind: str = "deploy",
        actor: str = "deployer@example.com",
        **overrides: str,
    ) -> Deployment:
        return request_deploy(
            self.store,
            self.state,
            settings_for(config, environment),
            version,
            actor=actor,
            kind=kind,
            checks_with=self.checks(config, **overrides),
        )

    def controller(self) -> Controller:
        return Controller(
            store=self.store, target_for=lambda _settings: self.target, actor="driver@example.com"
        )

    def deploy(self, version: str, config: ShipyardConfig, environment: str = "staging") -> None:
        finished = self.controller().drive(self.ask(version, config, environment).id)
        assert finished.status == "succeeded", finished.message

    def actions(self, subject: str) -> list[str]:
        with self.store.read() as conn:
            return [event.action for event in audit.events(conn, subject=subject)]

    def audited(self, subject: str, action: str) -> dict[str, Any]:
        with self.store.read() as conn:
            found = audit.events(conn, subject=subject, action=action)
        assert found, f"no {action} of {subject}"
        value = json.loads(found[-1].details)
        assert isinstance(value, dict)
        return value

    def deployments(self) -> list[Deployment]:
        return deployments.for_environment(self.store, "webapp")


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


@pytest.fixture
def bench(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bench]:
    """Two releases, 0.1.0 and 0.2.0, made by rel@example.com of commits by ada@example.com."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SHIPYARD_USER", RELEASER)
    (repo / "VERSION").write_text("0.0.0\n")
    (repo / "shipyard.yaml").write_text(CONFIG.format(staging="", production=""))
    git(repo, "add", "-A")
    assert run_cli("keys", "generate", cwd=repo).code == 0
    bench = Bench(repo)
    assert bench.release("feat: the service") == "0.1.0"
    assert bench.release("feat: a second feature") == "0.2.0"
    try:
        yield bench
    finally:
        bench.store.dispose()


# --- deploy gates and overrides ---------------------------------------------------------------


def test_a_failing_deploy_gate_refuses_the_deployment_before_anything_starts(
    bench: Bench, probe: type[Probe]
) -> None:
    config = bench.config(deny=("0.1.0",))
    with pytest.raises(DeployChecksFailed) as refused:
        bench.ask("0.1.0", config)
    message = refused.value.message
    assert message.startswith("webapp 0.1.0 is not deployed to staging: the deploy check failed")
    assert "probe: 0.1.0 is withdrawn" in message
    assert "--override probe --reason" in str(refused.value.hint)
    assert bench.deployments() == [] and bench.target.calls == []
    [run] = gate_runs_of(bench.store, "deploy:webapp/staging@0.1.0")
    assert (run.kind, run.status, run.environment, run.release) == (
        "deploy",
        "fail",
        "staging",
        "0.1.0",
    )
    assert [(r.gate, r.status.value) for r in run.results] == [
        ("probe", "fail"),
        ("signature", "pass"),
    ]
    assert bench.actions(run.subject) == ["gate.passed", "gate.failed"]  # signature first
    bench.deploy("0.2.0", config)  # another release goes through


def test_the_gates_see_the_release_what_runs_the_actor_and_the_artifacts(
    bench: Bench, probe: type[Probe]
) -> None:
    config = bench.config(deny=())
    bench.deploy("0.1.0", config)
    bench.ask("0.2.0", config, actor="dev@example.com")
    seen = probe.seen[-1]
    assert (seen.release, seen.environment, seen.actor) == ("0.2.0", "staging", "dev@example.com")
    assert seen.release_record is not None and seen.running is not None
    assert seen.release_record["version"] == "0.2.0"
    assert seen.release_record["author"] == AUTHOR
    assert seen.release_record["releaser"] == RELEASER
    assert seen.release_record["signer"] == seen.release_record["key_id"]
    assert seen.release_record["gate_results"] == []
    assert seen.running["version"] == "0.1.0"
    assert seen.deployment is not None
    assert (seen.deployment["id"], seen.deployment["kind"]) == (None, "deploy")
    assert seen.deployment["previous_version"] == "0.1.0"
    assert probe.trees[-1] == "0.2.0"  # it judged the release's own tree
    assert seen.project_dir == bench.path and seen.approvals == []
    assert seen.read_artifact is not None
    assert seen.read_artifact("0.2.0", "no/such/file") is None


def test_an_override_needs_a_reason_and_is_audited_and_recorded_with_the_deployment(
    bench: Bench, probe: type[Probe]
) -> None:
    config = bench.config(deny=("0.1.0",))
    with pytest.raises(ArgumentError, match="overriding 'probe' needs a reason"):
        bench.ask("0.1.0", config, probe="  ")
    assert gate_runs_of(bench.store, "deploy:webapp/staging@0.1.0") == []
    created = bench.ask("0.1.0", config, probe="the withdrawal is for production only")
    recorded = created.settings["checks"]
    run = get_gate_run(bench.store, recorded["gate_run"])
    assert (run.status, run.blocked) == ("overridden", False)
    probed = next(r for r in recorded["results"] if r["check"] == "probe")
    assert probed["status"] == "fail"
    assert probed["overridden_by"] == "deployer@example.com"
    assert probed["override_reason"] == "the withdrawal is for production only"
    overridden = bench.audited(run.subject, "gate.overridden")
    assert overridden["gate"] == "probe"
    assert overridden["reason"] == "the withdrawal is for production only"
    checked = bench.audited(created.subject, "deployment.checked")
    assert checked == {"gate_run": run.id, "status": "overridden", "overridden": ["probe"]}
    assert bench.controller().drive(created.id).status == "succeeded"


def test_an_override_must_name_a_deploy_check_that_runs(bench: Bench, probe: type[Probe]) -> None:
    config = bench.config(deny=())
    with pytest.raises(UnknownGate, match="no gate named 'prob'") as unknown:
        bench.ask("0.1.0", config, prob="typo")
    assert "did you mean 'probe'" in str(unknown.value.hint)
    with pytest.raises(ArgumentError, match="not among the deploy checks of staging"):
        bench.ask("0.1.0", config, vulnerabilities="a release gate, not a deploy check")
    assert bench.deployments() == []


# --- signature and trust ----------------------------------------------------------------------


def _key_ids(bench: Bench) -> list[str]:
    listed = run_cli("keys", "list", "--json", cwd=bench.path)
    return [key["keyid"] for key in json.loads(listed.stdout)]


def test_a_release_signed_by_a_key_no_longer_trusted_is_refused_and_cannot_be_overridden(
    bench: Bench, probe: type[Probe]
) -> None:
    assert run_cli("keys", "rotate", cwd=bench.path).code == 0
    assert bench.release("feat: signed by the new key") == "0.3.0"
    old, new = _key_ids(bench)
    config = bench.config(staging=f"trusted_keys: [{new}]", deny=())
    with pytest.raises(DeployChecksFailed) as refused:
        bench.ask("0.2.0", config)
    assert f"signature: webapp 0.2.0 is signed by key {old[:16]}, which this environment " in (
        refused.value.message
    )
    assert "cannot be overridden" in str(refused.value.hint)
    assert probe.seen == []  # the gates never judge a release whose signature check failed
    with pytest.raises(ArgumentError, match="the signature check cannot be overridden"):
        bench.ask("0.2.0", config, signature="we trust it anyway")
    assert bench.deployments() == []
    bench.deploy("0.3.0", config)
    trusting_both = bench.config(staging=f"trusted_keys: [{old}, {new}]", deny=())
    bench.deploy("0.2.0", trusting_both)
    bench.deploy("0.3.0", bench.config(deny=()))  # by default the whole keyring is trusted


def test_a_tampered_release_is_refused_by_the_signature_check(
    bench: Bench, probe: type[Probe]
) -> None:
    bundle = json.loads(run_cli("releases", "show", "0.1.0", "--json", cwd=bench.path).stdout)
    path = BlobStore.for_state(bench.state).root / "sha256" / bundle["bundle"][7:9]
    blob = path / bundle["bundle"][7:]
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-10] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(DeployChecksFailed, match=r"signature: webapp 0\.1\.0 does not verify"):
        bench.ask("0.1.0", bench.config(deny=()))
    assert probe.seen == [] and bench.deployments() == []


# --- rollback ---------------------------------------------------------------------------------


def test_rollback_to_an_older_release_runs_the_checks_too(bench: Bench, probe: type[Probe]) -> None:
    config = bench.config(deny=())
    for environment in ("staging", "production"):
        bench.deploy("0.1.0", config, environment)
        bench.deploy("0.2.0", config, environment)
    withdrawn = bench.config(deny=("0.1.0",))
    before = len(bench.deployments())
    # staging keeps 0.1.0 warm: the rollback would switch the traffic back at once
    staging = deployments.environment(bench.store, "webapp", "staging")
    assert staging.warm_version == "0.1.0"
    with pytest.raises(DeployChecksFailed, match=r"probe: 0\.1\.0 is withdrawn"):
        warm_switch(
            bench.store,
            bench.state,
            bench.target,
            staging,
            settings_for(withdrawn, "staging"),
            actor="deployer@example.com",
            checks_with=bench.checks(withdrawn),
        )
    # production stopped 0.1.0: the rollback deploys it again
    with pytest.raises(DeployChecksFailed, match=r"probe: 0\.1\.0 is withdrawn"):
        bench.ask("0.1.0", withdrawn, "production", kind="rollback")
    assert len(bench.deployments()) == before
    assert probe.seen[-1].deployment is not None
    assert probe.seen[-1].deployment["kind"] == "rollback"
    allowed = bench.ask("0.1.0", withdrawn, "production", kind="rollback", probe="INC-7: go back")
    assert bench.controller().drive(allowed.id).status == "succeeded"


# --- approvals --------------------------------------------------------------------------------

APPROVAL = "approval: {required: 2, not_author: true, not_releaser: true}"


def test_a_deployment_waits_for_approvals_and_starts_once_they_suffice(bench: Bench) -> None:
    config = bench.config(production=APPROVAL)
    waiting = bench.ask("0.1.0", config, "production")
    assert waiting.status == "waiting"
    assert waiting.message == (
        "waiting for approval: 2 approvals, not by the author (ada@example.com), not by the "
        "releaser (rel@example.com)"
    )
    with pytest.raises(ApprovalRequired, match="0 of 2 approvals; 2 more needed"):
        bench.controller().drive(waiting.id)
    assert bench.target.calls == []
    for mine in (AUTHOR, RELEASER.upper()):
        with pytest.raises(ApprovalRefused, match="would not count"):
            checks.approve(bench.store, waiting, approver=mine, reason="mine")
    _, tally = checks.approve(bench.store, waiting, approver="bob@example.com", reason="ok")
    assert (tally.counted, tally.suffices) == (1, False)
    with pytest.raises(ApprovalRequired, match=r"1 of 2 approvals \(bob@example.com\)"):
        bench.controller().drive(waiting.id)
    _, tally = checks.approve(bench.store, waiting, approver="carol@example.com", reason=None)
    assert tally.suffices
    finished = bench.controller().drive(waiting.id)
    assert finished.status == "succeeded"
    assert bench.target.running_versions() == {"0.1.0": 1}
    actions = bench.actions(waiting.subject)
    assert actions[:3] == ["deployment.created", "deployment.waiting", "deployment.checked"]
    assert actions.count("deployment.approved") == 2
    assert bench.audited(waiting.subject, "deployment.progressing")["message"] == (
        "approved: 2 of 2 approvals (bob@example.com, carol@example.com)"
    )


def test_a_pending_deployment_of_an_environment_that_asks_for_approvals_waits(
    bench: Bench,
) -> None:
    """A deployment recorded without approvals (asked for before the rule was frozen with it,
    or by another path) is not started either: the driver makes it wait."""
    config = bench.config(production=APPROVAL)
    created = bench.ask("0.1.0", config, "production")
    other = bench.ask("0.2.0", config, "production")  # queued behind the waiting one
    with pytest.raises(ApprovalRequired, match=f"deployment {created.id} of production waits"):
        bench.controller().drive(other.id)
    assert bench.target.calls == []


def test_an_aborted_waiting_deployment_never_starts(bench: Bench) -> None:
    config = bench.config(production=APPROVAL)
    waiting = bench.ask("0.1.0", config, "production")
    deployments.request(bench.store, waiting.id, "abort", actor="deployer@example.com")
    assert bench.controller().drive(waiting.id).status == "rolled_back"
    assert bench.target.started == [] and bench.target.running == {}
    with pytest.raises(approvals.ApprovalError, match="approvals count only before it starts"):
        checks.approve(
            bench.store, deployments.get(bench.store, waiting.id), approver="bob@x.org", reason=None
        )


def test_a_deployment_that_needs_no_approval_cannot_be_approved(bench: Bench) -> None:
    created = bench.ask("0.1.0", bench.config(), "production")
    with pytest.raises(approvals.ApprovalError, match="needs no approval"):
        checks.approve(bench.store, created, approver="bob@example.com", reason=None)


def test_only_members_of_the_approving_groups_count(bench: Bench) -> None:
    rule = "approval: {required: 1, groups: [release-managers]}"
    with pytest.raises(ConfigError, match=r"release-managers\.txt does not exist"):
        bench.ask("0.1.0", bench.config(production=rule), "production")
    members = bench.path / ".shipyard-approvers" / "groups" / "release-managers.txt"
    members.parent.mkdir(parents=True)
    members.write_text(
        "# who may ship to production\ncarol@example.com\n\nDan@Example.com  # SRE\n"
    )
    waiting = bench.ask("0.1.0", bench.config(production=rule), "production")
    with pytest.raises(ApprovalRefused, match="in none of the approving groups"):
        checks.approve(bench.store, waiting, approver="bob@example.com", reason=None)
    _, tally = checks.approve(bench.store, waiting, approver="dan@example.com", reason=None)
    assert tally.suffices
    members.write_text("carol@example.com\nbad\tname\n")
    with pytest.raises(ConfigError, match=r"release-managers.txt:2 contains the control character"):
        bench.ask("0.2.0", bench.config(production=rule), "production")


def test_a_waiting_deployment_is_checked_again_as_it_starts(
    bench: Bench, probe: type[Probe]
) -> None:
    rule = "approval: {required: 1}"
    waiting = bench.ask("0.1.0", bench.config(production=rule, deny=()), "production")
    checks.approve(bench.store, waiting, approver="bob@example.com", reason="ok")
    withdrawn = bench.checks(bench.config(production=rule, deny=("0.1.0",)))
    with pytest.raises(DeployChecksFailed, match=r"probe: 0\.1\.0 is withdrawn"):
        checks.recheck(bench.store, bench.state, withdrawn, waiting, actor="bob@example.com")
    failed = deployments.get(bench.store, waiting.id)
    assert failed.status == "failed"
    assert str(failed.message).startswith("the deploy checks failed as it was about to start")
    [seen] = probe.seen[-1].approvals
    assert (seen["approver"], seen["counts"], seen["signed"]) == ("bob@example.com", True, False)
    assert probe.seen[-1].deployment is not None and probe.seen[-1].deployment["id"] == waiting.id
    # an override given when it was asked for holds when it starts, in that person's name
    config = bench.config(production=rule, deny=("0.2.0",))
    overridden = bench.ask("0.2.0", config, "production", probe="known and accepted")
    checks.approve(bench.store, overridden, approver="bob@example.com", reason="ok")
    run = checks.recheck(
        bench.store, bench.state, bench.checks(config), overridden, actor="bob@example.com"
    )
    assert run.status == "overridden" and run.subject == overridden.subject
    assert run.result("probe").overridden_by == "deployer@example.com"
    started = deployments.get(bench.store, overridden.id)
    assert started.progress["checks_at_start"]["gate_run"] == run.id
    assert bench.controller().drive(overridden.id).status == "succeeded"


# --- signed approvals -------------------------------------------------------------------------


def _approver_key(folder: Path, name: str, *, ssh: bool = False) -> Path:
    """A new ed25519 key: the private half in ``folder`` (0600), the public one listed."""
    private = Ed25519PrivateKey.generate()
    path = folder / f"{name}.key"
    encoding = serialization.PrivateFormat.OpenSSH if ssh else serialization.PrivateFormat.PKCS8
    data = private.private_bytes(serialization.Encoding.PEM, encoding, serialization.NoEncryption())
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def _list_key(bench: Bench, key: Path, name: str, *, ssh: bool = False) -> None:
    public = checks.load_approver_key(key).public_key().key
    listed = bench.path / ".shipyard-approvers" / f"{name}.pub"
    listed.parent.mkdir(exist_ok=True)
    if ssh:
        line = public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        listed.write_bytes(line + b" " + name.encode() + b"\n")
    else:
        listed.write_bytes(
            public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


def test_signed_approvals_count_when_they_verify_with_a_listed_key(
    bench: Bench, tmp_path: Path
) -> None:
    bob = _approver_key(tmp_path, "bob")
    carol = _approver_key(tmp_path, "carol", ssh=True)
    stranger = _approver_key(tmp_path, "stranger")
    _list_key(bench, bob, "bob@example.com")
    _list_key(bench, carol, "carol@example.com", ssh=True)
    rule = "approval: {required: 2, signed: true}"
    waiting = bench.ask("0.1.0", bench.config(production=rule), "production")
    with pytest.raises(ApprovalRefused, match="takes signed approvals only"):
        checks.approve(bench.store, waiting, approver="bob@example.com", reason=None)
    with pytest.raises(ApprovalRefused, match=r"is not listed for bob@example\.com"):
        checks.approve(
            bench.store,
            waiting,
            approver="bob@example.com",
            reason=None,
            key=checks.load_approver_key(stranger),
        )
    approval, tally = checks.approve(
        bench.store,
        waiting,
        approver="bob@example.com",
        reason="reviewed",
        key=checks.load_approver_key(bob),
    )
    assert approval.signed and tally.counted == 1
    statement = json.loads(str(approval.statement))
    assert (statement["deployment"], statement["release"]) == (
        waiting.id,
        waiting.settings["bundle"],
    )
    _, tally = checks.approve(
        bench.store,
        waiting,
        approver="carol@example.com",
        reason=None,
        key=checks.load_approver_key(carol),
    )
    assert tally.suffices
    seen = checks.approvals_seen(bench.store, waiting)  # what a policy sees
    assert [(a["approver"], a["signed"], a["counts"]) for a in seen] == [
        ("bob@example.com", True, True),
        ("carol@example.com", True, True),
    ]
    assert bench.controller().drive(waiting.id).status == "succeeded"


def test_a_forged_signed_approval_does_not_count(bench: Bench, tmp_path: Path) -> None:
    bob = _approver_key(tmp_path, "bob")
    _list_key(bench, bob, "bob@example.com")
    waiting = bench.ask("0.1.0", bench.config(production="approval: {signed: true}"), "production")
    other = bench.ask("0.2.0", bench.config(production="approval: {signed: true}"), "production")
    signer: SigningKey = checks.load_approver_key(bob)
    # bob's real signature, of his approval of another deployment, copied onto this one
    text = approvals.statement(
        deployment_id=other.id,
        project="webapp",
        environment="production",
        version="0.2.0",
        release_digest=str(other.settings["bundle"]),
        approver="bob@example.com",
        at=other.created_at,
    )
    with bench.store.write() as conn:
        approvals.record(
            conn,
            deployment_id=waiting.id,
            approver="bob@example.com",
            reason=None,
            at=other.created_at,
            statement=text,
            signature=base64.b64encode(signer.sign(text.encode())).decode(),
            key_id=signer.keyid,
        )
    tally = checks.approval_tally(bench.store, waiting)
    assert tally is not None and not tally.suffices
    assert "signed statement is not about this deployment" in str(tally.approvals[0].why_not)
    [seen] = checks.approvals_seen(bench.store, waiting)
    assert (seen["signed"], seen["counts"]) == (False, False)
    with pytest.raises(ApprovalRequired):
        bench.controller().drive(waiting.id)


def test_an_approver_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    key = _approver_key(tmp_path, "bob")
    key.chmod(0o644)
    with pytest.raises(checks.InsecureKeyFile, match="readable by other users"):
        checks.load_approver_key(key)
    os.chmod(key, 0o600)
    key.write_text("not a key")
    with pytest.raises(checks.KeyFileInvalid, match="cannot be read"):
        checks.load_approver_key(key)
