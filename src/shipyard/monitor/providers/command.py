"""The command provider: run a shell command that prints one number, the metric's value.

``{{version}}`` and ``{{env}}`` are shell-quoted into the command. A command that fails, hangs
past its timeout or prints anything but one number gives a measurement without a value and
the reason (exit status, what it printed, the end of its stderr), never an exception.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import signal
import subprocess

from shipyard.monitor.providers.interface import (
    Measurement,
    MetricProvider,
    MetricQuery,
    substitute,
)

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
        try:
            out, err = process.communicate(timeout=query.timeout_seconds)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            return Measurement.no_data(
                f"no answer within {query.timeout_seconds:g} s (the command was killed)", source
            )
        printed = out.decode("utf-8", "replace").strip()
        if process.returncode != 0:
            reason = f"exited with status {process.returncode}"
            stderr = err.decode("utf-8", "replace").strip()
            if stderr:
                reason += f"; stderr: {_tail(stderr)}"
            return Measurement.no_data(_cut(reason), source)
        try:
            value = float(printed)
        except ValueError:
            shown = repr(_cut(printed)) if printed else "nothing"
            return Measurement.no_data(f"printed {shown}, not one number", source)
        if not math.isfinite(value):
            return Measurement.no_data(f"printed {printed!r}, not a finite number", source)
        return Measurement.of(value, source)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the command and everything it started, then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    try:
        process.communicate(timeout=_REAP_SECONDS)
    except subprocess.TimeoutExpired:
        # A descendant that left the group still holds the pipes; stop reading them.
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
        process.wait()


def _tail(text: str) -> str:
    return text if len(text) <= _REASON_CHARS else "…" + text[-(_REASON_CHARS - 1) :]


def _cut(text: str) -> str:
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"
