"""The process supervisor of deployed services: one supervisord per state directory.

Programs (a router, service instances) are added and removed at run time through supervisord's
XML-RPC interface, one include file each, so they outlive the CLI and come back after a crash.
It never writes an environment value into a config, and signals programs only via supervisord
(except what a dead supervisord left running, which it stops before starting a new one).

Files, all under ``<state>/supervisor/``::

    supervisord.conf        the daemon's config; ``[include] files = programs/*.conf``
    supervisor.sock         its XML-RPC socket; /tmp/shipyard-<hash>/supervisor.sock instead
                            when this path is too long for AF_UNIX (about 100 bytes)
    supervisord.pid, .log   its pid and its own log
    lock                    serialises starting the daemon and changing programs
    programs/<name>.conf    one program each
    programs/<name>.env     that program's environment, secrets included: mode 0600
    logs/<name>.out.log     a program's stdout (and .err.log: stderr), rotated by supervisord

Errors::

    SupervisorError (HostError)   supervisord cannot be started, reached or asked
    ├── SupervisorUnavailable     no supervisord answers for this state directory
    ├── InvalidProgram            a ProgramSpec cannot be run (a bad name, argv or path)
    ├── ProgramNotFound           no program of that name is known to supervisord
    └── ProgramFailed             a program did not stay up for its start_secs
"""

from __future__ import annotations

import builtins
import contextlib
import enum
import fcntl
import hashlib
import http.client
import os
import re
import signal as signals
import socket
import stat
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import psutil

from shipyard.cd.launch import EnvFileError, Sealed, read_env_file, write_env_file
from shipyard.core.errors import HostError
from shipyard.core.process import (
    TREE_MARKER_VARIABLE,
    kill_tree,
    marked_processes,
    pid_alive,
    wait_for_exit,
)
from shipyard.core.secrets import MIN_SECRET_LENGTH, Masker
from shipyard.core.state import StateDir

__all__ = [
    "InvalidProgram",
    "ProgramFailed",
    "ProgramNotFound",
    "ProgramSpec",
    "ProgramState",
    "ProgramStatus",
    "Supervisor",
    "SupervisorError",
    "SupervisorUnavailable",
]

PROGRAM_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
"""What a program name may be: supervisord's rules, safe as a file name, no colon."""

SOCKET_PATH_LIMIT = 100
"""Longest socket path used in place (bytes); AF_UNIX allows 107 on Linux and 103 on macOS."""

_START_TIMEOUT = 30.0  # seconds for supervisord to answer after it was started
_LOCK_TIMEOUT = 120.0  # seconds to wait for another Shipyard process to finish a change
_RPC_TIMEOUT = 30.0  # seconds for an answer to a call that does not wait for a program
_PATIENCE = 30.0  # seconds beyond a program's own start_secs / stop grace
_ORPHAN_GRACE = 10.0  # seconds a program left by a dead supervisord gets to stop
_POLL = 0.05
_TAIL_BYTES = 4096
_TAIL_LINES = 20

# The daemon, and so every program, starts from this part of the caller's environment only:
# whatever else the first Shipyard command happened to have (tokens!) stays out.
_INHERITED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")

# supervisord's XML-RPC fault codes (supervisor.xmlrpc.Faults).
_BAD_NAME = 10
_NOT_RUNNING = 70
_STILL_RUNNING = 91
_CANT_REREAD = 92


class SupervisorError(HostError):
    """supervisord cannot be started, reached or asked to do something."""


class SupervisorUnavailable(SupervisorError):
    """No supervisord answers on this state directory's socket."""


class InvalidProgram(SupervisorError):
    """A program cannot be run as specified: a bad name, command, path or setting."""


class ProgramNotFound(SupervisorError):
    """supervisord knows no program of that name."""


