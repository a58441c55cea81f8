"""Per-version statistics of the router: counters, a latency histogram and a latency sample.

Counters only grow (they feed ``/metrics``); a *window* is what changed since it was last reset,
with a bounded uniform sample of the latencies in it for the canary judge. Users' feedback
(complaints, scores) is counted per version beside the requests. Requests pinned to a version
with the ``X-Shipyard-Version`` header (previews) are counted apart, so a judge reading a
version's window sees weighted traffic only. Recording a request is a few integer additions;
everything else happens when somebody reads.
"""

from __future__ import annotations

import random
import time
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shipyard.cd.router.feedback import FeedbackLog

LATENCY_BOUNDS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds (seconds) of the latency histogram's buckets; a last one holds the rest."""

SAMPLE_SIZE = 2048
"""Latencies kept per version and window (a uniform sample of all the window saw)."""

STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
"""The response classes counted, in order (a 1xx is a switch of protocols: a tunnel)."""

ERROR_KINDS = ("connect", "reset", "timeout", "bad_response")
"""Why an upstream exchange failed: no connection, dropped, silent, or not HTTP."""


class Counters:
    """The monotonically growing counts of one version (mutable; the data path adds to it)."""

    __slots__ = (
        "buckets",
        "classes",
        "client_aborts",
        "complaints",
        "connect_failures",
        "errors",
        "latency_sum",
        "requests",
        "score_sum",
        "scores",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.classes = [0] * 6  # index: status // 100
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        self.connect_failures = 0
        self.client_aborts = 0
        self.buckets = [0] * (len(LATENCY_BOUNDS) + 1)
        self.latency_sum = 0.0
        self.complaints = 0
        self.scores = 0
        self.score_sum = 0

    def copy(self) -> Counters:
        """An independent copy (a window's baseline)."""
        other = Counters()
        other.requests = self.requests
        other.classes = list(self.classes)
        other.errors = dict(self.errors)
        other.connect_failures = self.connect_failures
        other.client_aborts = self.client_aborts
        other.buckets = list(self.buckets)
        other.latency_sum = self.latency_sum
        other.complaints = self.complaints
        other.scores = self.scores
        other.score_sum = self.score_sum
        return other


@dataclass(frozen=True)
class LatencyHistogram:
    """Request latencies in buckets: ``counts[i]`` are those <= ``bounds[i]``, the last the rest."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total_seconds: float

    def quantile(self, q: float) -> float | None:
        """An upper bound of the ``q`` quantile (the bucket it falls in); None without data."""
        total = sum(self.counts)
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            seen += count
            if seen >= rank and count:
                return bound
        return float("inf")


@dataclass(frozen=True)
class VersionStats:
    """What one version did in a time window, as the clients saw it.

    The counts, histogram and sample cover weighted traffic only; ``pinned`` holds the same
    figures for requests pinned to this version with the version header (None from a router
    too old to tell them apart). ``complaints``, ``scores`` and ``score_sum`` count the users'
    feedback about this version (0 from a router without feedback).
    """

    version: str
    window_start: float
    window_end: float
    requests: int
    responses: Mapping[str, int]
    upstream_errors: Mapping[str, int]
    connect_failures: int
    client_aborts: int
    histogram: LatencyHistogram
    sample: tuple[float, ...]
    sampled_from: int
    pinned: VersionStats | None = None
    complaints: int = 0
    scores: int = 0
    score_sum: int = 0

    @property
    def window_seconds(self) -> float:
        """How long the window lasted."""
        return max(0.0, self.window_end - self.window_start)

    @property
    def upstream_error_count(self) -> int:
        """Requests that failed because of the upstream (answered 502/504 or cut off)."""
        return sum(self.upstream_errors.values())

    @property
    def error_rate(self) -> float | None:
        """Share of requests answered with a 5xx; None without requests."""
        return self.responses.get("5xx", 0) / self.requests if self.requests else None

    @property
    def mean_score(self) -> float | None:
        """The mean of the users' scores (1 to 5); None without scores."""
        return self.score_sum / self.scores if self.scores else None

    def percentile(self, q: float) -> float | None:
        """The ``q`` (0..1) quantile of the latency sample, None if it is empty."""
        if not self.sample:
            return None
        ordered = sorted(self.sample)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def as_json(self) -> dict[str, Any]:
        """The JSON form served by the admin API (``pinned`` in the same form, if known)."""
        data: dict[str, Any] = {
            "version": self.version,
            "window": {
                "start": self.window_start,
                "end": self.window_end,
                "seconds": self.window_seconds,
            },
            "requests": self.requests,
            "responses": dict(self.responses),
            "upstream_errors": dict(self.upstream_errors),
            "connect_failures": self.connect_failures,
            "client_aborts": self.client_aborts,
            "latency": {
                "bounds": list(self.histogram.bounds),
                "counts": list(self.histogram.counts),
                "sum": self.histogram.total_seconds,
                "sample": list(self.sample),
                "sampled_from": self.sampled_from,
            },
            "feedback": {
                "complaints": self.complaints,
                "scores": self.scores,
                "score_sum": self.score_sum,
            },
        }
        if self.pinned is not None:
            data["pinned"] = self.pinned.as_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VersionStats:
        """Read the JSON form back (as the admin client does)."""
        latency = data["latency"]
        pinned = data.get("pinned")
        feedback = data.get("feedback") or {}
        return cls(
            version=str(data["version"]),
            window_start=float(data["window"]["start"]),
            window_end=float(data["window"]["end"]),
            requests=int(data["requests"]),
            responses={str(k): int(v) for k, v in data["responses"].items()},
            upstream_errors={str(k): int(v) for k, v in data["upstream_errors"].items()},
            connect_failures=int(data["connect_failures"]),
            client_aborts=int(data["client_aborts"]),
            histogram=LatencyHistogram(
                tuple(float(b) for b in latency["bounds"]),
                tuple(int(c) for c in latency["counts"]),
                float(latency["sum"]),
            ),
            sample=tuple(float(s) for s in latency["sample"]),
            sampled_from=int(latency["sampled_from"]),
            pinned=cls.from_json(pinned) if pinned else None,
            complaints=int(feedback.get("complaints", 0)),
            scores=int(feedback.get("scores", 0)),
            score_sum=int(feedback.get("score_sum", 0)),
        )


@dataclass(frozen=True)
class RouterStats:
    """Every version's statistics, plus requests the router answered without routing them."""

    taken_at: float
    versions: Mapping[str, VersionStats]
    rejected: int = 0
    unrouted: int = 0

    def as_json(self) -> dict[str, Any]:
        """The JSON form served by the admin API."""
        return {
            "taken_at": self.taken_at,
            "rejected": self.rejected,
            "unrouted": self.unrouted,
            "versions": {name: stats.as_json() for name, stats in self.versions.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RouterStats:
        """Read the JSON form back (as the admin client does)."""
        return cls(
            taken_at=float(data["taken_at"]),
            versions={
                str(name): VersionStats.from_json(value) for name, value in data["versions"].items()
            },
            rejected=int(data.get("rejected", 0)),
            unrouted=int(data.get("unrouted", 0)),
        )


@dataclass(eq=False)
class VersionRecorder:
    """Records one version's requests: growing totals, a window baseline and a sample.

    A version's weighted recorder holds the recorder of its ``pinned`` requests (which holds
    none); the data path records a request in exactly one of the two.
    """

    name: str
    pinned: VersionRecorder | None = None
    totals: Counters = field(default_factory=Counters)
    baseline: Counters = field(default_factory=Counters)
    window_start: float = field(default_factory=time.time)
    sample: list[float] = field(default_factory=list)
    sampled_from: int = 0

    def record(self, status: int, seconds: float) -> None:
        """Count one finished request answered with ``status`` after ``seconds``."""
        totals = self.totals
        totals.requests += 1
        totals.classes[status // 100 if 100 <= status < 600 else 5] += 1
        totals.buckets[bisect_left(LATENCY_BOUNDS, seconds)] += 1
        totals.latency_sum += seconds
        self.sampled_from += 1
        sample = self.sample
        if len(sample) < SAMPLE_SIZE:
            sample.append(seconds)
        else:
            slot = int(random.random() * self.sampled_from)  # noqa: S311 - sampling, not secrets
            if slot < SAMPLE_SIZE:
                sample[slot] = seconds

    def feedback(self, score: int | None, *, complaint: bool) -> None:
        """Count a user's feedback: a score (1 to 5) if given, a complaint if there was one."""
        totals = self.totals
        if score is not None:
            totals.scores += 1
            totals.score_sum += score
        if complaint:
            totals.complaints += 1

    def upstream_error(self, kind: str) -> None:
        """Count a request that failed because of the upstream (``kind`` in ERROR_KINDS)."""
        self.totals.errors[kind] += 1

    def snapshot(self, now: float) -> VersionStats:
        """The current window as a value (with the pinned requests' window, if kept)."""
        totals, base = self.totals, self.baseline
        return VersionStats(
            version=self.name,
            window_start=self.window_start,
            window_end=now,
            requests=totals.requests - base.requests,
            responses={
                name: totals.classes[i + 1] - base.classes[i + 1]
                for i, name in enumerate(STATUS_CLASSES)
            },
            upstream_errors={k: totals.errors[k] - base.errors[k] for k in ERROR_KINDS},
            connect_failures=totals.connect_failures - base.connect_failures,
            client_aborts=totals.client_aborts - base.client_aborts,
            histogram=LatencyHistogram(
                LATENCY_BOUNDS,
                tuple(t - b for t, b in zip(totals.buckets, base.buckets, strict=True)),
                totals.latency_sum - base.latency_sum,
            ),
            sample=tuple(self.sample),
            sampled_from=self.sampled_from,
            pinned=None if self.pinned is None else self.pinned.snapshot(now),
            complaints=totals.complaints - base.complaints,
            scores=totals.scores - base.scores,
            score_sum=totals.score_sum - base.score_sum,
        )

    def reset(self, now: float) -> VersionStats:
        """Close the window: return it and start a new one at ``now``."""
        closed = self.snapshot(now)
        if self.pinned is not None:
            self.pinned.reset(now)
        self.baseline = self.totals.copy()
        self.window_start = now
        self.sample = []
        self.sampled_from = 0
        return closed


class StatsBook:
    """Every version's recorder by name, kept across route changes until reset, and the recent
    feedback (which a reset keeps: it is a history, not a window)."""

    def __init__(self) -> None:
        self.recorders: dict[str, VersionRecorder] = {}
        self.rejected = 0
        self.unrouted = 0
        self.feedback = FeedbackLog()

    def recorder(self, name: str) -> VersionRecorder:
        """The recorder of version ``name``'s weighted requests (its pinned ones in
        ``.pinned``), created on first use."""
        found = self.recorders.get(name)
        if found is None:
            found = self.recorders[name] = VersionRecorder(name, VersionRecorder(name))
        return found

    def snapshot(self) -> RouterStats:
        """Every version's current window."""
        now = time.time()
        return RouterStats(
            taken_at=now,
            versions={name: r.snapshot(now) for name, r in sorted(self.recorders.items())},
            rejected=self.rejected,
            unrouted=self.unrouted,
        )

    def reset(self, names: Iterable[str] | None = None, *, keep: Iterable[str] = ()) -> RouterStats:
        """Close the windows of ``names`` (default: all) and return them; forget versions that
        are neither in ``keep`` nor have anything left to report."""
        now = time.time()
        chosen = sorted(self.recorders) if names is None else sorted(set(names))
        closed = {
            name: self.recorders[name].reset(now) for name in chosen if name in self.recorders
        }
        kept = set(keep)
        for name in chosen:
            if name not in kept and name in self.recorders:
                del self.recorders[name]
        return RouterStats(now, closed, self.rejected, self.unrouted)
