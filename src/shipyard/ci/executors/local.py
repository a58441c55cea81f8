"""The local executor: each step of a job is an asyncio subprocess on this machine.

Every process of an attempt carries an environment marker, so a timeout, a cancel or the end of
the job kills the whole tree — also descendants that called ``setsid`` or were orphaned.
Output goes to the log sink as it comes; nothing is buffered beyond a pipe read.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import signal
import time
from pathlib import Path
from typing import Any

from shipyard.ci.executors.interface import AttemptOutcome, AttemptRequest, Executor, LogSink
from shipyard.core.errors import ProcessError
from shipyard.core.process import kill_tree, marked_processes, new_tree_marker

_READ_SIZE = 64 * 1024
_KILL_GRACE_S = 3.0
_DRAIN_S = 2.0
_COMMAND_NOT_FOUND = 127


class LocalExecutor(Executor):
    """Runs a job's steps as subprocesses of this process, one after another."""

    def __init__(self) -> None:
        self._sweeps: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Wait until every leftover background process of finished steps is gone."""
        while self._sweeps:
            await asyncio.gather(*list(self._sweeps))

    async def execute(self, request: AttemptRequest) -> AttemptOutcome:
        """Run the steps in order under the job's timeout; stop at the first failure."""
        job = request.job
        cwd = request.workspace / job.workdir if job.workdir else request.workspace
        if not cwd.is_dir():
            request.log.note(f"the working folder {job.workdir!r} does not exist in the commit")
            return AttemptOutcome(
                "error",
                failure_kind="infrastructure",
                message=f"workdir {job.workdir!r} does not exist",
            )
        deadline = time.monotonic() + job.timeout_s
        for index, step in enumerate(job.steps, start=1):
            if len(job.steps) > 1:
                request.log.note(f"step {index}/{len(job.steps)}: {step.name}")
            remaining = deadline - time.monotonic()
            outcome = await self._step([*job.shell, step.run], cwd, request, remaining)
            if not outcome.passed:
                if len(job.steps) > 1 and outcome.message:
                    outcome = AttemptOutcome(
                        outcome.status,
                        outcome.exit_code,
                        outcome.failure_kind,
                        f"step {index} ({step.name}): {outcome.message}",
                    )
                return outcome
        return AttemptOutcome("passed", exit_code=0)

    async def _step(
        self, argv: list[str], cwd: Path, request: AttemptRequest, timeout: float
    ) -> AttemptOutcome:
        marker = new_tree_marker()
        env = dict(request.env)
        env[marker[0]] = marker[1]
        try:
            process, exited = await _start(argv, cwd, env)
        except OSError as exc:
            request.log.note(f"cannot start {argv[0]!r}: {exc.strerror or exc}")
            return AttemptOutcome(
                "error",
                failure_kind="infrastructure",
                message=f"cannot start {argv[0]!r}: {exc.strerror or exc}",
            )
        except ValueError:
            # The only ValueError of starting a process: a NUL in an argument or a variable.
            where = "the command" if any("\0" in arg for arg in argv) else "an environment value"
            request.log.note(f"cannot start {argv[0]!r}: {where} holds a NUL character")
            return AttemptOutcome(
                "error",
                failure_kind="infrastructure",
                message=f"cannot start {argv[0]!r}: {where} holds a NUL character",
            )
        assert process.stdout is not None and process.stderr is not None
        pumps = [
            asyncio.create_task(_pump(process.stdout, request.log, "out")),
            asyncio.create_task(_pump(process.stderr, request.log, "err")),
        ]
        watcher = asyncio.create_task(_watch_log_limit(request.log))
        waiter = exited
        racers: set[asyncio.Future[Any]] = {waiter, watcher}
        try:
            done, _ = await asyncio.wait(
                racers, timeout=max(timeout, 0.0), return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            await _stop(process.pid, marker)
            await _finish(pumps, watcher, waiter)
            request.log.note("cancelled; every process of the job was stopped")
            raise
        if waiter not in done:
            await _stop(process.pid, marker)
            await _finish(pumps, watcher, waiter)
            if watcher in done:
                return AttemptOutcome(
                    "failed", failure_kind="log_limit", message="the log limit was reached"
                )
            request.log.note(
                f"timed out after {_seconds(request.job.timeout_s)}; "
                "every process of the job was stopped"
            )
            return AttemptOutcome(
                "timed_out",
                failure_kind="timeout",
                message=f"timed out after {_seconds(request.job.timeout_s)}",
            )
        code = waiter.result()
        # The main process is gone; whatever it left running in the background goes too.
        # The sweep runs beside the rest of the job's bookkeeping; close() waits for it.
        sweep = asyncio.create_task(_stop(None, marker, since_pid=process.pid))
        self._sweeps.add(sweep)
        sweep.add_done_callback(self._sweeps.discard)
        await _finish(pumps, watcher, None)
        if request.log.limit_exceeded:
            return AttemptOutcome(
                "failed",
                exit_code=code,
                failure_kind="log_limit",
                message="the log limit was reached",
            )
        if code == 0:
            return AttemptOutcome("passed", exit_code=0)
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            request.log.note(f"the job was killed by signal {name} from outside Shipyard")
            return AttemptOutcome(
                "failed", exit_code=code, failure_kind="infrastructure", message=f"killed by {name}"
            )
        if code == _COMMAND_NOT_FOUND:
            return AttemptOutcome(
                "failed",
                exit_code=code,
                failure_kind="exit",
                message="exit 127: a command was not found (see the log)",
            )
        return AttemptOutcome("failed", exit_code=code, failure_kind="exit", message=f"exit {code}")


class _ExitAwareProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Resolves ``exited`` when the process ends, even if a leftover still holds its pipes.

    ``Process.wait()`` also waits for the pipes to close, which a background grandchild can
    keep open forever; the job's end is the main process's exit.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=_READ_SIZE, loop=loop)
        self.exited: asyncio.Future[int] = loop.create_future()
        self._transport_ref: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert isinstance(transport, asyncio.SubprocessTransport)
        self._transport_ref = transport

    def process_exited(self) -> None:
        super().process_exited()
        code = self._transport_ref.get_returncode() if self._transport_ref else None
        if not self.exited.done():
            self.exited.set_result(-1 if code is None else code)


