"""``shipyard demo``: the whole loop on one machine, offline, in one command.

It builds a git repository around a copy of ``examples/webapp`` (staging, then production as
a canary judged on the router's error rate, watched after it) and ships a good release and a
bad one under a steady load, through the commands a user would type, each in a process of its
own. It writes only inside its folder, and leaves nothing running unless asked to.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from shipyard.cd import deployments
from shipyard.core import incidents
from shipyard.core import state as state_dir
from shipyard.core.errors import ArgumentError, CheckFailed, HostError
from shipyard.core.git import Git
from shipyard.core.secrets import secrets_file
from shipyard.core.store import Store
from shipyard.orchestrator.load import Load
from shipyard.release import records

__all__ = [
    "EXAMPLE",
    "DemoOutcome",
    "DemoRequest",
    "DemoStepFailed",
    "DirectoryNotEmpty",
    "ExampleNotFound",
    "Received",
    "Shipped",
    "WebhookReceiver",
    "example_service",
    "run_demo",
]

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "webapp"
"""The example service in the source tree Shipyard runs from."""

PROJECT = "webapp"
CONFIG_NAME = "shipyard.yaml"
PRODUCTION = "production"
SECRET_NAME = "DEMO_WEBHOOK_SECRET"  # noqa: S105 - the secret's name, not its value
FAIL_RATE = "0.3"  # the bad release's production instances fail three requests in ten
LOAD_RATE = 60.0  # requests per second in all: enough for a 1 s look at a 20 % canary
LOAD_WORKERS = 2
DEMO_FILES = ".demo"  # beside the project: the signing key and the receiver's log
REPORT = "report.html"
EXAMPLE_FILES = ("app", "VERSION", "pyproject.toml", "README.md")
OUTPUT_KEPT = 20  # lines of a failed command's output its error shows
NOTIFIED_WITHIN = 60.0  # seconds the agent gets to deliver the rollback (it looks every second)
LONGEST_BODY = 1 << 20  # bytes a webhook may send the receiver

EXIT_WAITING = 3  # a command stopped for a person: a paused canary would hold the demo up
WAITING_HINT = (
    "a deployment waits for a person: the machine may have been too busy for the canary's "
    "looks ('shipyard analysis show' in the demo's folder says); run the demo again"
)
_FOLDER_HINT = "the demo's folder is kept as it was: run Shipyard's commands there to look"

Progress = Callable[[str], None]
"""Where the demo tells what it does: one line at a time."""

CONFIG = """\
# Written by `shipyard demo`. Every key is described in docs/configuration.md.
project: webapp
pipeline:
  jobs:
    check: {{run: {check}}}
release:
  version_files: [VERSION, "pyproject.toml:project.version"]
gates:
  secrets: {{}}
service:
  command: {command}
  instances: 2
  health: {{http: /healthz, timeout: 30s, interval: 100ms}}
  stop: {{signal: TERM, grace: 5s}}
environments:
  staging:
    strategy: {{blue_green: {{}}}}
  production:
    promote_from: {{env: staging}}
{production_env}\
    strategy:
      canary:
        steps: [{{weight: 20, pause: 5s}}, {{weight: 50, pause: 5s}}, {{weight: 100}}]
    analysis:
      interval: 1s
      failure_limit: 1
      inconclusive_limit: 20
      metrics:
        - {{name: error_rate, provider: builtin, max: 0.05, min_requests: 5}}
    watch: 5s
notifications:
  - url: {webhook}
    on: [deployment.rolled_back, incident.opened]
    secret: {secret}  # shipyard: allow-secret (the name of a secret, not its value)
"""


class ExampleNotFound(HostError):
    """The example service is not where this installation of Shipyard expects it."""


class DirectoryNotEmpty(ArgumentError):
    """The folder named for the demo already holds something."""


class DemoStepFailed(CheckFailed):
    """A command the demo runs did not end as the demo needs it to."""


@dataclass(frozen=True)
class DemoRequest:
    """What to run the demo in (a new temporary folder when None), and whether to leave its
    environments running afterwards."""

    directory: Path | None = None
    keep: bool = False


@dataclass(frozen=True)
class Shipped:
    """A release the demo made and what became of it in production."""

    version: str
    deployment: int | None
    status: str | None
    message: str | None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "version": self.version,
            "deployment": self.deployment,
            "status": self.status,
            "message": self.message,
        }


@dataclass(frozen=True)
class Received:
    """One webhook the demo's receiver took: the event, its delivery key and its subject."""

    event: str
    delivery: str
    subject: str

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"event": self.event, "delivery": self.delivery, "subject": self.subject}


