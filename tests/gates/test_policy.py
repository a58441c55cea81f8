"""The policy deploy check: real Rego files evaluated by regopy over the documented input.

A policy can read the environment, the release's gate results, the SBOM, the actor, the
approvals and the time; every deny message blocks; a policy regopy cannot parse is named by
file and line with nothing on stdout; Rego v0 syntax is refused instead of meaning something
else.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shipyard.core.blobs import BlobStore
from shipyard.core.config import ConfigInvalid, load_config_text
from shipyard.core.state import StateDir
from shipyard.gates import GateContext, GateError, Status, configured_gates, run_gates
from shipyard.gates.policy import (
    DENIED,
    PolicyError,
    PolicyGate,
    evaluate,
    load_policies,
    policy_input,
)
from shipyard.gates.runner import GATE_ERROR

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "policy.md"

NO_CRITICAL = """package shipyard.vulnerabilities

# Critical vulnerabilities may reach staging, never production.
deny contains msg if {
	input.environment == "production"
	some finding in input.gates.vulnerabilities.findings
	finding.severity == "critical"
	not finding.suppressed
	msg := sprintf("%s in %s may not reach production", [finding.id, finding.details.package])
}
"""

CRITICAL = {
    "id": "GHSA-crit-ical-0001",
    "severity": "critical",
    "location": "requirements.txt:1",
    "message": "requests 2.19.0: remote code execution (critical, CVSS_V3 9.8)",
    "remediation": "upgrade requests to 2.20.0",
    "blocking": True,
    "suppression": None,
    "details": {"package": "requests", "version": "2.19.0"},
}

SBOM = {
    "bomFormat": "CycloneDX",
    "specVersion": "1.6",
    "components": [
        {
            "name": "requests",
            "version": "2.19.0",
            "purl": "pkg:pypi/requests@2.19.0",
            "licenses": [{"license": {"id": "Apache-2.0"}}],
        },
        {"name": "left-pad", "version": "1.0.0", "licenses": [{"expression": "MIT OR ISC"}]},
        {"name": "mystery", "version": "0.1"},
    ],
}


def write(project: Path, name: str, text: str) -> Path:
    path = project / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def stored_release(state_root: Path, version: str = "1.2.0", **changes: Any) -> dict[str, Any]:
    """A release record as the store gives it: gate results and SBOM are signed blobs."""
    blobs = BlobStore(StateDir(state_root, None, None).blobs)
    results = [
        {
            "gate": "vulnerabilities",
            "status": "fail",
            "summary": "1 vulnerability",
            "duration_s": 0.1,
            "overridden_by": "lead@example.com",
            "override_reason": "fixed upstream next week",
            "findings": [CRITICAL],
        },
        {"gate": "secrets", "status": "pass", "summary": "", "duration_s": 0.1, "findings": []},
    ]
    record: dict[str, Any] = {
        "project": "demo",
        "version": version,
        "tag": f"v{version}",
        "commit": "c0ffee" * 6 + "c0ff",
        "status": "published",
        "run": 3,
        "bundle": "sha256:" + "b" * 64,
        "artifacts": {"eval.json": "sha256:" + "e" * 64},
        "sbom": str(blobs.put_bytes(json.dumps(SBOM).encode()).digest),
        "envelope": "sha256:" + "d" * 64,
        "key_id": "k" * 64,
        "changelog": "## 1.2.0\n\n- feat: faster\n",
        "actor": "releaser@example.com",
        "author": "ada@example.com",
        "created_at": "2026-05-30T09:00:00.123456",
        "published_at": "2026-05-30T09:01:00+00:00",
        "message": None,
        "gate_results": str(blobs.put_bytes(json.dumps(results).encode()).digest),
    }
    record.update(changes)
    return record


def deploy_context(
    project: Path,
    state_root: Path,
    environment: str,
    *,
    policy: str = "{}",
    release: dict[str, Any] | None = None,
    **changes: Any,
) -> GateContext:
    config = load_config_text(f"project: demo\ngates:\n  policy: {policy}\n")
    values: dict[str, Any] = {
        "workspace": project,
        "config": config,
        "state_root": state_root,
        "environment": environment,
        "now": NOW,
        "actor": "deployer@example.com",
        "release_record": release if release is not None else stored_release(state_root),
    }
    values.update(changes)
    return GateContext(**values)


def judge(context: GateContext) -> Any:
    return PolicyGate.for_context(context).judge(context)


def test_critical_vulnerabilities_are_denied_in_production_but_not_in_staging(
    workspace: Path, state_root: Path
) -> None:
    write(workspace, "policies/vulnerabilities.rego", NO_CRITICAL)
    staging = judge(deploy_context(workspace, state_root, "staging"))
    assert staging.status is Status.PASS
    assert staging.findings == ()
    production = judge(deploy_context(workspace, state_root, "production"))
    assert production.status is Status.FAIL
    [finding] = production.findings
    assert finding.id == DENIED
    assert finding.blocking
    assert finding.message == "GHSA-crit-ical-0001 in requests may not reach production"
    assert finding.location == "policies/vulnerabilities.rego"
    assert finding.details["package"] == "shipyard.vulnerabilities"
    assert "1 deny message from 1 policy file" in production.summary


def test_every_deny_of_every_package_counts_and_a_helper_package_is_fine(
    workspace: Path, state_root: Path
) -> None:
    write(workspace, "policies/vulnerabilities.rego", NO_CRITICAL)
    write(
        workspace,
        "policies/lib/util.rego",
        'package shipyard.lib\n\nis_production if input.environment == "production"\n',
    )
    write(
        workspace,
        "policies/people.rego",
        """package shipyard.people

