"""docs/configuration.md documents exactly the keys the model accepts."""

from __future__ import annotations

import re
from pathlib import Path

from shipyard.core.config import ShipyardConfig, key_paths

REFERENCE = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"
_ROW_KEY = re.compile(r"^\|\s*`([^`]+)`\s*\|")


def documented_key_paths(markdown: str) -> list[str]:
    """The key paths in the first column of every table whose header starts with 'Key'."""
    paths: list[str] = []
    in_key_table = False
    for line in markdown.splitlines():
        stripped = line.strip()
        if not stripped.startswith("|"):
            in_key_table = False
            continue
        cells = [cell.strip() for cell in stripped.strip("|").split("|")]
        if cells and cells[0] == "Key":
            in_key_table = True
            continue
        match = _ROW_KEY.match(stripped)
        if in_key_table and match:
            paths.append(match.group(1))
    return paths


def test_every_key_path_is_documented() -> None:
    documented = set(documented_key_paths(REFERENCE.read_text(encoding="utf-8")))
    missing = [path for path in key_paths(ShipyardConfig) if path not in documented]
    assert not missing, f"add rows for these keys to {REFERENCE.name}: {missing}"


def test_every_documented_key_path_exists() -> None:
    known = set(key_paths(ShipyardConfig))
    documented = documented_key_paths(REFERENCE.read_text(encoding="utf-8"))
    unknown = [path for path in documented if path not in known]
    assert not unknown, f"{REFERENCE.name} documents keys the model does not have: {unknown}"


def test_no_key_path_is_documented_twice() -> None:
    documented = documented_key_paths(REFERENCE.read_text(encoding="utf-8"))
    twice = sorted({path for path in documented if documented.count(path) > 1})
    assert not twice, f"{REFERENCE.name} documents these keys twice: {twice}"


def test_the_reader_finds_rows_only_in_key_tables() -> None:
    markdown = (
        "| Written | Means |\n| --- | --- |\n| `30s` | thirty seconds |\n\n"
        "| Key | Type | Description |\n| --- | --- | --- |\n| `project` | string | name |\n"
        "| `pipeline.jobs.<name>.run` | string | command |\n\nprose `not.a.key`\n"
    )
    assert documented_key_paths(markdown) == ["project", "pipeline.jobs.<name>.run"]