@dataclass(frozen=True)
class DemoOutcome:
    """What the demo did and where to look: read from the store and from the receiver."""

    directory: Path
    state_dir: Path
    production: str
    good: Shipped
    bad: Shipped
    incident: int | None
    notifications: tuple[Received, ...]
    load: Mapping[str, Mapping[int, int]]
    load_errors: int
    dora: Mapping[str, Any] | None
    report: Path
    kept: bool
    seconds: float

    @property
    def problems(self) -> list[str]:
        """What did not go as the demo shows it should (nothing, normally)."""
        found = []
        if self.good.status != deployments.DeploymentStatus.SUCCEEDED:
            found.append(f"the good release {self.good.version} ended {self.good.status}")
        if self.bad.status != deployments.DeploymentStatus.ROLLED_BACK:
            found.append(f"the bad release {self.bad.version} ended {self.bad.status}")
        if self.incident is None:
            found.append(f"no incident was opened for {self.bad.version}")
        if not any(item.event == "deployment.rolled_back" for item in self.notifications):
            found.append("no notification of the rollback reached the webhook receiver")
        return found

    def as_json(self) -> dict[str, Any]:
        """The summary document of ``shipyard demo --json``."""
        return {
            "ok": not self.problems,
            "problems": self.problems,
            "directory": str(self.directory),
            "state_dir": str(self.state_dir),
            "production": self.production,
            "good": self.good.as_json(),
            "bad": self.bad.as_json(),
            "incident": self.incident,
            "notifications": [item.as_json() for item in self.notifications],
            "load": {
                "answers": {
                    version: {str(status): count for status, count in sorted(counts.items())}
                    for version, counts in self.load.items()
                },
                "errors": self.load_errors,
            },
            "dora": self.dora,
            "report": str(self.report),
            "kept": self.kept,
            "seconds": round(self.seconds, 1),
        }


PACKAGED_EXAMPLE = Path(__file__).resolve().parents[1] / "_examples" / "webapp"
"""The example service inside an installed wheel (pyproject.toml force-includes it)."""


def example_service() -> Path:
    """The folder of the example service the demo copies: the source tree's, else the
    wheel's copy."""
    for folder in (EXAMPLE, PACKAGED_EXAMPLE):
        if (folder / "app" / "__main__.py").is_file():
            return folder
    raise ExampleNotFound(
        f"the example service is not at {EXAMPLE}",
        hint="reinstall Shipyard: 'pip install -e .' from a clone of its repository, or a "
        "wheel built from it (which carries the example)",
    )


def run_demo(request: DemoRequest, *, on_progress: Progress) -> DemoOutcome:
    """Build the demo's repository, ship a good and a bad release through it under load, and
    stop what it started (unless ``request.keep``)."""
    started = time.monotonic()
    example = example_service()
    directory = _prepare(request.directory)
    secret = secrets.token_hex(16)
    with WebhookReceiver(directory / DEMO_FILES / "notifications.jsonl", secret) as receiver:
        demo = _Demo(directory, on_progress)
        try:
            return demo.run(example, receiver, secret, started=started, keep=request.keep)
        finally:
            if not request.keep:
                demo.down()