import data.shipyard.lib

deny contains "production needs an approval" if {
	lib.is_production
	count(input.approvals) == 0
}

deny contains sprintf("%s may not deploy their own release", [input.actor]) if {
	input.actor == input.release.released_by
}
""",
    )
    context = deploy_context(workspace, state_root, "production", actor="releaser@example.com")
    verdict = judge(context)
    assert sorted(f.message for f in verdict.findings) == [
        "GHSA-crit-ical-0001 in requests may not reach production",
        "production needs an approval",
        "releaser@example.com may not deploy their own release",
    ]
    approved = deploy_context(
        workspace,
        state_root,
        "production",
        actor="deployer@example.com",
        approvals=[{"approver": "lead@example.com", "approved_at": NOW, "signed": False}],
        policy="{paths: [policies/people.rego, policies/lib]}",
    )
    assert judge(approved).status is Status.PASS


def test_the_input_holds_the_documented_fields(workspace: Path, state_root: Path) -> None:
    running = stored_release(state_root, "1.1.0")
    document = policy_input(
        deploy_context(
            workspace,
            state_root,
            "production",
            running=running,
            deployment={"id": 7, "kind": "deploy", "strategy": "canary"},
            approvals=[{"approver": "lead@example.com", "approved_at": NOW, "signed": True}],
        )
    )
    assert document["schema"] == 1
    assert document["environment"] == "production"
    assert document["actor"] == "deployer@example.com"
    assert document["time"] == "2026-06-01T12:00:00+00:00"
    release = document["release"]
    assert (release["version"], release["tag"], release["released_by"]) == (
        "1.2.0",
        "v1.2.0",
        "releaser@example.com",
    )
    assert release["signer"] == {"key_id": "k" * 64}
    assert release["author"] == "ada@example.com"
    assert release["created_at"] == "2026-05-30T09:00:00.123456+00:00"
    assert release["artifacts"] == {"eval.json": "sha256:" + "e" * 64}
    assert document["running"]["version"] == "1.1.0"
    assert document["deployment"] == {"id": 7, "kind": "deploy", "strategy": "canary"}
    assert document["approvals"] == [
        {"approver": "lead@example.com", "approved_at": "2026-06-01T12:00:00+00:00", "signed": True}
    ]
    vulnerabilities = document["gates"]["vulnerabilities"]
    assert vulnerabilities["overridden"] is True
    assert vulnerabilities["override_reason"] == "fixed upstream next week"
    assert vulnerabilities["counts"] == {
        "info": 0,
        "low": 0,
        "medium": 0,
        "high": 0,
        "critical": 1,
    }
    assert vulnerabilities["findings"][0]["suppressed"] is False
    assert document["gates"]["secrets"]["findings"] == []
    sbom = document["sbom"]
    assert sbom["component_count"] == 3
    assert sbom["licenses"] == {"Apache-2.0": 1, "MIT OR ISC": 1}
    assert sbom["unlicensed"] == 1
    assert sbom["components"][0]["purl"] == "pkg:pypi/requests@2.19.0"
    # docs/policy.md documents every field a policy can read, by its full name.
    documented = set(re.findall(r"`(input\.[a-z_.\[\]]+)`", DOCS.read_text(encoding="utf-8")))
    fields = {f"input.{key}" for key in document}
    fields |= {f"input.release.{key}" for key in release}
    fields |= {f"input.sbom.{key}" for key in sbom}
    fields |= {f"input.gates.<name>.{key}" for key in vulnerabilities}
    fields |= {f"input.gates.<name>.findings[_].{key}" for key in vulnerabilities["findings"][0]}
    documented |= set(re.findall(r"`(input\.gates\.<name>[a-z_.\[\]]*)`", DOCS.read_text()))
    assert sorted(fields - documented) == []


def test_a_release_without_gate_results_or_sbom_gives_empty_fields(
    workspace: Path, state_root: Path
) -> None:
    release = stored_release(state_root, gate_results=None, sbom=None, key_id=None)
    document = policy_input(deploy_context(workspace, state_root, "staging", release=release))
    assert (document["gates"], document["sbom"], document["release"]["signer"]) == ({}, None, None)
    assert document["running"] is None and document["approvals"] == []


def test_the_policy_can_read_the_time(workspace: Path, state_root: Path) -> None:
    write(
        workspace,
        "policies/freeze.rego",
        """package shipyard.freeze

