"""The command provider: run a shell command that prints one number, the metric's value.

``{{version}}`` and ``{{env}}`` are shell-quoted into the command. A command that fails, hangs
past its timeout or prints anything but one number gives a measurement without a value and
the reason (exit status, what it printed, the end of its stderr), never an exception.
"""

from __future__ import annotations

import contextlib
import math
import os
import selectors
import shlex
import signal
import subprocess
import time

from shipyard.monitor.providers.interface import (
    Measurement,
    MetricProvider,
    MetricQuery,
    substitute,
)

MAX_OUTPUT_BYTES = 64 * 1024
"""The most of a command's stdout (its start) and stderr (its end) the provider keeps."""

_REASON_CHARS = 200
_REAP_SECONDS = 5.0


class CommandProvider(MetricProvider):
    """Reads a metric from what a shell command prints."""

    name = "command"

    def measure(self, query: MetricQuery) -> Measurement:
        """Run the metric's ``command`` and read the one number it prints, or none and why."""
        command = substitute(query.field_value("command", self.name), query, quote=shlex.quote)
        source = f"command {_cut(command)}"
        try:
            process = subprocess.Popen(
                ["/bin/sh", "-c", command],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as error:
            return Measurement.no_data(f"cannot start /bin/sh: {error}", source)
        output = _Output(process)
        deadline = time.monotonic() + query.timeout_seconds
        if not output.read_until(deadline) or not _exited_by(process, deadline):
            _kill_group(process, output)
            return Measurement.no_data(
                f"no answer within {query.timeout_seconds:g} s (the command was killed)", source
            )
        output.close()
        if process.returncode != 0:
            reason = f"exited with status {process.returncode}"
            stderr = output.stderr.decode("utf-8", "replace").strip()
            if stderr:
                reason += "; stderr: "
                reason += _tail(stderr, _REASON_CHARS - len(reason))
            return Measurement.no_data(reason, source)
        if output.stdout_overflowed:
            return Measurement.no_data(
                f"printed more than {MAX_OUTPUT_BYTES // 1024} KiB, not one number", source
            )
        printed = output.stdout.decode("utf-8", "replace").strip()
        try:
            value = float(printed)
        except ValueError:
            shown = repr(_cut(printed)) if printed else "nothing"
            return Measurement.no_data(f"printed {shown}, not one number", source)
        if not math.isfinite(value):
            return Measurement.no_data(f"printed {printed!r}, not a finite number", source)
        return Measurement.of(value, source)


class _Output:
    """What a command prints: the start of its stdout and the end of its stderr, both bounded."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None and process.stderr is not None
        self._out = process.stdout.fileno()
        self._selector = selectors.DefaultSelector()
        self._streams = (process.stdout, process.stderr)
        for stream in self._streams:
            os.set_blocking(stream.fileno(), False)
            self._selector.register(stream, selectors.EVENT_READ)
        self.stdout = b""
        self.stderr = b""
        self.stdout_overflowed = False

    def read_until(self, deadline: float) -> bool:
        """Read until both streams end (True) or ``deadline`` passes (False)."""
        while self._selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            for key, _ in self._selector.select(remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    self._selector.unregister(key.fileobj)
                elif key.fd == self._out:
                    room = MAX_OUTPUT_BYTES - len(self.stdout)
                    self.stdout += chunk[: max(room, 0)]
                    self.stdout_overflowed |= len(chunk) > room
                else:
                    self.stderr = (self.stderr + chunk)[-MAX_OUTPUT_BYTES:]
        return True

    def close(self) -> None:
        """Stop reading: close both streams."""
        self._selector.close()
        for stream in self._streams:
            stream.close()


def _exited_by(process: subprocess.Popen[bytes], deadline: float) -> bool:
    try:
        process.wait(timeout=max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
        return False
    return True


def _kill_group(process: subprocess.Popen[bytes], output: _Output) -> None:
    """Kill the command and everything it started, then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    # Reading to the end waits for every process holding the output to be gone; one that left
    # the group may keep it open, so the reading is bounded.
    output.read_until(time.monotonic() + _REAP_SECONDS)
    output.close()
    process.wait()


def _tail(text: str, chars: int) -> str:
    return text if len(text) <= chars else "…" + text[-(chars - 1) :]


def _cut(text: str) -> str:
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"
