"""Crash points: named places where a process can be made to die, to prove crash safety.

``SHIPYARD_FAULT=release:after-pending`` makes the process kill itself with SIGKILL when it
reaches that point, exactly as a power cut or ``kill -9`` would. Unset, it does nothing; it
never changes what a command does otherwise.
"""

from __future__ import annotations

import os
import signal

FAULT_VARIABLE = "SHIPYARD_FAULT"


def crash_point(name: str) -> None:
    """Die here, hard, when ``SHIPYARD_FAULT`` names this point."""
    wanted = os.environ.get(FAULT_VARIABLE, "")
    if wanted and name in {part.strip() for part in wanted.split(",")}:
        os.kill(os.getpid(), signal.SIGKILL)
