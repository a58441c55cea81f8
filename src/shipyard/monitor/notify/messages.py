"""One readable line per event, for a Slack message or an email's subject.

Each family of events (deployments, incidents, gates, releases, runs) is said in its own words
from the fields its pillar puts in the payload; a field that is missing is left out, and an
event this module does not know is still named by its type and subject. Nothing here sends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from shipyard.core.config.notifications import TEST_EVENT_TYPE
from shipyard.monitor.notify.interface import Notice

_LONGEST = 300

_DONE = {
    "created": "was requested",
    "waiting": "waits for a person",
    "approved": "was approved",
    "progressing": "is rolling out",
    "paused": "is paused",
    "succeeded": "succeeded",
    "aborted": "was aborted",
    "rolled_back": "was rolled back",
    "failed": "failed",
}


def summary(notice: Notice) -> str:
    """What happened, in one line that starts with the project's name."""
    family, _, action = notice.type.partition(".")
    words = _FAMILIES.get(family, _other)(notice, action, notice.payload)
    if notice.type == TEST_EVENT_TYPE:
        words = "a test notification from Shipyard: this notification works"
    line = " ".join(f"{notice.project}: {words}".split())
    return line if len(line) <= _LONGEST else line[: _LONGEST - 1] + "…"


def _deployment(notice: Notice, action: str, data: Mapping[str, Any]) -> str:
    number = notice.subject.removeprefix("deployment:")
    version = f" of {data['version']}" if data.get("version") else ""
    where = f" to {data['environment']}" if data.get("environment") else ""
    by = f" by {data['approver']}" if data.get("approver") else ""
    why = data.get("message") or data.get("reason")
    return f"deployment {number}{version}{where} {_DONE.get(action, action)}{by}" + (
        f": {why}" if why else ""
    )


def _incident(notice: Notice, action: str, data: Mapping[str, Any]) -> str:
    number = notice.subject.removeprefix("incident:")
    where = f" in {data['environment']}" if data.get("environment") else ""
    title = f": {data['title']}" if data.get("title") else ""
    if action == "opened":
        cause = f" (caused by {data['caused_by_version']})" if data.get("caused_by_version") else ""
        return f"incident {number} opened{where}{title}{cause}"
    if action == "restored":
        by = f" by {data['restored_by_version']}" if data.get("restored_by_version") else ""
        return f"incident {number}{where} restored{by}{title}"
    if action == "resolved":
        how = f" — {data['resolution']}" if data.get("resolution") else ""
        return f"incident {number}{where} resolved{title}{how}"
    return f"incident {number}{where} {action}{title}"


def _gate(notice: Notice, action: str, data: Mapping[str, Any]) -> str:
    gate = data.get("gate") or "a gate"
    on = f" on release {data['release']}" if data.get("release") else f" on {notice.subject}"
    where = f" for {data['environment']}" if data.get("environment") else ""
    why = data.get("summary") or data.get("reason")
    return f"gate {gate} {action}{on}{where}" + (f": {why}" if why else "")


def _release(notice: Notice, action: str, data: Mapping[str, Any]) -> str:
    version = data.get("version") or notice.subject.rpartition("@")[2]
    tag = f" (tag {data['tag']})" if data.get("tag") else ""
    return f"release {version} {action}{tag}"


def _run(notice: Notice, action: str, data: Mapping[str, Any]) -> str:
    number = notice.subject.removeprefix("run:")
    status = f": {data['status']}" if data.get("status") and action == "finished" else ""
    commit = f" of {str(data['commit'])[:12]}" if data.get("commit") else ""
    return f"run {number}{commit} {action}{status}"


def _other(notice: Notice, action: str, data: Mapping[str, Any]) -> str:
    return f"{notice.type} {notice.subject}"


_FAMILIES: dict[str, Callable[[Notice, str, Mapping[str, Any]], str]] = {
    "deployment": _deployment,
    "incident": _incident,
    "gate": _gate,
    "release": _release,
    "run": _run,
}
