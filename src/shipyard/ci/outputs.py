"""Job outputs: ``KEY=VALUE`` lines a job writes to ``$SHIPYARD_OUTPUT``.

Dependents see them as ``needs.JOB.outputs.KEY`` in ``if`` and as environment variables. This
module reads and checks the file; it never runs anything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from shipyard.core.errors import UserError

MAX_OUTPUT_BYTES = 64 * 1024
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


class OutputError(UserError):
    """A job wrote an output file that cannot be read."""


def read_outputs(path: Path) -> dict[str, str]:
    """The outputs a job wrote; a bad line is an error naming it."""
    if not path.exists():
        return {}
    size = path.stat().st_size
    if size > MAX_OUTPUT_BYTES:
        raise OutputError(
            f"$SHIPYARD_OUTPUT holds {size} bytes, more than {MAX_OUTPUT_BYTES}",
            hint="pass small values as outputs and files as artifacts",
        )
    outputs: dict[str, str] = {}
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            raise OutputError(
                f"$SHIPYARD_OUTPUT line {number} is not KEY=VALUE",
                hint='write lines such as: echo "version=1.2.3" >> "$SHIPYARD_OUTPUT"',
            )
        if "\0" in value:
            raise OutputError(
                f"$SHIPYARD_OUTPUT line {number} ({key}) holds a NUL character, which no "
                "program can be given",
                hint="pass binary data as an artifact, or encode it (base64)",
            )
        outputs[key] = value
    return outputs


def output_variables(job_name: str, outputs: Mapping[str, str]) -> dict[str, str]:
    """Environment variables a dependent sees: ``SHIPYARD_NEEDS_<JOB>_<KEY>``."""
    prefix = "SHIPYARD_NEEDS_" + _upper(job_name) + "_"
    return {prefix + _upper(key): value for key, value in outputs.items()}


def _upper(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text).upper()
