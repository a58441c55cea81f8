"""User feedback posted to the router: a score or a complaint about the version a user was served.

This module reads and checks a feedback body and keeps a bounded ring of recent feedback for
the admin API; the data path decides which version it is about. It does no I/O. Complaint text
is the users' data: it is stored as sent (shortened), never logged, never echoed in errors.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from shipyard.cd.router.errors import BadMessage, RouterConfigError

MAX_FEEDBACK_BODY = 16 * 1024
"""Largest feedback body accepted (larger: 413): room for a whole complaint written in escapes."""

COMPLAINT_CHARS = 1000
"""Characters of a complaint kept; the rest is cut off (the complaint still counts)."""

RECENT_FEEDBACK = 500
"""Feedback kept for ``GET /feedback`` on the admin API, newest first; older is forgotten."""

SCORES = range(1, 6)
"""The scores a user may give: 1 (worst) to 5 (best)."""

DEFAULT_PATH = "/.shipyard/feedback"
"""The feedback path used when an environment turns feedback on without naming one."""

Via = Literal["header", "sticky", "body"]
"""How the version was found: the version header, the sticky key, the body's ``version``."""

_KEYS = ("score", "complaint", "version")
_PATH = re.compile(r"/[\x21-\x7e]{0,1023}")


def check_path(path: str) -> str:
    """``path`` if it can be the feedback path (a URL path without query), else an error."""
    if not _PATH.fullmatch(path) or "?" in path or "#" in path:
        raise RouterConfigError(
            f"the feedback path {path!r} is not a URL path",
            hint=f"write a path such as {DEFAULT_PATH}: '/' first, no spaces, '?' or '#'",
        )
    return path


@dataclass(frozen=True)
class FeedbackBody:
    """What a user posted: a score, a complaint (already shortened) or both, and perhaps the
    version the page says it was served by."""

    score: int | None
    complaint: str | None
    version: str | None


def parse_body(body: bytes) -> FeedbackBody:
    """Read a feedback body; ``BadMessage`` (400) saying what is wrong and what to send."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise _bad("the body is not JSON") from None
    if not isinstance(data, dict):
        raise _bad("the body must be a JSON object")
    unknown = sorted(key for key in data if key not in _KEYS)
    if unknown:
        raise _bad(f"unknown key {unknown[0][:64]!r}")
    score = data.get("score")
    complaint = data.get("complaint")
    version = data.get("version")
    if score is None and complaint is None:
        raise _bad("no score and no complaint")
    if score is not None and (
        isinstance(score, bool) or not isinstance(score, int) or score not in SCORES
    ):
        raise _bad("'score' must be a whole number from 1 to 5")
    if complaint is not None:
        if not isinstance(complaint, str) or not complaint.strip():
            raise _bad("'complaint' must be a text that is not empty")
        complaint = complaint[:COMPLAINT_CHARS]
    if version is not None and not isinstance(version, str):
        raise _bad("'version' must be a version's name, as in X-Shipyard-Version")
    return FeedbackBody(score=score, complaint=complaint, version=version)


def _bad(problem: str) -> BadMessage:
    return BadMessage(
        400,
        f'{problem}: send {{"score": 1 to 5}} or {{"complaint": "text"}} as JSON '
        f"(at most {MAX_FEEDBACK_BODY} bytes)",
    )


@dataclass(frozen=True)
class Feedback:
    """One piece of feedback as the router recorded it."""

    version: str
    at: float
    """When it arrived (Unix seconds)."""
    score: int | None
    complaint: str | None
    pinned: bool
    """Attributed by the version header (a preview's), so counted apart from weighted traffic."""
    via: Via

    def as_json(self) -> dict[str, Any]:
        """The JSON form served by the admin API."""
        return {
            "version": self.version,
            "at": self.at,
            "score": self.score,
            "complaint": self.complaint,
            "traffic": "pinned" if self.pinned else "weighted",
            "via": self.via,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Feedback:
        """Read the JSON form back (as the admin client does)."""
        score = data.get("score")
        complaint = data.get("complaint")
        raw = data.get("via")
        via: Via = "header" if raw == "header" else "sticky" if raw == "sticky" else "body"
        return cls(
            version=str(data["version"]),
            at=float(data["at"]),
            score=None if score is None else int(score),
            complaint=None if complaint is None else str(complaint),
            pinned=data.get("traffic") == "pinned",
            via=via,
        )


class FeedbackLog:
    """The most recent feedback (at most ``capacity``), and how much arrived in all."""

    def __init__(self, capacity: int = RECENT_FEEDBACK) -> None:
        self.capacity = capacity
        self.received = 0
        self._recent: deque[Feedback] = deque(maxlen=capacity)

    def add(self, feedback: Feedback) -> None:
        """Keep ``feedback``, forgetting the oldest when full."""
        self.received += 1
        self._recent.append(feedback)

    def recent(self) -> list[Feedback]:
        """The feedback kept, newest first."""
        return list(reversed(self._recent))