async def _start(
    argv: list[str], cwd: Path, env: dict[str, str]
) -> tuple[asyncio.subprocess.Process, asyncio.Future[int]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _ExitAwareProtocol(loop),
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    return asyncio.subprocess.Process(transport, protocol, loop), protocol.exited


async def _pump(stream: asyncio.StreamReader, log: LogSink, name: str) -> None:
    decoder = _decoder()
    while True:
        chunk = await stream.read(_READ_SIZE)
        if not chunk:
            tail = decoder.decode(b"", final=True)
            if tail:
                log.write(tail, "out" if name == "out" else "err")
            return
        text = decoder.decode(chunk)
        if text:
            log.write(text, "out" if name == "out" else "err")


async def _watch_log_limit(log: LogSink) -> None:
    while not log.limit_exceeded:
        await asyncio.sleep(0.05)


async def _stop(pid: int | None, marker: tuple[str, str], *, since_pid: int | None = None) -> None:
    """Kill the step's whole tree (by pid and by marker) without blocking the event loop."""
    if pid is None:
        leftovers = await asyncio.to_thread(marked_processes, marker, since_pid=since_pid)
        for leftover in leftovers:
            await asyncio.to_thread(_kill_quietly, leftover, marker)
        return
    await asyncio.to_thread(_kill_quietly, pid, marker)


def _kill_quietly(pid: int, marker: tuple[str, str]) -> None:
    with contextlib.suppress(ProcessError):
        kill_tree(pid, signal=signal.SIGTERM, grace=_KILL_GRACE_S, marker=marker)


async def _finish(
    pumps: list[asyncio.Task[None]], watcher: asyncio.Task[None], waiter: asyncio.Future[int] | None
) -> None:
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    _, pending = await asyncio.wait(pumps, timeout=_DRAIN_S)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if waiter is not None:
        with contextlib.suppress(asyncio.CancelledError, ProcessLookupError):
            await asyncio.wait_for(waiter, timeout=_DRAIN_S + _KILL_GRACE_S)


def _decoder() -> codecs.IncrementalDecoder:
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


def _seconds(value: float) -> str:
    return f"{value:g}s"
