"""A service that prints its secrets and fails its health check: the secrets, in every form it
prints them, reach no deployment message, audit event, outbox event or CLI output."""

from __future__ import annotations

import base64
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from shipyard.cd.supervisor import Supervisor
from shipyard.core import state as state_dir
from shipyard.core.store import open_store
from shipyard.core.store.tables import audit_events, outbox_events
from support import CliResult, git, run_cli

pytestmark = pytest.mark.slow  # real processes end to end: started first (conftest)

FILE_TOKEN = "tok-9f3c2a71e5d84b06"
ENV_PASSWORD = "pw/ä+Ω secret 55"

# Prints each secret base64-encoded at byte offset 1 of a longer blob and wrapped at 76 columns
# (as `base64` does), fully percent-encoded, as hex and as is, on stdout and on stderr; then it
# exits without ever listening: at once (the start fails), or once it was seen running (the
# health check fails when its restarts keep exiting).
SERVICE = """
import base64, os, sys, textwrap, time

def forms(raw):
    blob = base64.b64encode(b"-" + raw + b"." * 60).decode()
    return [
        "\\n".join(textwrap.wrap(blob, 76)),
        "".join(f"%{b:02x}" for b in raw),
        "".join(f"%{b:02X}" for b in raw),
        raw.hex(),
        raw.hex().upper(),
        raw.decode(),
    ]

names = ("APP_TOKEN", "DB_PASSWORD")
for row in zip(*(forms(os.environ[name].encode()) for name in names)):
    for name, form in zip(names, row):
        print(f"{name}={form}", flush=True)
        print(f"{name} (stderr)={form}", file=sys.stderr, flush=True)
# The first run of an instance stays up for argv[1] seconds, its restarts exit at once.
ran = os.path.join(os.environ["HOME"], "ran-" + os.environ["PORT"])
if not os.path.exists(ran):
    open(ran, "w").close()
    time.sleep(float(sys.argv[1]))
sys.exit(3)
"""

CONFIG = """project: leaky
release:
  version_files: [VERSION]
service:
  command: python3 svc.py {life} --port {{port}}
  instances: 1
  health: {{http: /healthz, timeout: 10s, interval: 100ms}}
  stop: {{signal: TERM, grace: 2s}}
environments:
  staging:
    strategy: {{recreate: {{}}}}
    secrets: [APP_TOKEN, DB_PASSWORD]
"""


def forms_of(value: str) -> list[str]:
    """The ways the service prints a secret, and the plain value."""
    raw = value.encode()
    blob = base64.b64encode(b"-" + raw + b"." * 60).decode()
    return [
        value,
        *textwrap.wrap(blob, 76)[:1],
        "".join(f"%{b:02x}" for b in raw),
        "".join(f"%{b:02X}" for b in raw),
        raw.hex(),
        raw.hex().upper(),
        base64.b64encode(raw).decode()[:8],
    ]


def leaks(text: str) -> list[str]:
    """Every form of either secret found in ``text``, as written or as JSON escapes it."""
    found = []
    for value in (FILE_TOKEN, ENV_PASSWORD):
        for form in forms_of(value):
            if form in text or json.dumps(form)[1:-1] in text:
                found.append(form)
    return found


class Leaky:
    """A released service that prints its secrets, in a repository with a secrets file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def cli(self, *args: str) -> CliResult:
        return run_cli(*args, cwd=self.path, env={"DB_PASSWORD": ENV_PASSWORD})


@pytest.fixture
def leaky(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Leaky]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SHIPYARD_USER", "deployer@example.com")
    (repo / "svc.py").write_text(SERVICE)
    (repo / "VERSION").write_text("0.0.0\n")
    site = Leaky(repo)
    try:
        yield site
    finally:
        Supervisor.for_state(state_dir.locate(repo)).shutdown()


@pytest.mark.parametrize(
    ("life", "where"),
    [("0", "exits as it starts"), ("2.5", "exits during the health check")],
)
def test_secrets_a_failing_service_prints_are_masked_everywhere(
    leaky: Leaky, life: str, where: str
) -> None:
    (leaky.path / "shipyard.yaml").write_text(CONFIG.format(life=life))
    assert leaky.cli("keys", "generate").code == 0
    git(leaky.path, "add", "-A")
    git(leaky.path, "commit", "-q", "-m", "feat: a leaky service")
    released = leaky.cli("release", "--json")
    assert released.code == 0, released.output
    secrets = leaky.path / ".shipyard" / "secrets"
    secrets.write_text(f"APP_TOKEN={FILE_TOKEN}\n")
    secrets.chmod(0o600)

    plain = leaky.cli("deploy", "0.1.0", "--env", "staging")
    as_json = leaky.cli("deploy", "0.1.0", "--env", "staging", "--json")

    assert plain.code == 1, plain.output
    assert as_json.code == 1, as_json.output
    error = json.loads(as_json.stdout)["error"]["message"]
    # The service's own output is in the message (that is the point), masked.
    assert "APP_TOKEN (stderr)=***" in error, (where, error)
    assert "DB_PASSWORD (stderr)=***" in error, (where, error)
    assert leaks(plain.output) == [], plain.output
    assert leaks(as_json.output) == [], as_json.output

    shown = leaky.cli("deployments", "show", "1", "--json")
    assert shown.code == 0, shown.output
    deployment = json.loads(shown.stdout)
    assert deployment["status"] == "failed"
    assert "APP_TOKEN (stderr)=***" in deployment["message"]
    assert leaks(shown.output) == []
    listed = leaky.cli("deployments", "list", "--json")
    assert leaks(listed.output) == []

    audit = leaky.cli("audit", "list", "--json")
    assert audit.code == 0, audit.output
    failed = [e for e in json.loads(audit.stdout) if e["action"] == "deployment.failed"]
    assert len(failed) == 2
    assert all("APP_TOKEN (stderr)=***" in json.dumps(e) for e in failed)
    assert leaks(audit.output) == []

    store = open_store(state_dir.locate(leaky.path))
    try:
        with store.read() as conn:
            events = [
                json.dumps({"type": row.type, "payload": row.payload})
                for row in conn.execute(select(outbox_events))
            ]
            audited = [str(tuple(row)) for row in conn.execute(select(audit_events))]
    finally:
        store.dispose()
    assert any(
        "deployment.failed" in event and "APP_TOKEN (stderr)=***" in event for event in events
    )
    assert leaks("\n".join(events)) == []
    assert leaks("\n".join(audited)) == []
