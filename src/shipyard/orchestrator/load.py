"""Steady HTTP load: GET requests from background threads on keep-alive connections, counting
each answer by the version that gave it (``X-Shipyard-Version``) and its status.

``shipyard demo`` drives a canary with it, and end-to-end tests use it the same way. It
measures no timings: its ``rate`` paces the load without promising it.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import warnings
from collections import Counter
from contextlib import suppress
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from shipyard.core.errors import HostError

__all__ = ["UNVERSIONED", "VERSION_HEADER", "Load", "LoadNotStopped"]

VERSION_HEADER = "X-Shipyard-Version"
"""The header Shipyard's router names the version that answered in."""

UNVERSIONED = ""
"""The version of an answer that had no ``X-Shipyard-Version`` header."""

SOCKET_TIMEOUT = 5.0  # seconds a request may wait for the server before it counts as an error
STOP_WITHIN = 2.0  # seconds the threads get to stop once the load ends
RECONNECT_PAUSE = 0.05  # seconds between attempts while the server refuses connections
POLL = 0.02  # seconds between two looks at a worker that is stopping


class LoadNotStopped(HostError):
    """A worker of the load was still running when the load had to be over."""


class Load:
    """GET ``url`` from ``workers`` threads, as fast as they go or ~``rate`` requests/s in all.

    ``with Load(url) as load:`` runs it for the block; ``start`` and ``stop`` do the same
    for a caller whose load outlives one block.
    """

    def __init__(self, url: str, *, workers: int = 2, rate: float | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"Load needs an http://HOST[:PORT]/PATH URL, not {url!r}")
        if workers < 1:
            raise ValueError(f"workers={workers}: use 1 or more")
        if rate is not None and not rate > 0:
            raise ValueError(f"rate={rate}: use a positive number of requests per second")
        self.url = url
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._interval = workers / rate if rate else 0.0  # seconds between one worker's requests
        self._lock = threading.Lock()
        self._statuses: Counter[tuple[str, int]] = Counter()  # (version, status) -> answers
        self._errors: list[str] = []
        self._stop = threading.Event()
        # One keep-alive connection per worker; after an error it opens a new socket by itself.
        self._connections = [
            http.client.HTTPConnection(parts.hostname, parts.port, timeout=SOCKET_TIMEOUT)
            for _ in range(workers)
        ]
        self._threads = [
            threading.Thread(target=self._work, args=(index,), name=f"load-{index}", daemon=True)
            for index in range(workers)
        ]

    def start(self) -> None:
        """Start the workers."""
        for thread in self._threads:
            thread.start()

    def stop(self) -> list[str]:
        """Stop the workers, interrupting requests in flight; the names of any still running
        after ``STOP_WITHIN`` seconds (none, unless a socket would not shut down)."""
        self._stop.set()
        deadline = time.monotonic() + STOP_WITHIN
        for thread, connection in zip(self._threads, self._connections, strict=True):
            while thread.is_alive() and time.monotonic() < deadline:
                # Wakes a worker blocked on a server that does not answer; again and again,
                # as a worker may have been connecting (no socket yet) the first time.
                with suppress(OSError, AttributeError):
                    connection.sock.shutdown(socket.SHUT_RDWR)
                thread.join(POLL)
        return [thread.name for thread in self._threads if thread.is_alive()]

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        stuck = self.stop()
        if not stuck:
            return
        message = f"load threads still running {STOP_WITHIN:g} s after the load ended: {stuck}"
        if error is None:
            raise LoadNotStopped(message, hint="the server holds its connections open; stop it")
        warnings.warn(message, stacklevel=2)  # the block's own error matters more

    @property
    def total(self) -> int:
        """Requests that ended so far, answered or not."""
        with self._lock:
            return self._statuses.total() + len(self._errors)

    @property
    def errors(self) -> list[str]:
        """Connection-level failures so far (refused, reset, timed out...), as text."""
        with self._lock:
            return list(self._errors)

    def count(self, version: str | None = None, status: int | None = None) -> int:
        """Answered requests; only those of ``version`` (UNVERSIONED: no header) and ``status``
        when given."""
        with self._lock:
            return sum(
                answers
                for (answered_by, code), answers in self._statuses.items()
                if version in (None, answered_by) and status in (None, code)
            )

    def statuses_by_version(self) -> dict[str, Counter[int]]:
        """For each version that answered, how many answers had each status."""
        found: dict[str, Counter[int]] = {}
        with self._lock:
            for (version, status), answers in self._statuses.items():
                found.setdefault(version, Counter())[status] = answers
        return found

    def summary(self) -> str:
        """What the load has seen so far, in one line."""
        by_version = {
            version: dict(counts) for version, counts in self.statuses_by_version().items()
        }
        errors = self.errors
        last = f", the last: {errors[-1]}" if errors else ""
        return (
            f"{self.total} requests, statuses by version {by_version}, {len(errors)} errors{last}"
        )

    def _work(self, index: int) -> None:
        """One worker: requests on a keep-alive connection, a new one after an error."""
        connection = self._connections[index]
        next_at = time.monotonic() + self._interval * index / len(self._threads)
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at = max(next_at + self._interval, time.monotonic())
            try:
                connection.request("GET", self._target)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                if self._stop.is_set():
                    return  # interrupted by the end of the load, not the server's failure
                with self._lock:
                    self._errors.append(f"{type(error).__name__}: {error}")
                next_at = max(next_at, time.monotonic() + RECONNECT_PAUSE)
                continue
            version = response.getheader(VERSION_HEADER) or UNVERSIONED
            with self._lock:
                self._statuses[version, response.status] += 1
        connection.close()
