"""Deploy checks on every command that changes what an environment runs, through the real CLI:
a real policy (Rego, the policy gate) refuses deploy, rollback, promote and the auto-deploy of
a release; an override needs a reason and is audited; the signature check cannot be
overridden. The example service runs as real processes where a deployment goes through."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from cd.test_deploy import Site, site, versions_seen
from support import CliResult, git

pytestmark = pytest.mark.slow  # real processes end to end: started first (conftest)

__all__ = ["site"]  # the fixture, shared with the deployment tests

WITHDRAWN = """package deploy.withdrawn

deny contains msg if {
\tinput.release.version == "0.1.0"
\tmsg := "0.1.0 is withdrawn"
}
"""

NOTHING_TO_PRODUCTION = """package deploy.freeze

deny contains msg if {
\tinput.environment == "production"
\tmsg := sprintf("%s: production is frozen", [input.release.version])
}
"""

POLICY = "gates:\n  policy: {paths: [policies/]}\n"


def with_policy(site: Site, rego: str, extra: str = "") -> None:
    (site.path / "policies").mkdir(exist_ok=True)
    (site.path / "policies" / "rules.rego").write_text(rego)
    site.write_config(extra + POLICY)


def error_of(result: CliResult) -> str:
    message = json.loads(result.stdout)["error"]["message"]
    assert isinstance(message, str)
    return message


def audit_events(site: Site, action: str) -> list[dict[str, Any]]:
    listed = site.cli("audit", "list", "--json")
    assert listed.code == 0, listed.output
    return [event for event in json.loads(listed.stdout) if event["action"] == action]


def test_deploy_and_rollback_are_refused_by_a_policy_unless_overridden_with_a_reason(
    site: Site,
) -> None:
    with_policy(site, WITHDRAWN)
    refused = site.deploy("0.1.0")
    assert refused.code == 1, refused.output
    message = error_of(refused)
    assert "webapp 0.1.0 is not deployed to staging: the deploy check failed" in message
    assert "policy: 0.1.0 is withdrawn" in message
    assert json.loads(site.cli("deployments", "list", "--json").stdout) == []

    no_reason = site.deploy("0.1.0", "staging", "--override", "policy")
    assert no_reason.code == 2 and "--override needs --reason" in no_reason.output
    forced = site.deploy(
        "0.1.0", "staging", "--override", "policy", "--reason", "INC-7: the old one is safer"
    )
    assert forced.code == 0, forced.output
    assert json.loads(forced.stdout)["status"] == "succeeded"
    [overridden] = audit_events(site, "gate.overridden")
    assert overridden["actor"] == "deployer@example.com"
    assert overridden["details"]["gate"] == "policy"
    assert overridden["details"]["reason"] == "INC-7: the old one is safer"

    site.release("feat: a second feature")
    assert site.deploy("0.2.0").code == 0
    url = site.url()
    back = site.cli("rollback", "--env", "staging", "--json")  # to 0.1.0, kept warm
    assert back.code == 1, back.output
    assert "policy: 0.1.0 is withdrawn" in error_of(back)
    assert versions_seen(url, 10) == Counter({"0.2.0": 10})
    allowed = site.cli(
        "rollback", "--env", "staging", "--json", "--override", "policy", "--reason", "INC-8"
    )
    assert allowed.code == 0, allowed.output
    assert versions_seen(url, 10) == Counter({"0.1.0": 10})


def test_promote_and_the_auto_deploy_of_a_release_run_the_checks(site: Site) -> None:
    with_policy(site, NOTHING_TO_PRODUCTION)
    promoted = site.cli("promote", "0.1.0", "--to", "production", "--json")
    assert promoted.code == 1, promoted.output
    assert "policy: 0.1.0: production is frozen" in error_of(promoted)
    everywhere = site.cli("promote", "0.1.0", "--override", "policy", "--reason", "x")
    assert everywhere.code == 2 and "name it: --to ENV" in everywhere.output

    with_policy(site, NOTHING_TO_PRODUCTION, "    auto: true\n")  # production takes each release
    git(site.path, "add", "-A")
    git(site.path, "commit", "-q", "-m", "fix: production deploys every release")
    released = site.cli("release", "--json")
    assert released.code == 1, released.output
    message = error_of(released)
    assert message.startswith("released 0.1.1, but webapp 0.1.1 is not deployed to production")
    assert "production is frozen" in message
    shown = site.cli("releases", "show", "0.1.1", "--json")
    assert shown.code == 0 and json.loads(shown.stdout)["status"] == "published"
    assert json.loads(site.cli("deployments", "list", "--json").stdout) == []


def test_a_release_signed_by_an_untrusted_key_is_refused_whatever_the_override(
    site: Site,
) -> None:
    site.write_config(f"    trusted_keys: ['{'ab' * 32}']\n")
    refused = site.deploy("0.1.0", "production")
    assert refused.code == 1, refused.output
    assert "which this environment does not trust" in error_of(refused)
    forced = site.deploy("0.1.0", "production", "--override", "signature", "--reason", "trust me")
    assert forced.code == 2
    assert "the signature check cannot be overridden" in error_of(forced)
    assert json.loads(site.cli("deployments", "list", "--json").stdout) == []
