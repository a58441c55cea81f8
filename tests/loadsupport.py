"""Steady HTTP load for end-to-end tests: ``with Load(url) as load:`` is
``shipyard.orchestrator.load.Load`` (GET requests from background threads until the block
ends, each answer counted by version and status), plus ``wait_for``, which fails the test
with what the load saw when a condition does not come in time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from shipyard.orchestrator import load

__all__ = ["UNVERSIONED", "VERSION_HEADER", "Load"]

UNVERSIONED = load.UNVERSIONED
VERSION_HEADER = load.VERSION_HEADER


class Load(load.Load):
    """The demo's load generator, with a test's way of waiting for what it sees."""

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        """Wait until ``predicate()`` holds; raise AssertionError with what was seen if it
        does not within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"not within {timeout:g} s; the load saw {self.summary()}")
            time.sleep(min(remaining, load.POLL))