class ProgramFailed(SupervisorError):
    """A program exited, or could not be spawned, before it stayed up for its start_secs."""

    def __init__(self, message: str, *, status: ProgramStatus, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class _Refused(SupervisorError):
    """supervisord answered a call with a fault."""

    def __init__(self, message: str, *, fault: int) -> None:
        super().__init__(message)
        self.fault = fault


class ProgramState(enum.StrEnum):
    """A program's state, as supervisord names it."""

    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    STOPPING = "STOPPING"
    EXITED = "EXITED"
    FATAL = "FATAL"
    UNKNOWN = "UNKNOWN"


_ACTIVE = frozenset({ProgramState.STARTING, ProgramState.RUNNING, ProgramState.BACKOFF})
_FAILED = frozenset({ProgramState.BACKOFF, ProgramState.FATAL, ProgramState.EXITED})


@dataclass(frozen=True)
class ProgramSpec:
    """What to run under the supervisor, and how to restart, stop and log it."""

    name: str
    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str] = field(default_factory=dict)
    secret_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    stop_signal: signals.Signals = signals.SIGTERM
    stop_grace_s: int = 10
    autorestart: bool = True
    start_secs: int = 1
    start_retries: int = 3
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 5
    sealed: Sealed | None = None
    """A sealed release tree checked before every start of the program (restarts too)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not PROGRAM_NAME.fullmatch(self.name):
            raise InvalidProgram(
                f"{self.name!r} is not a valid program name",
                hint="use 1-64 of a-z, 0-9, '_', '.', '-', starting with a letter or digit",
            )
        argv = tuple(self.argv)
        if not argv or not argv[0]:
            raise InvalidProgram(f"program {self.name!r} has no command")
        for word in argv:
            if not isinstance(word, str) or "\0" in word:
                raise InvalidProgram(f"program {self.name!r}: the argument {word!r} holds a NUL")
        object.__setattr__(self, "argv", argv)
        object.__setattr__(self, "cwd", Path(self.cwd))
        object.__setattr__(self, "env", MappingProxyType(self._checked_env(self.env, False)))
        object.__setattr__(
            self, "secret_env", MappingProxyType(self._checked_env(self.secret_env, True))
        )
        for setting in ("stop_grace_s", "start_secs", "start_retries", "log_max_bytes"):
            value = getattr(self, setting)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidProgram(
                    f"program {self.name!r}: {setting} must be a whole number >= 0, not {value!r}"
                )
        if isinstance(self.log_backups, bool) or not 0 <= self.log_backups <= 1000:
            raise InvalidProgram(f"program {self.name!r}: log_backups must be 0..1000")
        object.__setattr__(self, "stop_signal", signals.Signals(self.stop_signal))

    def _checked_env(self, env: Mapping[str, str], secret: bool) -> dict[str, str]:
        checked = {}
        for key, value in env.items():
            if not isinstance(key, str) or not key or "=" in key or "\0" in key:
                raise InvalidProgram(
                    f"program {self.name!r}: {key!r} is not a valid environment variable name"
                )
            if not isinstance(value, str) or "\0" in value:
                shown = "(secret)" if secret else repr(value)
                raise InvalidProgram(
                    f"program {self.name!r}: the value of {key} must be a string without NUL, "
                    f"not {shown}"
                )
            checked[key] = value
        return checked


@dataclass(frozen=True)
class ProgramStatus:
    """A program's state now, as supervisord reports it.

    ``pid`` is set while the program is STARTING, RUNNING or STOPPING; ``exit_status`` only in
    EXITED (supervisord keeps none for BACKOFF or FATAL); ``uptime_s`` only when RUNNING.
    """

    name: str
    state: ProgramState
    pid: int | None
    started_at: datetime | None
    uptime_s: float | None
    exit_status: int | None
    spawn_error: str | None
    stdout_log: Path
    stderr_log: Path

    @property
    def running(self) -> bool:
        """Whether the program is up and past its start_secs."""
        return self.state is ProgramState.RUNNING


@dataclass(frozen=True)
class Supervisor:
    """The supervisord of one state directory, and the programs it runs.

    Build it with ``for_state``; ``home`` is ``<state>/supervisor`` and ``socket_path`` the
    daemon's XML-RPC socket. Every method may be called from several processes at once.
    """

    state: StateDir
    home: Path
    socket_path: Path

    @classmethod
    def for_state(cls, state: StateDir) -> Supervisor:
        """The supervisor of ``state`` (nothing is started or written yet)."""
        home = state.root / "supervisor"
        return cls(state=state, home=home, socket_path=_socket_path(home))

    @property
    def config_path(self) -> Path:
        """supervisord's main config file."""
        return self.home / "supervisord.conf"

    @property
    def pidfile(self) -> Path:
        """Where supervisord writes its pid."""
        return self.home / "supervisord.pid"

    @property
    def logfile(self) -> Path:
        """supervisord's own log (it rotates it)."""
        return self.home / "supervisord.log"

    @property
    def programs_dir(self) -> Path:
        """One ``<name>.conf`` and one ``<name>.env`` (mode 0600) per program."""
        return self.home / "programs"

    @property
    def logs_dir(self) -> Path:
        """The programs' rotated stdout and stderr logs."""
        return self.home / "logs"

    def log_path(self, name: str, stream: Literal["stdout", "stderr"] = "stdout") -> Path:
        """The current log file of a program's stdout or stderr (backups end in .1, .2, …)."""
        _check_name(name)
        suffix = "out" if stream == "stdout" else "err"
        return self.logs_dir / f"{name}.{suffix}.log"

    # -- the daemon ------------------------------------------------------------------------

    def is_running(self) -> bool:
        """Whether supervisord answers on this state directory's socket."""
        try:
            state = self._call("supervisor.getState", timeout=5.0)
        except SupervisorUnavailable:
            return False
        return isinstance(state, dict) and state.get("statename") == "RUNNING"

    def ensure_running(self) -> None:
        """Start supervisord unless it answers already; safe when several processes race."""
        if self.is_running():
            return
        self._prepare_dirs()
        with self._lock():
            if self.is_running():
                return
            self._write_main_config()
            self._start_daemon()

    def shutdown(self) -> None:
        """Forget every program, stop each with its signal and grace, then stop supervisord."""
        with self._lock_if_present():
            # The files go first: a supervisord started meanwhile must not bring them back.
            for path in self._program_files():
                path.unlink(missing_ok=True)
            if not self.is_running():
                return
            pid = int(self._call("supervisor.getPID"))
            grace = max((int(c["stopwaitsecs"]) for c in self._config_infos()), default=0)
            # All at once: on shutdown supervisord itself would stop one group per loop turn.
            self._call("supervisor.stopAllProcesses", True, timeout=grace + _PATIENCE)
            self._call("supervisor.shutdown")
            if not wait_for_exit(pid, grace + _PATIENCE):
                raise SupervisorError(
                    f"supervisord (pid {pid}) did not exit after it was asked to shut down",
                    hint=f"see {self.logfile}",
                )
            if self.socket_path.parent != self.home:
                with contextlib.suppress(OSError):  # the short folder in /tmp, once empty
                    self.socket_path.parent.rmdir()

    # -- programs --------------------------------------------------------------------------

    def add(self, spec: ProgramSpec) -> ProgramStatus:
        """Run ``spec`` (replacing a program of that name) and wait until it has started.

        Raises ``ProgramFailed`` when the program exits before it has been up for
        ``spec.start_secs`` seconds; the program then stays known, stopped, with its logs.
        """
        self.ensure_running()
        conf, env = self._program_paths(spec.name)
        in_config = not any(c in word for word in spec.argv for c in "\n\r")
        text = self._program_config(spec, env, in_config)
        if self._known(spec.name):
            self._stop(spec.name, wait=True)
        with self._lock():
            added, _, removed = self._reload()
            self._tidy(added, removed, skip=spec.name)
            with contextlib.suppress(ProgramNotFound):
                self._remove_group(spec.name)
            try:
                write_env_file(
                    env,
                    spec.env,
                    spec.secret_env,
                    argv=None if in_config else spec.argv,
                    sealed=spec.sealed,
                )
                _write_atomically(conf, text)
                added, _, _ = self._reload()
                if spec.name not in added:
                    raise SupervisorError(
                        f"supervisord did not pick up {conf}", hint=f"see {self.logfile}"
                    )
                self._call("supervisor.addProcessGroup", spec.name)
            except EnvFileError as error:
                _unlink(conf, env)
                raise SupervisorError(str(error)) from None
            except SupervisorError:
                _unlink(conf, env)
                with contextlib.suppress(SupervisorError):
                    self._reload()
                raise
        return self._wait_started(spec.name, spec.start_secs, tuple(spec.secret_env.values()))

    def remove(self, name: str, wait: bool = True) -> None:
        """Stop a program with its signal and grace, and forget it; nothing if it is unknown.

        With ``wait=False`` the stop is only requested: the files go at once, and supervisord
        drops the program on a later ``add`` or ``remove`` once it has stopped.
        """
        _check_name(name)
        if not self.is_running():
            with self._lock_if_present():
                _unlink(*self._program_paths(name))
            return
        if self._known(name):
            self._stop(name, wait=wait)
        with self._lock():
            _unlink(*self._program_paths(name))
            added, _, removed = self._reload()
            self._tidy(added, removed, skip=None if wait else name)

    def restart(self, name: str) -> ProgramStatus:
        """Stop a program with its signal and grace, start it again, wait until it is up."""
        _check_name(name)
        config = self._config_info(name)
        self._stop(name, wait=True)
        self._call("supervisor.startProcess", name, False)
        return self._wait_started(name, int(config["startsecs"]), self._secrets(name))

    def status(self, name: str) -> ProgramStatus:
        """A program's state, pid, uptime, exit status and log files."""
        _check_name(name)
        return _status(self._call("supervisor.getProcessInfo", name))

    def list(self) -> builtins.list[ProgramStatus]:
        """Every program supervisord runs, by name."""
        infos = self._call("supervisor.getAllProcessInfo")
        return sorted((_status(info) for info in infos), key=lambda status: status.name)

    # -- internals -------------------------------------------------------------------------

    def _known(self, name: str) -> bool:
        try:
            self.status(name)
        except ProgramNotFound:
            return False
        return True

    def _stop(self, name: str, *, wait: bool) -> None:
        grace = int(self._config_info(name)["stopwaitsecs"]) if wait else 0
        try:
            self._call("supervisor.stopProcess", name, wait, timeout=grace + _PATIENCE)
        except _Refused as refused:
            if refused.fault != _NOT_RUNNING:
                raise

    def _remove_group(self, name: str) -> None:
        try:
            self._call("supervisor.removeProcessGroup", name)
        except _Refused as refused:
            if refused.fault == _STILL_RUNNING:
                raise SupervisorError(
                    f"program {name!r} was started again while Shipyard was replacing it",
                    hint="another Shipyard command is changing it; try again",
                ) from None
            raise

    def _reload(self) -> tuple[builtins.list[str], builtins.list[str], builtins.list[str]]:
        try:
            answer = self._call("supervisor.reloadConfig")
        except _Refused as refused:
            if refused.fault == _CANT_REREAD:
                raise SupervisorError(
                    f"supervisord cannot read its config: {refused.message}",
                    hint=f"fix or remove the file it names under {self.programs_dir}",
                ) from None
            raise
        added, changed, removed = answer[0]
        return [str(n) for n in added], [str(n) for n in changed], [str(n) for n in removed]

    def _tidy(self, added: Sequence[str], removed: Sequence[str], *, skip: str | None) -> None:
        """Bring supervisord in line with the program files (called under the lock).

        A file without a program is what a crashed ``add`` leaves, and a stopped program without
        a file what ``remove(wait=False)`` leaves; the files say what should run.
        """
        for name in added:
            if name != skip:
                with contextlib.suppress(_Refused):
                    self._call("supervisor.addProcessGroup", name)
        for name in removed:
            if name == skip:
                continue
            with contextlib.suppress(_Refused):
                if self.status(name).state not in (*_ACTIVE, ProgramState.STOPPING):
                    self._call("supervisor.removeProcessGroup", name)

    def _wait_started(self, name: str, start_secs: int, secrets: Sequence[str]) -> ProgramStatus:
        deadline = time.monotonic() + start_secs + _PATIENCE
        while True:
            status = self.status(name)
            if status.state is ProgramState.RUNNING:
                return status
            if status.state in _FAILED:
                raise self._failure(status, start_secs, secrets)
            never_started = status.state is ProgramState.STOPPED and status.started_at is None
            if status.state is not ProgramState.STARTING and not never_started:
                raise SupervisorError(
                    f"program {name!r} went {status.state} while it was starting",
                    hint="another Shipyard command stopped it",
                )
            if time.monotonic() > deadline:
                raise SupervisorError(
                    f"program {name!r} is still {status.state} after {start_secs + _PATIENCE:.0f}s",
                    hint=f"see {self.logfile}",
                )
            time.sleep(_POLL)

    def _failure(self, status: ProgramStatus, start_secs: int, secrets: Sequence[str]) -> Exception:
        seen = status  # what it exited with, before a retry or the stop below changes it
        if status.state is ProgramState.BACKOFF:
            # Keep it from trying again: the caller decides whether to retry or remove it.
            self._stop(status.name, wait=True)
            status = self.status(status.name)
        tail = _tail(status.stderr_log, secrets) or _tail(status.stdout_log, secrets)
        why = "it exited"
        if seen.exit_status is not None:
            why = f"it exited with status {seen.exit_status}"
        if start_secs:
            why += f" within {start_secs}s"
        if seen.spawn_error:
            why += f" (supervisord: {seen.spawn_error})"
        details = f"; its output ends with:\n{tail}" if tail else "; it wrote nothing"
        return ProgramFailed(
            f"program {status.name!r} failed to start: {why}{details}",
            status=status,
            hint=f"the whole log is {status.stderr_log}",
        )

    def _secrets(self, name: str) -> tuple[str, ...]:
        try:
            return read_env_file(self._program_paths(name)[1]).secret_values
        except EnvFileError:
            return ()

    def _config_infos(self) -> builtins.list[dict[str, Any]]:
        infos = self._call("supervisor.getAllConfigInfo")
        return [info for info in infos if isinstance(info, dict)]

    def _config_info(self, name: str) -> dict[str, Any]:
        for info in self._config_infos():
            if info.get("name") == name and info.get("inuse"):
                return dict(info)
        raise ProgramNotFound(f"supervisord runs no program named {name!r}")

    def _program_paths(self, name: str) -> tuple[Path, Path]:
        return self.programs_dir / f"{name}.conf", self.programs_dir / f"{name}.env"

    def _program_files(self) -> builtins.list[Path]:
        if not self.programs_dir.is_dir():
            return []
        return [p for p in self.programs_dir.iterdir() if p.suffix in (".conf", ".env")]

    def _program_config(self, spec: ProgramSpec, env_file: Path, argv_in_config: bool) -> str:
        """The include file of a program; its argv goes to the env file if lines would break."""
        command = [sys.executable, "-I", "-m", "shipyard.cd.launch", str(env_file)]
        if argv_in_config:
            command += ["--", *spec.argv]
        settings = {
            "command": _config_command(command),
            "directory": _config_value(str(spec.cwd), "cwd"),
            "autostart": "true",
            "autorestart": "true" if spec.autorestart else "false",
            "startsecs": str(spec.start_secs),
            "startretries": str(spec.start_retries),
            "exitcodes": "0",
            "stopsignal": spec.stop_signal.name.removeprefix("SIG"),
            "stopwaitsecs": str(spec.stop_grace_s),
            "stopasgroup": "true",
            "killasgroup": "true",
            "redirect_stderr": "false",
            "stdout_logfile": _config_value(str(self.log_path(spec.name, "stdout")), "log"),
            "stdout_logfile_maxbytes": str(spec.log_max_bytes),
            "stdout_logfile_backups": str(spec.log_backups),
            "stderr_logfile": _config_value(str(self.log_path(spec.name, "stderr")), "log"),
            "stderr_logfile_maxbytes": str(spec.log_max_bytes),
            "stderr_logfile_backups": str(spec.log_backups),
        }
        lines = [
            f"; Written by Shipyard: the program {spec.name!r}. Its environment is in",
            f"; {env_file.name} (mode 0600), never here.",
            f"[program:{spec.name}]",
            *(f"{key}={value}" for key, value in settings.items()),
        ]
        return "\n".join(lines) + "\n"

    def _write_main_config(self) -> None:
        home = _config_value(str(self.home), "state directory")
        lines = [
            "; Written by Shipyard each time it starts supervisord for this state directory.",
            f"; Control it by hand with: supervisorctl -c {self.config_path}",
            "[unix_http_server]",
            f"file={_config_value(str(self.socket_path), 'socket')}",
            "chmod=0700",
            "",
            "[supervisord]",
            f"logfile={home}/supervisord.log",
            "logfile_maxbytes=5MB",
            "logfile_backups=3",
            "loglevel=info",
            f"pidfile={home}/supervisord.pid",
            f"childlogdir={home}/logs",
            f"directory={home}",
            "nodaemon=false",
            "umask=077",
            "minfds=256",
            "minprocs=64",
            f"identifier=shipyard-{_digest(self.home)}",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{_config_value(str(self.socket_path), 'socket')}",
            "",
            "[include]",
            "files = programs/*.conf",
        ]
        _write_atomically(self.config_path, "\n".join(lines) + "\n")

    def _start_daemon(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            # supervisord removes a stale socket itself, but loops forever on anything else.
            if not stat.S_ISSOCK(self.socket_path.lstat().st_mode):
                raise SupervisorError(
                    f"{self.socket_path} exists and is not a socket; supervisord cannot use it",
                    hint=f"remove {self.socket_path}",
                )
        self._stop_orphans()
        environment = {key: os.environ[key] for key in _INHERITED if key in os.environ}
        environment[self._marker[0]] = self._marker[1]
        argv = [sys.executable, "-I", "-m", "supervisor.supervisord", "-c", str(self.config_path)]
        try:
            # supervisord binds its socket, forks and the parent exits: this returns at once.
            started = subprocess.run(
                argv,
                cwd=self.home,
                env=environment,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=_START_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            output = ((exc.stdout or b"") + (exc.stderr or b"")).decode(errors="replace")
            raise SupervisorError(
                f"supervisord did not daemonize within {_START_TIMEOUT:.0f}s; it printed:\n"
                f"{_last_lines(output) or _tail(self.logfile, ())}",
                hint=f"its config is {self.config_path}",
            ) from None
        except OSError as exc:
            raise SupervisorError(f"cannot start supervisord: {exc.strerror}") from None
        if started.returncode != 0:
            output = (started.stdout + started.stderr).decode(errors="replace")
            raise SupervisorError(
                f"supervisord did not start (exit status {started.returncode}):\n"
                f"{_last_lines(output) or _tail(self.logfile, ())}",
                hint=f"its config is {self.config_path}",
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while not self.is_running():
            if time.monotonic() > deadline:
                raise SupervisorError(
                    f"supervisord started but did not answer on {self.socket_path} within "
                    f"{_START_TIMEOUT:.0f}s; its log ends with:\n{_tail(self.logfile, ())}",
                    hint=f"the whole log is {self.logfile}",
                )
            time.sleep(_POLL)

    @property
    def _marker(self) -> tuple[str, str]:
        """The environment marker of the daemon and of every process it starts."""
        return TREE_MARKER_VARIABLE, f"supervisor-{_digest(self.home)}"

    def _stop_orphans(self) -> None:
        """Stop what a dead supervisord left running, so that nothing runs twice.

        Called under the lock when no supervisord answers. A daemon that still lives but does
        not answer is an error rather than a target: it may only be busy.
        """
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pidfile.read_text().strip())
            if pid_alive(pid) and self._marker in _environment_of(pid):
                raise SupervisorError(
                    f"supervisord (pid {pid}) runs for {self.state.root} but does not answer "
                    f"on {self.socket_path}",
                    hint=f"see {self.logfile}; stop it (kill {pid}) if it is stuck",
                )
        mine = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
        leftovers = [pid for pid in marked_processes(self._marker) if pid not in mine]
        if leftovers:
            kill_tree(leftovers[0], grace=_ORPHAN_GRACE, marker=self._marker)

    def _prepare_dirs(self) -> None:
        self.state.ensure()
        try:
            for folder in (self.home, self.programs_dir, self.logs_dir):
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self.socket_path.parent != self.home:
                _private_dir(self.socket_path.parent)
        except OSError as exc:
            raise SupervisorError(
                f"cannot prepare {self.home}: {exc.strerror}", hint="make it writable"
            ) from None

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Hold the state directory's supervisor lock (an flock, so a crash releases it)."""
        self._prepare_dirs()
        path = self.home / "lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + _LOCK_TIMEOUT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise SupervisorError(
                            f"another Shipyard process has held {path} for {_LOCK_TIMEOUT:.0f}s",
                            hint="wait for it to finish, or stop it",
                        ) from None
                    time.sleep(_POLL)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _lock_if_present(self) -> Iterator[None]:
        if not self.home.is_dir():
            yield
            return
        with self._lock():
            yield

    def _call(self, method: str, *args: Any, timeout: float = _RPC_TIMEOUT) -> Any:
        proxy = xmlrpc.client.ServerProxy(
            "http://localhost", transport=_UnixTransport(self.socket_path, timeout)
        )
        try:
            return getattr(proxy, method)(*args)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == _BAD_NAME:
                raise ProgramNotFound(
                    f"supervisord runs no program named {args[0] if args else '?'!r}"
                ) from None
            raise _Refused(
                f"supervisord refused {method}: {fault.faultString}", fault=fault.faultCode
            ) from None
        except (FileNotFoundError, ConnectionRefusedError):
            raise SupervisorUnavailable(
                f"supervisord is not running for {self.state.root}",
                hint="Supervisor.ensure_running() starts it",
            ) from None
        except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as exc:
            raise SupervisorUnavailable(
                f"supervisord at {self.socket_path} did not answer {method}: {exc}",
                hint=f"see {self.logfile}",
            ) from None


class _UnixConnection(http.client.HTTPConnection):
    """An HTTP connection over a unix socket."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        """Connect to the socket file instead of a TCP address."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    """XML-RPC over supervisord's unix socket: a new connection per call."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__()
        self._path = path
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        """A connection to the socket, whatever host the URL names."""
        return _UnixConnection(self._path, self._timeout)


def _socket_path(home: Path) -> Path:
    """``<home>/supervisor.sock``, or ``/tmp/shipyard-<hash>/supervisor.sock`` when too long.

    AF_UNIX limits a socket's path to about 100 bytes; a deep state directory falls back to a
    private (0700) folder in /tmp named by a hash of the state directory, so it stays stable.
    """
    inside = home / "supervisor.sock"
    if len(os.fsencode(inside)) <= SOCKET_PATH_LIMIT:
        return inside
    return Path("/tmp") / f"shipyard-{_digest(home)}" / "supervisor.sock"  # noqa: S108


def _digest(path: Path) -> str:
    return hashlib.sha256(os.fsencode(path.absolute())).hexdigest()[:16]


def _private_dir(path: Path) -> None:
    """Create ``path`` 0700, or accept it only if it is a real folder of ours that nobody else
    can enter (a folder in /tmp may have been planted by another user)."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise SupervisorError(
            f"{path} is not a private folder of this user; refusing to put a socket there",
            hint=f"remove {path}, or use a state directory with a shorter path",
        )


def _environment_of(pid: int) -> set[tuple[str, str]]:
    try:
        return set(psutil.Process(pid).environ().items())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return set()


def _check_name(name: str) -> None:
    if not PROGRAM_NAME.fullmatch(name):
        raise InvalidProgram(f"{name!r} is not a valid program name")


def _status(info: Mapping[str, Any]) -> ProgramStatus:
    try:
        state = ProgramState(str(info["statename"]))
    except ValueError:
        state = ProgramState.UNKNOWN
    start, stop, now = int(info["start"]), int(info["stop"]), int(info["now"])
    pid = int(info["pid"]) or None
    # supervisord keeps an exit status only for a program that exited after it was RUNNING.
    exited = state is ProgramState.EXITED and stop > 0
    return ProgramStatus(
        name=str(info["name"]),
        state=state,
        pid=pid if state in (*_ACTIVE, ProgramState.STOPPING) else None,
        started_at=datetime.fromtimestamp(start, UTC) if start else None,
        uptime_s=float(max(now - start, 0)) if state is ProgramState.RUNNING else None,
        exit_status=int(info["exitstatus"]) if exited else None,
        spawn_error=str(info["spawnerr"]) or None,
        stdout_log=Path(str(info["stdout_logfile"])),
        stderr_log=Path(str(info["stderr_logfile"])),
    )


_COMMENT_AFTER_SPACE = re.compile(r"\s[;#]")


def _config_value(value: str, what: str) -> str:
    """A value for supervisord's INI files: ``%`` doubled (it expands ``%(name)s``)."""
    if (
        any(c in value for c in "\0\n\r")
        or value != value.strip()
        or _COMMENT_AFTER_SPACE.search(value)
        or "%(" in value
    ):
        raise InvalidProgram(
            f"the {what} path {value!r} cannot be written to supervisord's config",
            hint="avoid line breaks, surrounding spaces, ' ;', ' #' and '%(' in paths",
        )
    return value.replace("%", "%%")


def _config_command(argv: Sequence[str]) -> str:
    """argv as supervisord's ``command=``: shell words it splits back exactly.

    Plain text goes in single quotes; ``'``, ``;``, ``#`` and ``%`` stand apart, so the INI
    parser never meets a ``;`` or ``#`` after a space (which it would cut off as a comment)
    and supervisord's ``%`` expansion gives back each ``%`` as it was.
    """
    return " ".join(_config_word(word) for word in argv).replace("%", "%%")


def _config_word(word: str) -> str:
    pieces: list[str] = []
    plain: list[str] = []
    for char in word:
        if char in "';#%":
            if plain:
                pieces.append("'" + "".join(plain) + "'")
                plain.clear()
            # A lone '%' piece keeps '%(here)s' from appearing: supervisord replaces that text
            # before it undoubles '%%'.
            pieces.append({"'": '"\'"', "%": "'%'"}.get(char, "\\" + char))
        else:
            plain.append(char)
    if plain or not pieces:
        pieces.append("'" + "".join(plain) + "'")
    return "".join(pieces)


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise SupervisorError(f"cannot write {path}: {exc.strerror}") from None


def _unlink(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _tail(path: Path, secrets: Sequence[str]) -> str:
    """The last lines of a log file, secrets masked ('' if there is none)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(path.stat().st_size - _TAIL_BYTES, 0))
            data = handle.read()
    except OSError:
        return ""
    text = _last_lines(data.decode(errors="replace"))
    # Every form of a secret (encoded ones too); a value too short to be one stays plain.
    return Masker(s for s in secrets if len(s) >= MIN_SECRET_LENGTH).mask(text)


def _last_lines(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return "\n".join(f"    {line}" for line in lines[-_TAIL_LINES:])
