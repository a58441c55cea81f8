"""Helpers for gate tests: OSV records written for the boundaries each test checks."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from shipyard.core.config import load_config_text
from shipyard.gates import GateContext

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
"""The moment gate tests judge at, so that ages and expiry dates are exact."""


def osv(
    advisory_id: str,
    package: str = "demo",
    *,
    ecosystem: str = "PyPI",
    events: Iterable[Mapping[str, str]] | None = None,
    ranges: list[dict[str, Any]] | None = None,
    versions: Iterable[str] = (),
    aliases: Iterable[str] = (),
    severity: Iterable[tuple[str, str]] = (),
    database_severity: str | None = None,
    modified: datetime = NOW - timedelta(days=1),
    withdrawn: datetime | None = None,
    summary: str = "",
    details: str = "A test advisory.",
) -> dict[str, Any]:
    """One OSV record affecting ``package``; ``events`` make one ECOSYSTEM range."""
    affected: dict[str, Any] = {"package": {"ecosystem": ecosystem, "name": package}}
    if ranges is None and events is not None:
        ranges = [{"type": "ECOSYSTEM", "events": list(events)}]
    if ranges is not None:
        affected["ranges"] = ranges
    if versions:
        affected["versions"] = list(versions)
    record: dict[str, Any] = {
        "id": advisory_id,
        "modified": modified.isoformat().replace("+00:00", "Z"),
        "aliases": list(aliases),
        "summary": summary,
        "details": details,
        "affected": [affected],
    }
    if severity:
        record["severity"] = [{"type": kind, "score": score} for kind, score in severity]
    if database_severity:
        record["database_specific"] = {"severity": database_severity}
    if withdrawn is not None:
        record["withdrawn"] = withdrawn.isoformat().replace("+00:00", "Z")
    return record


def write_records(
    folder: Path, records: Iterable[Mapping[str, Any]], *, as_yaml: bool = False
) -> Path:
    """Write each record to its own file (JSON, or YAML) under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for record in records:
        if as_yaml:
            (folder / f"{record['id']}.yaml").write_text(yaml.safe_dump(dict(record)))
        else:
            (folder / f"{record['id']}.json").write_text(json.dumps(record))
    return folder


def context(
    workspace: Path, state_root: Path, gates_yaml: str = "{}", *, now: datetime = NOW
) -> GateContext:
    """A gate context for ``workspace`` with ``gates: {vulnerabilities: <gates_yaml>}``."""
    config = load_config_text(f"project: demo\ngates:\n  vulnerabilities: {gates_yaml}\n")
    return GateContext(workspace=workspace, config=config, state_root=state_root, now=now)
