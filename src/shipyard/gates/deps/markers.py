"""When a locked package is installed, as a PEP 508 marker built from the lock's own markers.

A lock may record the condition on the package itself (``pylock.toml``, ``poetry.lock``) or on
each edge of the dependency graph (``uv.lock``): then a package is installed where some path
from the project to it has every edge's marker true. Conditions are kept as a disjunction of
conjunctions of the lock's marker strings; one that grows past a small bound becomes "always",
so that the vulnerabilities gate checks what it cannot cheaply rule out rather than skip it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

Condition = frozenset[frozenset[str]]
"""Installed when any of the conjunctions holds; a conjunction holds when all its markers do."""

ALWAYS: Condition = frozenset({frozenset()})
NEVER: Condition = frozenset()

MAX_TERMS = 16
"""Conjunctions kept for one package before its condition is taken as "always"."""

MAX_MARKERS_PER_TERM = 8
"""Markers ANDed along one path before that path is taken as unconditional."""


def any_of(markers: Iterable[str | None]) -> str | None:
    """A marker true where any of ``markers`` is (None, an empty marker: always)."""
    return as_marker(frozenset(_term([m] if m else []) for m in markers) or ALWAYS)


def as_marker(condition: Condition) -> str | None:
    """The condition as one PEP 508 marker string, or None when it always holds."""
    condition = _simplified(condition)
    if frozenset() in condition or not condition:
        return None  # NEVER means unreached: nothing says when, so it is always checked
    terms = [" and ".join(f"({m})" for m in sorted(term)) for term in condition]
    if len(terms) == 1:
        return terms[0]
    return " or ".join(f"({t})" for t in sorted(terms))


def reachable(
    roots: Iterable[int], edges: Mapping[int, Sequence[tuple[int, str | None]]]
) -> dict[int, Condition]:
    """For every node reached from ``roots`` along ``edges`` (node → (child, marker)), the
    condition under which it is reached."""
    found: dict[int, Condition] = dict.fromkeys(roots, ALWAYS)
    todo = list(found)
    while todo:
        node = todo.pop()
        through = found[node]
        for child, marker in edges.get(node, ()):
            extended = frozenset(_term([*term, marker] if marker else term) for term in through)
            before = found.get(child, NEVER)
            after = _simplified(before | extended)
            if after != before:
                found[child] = after
                todo.append(child)
    return found


def _term(markers: Iterable[str]) -> frozenset[str]:
    term = frozenset(m.strip() for m in markers if m and m.strip())
    return term if len(term) <= MAX_MARKERS_PER_TERM else frozenset()


def _simplified(condition: Condition) -> Condition:
    """Drop conjunctions implied by a smaller one; "always" past ``MAX_TERMS``."""
    if frozenset() in condition:
        return ALWAYS
    kept = frozenset(t for t in condition if not any(o < t for o in condition))
    return ALWAYS if len(kept) > MAX_TERMS else kept
