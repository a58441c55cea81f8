"""Process helpers: start a process that outlives its caller, and stop a whole process tree.

A tree is found by walking descendants (including those that left the process group with
``setsid``) and by an environment marker that catches orphans. Nothing here may ever signal
the calling process or one of its ancestors, or leave a process stopped.
"""

from __future__ import annotations

import json
import os
import signal as signals
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from shipyard.core.errors import ProcessError

__all__ = [
    "TREE_MARKER_VARIABLE",
    "KilledTree",
    "kill_tree",
    "marked_processes",
    "new_tree_marker",
    "pid_alive",
    "spawn_detached",
    "wait_for_exit",
]

TREE_MARKER_VARIABLE = "SHIPYARD_TREE"
"""The environment variable that marks every process of one tree Shipyard started."""

_POLL_INTERVAL = 0.05
_LAUNCH_TIMEOUT = 30.0
_FINAL_WAIT = 5.0
_MAX_FREEZE_ROUNDS = 100

# Runs in a short-lived interpreter: it starts the real process in a new session, reports its
# pid (or why it could not start) on stdout and exits, so init adopts and reaps the process.
_LAUNCHER = """
import json, os, subprocess, sys
spec = json.load(sys.stdin)
try:
    with open(spec["log"], "ab") as log:
        child = subprocess.Popen(
            spec["argv"], cwd=spec["cwd"], env=spec["env"], stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, close_fds=True, start_new_session=True,
        )
except (OSError, ValueError) as exc:
    json.dump({"error": str(exc)}, sys.stdout)
else:
    json.dump({"pid": child.pid}, sys.stdout)
sys.stdout.flush()
os._exit(0)
"""


@dataclass(frozen=True)
class KilledTree:
    """What ``kill_tree`` did: whom it signalled, whom it had to SIGKILL, who is still there."""

    signalled: tuple[int, ...]
    forced: tuple[int, ...]
    survivors: tuple[int, ...]


def new_tree_marker() -> tuple[str, str]:
    """A fresh ``(name, value)`` environment marker for the processes of one tree."""
    return TREE_MARKER_VARIABLE, uuid.uuid4().hex