deny contains "no deploys to production at the weekend" if {
	input.environment == "production"
	time.weekday(time.parse_rfc3339_ns(input.time)) in {"Saturday", "Sunday"}
}
""",
    )
    monday = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    saturday = datetime(2026, 6, 6, 12, 0, tzinfo=UTC)
    assert judge(deploy_context(workspace, state_root, "production", now=monday)).findings == ()
    [finding] = judge(deploy_context(workspace, state_root, "production", now=saturday)).findings
    assert finding.message == "no deploys to production at the weekend"


def test_bad_rego_is_named_by_file_and_line_and_nothing_reaches_stdout(
    workspace: Path, state_root: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    write(workspace, "policies/good.rego", NO_CRITICAL)
    write(
        workspace,
        "policies/broken.rego",
        "package shipyard.broken\n\n# é, so that lines are counted in characters\n"
        "deny contains msg if {\n\tmsg := \n}\n",
    )
    with pytest.raises(PolicyError) as raised:
        judge(deploy_context(workspace, state_root, "production"))
    assert str(raised.value).startswith("policies/broken.rego:5: ")
    [problem] = raised.value.problems
    assert (problem.file, problem.line) == ("policies/broken.rego", 5)
    assert "Rego v1" in (raised.value.hint or "")
    captured = capfd.readouterr()
    assert captured.out == ""  # regopy prints its errors to fd 1; they must not get there
    assert captured.err == ""


def test_a_broken_policy_fails_the_deploy_check_closed(workspace: Path, state_root: Path) -> None:
    write(workspace, "policies/broken.rego", "package shipyard.broken\n\ndeny contains if {\n}\n")
    [result] = run_gates(deploy_context(workspace, state_root, "staging"), ["policy"])
    assert result.status is Status.FAIL
    [finding] = result.findings
    assert finding.id == GATE_ERROR
    assert finding.message.startswith("policies/broken.rego:3: ")


V0_POLICIES = [
    ('deny[msg] {\n\tmsg := "old"\n}\n', 3),
    ("allow {\n\ttrue\n}\n", 3),
    ("x = 5 { input.a == 1 }\n", 3),
    ("f(a) = b {\n\tb := a\n}\n", 3),
    ('level := "high" if { false } else = "low" {\n\ttrue\n}\n', 3),
]


@pytest.mark.parametrize(("rules", "line"), V0_POLICIES)
def test_rego_v0_syntax_is_refused_with_a_clear_error(
    workspace: Path, state_root: Path, rules: str, line: int
) -> None:
    write(workspace, "policies/old.rego", f"package shipyard.old\n\n{rules}")
    with pytest.raises(PolicyError) as raised:
        judge(deploy_context(workspace, state_root, "production"))
    message = str(raised.value)
    assert message.startswith(f"policies/old.rego:{line}: ")
    assert "Rego v0 syntax" in message
    assert "Rego v1 only" in message
    assert "deny contains msg if" in (raised.value.hint or "")


def test_v1_syntax_with_braces_is_not_mistaken_for_v0(workspace: Path, state_root: Path) -> None:
    write(
        workspace,
        "policies/modern.rego",
        """package shipyard.modern

# deny[msg] { in a comment is not a rule }
limits := {"production": 0, "staging": 5}
envs := {e | some e in ["production", "staging"]}
names := [n | some n in ["a", "b"]]
note := "braces { in strings } are not bodies"
raw := `and { in raw strings }`

level := "low" if {
	false
} else := "high"