def _prepare(directory: Path | None) -> Path:
    """A new empty folder for the demo: the one named, or a temporary one."""
    if directory is None:
        return Path(tempfile.mkdtemp(prefix="shipyard-demo-")).resolve()
    folder = directory.expanduser().resolve()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise DirectoryNotEmpty(
            f"--dir {directory}: {'is not empty' if folder.is_dir() else 'is not a folder'}",
            hint="name a new or empty folder, or leave --dir out for a temporary one",
        )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class _Demo:
    """One run of the demo in its folder: the repository, the commands, the store."""

    directory: Path
    say: Progress
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.env = _environment(self.directory)

    def run(
        self,
        example: Path,
        receiver: WebhookReceiver,
        secret: str,
        *,
        started: float,
        keep: bool,
    ) -> DemoOutcome:
        """The demo from an empty folder to the report."""
        self.say(f"shipyard demo in {self.directory}")
        self._repository(example, receiver.url)
        self.shipyard("keys", "generate")
        self._store_secret(secret)
        self.shipyard("agent", "start")  # it sends the project's notifications as they happen
        self.say("")
        self.say("The first release: to staging, then to production at once (nothing runs there)")
        self._ship("feat: the example service")
        address = str(deployments.environment(self.store, PROJECT, PRODUCTION).router["address"])
        self.say(f"production answers at {address}; clients send it ~{LOAD_RATE:g} requests/s")
        with Load(address, workers=LOAD_WORKERS, rate=LOAD_RATE) as load:
            self.say("")
            self.say("Loop 1: a good release, through a canary judged on its error rate")
            good = self._ship("feat: a good change")
            self._tell_production(good, load)
            self.say("")
            self.say(
                "Loop 2: a bad release: in production it fails 3 requests in 10 "
                f"(APP_FAIL_RATE={FAIL_RATE}), which only shows under traffic"
            )
            self._write_config(receiver.url, fail_rate=FAIL_RATE)
            bad = self._ship("feat: a change that fails under traffic")
            self._tell_production(bad, load)
        self.say("")
        self._notified(receiver, bad)
        incident = self._incident(bad)
        self.shipyard("incident", "list")
        return self._finish(
            good, bad, incident, receiver, load, address, started=started, keep=keep
        )

    def _finish(
        self,
        good: Shipped,
        bad: Shipped,
        incident: int | None,
        receiver: WebhookReceiver,
        load: Load,
        address: str,
        *,
        started: float,
        keep: bool,
    ) -> DemoOutcome:
        """DORA, the report, and the outcome."""
        self.say("")
        self.say("How delivery went (DORA)")
        self.shipyard("dora", "--env", PRODUCTION)
        dora = json.loads(self.shipyard_json("dora", "--env", PRODUCTION))
        report = self.directory / REPORT
        self.shipyard("report", "-o", str(report))
        return DemoOutcome(
            directory=self.directory,
            state_dir=self.state.root,
            production=address,
            good=good,
            bad=bad,
            incident=incident,
            notifications=receiver.received(),
            load=load.statuses_by_version(),
            load_errors=len(load.errors),
            dora=dora,
            report=report,
            kept=keep,
            seconds=time.monotonic() - started,
        )

    # -- the repository -----------------------------------------------------------------------

    def _repository(self, example: Path, webhook: str) -> None:
        """A git repository with the example service and its shipyard.yaml (which the first
        ship commits), and the demo's own files kept out of it."""
        for name in EXAMPLE_FILES:
            source = example / name
            if source.is_dir():
                ignore = shutil.ignore_patterns("__pycache__")
                shutil.copytree(source, self.directory / name, ignore=ignore)
            else:
                shutil.copy(source, self.directory / name)
        git = Git(self.directory)
        git.run("init", "-q", "-b", "main")
        git.run("config", "user.name", "Shipyard demo")
        git.run("config", "user.email", "demo@example.com")
        for setting in ("commit.gpgsign", "tag.gpgsign"):  # nobody to type a passphrase
            git.run("config", setting, "false")
        excluded = self.directory / ".git" / "info" / "exclude"
        excluded.parent.mkdir(parents=True, exist_ok=True)
        with excluded.open("a", encoding="utf-8") as exclude:
            exclude.write(f"/{DEMO_FILES}/\n/{REPORT}\n")
        self._write_config(webhook)
        self.say(f"a git repository with the example service (examples/webapp) and {CONFIG_NAME}")

    def _write_config(self, webhook: str, *, fail_rate: str | None = None) -> None:
        python = shlex.quote(sys.executable)
        production_env = f"    env: {{APP_FAIL_RATE: '{fail_rate}'}}\n" if fail_rate else ""
        text = CONFIG.format(
            check=json.dumps(f"{python} -m compileall -q app"),
            command=json.dumps(f"{python} -m app --port {{port}}"),
            production_env=production_env,
            webhook=webhook,
            secret=SECRET_NAME,
        )
        (self.directory / CONFIG_NAME).write_text(text, encoding="utf-8")

    def _store_secret(self, secret: str) -> None:
        """The webhook's signing secret where every command finds it: ``.shipyard/secrets``."""
        path = secrets_file(self.state)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "a", encoding="utf-8") as file:
            file.write(f"{SECRET_NAME}={secret}\n")

    def _commit(self, message: str) -> None:
        git = Git(self.directory)
        git.run("add", "--all")
        git.run("commit", "-q", "--allow-empty", "-m", message)

    # -- shipping -------------------------------------------------------------------------------

    def _ship(self, message: str) -> Shipped:
        """Commit, then ship: release, staging, and production's canary with its watch."""
        self._commit(message)
        before = len(records.all_of(self.store, PROJECT))
        # A canary rolled back by its analysis exits 1: the demo reads what happened from
        # the store; only a deployment left waiting for a person stops it.
        self.shipyard("ship", allowed=(0, 1))
        released = records.all_of(self.store, PROJECT)
        if len(released) == before:
            raise DemoStepFailed(
                "'shipyard ship' released nothing in the demo (its output above says why)",
                hint=_FOLDER_HINT,
            )
        version = released[0].version
        found = next(
            (
                deployment
                for deployment in deployments.for_environment(self.store, PROJECT, PRODUCTION)
                if deployment.version == version
            ),
            None,
        )
        if found is None:
            return Shipped(version, None, None, None)
        return Shipped(version, found.id, found.status.value, found.message)

    def _notified(self, receiver: WebhookReceiver, bad: Shipped) -> None:
        """Wait for the agent to deliver the rollback to the receiver, then show it."""
        self.say("The agent notifies the webhook receiver of the rollback")
        subject = f"deployment:{bad.deployment}"
        if not receiver.wait_for("deployment.rolled_back", subject, NOTIFIED_WITHIN):
            self.say(f"  nothing came within {NOTIFIED_WITHIN:g} s")
        for item in receiver.received():
            self.say(f"→ the receiver took {item.event} ({item.subject}), its signature checked")
        self.shipyard("notify", "status")

    def _tell_production(self, shipped: Shipped, load: Load) -> None:
        """What became of a release in production, and what its clients saw."""
        serving = deployments.environment(self.store, PROJECT, PRODUCTION).active_version
        self.say(
            f"→ deployment {shipped.deployment} of {shipped.version}: {shipped.status}; "
            f"production serves {serving}"
        )
        self.say(f"→ clients so far: {_answers(load)}")

    def _incident(self, bad: Shipped) -> int | None:
        if bad.deployment is None:
            return None
        with self.store.read() as conn:
            opened = incidents.for_deployment(conn, bad.deployment)
        return opened[0].id if opened else None

    # -- commands and state ---------------------------------------------------------------------

    def shipyard(self, *args: str, allowed: tuple[int, ...] = (0,)) -> int:
        """Run ``shipyard ARGS`` in the repository, each line of its output told as progress."""
        self.say(f"$ shipyard {' '.join(args)}")
        with self._process(args, stderr=subprocess.STDOUT) as process:
            assert process.stdout is not None
            for line in process.stdout:
                self.say(f"  {line.rstrip()}")
        return self._checked(args, process.returncode, allowed, unseen="")

    def shipyard_json(self, *args: str) -> str:
        """Run ``shipyard ARGS --json`` and return what it printed on stdout."""
        with self._process((*args, "--json"), stderr=subprocess.PIPE) as process:
            printed, complaint = process.communicate()
        self._checked(args, process.returncode, (0,), unseen=complaint)
        return printed

    @contextmanager
    def _process(self, args: tuple[str, ...], *, stderr: int) -> Iterator[subprocess.Popen[str]]:
        command = [sys.executable, "-m", "shipyard", *args]
        with subprocess.Popen(
            command,
            cwd=self.directory,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            errors="replace",
        ) as process:
            yield process

    @staticmethod
    def _checked(args: tuple[str, ...], code: int, allowed: tuple[int, ...], unseen: str) -> int:
        """``code`` if allowed; else the error that says which command failed and how."""
        if code in allowed:
            return code
        said = "".join(f"\n  {line}" for line in unseen.splitlines()[-OUTPUT_KEPT:])
        raise DemoStepFailed(
            f"'shipyard {' '.join(args)}' exited {code} in the demo"
            + (f":{said}" if said else " (its output above says why)"),
            hint=WAITING_HINT if code == EXIT_WAITING else _FOLDER_HINT,
        )

    @cached_property
    def state(self) -> state_dir.StateDir:
        """The demo repository's state directory."""
        return state_dir.locate(self.directory, env=self.env)

    @cached_property
    def store(self) -> Store:
        """The demo's store: the database its commands use (they have made its schema)."""
        return Store(self.state.database_url(self.env))

    def down(self) -> None:
        """Stop every process of the demo's state directory: environments, agent, supervisor."""
        if not (self.directory / ".shipyard").is_dir():
            return
        self.say("")
        try:
            self.shipyard("down")
        except DemoStepFailed as error:  # the demo's own outcome or error matters more
            self.say(f"could not stop everything: {error.message}")


