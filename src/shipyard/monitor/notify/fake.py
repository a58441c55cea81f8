"""A notifier for tests: it keeps what it was sent, and fails when a test tells it to.

It implements the real interface, so the agent is tested without a web or mail server.
"""

from __future__ import annotations

import threading

from shipyard.monitor.notify.interface import DeliveryFailed, Notice, Notifier


class FakeNotifier(Notifier):
    """Records every notice; fails the next ``fail_next`` sends, or every send while ``down``."""

    kind = "fake"

    def __init__(self, target: str = "fake://receiver") -> None:
        self.target = target
        self.sent: list[Notice] = []
        """Every notice delivered, in order."""
        self.attempts: list[Notice] = []
        """Every notice tried, delivered or not."""
        self.down = False
        self.fail_next = 0
        self._lock = threading.Lock()

    def send(self, notice: Notice) -> str:
        """Keep the notice, unless this send is one that fails."""
        with self._lock:
            self.attempts.append(notice)
            if self.down or self.fail_next > 0:
                self.fail_next = max(0, self.fail_next - 1)
                raise DeliveryFailed(f"{self.target} is down")
            self.sent.append(notice)
        return "kept"