deny contains msg
	if
{
	input.gates.vulnerabilities.counts.critical > limits[input.environment]
	msg := sprintf("too many critical vulnerabilities for %s", [input.environment])
}
""",
    )
    [finding] = judge(deploy_context(workspace, state_root, "production")).findings
    assert finding.message == "too many critical vulnerabilities for production"
    assert judge(deploy_context(workspace, state_root, "staging")).findings == ()


def test_deny_written_as_an_object_is_an_error_not_a_silent_pass(
    workspace: Path, state_root: Path
) -> None:
    write(
        workspace, "policies/object.rego", 'package shipyard.o\n\ndeny[msg] if {\n\tmsg := "x"\n}\n'
    )
    with pytest.raises(PolicyError) as raised:
        judge(deploy_context(workspace, state_root, "production"))
    assert "data.shipyard.o.deny is an object, not a set of messages" in str(raised.value)
    assert "deny contains msg if" in (raised.value.hint or "")


def test_an_error_while_evaluating_fails_closed(workspace: Path, state_root: Path) -> None:
    write(
        workspace,
        "policies/divide.rego",
        "package shipyard.divide\n\ndeny contains msg if {\n"
        '\tmsg := sprintf("%d", [1 / count(input.approvals)])\n}\n',
    )
    with pytest.raises(PolicyError) as raised:
        judge(deploy_context(workspace, state_root, "production"))
    assert str(raised.value).startswith("policies/divide.rego: evaluating data.shipyard.divide")
    assert "divide by zero" in str(raised.value)


def test_missing_or_empty_policy_paths_are_named(workspace: Path, state_root: Path) -> None:
    (workspace / "empty").mkdir()
    context = deploy_context(workspace, state_root, "staging", policy="{paths: [nowhere/, empty]}")
    with pytest.raises(PolicyError) as raised:
        judge(context)
    assert raised.value.message == "nowhere/: no such file or folder; empty: holds no .rego file"


def test_a_file_without_a_package_is_named(workspace: Path, state_root: Path) -> None:
    write(workspace, "policies/bare.rego", '# nothing\ndeny contains "x"\n')
    with pytest.raises(PolicyError, match=r"policies/bare.rego:1: does not start with a package"):
        judge(deploy_context(workspace, state_root, "staging"))


def test_the_check_needs_a_deployment(workspace: Path, state_root: Path) -> None:
    write(workspace, "policies/vulnerabilities.rego", NO_CRITICAL)
    config = load_config_text("project: demo\ngates:\n  policy: {}\n")
    scan = GateContext(workspace=workspace, config=config, state_root=state_root)
    with pytest.raises(GateError, match="judges a deployment"):
        judge(scan)


def test_strings_in_the_input_equal_the_policy_s_literals(workspace: Path) -> None:
    policy = r"""package p

deny contains input.say if input.say != ""

deny contains "same" if input.say == "é \"quoted\" \\ {braces} …"
"""
    write(workspace, "policies/p.rego", policy)
    policies = load_policies(workspace)
    denials = evaluate(policies, {"say": 'é "quoted" \\ {braces} …'})
    assert sorted(d.message for d in denials) == ["same", 'é "quoted" \\ {braces} …']
    assert evaluate(policies, {"say": ""}) == []


def test_policy_and_metrics_are_deploy_checks() -> None:
    config = load_config_text(
        "project: demo\ngates:\n  sbom: true\n  policy: true\n"
        "  metrics: [{name: accuracy, file: eval.json, path: accuracy, min: 0.9}]\n"
    )
    assert configured_gates(config, "deploy") == ["policy", "metrics"]
    assert configured_gates(config, "release") == ["sbom"]
    assert config.gates is not None and config.gates.policy is not None
    assert config.gates.policy.paths == ("policies/",)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("policy: {paths: []}", "no policy path is named"),
        ("policy: {paths: [/etc/policies]}", "must be a path inside the project's folder"),
        ("policy: {paths: [../shared]}", "must be a path inside the project's folder"),
        ("policy: {paths: [policies/, policies]}", "is named twice"),
        ("policy: {path: [policies/]}", "did you mean 'paths'?"),
    ],
)
def test_policy_settings_mistakes_are_named_at_their_line(text: str, problem: str) -> None:
    with pytest.raises(ConfigInvalid) as raised:
        load_config_text(f"project: demo\ngates:\n  {text}\n")
    assert "shipyard.yaml:3" in str(raised.value)
    assert problem in str(raised.value)


def test_the_documented_examples_are_valid_rego_v1(workspace: Path, state_root: Path) -> None:
    examples = re.findall(r"```rego\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    assert len(examples) >= 3
    for number, text in enumerate(examples):
        write(workspace, f"policies/example{number}.rego", text)
    release = stored_release(state_root, key_id="3f1c…")
    saturday = datetime(2026, 6, 6, 12, 0, tzinfo=UTC)
    context = deploy_context(
        workspace,
        state_root,
        "production",
        release=release,
        now=saturday,
        actor="releaser@example.com",
    )
    assert sorted(f.message for f in judge(context).findings) == [
        "GHSA-crit-ical-0001 in requests may not reach production",
        "an overridden release gate needs two approvals in production",
        "no deployments to production at the weekend",
        "releaser@example.com may not deploy a release they cut themselves",
    ]
    context = deploy_context(workspace, state_root, "staging", release=release)
    assert judge(context).findings == ()
