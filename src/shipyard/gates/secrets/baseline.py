"""The secrets baseline: known, accepted secrets by the sha256 of the secret, never by line.

Keyed by the hash, an entry keeps matching when code moves, so the file only changes when a
secret is added or goes away; entries still found are kept as written, notes included. The
file holds hashes and rule names, never a secret or a prefix of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.gates.documents import TooDeeplyNested, parse_json
from shipyard.gates.interface import GateError
from shipyard.gates.secrets.engine import SecretHit

FORMAT = "shipyard-secrets-baseline"
"""The ``format`` field that marks a file as a Shipyard secrets baseline."""

VERSION = 1
"""The version of the baseline's layout."""


class BaselineInvalid(GateError):
    """The baseline file is not a Shipyard secrets baseline; the message says where."""


@dataclass(frozen=True)
class BaselineEntry:
    """One accepted secret: its hash, the rule that found it, where it was first seen."""

    sha256: str
    rule: str
    first_seen: str
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        value: dict[str, Any] = {
            "sha256": self.sha256,
            "rule": self.rule,
            "first_seen": self.first_seen,
        }
        if self.note:
            value["note"] = self.note
        return value


@dataclass(frozen=True)
class Baseline:
    """The accepted secrets of a project."""

    entries: tuple[BaselineEntry, ...] = ()

    def __contains__(self, fingerprint: object) -> bool:
        return any(entry.sha256 == fingerprint for entry in self.entries)

    def updated(self, hits: Iterable[SecretHit]) -> BaselineChange:
        """The baseline for what is found now: kept entries unchanged, new ones added."""
        found: dict[str, SecretHit] = {}
        for hit in hits:
            if not hit.allowed:
                found.setdefault(hit.fingerprint, hit)
        kept = [entry for entry in self.entries if entry.sha256 in found]
        known = {entry.sha256 for entry in self.entries}
        added = [
            BaselineEntry(hit.fingerprint, hit.rule, hit.path)
            for fingerprint, hit in found.items()
            if fingerprint not in known
        ]
        removed = [entry for entry in self.entries if entry.sha256 not in found]
        entries = tuple(sorted([*kept, *added], key=lambda entry: entry.sha256))
        return BaselineChange(Baseline(entries), tuple(added), tuple(removed))


@dataclass(frozen=True)
class BaselineChange:
    """A rewritten baseline and what changed in it."""

    baseline: Baseline
    added: tuple[BaselineEntry, ...]
    removed: tuple[BaselineEntry, ...]


def read_baseline(path: Path, display: str) -> Baseline:
    """The baseline at ``path`` (empty when the file does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Baseline()
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineInvalid(f"the secrets baseline {display} cannot be read: {exc}") from None
    try:
        data = parse_json(text)
    except TooDeeplyNested as exc:
        raise BaselineInvalid(
            f"the secrets baseline {display} is not a baseline: {exc}",
            hint="regenerate it with 'shipyard secrets baseline'",
        ) from None
    except json.JSONDecodeError as exc:
        raise BaselineInvalid(
            f"the secrets baseline {display}:{exc.lineno} is not valid JSON: {exc.msg}",
            hint="regenerate it with 'shipyard secrets baseline'",
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BaselineInvalid(
            f"{display} is not a Shipyard secrets baseline (its 'format' is not {FORMAT!r})",
            hint="point gates.secrets.baseline at another file, or regenerate it with "
            "'shipyard secrets baseline'",
        )
    if data.get("version") != VERSION:
        raise BaselineInvalid(
            f"the secrets baseline {display} has version {data.get('version')!r}, not {VERSION}",
            hint="regenerate it with 'shipyard secrets baseline'",
        )
    items = data.get("secrets")
    if not isinstance(items, list):
        raise BaselineInvalid(f"the secrets baseline {display}: 'secrets' must be a list")
    entries = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not _is_sha256(item.get("sha256")):
            raise BaselineInvalid(
                f"the secrets baseline {display}: secrets[{index}] has no valid 'sha256' "
                "(64 lowercase hex digits)",
                hint="regenerate it with 'shipyard secrets baseline'",
            )
        entries.append(
            BaselineEntry(
                sha256=item["sha256"],
                rule=str(item.get("rule") or ""),
                first_seen=str(item.get("first_seen") or ""),
                note=str(item.get("note") or ""),
            )
        )
    return Baseline(tuple(entries))


def write_baseline(path: Path, baseline: Baseline) -> None:
    """Write the baseline atomically, in a stable order, ending with a newline."""
    document = {
        "format": FORMAT,
        "version": VERSION,
        "secrets": [entry.as_json() for entry in baseline.entries],
    }
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".baseline-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _is_sha256(value: Any) -> bool:
    return (
        isinstance(value, str)
        and len(value) == 64
        and all(ch in "0123456789abcdef" for ch in value)
    )
