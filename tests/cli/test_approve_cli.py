"""``shipyard approve`` as people use it: a deployment to production waits (exit 3) until two
people other than the author and the releaser approved it, then runs by itself — the example
service released and deployed with real processes behind the real router."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cd.test_deploy import Site, site, versions_seen
from support import CliResult, run_cli

pytestmark = pytest.mark.slow  # real processes end to end: started first (conftest)

__all__ = ["site"]  # the fixture, shared with the deployment tests

AUTHOR = "ada@example.com"  # who wrote the commits (the suite's git identity)
RELEASER = "deployer@example.com"  # who released 0.1.0 (the site's SHIPYARD_USER)

TWO_OTHERS = "    approval: {required: 2, not_author: true, not_releaser: true}\n"


def approve(site: Site, deployment: int, who: str, *args: str) -> CliResult:
    return site.cli("approve", str(deployment), *args, env={"SHIPYARD_USER": who})


def show(site: Site, deployment: int) -> dict[str, Any]:
    shown = site.cli("deployments", "show", str(deployment), "--json")
    assert shown.code == 0, shown.output
    value = json.loads(shown.stdout)
    assert isinstance(value, dict)
    return value


def wait_for_status(site: Site, deployment: int, wanted: str, timeout: float = 120) -> None:
    """Poll the deployment until it is ``wanted``; ``timeout`` bounds a hung driver only."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = show(site, deployment)["status"]
        if seen == wanted:
            return
        assert seen in ("waiting", "pending", "progressing"), seen
        time.sleep(0.2)
    raise AssertionError(f"deployment {deployment} is {seen}, not {wanted}, after {timeout:g}s")


def test_two_approvals_start_a_waiting_deployment_which_succeeds_by_itself(site: Site) -> None:
    site.write_config(TWO_OTHERS)
    asked = site.deploy("0.1.0", "production")
    assert asked.code == 3, asked.output
    waiting = json.loads(asked.stdout)
    number = int(waiting["id"])
    assert waiting["status"] == "waiting"
    assert waiting["approvals"]["missing"] == 2
    assert waiting["checks"]["results"][0]["check"] == "signature"

    own = approve(site, number, AUTHOR)
    assert own.code == 2
    assert "ada@example.com wrote the release's commit" in own.stderr
    releaser = approve(site, number, RELEASER)
    assert releaser.code == 2 and "made the release" in releaser.stderr

    first = approve(site, number, "bob@example.com", "--reason", "read the changelog")
    assert first.code == 0, first.output
    assert "1 of 2 approvals (bob@example.com); 1 more needed" in first.stdout
    again = approve(site, number, "bob@example.com")
    assert again.code == 2 and "approved deployment" in again.stderr
    resumed = site.cli("deployments", "resume", str(number))
    assert resumed.code == 2 and f"shipyard approve {number}" in resumed.stderr
    assert show(site, number)["status"] == "waiting"

    second = approve(site, number, "carol@example.com", "--json")
    assert second.code == 0, second.output
    answer = json.loads(second.stdout)
    assert answer["approvals"]["suffices"] is True
    assert answer["driver_pid"] is not None
    wait_for_status(site, number, "succeeded")
    assert versions_seen(site.url("production"), 10) == Counter({"0.1.0": 10})
    done = show(site, number)
    assert [a["approver"] for a in done["approvals"]["approvals"]] == [
        "bob@example.com",
        "carol@example.com",
    ]
    assert done["approvals"]["approvals"][0]["reason"] == "read the changelog"
    assert done["progress"]["checks_at_start"]["status"] == "pass"


def _key(folder: Path, name: str) -> tuple[Path, bytes]:
    """A new ed25519 key pair: the private key file (0600) and the public key in PEM."""
    private = Ed25519PrivateKey.generate()
    path = folder / f"{name}.pem"
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, public


def test_signed_approvals_with_keys_listed_in_the_repository(site: Site, tmp_path: Path) -> None:
    bob_key, bob_public = _key(tmp_path, "bob")
    stranger_key, _ = _key(tmp_path, "stranger")
    listed = site.path / ".shipyard-approvers"
    listed.mkdir()
    (listed / "bob@example.com.pub").write_bytes(bob_public)
    site.write_config("    approval: {required: 2, signed: true}\n")
    asked = site.deploy("0.1.0", "production")
    assert asked.code == 3, asked.output
    number = int(json.loads(asked.stdout)["id"])

    unsigned = approve(site, number, "bob@example.com")
    assert unsigned.code == 2 and "takes signed approvals only" in unsigned.stderr
    keyless = approve(site, number, "bob@example.com", "--sign")
    assert keyless.code == 2 and "--sign needs your private key" in keyless.stderr
    unlisted = approve(site, number, "bob@example.com", "--sign", "--key", str(stranger_key))
    assert unlisted.code == 2 and "is not listed for bob@example.com" in unlisted.stderr
    signed = approve(site, number, "bob@example.com", "--sign", "--key", str(bob_key))
    assert signed.code == 0, signed.output
    assert "bob@example.com approved deployment" in signed.stdout
    assert "signed with key" in signed.stdout
    [counted] = show(site, number)["approvals"]["approvals"]
    assert (counted["signed"], counted["counts"]) == (True, True)
    assert show(site, number)["status"] == "waiting"  # one of two


def test_mistakes_are_said_plainly(site: Site) -> None:
    unknown = site.cli("approve", "99")
    assert unknown.code == 2 and "there is no deployment 99" in unknown.stderr
    key_alone = site.cli("approve", "1", "--key", "somewhere.pem")
    assert key_alone.code == 2 and "--key goes with --sign" in key_alone.stderr
    site.write_config(TWO_OTHERS)
    asked = site.cli("deploy", "0.1.0", "--env", "production")
    assert asked.code == 3
    assert "waits for approval" in asked.stdout
    assert "approvers run 'shipyard approve 1'" in asked.stdout


def test_promote_to_an_environment_that_asks_for_approval_waits(site: Site) -> None:
    site.write_config(TWO_OTHERS)
    promoted = site.cli("promote", "0.1.0", "--to", "production", "--json")
    assert promoted.code == 3, promoted.output
    waiting = json.loads(promoted.stdout)
    assert (waiting["environment"], waiting["status"]) == ("production", "waiting")
    assert waiting["approvals"]["required"] == 2


def test_an_approval_that_could_not_start_the_deployment_starts_it_when_given_again(
    site: Site,
) -> None:
    site.write_config("    approval: {required: 1}\n")
    asked = site.deploy("0.1.0", "production")
    assert asked.code == 3, asked.output
    number = int(json.loads(asked.stdout)["id"])
    elsewhere = site.path / "other"
    elsewhere.mkdir()
    (elsewhere / "shipyard.yaml").write_text("project: other\n")
    wrong = run_cli("approve", str(number), cwd=elsewhere, env={"SHIPYARD_USER": "bob@example.com"})
    assert wrong.code == 2
    assert "is of webapp, but this configuration is of other" in wrong.stderr
    assert "the approvals are recorded" in wrong.stderr
    assert show(site, number)["status"] == "waiting"
    again = approve(site, number, "bob@example.com")
    assert again.code == 0, again.output
    assert "starts in the background" in again.stdout
    wait_for_status(site, number, "succeeded")
