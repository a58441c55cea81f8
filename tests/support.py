"""Helpers for tests: run git, and the ``shipyard`` command in this process or as a real one.

``run_cli`` runs the command in the test's own process by default (the same ``main`` the console
script calls, with the test's cwd, environment and standard streams, all restored afterwards);
``process=True`` runs ``python -m shipyard`` as a real subprocess, for what only a process can
show: signals, a crash, detached drivers, start-up. ``SHIPYARD_TEST_CLI=process`` makes every
call a real process, to check that the suite passes both ways.
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

MODE_VARIABLE = "SHIPYARD_TEST_CLI"
"""``process`` runs every ``run_cli`` call as a real subprocess; anything else, in-process."""

_FAULT_VARIABLE = "SHIPYARD_FAULT"  # a crash point kills its process: never the test's own

_DEFAULT_TIMEOUT = 120.0  # seconds a real process may take unless the test says otherwise

_IN_PROCESS_LIMIT = 300.0
"""Seconds after which an in-process command that hangs ends the test process, printing every
thread's stack (pytest-xdist then reports the test as having crashed its worker)."""

_ROUTER_SUBCOMMANDS = frozenset({"status", "weights", "drain", "undrain", "stats"})
"""``shipyard router`` without one of these runs the router: it execs it in its own place, so
in-process it would replace the test itself."""


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` and return its stdout."""
    result = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return result.stdout


@dataclass(frozen=True)
class CliResult:
    """What a ``shipyard`` command printed and returned."""

    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout and stderr together."""
        return self.stdout + self.stderr


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float | None = None,
    process: bool = False,
) -> CliResult:
    """Run ``shipyard args`` in ``cwd``: in this process, or as a real one when ``process``
    is true, ``timeout`` is given (only a real process can be stopped when it hangs),
    ``SHIPYARD_TEST_CLI=process`` is set or the environment names a crash point.

    Commands that replace their process (``router`` that runs one) always run as a real one."""
    environ = {**os.environ, **(env or {})}
    if (
        process
        or timeout is not None
        or environ.get(MODE_VARIABLE) == "process"
        or environ.get(_FAULT_VARIABLE)
        or _replaces_its_process(args)
    ):
        bound = _DEFAULT_TIMEOUT if timeout is None else timeout
        return run_cli_process(*args, cwd=cwd, env=env, input=input, timeout=bound)
    return _run_in_process(list(args), cwd=cwd, env=env or {}, input=input)


def _replaces_its_process(args: tuple[str, ...]) -> bool:
    words = set(args[1:])
    return args[:1] == ("router",) and not words & (_ROUTER_SUBCOMMANDS | {"--help", "-h"})


def run_cli_process(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float = _DEFAULT_TIMEOUT,
) -> CliResult:
    """Run ``python -m shipyard`` as a real subprocess."""
    environ = dict(os.environ)
    environ.update(env or {})
    result = subprocess.run(
        [sys.executable, "-m", "shipyard", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
        check=False,
    )
    return CliResult(result.returncode, result.stdout, result.stderr)


def _run_in_process(
    args: list[str], *, cwd: Path, env: dict[str, str], input: str | None
) -> CliResult:
    from shipyard.cli.app import main

    with (
        tempfile.TemporaryFile() as stdin,
        tempfile.TemporaryFile() as stdout,
        tempfile.TemporaryFile() as stderr,
    ):
        stdin.write((input or "").encode())
        stdin.seek(0)
        with _environment(env), _working_directory(cwd), _signal_handlers(), _watchdog():
            with _standard_streams(stdin, stdout, stderr):
                try:
                    main(args)
                    code = 0
                except SystemExit as exit_:
                    code = _exit_code(exit_.code)
            _close_stores()
        return CliResult(code, _text(stdout), _text(stderr))


def _exit_code(value: object) -> int:
    """The status a process would have exited with, given ``sys.exit(value)``."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    return 1


def _text(file: IO[bytes]) -> str:
    file.seek(0)
    return file.read().decode("utf-8", errors="replace")


@contextlib.contextmanager
def _watchdog() -> Iterator[None]:
    """A hang becomes a crash with stacks on the real stderr, never a suite that waits forever."""
    with os.fdopen(os.dup(2), "w") as real_stderr:
        faulthandler.dump_traceback_later(_IN_PROCESS_LIMIT, exit=True, file=real_stderr)
        try:
            yield
        finally:
            faulthandler.cancel_dump_traceback_later()


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """Apply ``env`` to ``os.environ``; afterwards put back exactly what was there (a command may
    set variables of its own, such as SHIPYARD_DEBUG)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    saved = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(saved)


@contextlib.contextmanager
def _signal_handlers() -> Iterator[None]:
    """Put back every signal disposition a command changed (an event loop resets its handlers
    to the default when it closes, not to what they were)."""
    saved = {}
    for number in signal.valid_signals():
        with contextlib.suppress(OSError, ValueError):
            saved[number] = signal.getsignal(number)
    try:
        yield
    finally:
        for number, handler in saved.items():
            if handler is not None and signal.getsignal(number) is not handler:
                with contextlib.suppress(OSError, ValueError):
                    signal.signal(number, handler)


@contextlib.contextmanager
def _standard_streams(stdin: IO[bytes], stdout: IO[bytes], stderr: IO[bytes]) -> Iterator[None]:
    """Point file descriptors 0-2 (which child processes inherit) and ``sys.std*`` (which
    Python code writes to) at the given files, as a real process's pipes would be."""
    files = (stdin, stdout, stderr)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(ValueError, OSError):
            stream.flush()
    saved_fds = [os.dup(fd) for fd in range(3)]
    saved_streams = (sys.stdin, sys.stdout, sys.stderr)
    for fd, file in enumerate(files):
        os.dup2(file.fileno(), fd)
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(os.dup(0), "r")), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(os.dup(1), "w")), encoding="utf-8", line_buffering=True
    )
    sys.stderr = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(os.dup(2), "w")),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )
    try:
        yield
    finally:
        for stream in (sys.stdin, sys.stdout, sys.stderr):
            with contextlib.suppress(ValueError, OSError):
                stream.close()  # flushes what is left
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        for fd, saved in enumerate(saved_fds):
            os.dup2(saved, fd)
            os.close(saved)


def _close_stores() -> None:
    """Close the database connections the command opened, as its process's exit would."""
    from shipyard.core.store.engine import close_all

    close_all()