def _environment(directory: Path) -> dict[str, str]:
    """The environment of the demo's commands: the user's, without anything that would point
    Shipyard elsewhere (another state directory, database, key), and the demo's signing key."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("SHIPYARD_") or name == "SHIPYARD_DEBUG"
    }
    env["SHIPYARD_SIGNING_KEY"] = str(directory / DEMO_FILES / "signing.key")
    return env


def _answers(load: Load) -> str:
    """What the clients saw, per version: ``0.1.0 812 ok; 0.3.0 61 ok, 26 failed``."""
    parts = []
    for version, counts in sorted(load.statuses_by_version().items()):
        ok = sum(count for status, count in counts.items() if status < 500)
        failed = sum(count for status, count in counts.items() if status >= 500)
        parts.append(
            f"{version or '(no version)'} {ok} ok" + (f", {failed} failed" if failed else "")
        )
    errors = len(load.errors)
    return "; ".join(parts) + (f"; {errors} connection errors" if errors else "")


class WebhookReceiver:
    """A JSON webhook receiver on this host, as a team would write one: it checks each
    request's signature, takes each delivery key once, and appends what it took to a file."""

    def __init__(self, log: Path, secret: str) -> None:
        self.log = log
        self._secret = secret.encode()
        self._taken: dict[str, Received] = {}
        self._changed = threading.Condition()
        self._server = _ReceiverServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-receiver", daemon=True
        )

    @property
    def url(self) -> str:
        """Where notifications are sent."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/shipyard"

    def __enter__(self) -> WebhookReceiver:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def received(self) -> tuple[Received, ...]:
        """The deliveries taken so far, in order."""
        with self._changed:
            return tuple(self._taken.values())

    def wait_for(self, event: str, subject: str, timeout: float) -> bool:
        """Wait until a delivery of ``event`` about ``subject`` has been taken; False if none
        came within ``timeout`` seconds."""
        with self._changed:
            return self._changed.wait_for(
                lambda: any((r.event, r.subject) == (event, subject) for r in self._taken.values()),
                timeout,
            )

    def take(self, body: bytes, signature: str, event: str, delivery: str) -> int:
        """The HTTP status for one request: 401 unless signed with the secret, 400 unless a
        JSON event, else 204 (once per delivery key: a repeated delivery is not taken again)."""
        expected = "sha256=" + hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return 401
        try:
            document = json.loads(body)
            subject = str(document["event"]["subject"])
        except (ValueError, KeyError, TypeError):
            return 400
        with self._changed:
            if delivery in self._taken:
                return 204
            self._taken[delivery] = Received(event=event, delivery=delivery, subject=subject)
            with self.log.open("a", encoding="utf-8") as file:
                file.write(json.dumps(document, sort_keys=True) + "\n")
            self._changed.notify_all()
        return 204


class _ReceiverServer(ThreadingHTTPServer):
    """The receiver's HTTP server on a free loopback port."""

    daemon_threads = True

    def __init__(self, receiver: WebhookReceiver) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.receiver = receiver


class _Handler(BaseHTTPRequestHandler):
    """Hands each POST to the receiver."""

    server: _ReceiverServer

    def do_POST(self) -> None:
        """Answer a delivery."""
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            status = 411
        elif not 0 < int(length) <= LONGEST_BODY:
            status = 413
        else:
            status = self.server.receiver.take(
                self.rfile.read(int(length)),
                self.headers.get("X-Shipyard-Signature-256", ""),
                self.headers.get("X-Shipyard-Event", ""),
                self.headers.get("X-Shipyard-Delivery", ""),
            )
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the demo says what it took."""
