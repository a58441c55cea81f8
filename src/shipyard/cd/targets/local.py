"""The local target: the release unpacked under the state directory, instances and the router
as processes of this host under the state directory's supervisor.

It runs exactly the release: the verified bundle, ``service.setup`` once per bundle,
``service.command`` per instance on a free port. Secrets reach instances through the
supervisor's owner-only environment files, never through a configuration file or a log.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shipyard.cd.instances import InstanceRef
from shipyard.cd.launch import Sealed
from shipyard.cd.router.client import RouterClient
from shipyard.cd.router.errors import RouterError
from shipyard.cd.router.state import RouterFiles
from shipyard.cd.settings import DeploySettings
from shipyard.cd.supervisor import ProgramSpec, Supervisor, SupervisorError
from shipyard.cd.targets.interface import InstanceUnhealthy, Release, Target, TargetError
from shipyard.cd.traffic.builtin import BuiltinRouter
from shipyard.cd.traffic.interface import TrafficRouter
from shipyard.core.blobs import BlobStore
from shipyard.core.secrets import Masker, load_secrets, masker_for, secrets_file
from shipyard.core.state import StateDir
from shipyard.release import unpacked

_SAFE = re.compile(r"[^a-z0-9_.-]+")
_SETUP_TIMEOUT_S = 1800.0
_ROUTER_START_S = 15.0
_FAILED_STATES = frozenset({"FATAL", "BACKOFF", "EXITED", "STOPPED"})
_LOG_TAIL = 20


class SetupFailed(InstanceUnhealthy):
    """``service.setup`` failed for a release: nothing was started."""


class LocalTarget(Target):
    """Processes on this host, supervised, behind the environment's router."""

    def __init__(self, state: StateDir, *, environ: Mapping[str, str] | None = None) -> None:
        self.state = state
        self.environ = dict(os.environ if environ is None else environ)
        self.blobs = BlobStore.for_state(state)
        self.supervisor = Supervisor.for_state(state)

    def prepare(self, release: Release, settings: DeploySettings) -> Path:
        """Unpack the verified bundle once, run ``service.setup`` in it once, seal it read-only.

        A tree sealed before is checked instead; ``UnpackedReleaseChanged`` names what differs.
        """
        folder = self._folder(release, settings)
        root = folder / f"{release.project}-{release.version}"
        service_root = root / settings.project_dir if settings.project_dir else root
        if unpacked.is_sealed(folder):
            unpacked.check(folder, release.bundle, root=service_root)
            return service_root
        unpacked.remove(folder)  # what an interrupted prepare left
        unpacked.unpack(self.blobs, release.bundle, folder)
        if settings.setup:
            self._setup(release, settings, service_root, folder)
        unpacked.seal(folder, release.bundle)
        return service_root

    def _folder(self, release: Release, settings: DeploySettings) -> Path:
        # One folder per bundle and setup command: a changed setup runs again, on a fresh copy.
        setup = hashlib.sha256((settings.setup or "").encode()).hexdigest()[:8]
        bundle_id = release.bundle.split(":")[-1][:12]
        name = name_part(f"{release.project}-{release.version}-{bundle_id}-{setup}")
        return self.state.root / "deploy" / "releases" / name

    def _setup(self, release: Release, settings: DeploySettings, cwd: Path, folder: Path) -> None:
        log = self.state.logs / "setup" / f"{name_part(release.project)}-{release.version}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        assert settings.setup is not None
        with log.open("wb") as handle:
            try:
                result = subprocess.run(
                    ["/bin/sh", "-c", settings.setup],
                    cwd=cwd,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    env=self._base_env(release, settings),
                    timeout=_SETUP_TIMEOUT_S,
                    check=False,
                    stdin=subprocess.DEVNULL,
                )
                code = result.returncode
            except subprocess.TimeoutExpired:
                code = -1
        if code != 0:
            with contextlib.suppress(OSError):
                unpacked.remove(folder)
            output = self.masker(settings.secrets).mask(_tail(log))
            raise SetupFailed(
                f"service.setup failed for {release.version} (exit {code}): "
                f"{output or 'no output'}",
                hint=f"the whole output is in {log}; nothing was started",
            )

    def start(
        self,
        release: Release,
        settings: DeploySettings,
        root: Path,
        tag: str,
        *,
        count: int | None = None,
        first: int = 0,
    ) -> list[InstanceRef]:
        """Start ``count`` instances (default ``settings.instances``) numbered from ``first``
        under the supervisor, each on a free port of this host.

        The sealed tree is checked first: an instance only ever starts from the verified bundle.
        """
        folder = self._folder(release, settings)
        unpacked.check(folder, release.bundle, root=root)
        secrets = {
            name: value.reveal()
            for name, value in load_secrets(
                list(settings.secrets),
                environ=self.environ,
                secrets_file=secrets_file(self.state),
            ).items()
        }
        # The tree is sealed, and a root instance would write bytecode into it all the same.
        pycache = self.state.root / "deploy" / "pycache"
        base = {"PYTHONPYCACHEPREFIX": str(pycache), **self._base_env(release, settings)}
        started: list[InstanceRef] = []
        try:
            self.supervisor.ensure_running()
            specs = []
            number = settings.instances if count is None else count
            for index in range(first, first + number):
                port = free_port()
                name = name_part(f"{settings.project}.{settings.environment}.{tag}.{index}")
                command = settings.command.replace("{port}", str(port))
                specs.append(
                    ProgramSpec(
                        name=name,
                        argv=("/bin/sh", "-c", f"exec {command}"),
                        cwd=root,
                        env={**base, "PORT": str(port), "SHIPYARD_INSTANCE": str(index)},
                        secret_env=secrets,
                        stop_signal=signal.Signals[f"SIG{settings.stop_signal}"],
                        stop_grace_s=math.ceil(settings.stop_grace_s),
                        autorestart=True,
                        start_secs=1,
                        sealed=Sealed(str(folder), release.bundle),
                    )
                )
                started.append(InstanceRef(name, release.version, "127.0.0.1", port))
            # Each start waits start_secs to see the process stay up: start them side by side.
            with ThreadPoolExecutor(max_workers=max(1, len(specs))) as pool:
                for future in [pool.submit(self.supervisor.add, spec) for spec in specs]:
                    future.result()
        except SupervisorError as error:
            self.stop(started)
            masker = self.masker(settings.secrets)  # the error quotes what the service wrote
            raise TargetError(
                masker.mask(f"cannot start {release.version}: {error.message}"),
                hint=masker.mask(error.hint) if error.hint else None,
            ) from None
        return started

    def wait_healthy(self, instances: Sequence[InstanceRef], settings: DeploySettings) -> None:
        """Poll every instance's health path until 2xx; stop early if one exits."""
        deadline = time.monotonic() + settings.health_timeout_s
        waiting = list(instances)
        while waiting:
            for instance in list(waiting):
                problem = self._exited(instance)
                if problem:
                    raise InstanceUnhealthy(
                        self.masker(settings.secrets).mask(problem),
                        hint="the service exited; see "
                        f"'shipyard service logs --env {settings.environment}'",
                    )
                if _healthy(instance, settings.health_path):
                    waiting.remove(instance)
            if not waiting:
                return
            if time.monotonic() > deadline:
                names = ", ".join(f"{i.name} (port {i.port})" for i in waiting)
                raise InstanceUnhealthy(
                    f"{names} did not answer {settings.health_path} with 2xx within "
                    f"{settings.health_timeout_s:g}s",
                    hint=f"see 'shipyard service logs --env {settings.environment}'",
                )
            time.sleep(settings.health_interval_s)

    def alive(self, instances: Sequence[InstanceRef], settings: DeploySettings) -> bool:
        """Whether every instance runs and answers its health check now."""
        return bool(instances) and all(
            not self._exited(i) and _healthy(i, settings.health_path) for i in instances
        )

    def stop(self, instances: Sequence[InstanceRef]) -> None:
        """Stop instances (stop signal, grace period, then the whole group is killed)."""
        for instance in instances:
            try:
                self.supervisor.remove(instance.name)
            except SupervisorError:
                continue  # already gone: nothing to stop

    def router(self, settings: DeploySettings) -> TrafficRouter:
        """The environment's router (started under the supervisor first if it is not running)."""
        return BuiltinRouter(self.router_client(settings), settings.environment)

    def router_client(self, settings: DeploySettings) -> RouterClient:
        """The client of the environment's router, started under the supervisor if needed."""
        name = name_part(f"router.{settings.router_key}")
        try:
            client = RouterClient.for_environment(self.state.root, settings.router_key)
            client.health()
        except RouterError:
            pass
        else:
            self._write_scrape_target(settings)
            return client
        port = settings.router_port or free_port()
        # Prometheus scrapes the admin port: it stays the one written for this environment.
        target_file = scrape_target_path(self.state.root, settings)
        admin_port = _scrape_target_port(target_file) or free_port()
        self.supervisor.ensure_running()
        self.supervisor.add(
            ProgramSpec(
                name=name,
                argv=(
                    sys.executable,
                    "-m",
                    "shipyard.cd.router",
                    "--env",
                    settings.router_key,
                    "--port",
                    str(port),
                    "--admin-port",
                    str(admin_port),
                    "--host",
                    settings.router_host,
                    "--state-dir",
                    str(self.state.root),
                    *(
                        ("--feedback-path", settings.feedback_path)
                        if settings.feedback_path
                        else ()
                    ),
                ),
                cwd=self.state.root,
                env={
                    k: v
                    for k, v in self.environ.items()
                    if k in ("PATH", "HOME", "LANG", "PYTHONPATH")
                },
                secret_env={},
                stop_signal=signal.SIGTERM,
                stop_grace_s=10,
                autorestart=True,
                start_secs=1,
            )
        )
        deadline = time.monotonic() + _ROUTER_START_S
        while True:
            try:
                client = RouterClient.for_environment(self.state.root, settings.router_key)
                client.health()
            except RouterError as error:
                if time.monotonic() > deadline:
                    raise TargetError(
                        f"the router of {settings.environment} did not start: {error.message}",
                        hint=f"are ports {port} and {admin_port} (admin, kept in {target_file}) "
                        f"free? see its log: {self.supervisor.log_path(name)}",
                    ) from error
                time.sleep(0.1)
            else:
                self._write_scrape_target(settings)
                return client

    def _write_scrape_target(self, settings: DeploySettings) -> None:
        """Write the router's Prometheus file-SD target (its admin address), when it changed."""
        address = RouterFiles.at(self.state.root, settings.router_key).read_address()
        entry = {
            "targets": [f"{address.host}:{address.port}"],
            "labels": {"project": settings.project, "environment": settings.environment},
        }
        text = json.dumps([entry], indent=2) + "\n"
        path = scrape_target_path(self.state.root, settings)
        with contextlib.suppress(OSError):
            if path.read_text(encoding="utf-8") == text:
                return
        # Prometheus watches the file: it must never see it half written.
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(text, encoding="utf-8")
            partial.replace(path)
        except OSError as exc:
            raise TargetError(
                f"cannot write the Prometheus target file {path}: {exc.strerror or exc}",
                hint="make the state directory writable, or set SHIPYARD_HOME",
            ) from exc

    def log_files(self, instance: InstanceRef) -> dict[str, Path]:
        """The supervisor's log files of the instance (rotated copies beside them)."""
        return {
            stream: self.supervisor.log_path(instance.name, stream)
            for stream in ("stdout", "stderr")
        }

    def masker(self, names: Sequence[str]) -> Masker:
        """What hides the secrets named, and every one of the secrets file, in output."""
        return masker_for(names, environ=self.environ, secrets_file=secrets_file(self.state))

    def _exited(self, instance: InstanceRef) -> str | None:
        try:
            status = self.supervisor.status(instance.name)
        except SupervisorError:
            return f"{instance.name} is not running"
        if status.state in _FAILED_STATES:
            tail = _tail(self.supervisor.log_path(instance.name, "stderr")) or _tail(
                self.supervisor.log_path(instance.name)
            )
            return f"{instance.name} {status.state.lower()}" + (f": {tail}" if tail else "")
        return None

    def _base_env(self, release: Release, settings: DeploySettings) -> dict[str, str]:
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV", "TMPDIR")
        env = {key: self.environ[key] for key in keep if key in self.environ}
        env.update(settings.env)
        env.update(
            {
                "SHIPYARD_PROJECT": settings.project,
                "SHIPYARD_ENV": settings.environment,
                "SHIPYARD_VERSION": release.version,
            }
        )
        return env


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape_target_path(state_root: Path, settings: DeploySettings) -> Path:
    """The Prometheus file-SD target file of an environment's router."""
    return state_root / "prometheus" / f"{settings.router_key}.json"


def _scrape_target_port(path: Path) -> int | None:
    """The admin port a target file names, None without a usable one."""
    try:
        target = json.loads(path.read_text(encoding="utf-8"))[0]["targets"][0]
        port = int(str(target).rsplit(":", 1)[1])
    except (OSError, ValueError, LookupError, TypeError):
        return None
    return port if 0 < port < 65536 else None


def name_part(text: str) -> str:
    """A name the supervisor and file systems accept: ``[a-z0-9_.-]``."""
    return _SAFE.sub("-", text.lower()).strip("-.") or "x"


def _healthy(instance: InstanceRef, path: str) -> bool:
    try:
        with urllib.request.urlopen(
            f"http://{instance.host}:{instance.port}{path}", timeout=2
        ) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-_LOG_TAIL:])[-1500:]