def spawn_detached(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    log_path: Path,
    marker: tuple[str, str] | None = None,
) -> int:
    """Start ``argv`` in a session of its own that outlives the caller; return its pid.

    Standard input is ``/dev/null``; standard output and error are appended to ``log_path``;
    no other file descriptor is inherited. ``env`` defaults to the caller's environment, and
    ``marker`` is added to it so that ``kill_tree`` can find the process and its descendants.
    """
    if not argv:
        raise ProcessError("cannot start a process without a command")
    environment = dict(os.environ if env is None else env)
    if marker is not None:
        environment[marker[0]] = marker[1]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    spec = {"argv": list(argv), "cwd": str(cwd), "env": environment, "log": str(log_path)}
    # Double fork via a launcher that exits at once: init, never we, reaps the process.
    try:
        launched = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER],
            input=json.dumps(spec).encode(),
            capture_output=True,
            timeout=_LAUNCH_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProcessError(f"cannot start {argv[0]!r}: the launcher failed: {exc}") from None
    try:
        report = json.loads(launched.stdout)
    except ValueError:
        stderr = launched.stderr.decode(errors="replace").strip()
        raise ProcessError(
            f"cannot start {argv[0]!r}: the launcher exited with code {launched.returncode}",
            hint=stderr.splitlines()[-1] if stderr else None,
        ) from None
    if "error" in report:
        raise ProcessError(
            f"cannot start {argv[0]!r} in {cwd}: {report['error']}",
            hint="check that the command exists and that the directory is accessible",
        )
    pid = report["pid"]
    if not isinstance(pid, int):
        raise ProcessError(f"cannot start {argv[0]!r}: the launcher reported no pid")
    return pid


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists and has not exited (a zombie counts as exited)."""
    if pid <= 0:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to exit; return whether it did."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_INTERVAL)
    return True


def kill_tree(
    pid: int,
    *,
    signal: signals.Signals = signals.SIGTERM,
    grace: float = 10.0,
    marker: tuple[str, str] | None = None,
) -> KilledTree:
    """Stop ``pid``, all its descendants and every process that carries ``marker``.

    The tree is frozen with SIGSTOP while it is walked, so nothing can fork past the walk; then
    each process gets ``signal`` and SIGCONT, has ``grace`` seconds to exit, and what is left is
    frozen, walked again and sent SIGKILL. The caller and its ancestors are never signalled.
    """
    if pid <= 0:
        raise ProcessError(f"{pid} is not a process id")
    protected = _protected_pids()
    if pid in protected:
        raise ProcessError(
            f"refusing to kill the tree of process {pid}: it is this process or one of its "
            "ancestors",
            hint="kill_tree stops a tree Shipyard started, never the one it runs in",
        )

    stopped: dict[int, psutil.Process] = {}
    try:
        first = _freeze(_root(pid), marker, protected, stopped)
        signalled = _send(first, signal)
        _send(first, signals.SIGCONT)
        _wait_gone(first, grace)

        # The root is not looked up again: its pid may have been reused by now.
        remaining = [process for process in first if _running(process)]
        last = _freeze(remaining, marker, protected, stopped)
        forced = _send(last, signals.SIGKILL)
        _send(last, signals.SIGCONT)
        _wait_gone(last, _FINAL_WAIT)
        survivors = [process.pid for process in last if _running(process)]
    finally:
        # Never leave a process stopped, whatever went wrong above.
        _send(list(stopped.values()), signals.SIGCONT)
    return KilledTree(
        signalled=tuple(sorted(signalled)),
        forced=tuple(sorted(forced)),
        survivors=tuple(sorted(survivors)),
    )


def marked_processes(marker: tuple[str, str], *, since_pid: int | None = None) -> list[int]:
    """The pids of live processes (other than this one) whose environment carries ``marker``.

    With ``since_pid`` (a pid taken before the marked tree started) only newer pids are read,
    which is cheap on Linux; when pid numbers have wrapped around, everything is read.
    """
    me = os.getpid()
    proc = Path("/proc")
    last = _last_pid(proc)
    if since_pid is None or last is None or last < since_pid or not proc.is_dir():
        return [p.pid for p in _marked(marker) if p.pid != me and _running(p)]
    needle = f"{marker[0]}={marker[1]}".encode()
    found = []
    for entry in os.scandir(proc):
        if not entry.name.isdigit() or int(entry.name) < since_pid or int(entry.name) == me:
            continue
        try:
            environ = Path(entry.path, "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _last_pid(proc: Path) -> int | None:
    try:
        return int((proc / "sys" / "kernel" / "ns_last_pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _protected_pids() -> frozenset[int]:
    me = psutil.Process()
    return frozenset({0, 1, me.pid, *(parent.pid for parent in me.parents())})


def _root(pid: int) -> list[psutil.Process]:
    try:
        return [psutil.Process(pid)]
    except psutil.NoSuchProcess:
        return []


def _freeze(
    roots: Iterable[psutil.Process],
    marker: tuple[str, str] | None,
    protected: frozenset[int],
    stopped: dict[int, psutil.Process],
) -> list[psutil.Process]:
    """SIGSTOP the roots, their descendants and the marked processes until none is new."""
    found: dict[int, psutil.Process] = {}
    candidates = list(roots)
    for _ in range(_MAX_FREEZE_ROUNDS):
        if marker is not None:
            candidates += _marked(marker)
        for process in list(found.values()):
            candidates += _children(process)
        new = [p for p in candidates if p.pid not in found and p.pid not in protected]
        candidates = []
        if not new:
            break
        for process in new:
            found[process.pid] = process
            try:
                process.send_signal(signals.SIGSTOP)
            except psutil.NoSuchProcess:
                continue
            except psutil.AccessDenied:
                continue
            stopped.setdefault(process.pid, process)
    return [process for process in found.values() if _running(process)]


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _marked(marker: tuple[str, str]) -> list[psutil.Process]:
    name, value = marker
    marked = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(name) == value:
                marked.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return marked


def _send(processes: Iterable[psutil.Process], signal: signals.Signals) -> list[int]:
    sent = []
    for process in processes:
        try:
            process.send_signal(signal)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        sent.append(process.pid)
    return sent


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(processes: Sequence[psutil.Process], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(_running(process) for process in processes):
        if time.monotonic() >= deadline:
            return
        time.sleep(_POLL_INTERVAL)
