"""JSON and TOML from files that users control, read with their nesting bounded.

Python's parsers recurse once per level, so a file nested 200,000 levels deep raised
``RecursionError`` from deep inside a reader ("internal error"). Every reader of a lockfile,
SBOM, advisory or baseline parses through here and turns such a file into ``TooDeeplyNested``,
which each reader reports as a malformed file naming it. Nothing here knows any file format.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any

MAX_NESTING = 500
"""The deepest nesting of arrays and objects accepted; real lockfiles stay under 100."""


class TooDeeplyNested(ValueError):
    """A document nests arrays or objects deeper than ``MAX_NESTING`` levels."""

    def __init__(self) -> None:
        super().__init__(
            f"it nests arrays or objects more than {MAX_NESTING} levels deep, which no "
            "real file of this kind does"
        )


def parse_json(text: str | bytes) -> Any:
    """``json.loads``; ``TooDeeplyNested`` (a ``ValueError``) when it nests too deeply."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise TooDeeplyNested from None
    check_nesting(data, len(text))
    return data


def parse_toml(text: str) -> dict[str, Any]:
    """``tomllib.loads``; ``TooDeeplyNested`` when it nests too deeply."""
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise TooDeeplyNested from None
    check_nesting(data, len(text))
    return data


def check_nesting(data: Any, size: int | None = None) -> None:
    """``TooDeeplyNested`` when ``data`` nests lists and dicts deeper than ``MAX_NESTING``.

    A document of ``size`` characters cannot nest deeper than half of them, so short ones are
    not walked; the walk uses no recursion."""
    if size is not None and size <= 2 * MAX_NESTING:
        return
    if type(data) not in _CONTAINERS:
        return
    level, depth = [data], 0
    while level:
        depth += 1
        if depth > MAX_NESTING:
            raise TooDeeplyNested
        below: list[Any] = []
        for value in level:
            below.extend(
                child
                for child in (value.values() if type(value) is dict else value)
                if type(child) in _CONTAINERS
            )
        level = below


_CONTAINERS = (dict, list)
