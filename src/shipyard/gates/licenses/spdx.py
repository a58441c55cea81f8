"""SPDX license expressions, parsed strictly, and judged against a team's allow and deny lists.

An ``OR`` passes when one branch passes (the licensee may choose), an ``AND`` only when every
part does. ``L WITH E`` is judged by an entry naming exactly ``L WITH E`` first, else by the
entry for ``L``: an exception only adds permissions. It never reads packages or metadata.
"""

from __future__ import annotations

import difflib
import enum
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from license_expression import (
    ExpressionError,
    LicenseSymbol,
    LicenseWithExceptionSymbol,
    Licensing,
    get_spdx_licensing,
)

from shipyard.gates.interface import GateError

_CUSTOM = re.compile(r"(?:DocumentRef-[A-Za-z0-9.-]+:)?LicenseRef-[A-Za-z0-9.-]+")
_LOCK = threading.Lock()


class InvalidLicense(GateError):
    """A text is not a valid SPDX license expression; the message says why."""


class Judgement(enum.IntEnum):
    """How a license fares against the lists, from the best to the worst."""

    ALLOWED = 0
    NOT_ALLOWED = 1
    DENIED = 2


@dataclass(frozen=True)
class LicenseExpression:
    """A parsed, valid SPDX expression; ``text`` is its normalized form (``MIT OR Apache-2.0``)."""

    text: str
    tree: Any

    def license_ids(self) -> list[str]:
        """Every license id in the expression (exceptions as ``L WITH E``), in order."""
        return [_key(symbol) for symbol in _symbols(self.tree)]


@dataclass(frozen=True)
class Decision:
    """The verdict on one expression, and the licenses that decided it."""

    judgement: Judgement
    culprits: tuple[str, ...] = ()


@lru_cache(maxsize=1)
def _licensing() -> Licensing:
    return get_spdx_licensing()


def parse(text: str) -> LicenseExpression:
    """Parse ``text`` strictly as SPDX; ``InvalidLicense`` names the unknown id or the syntax."""
    outcome = _parsed(" ".join(text.split()))
    if isinstance(outcome, str):
        raise InvalidLicense(outcome)
    return outcome


@lru_cache(maxsize=4096)
def _parsed(cleaned: str) -> LicenseExpression | str:
    """The expression, or why it is not one; cached, since a lockfile repeats a few licenses
    over thousands of packages."""
    if not cleaned:
        return "the license is empty"
    licensing = _licensing()
    with _LOCK:
        try:
            tree = licensing.parse(cleaned, validate=False, strict=True)
        except ExpressionError as exc:
            return f"'{_shorten(cleaned)}' is not a valid SPDX expression: {_reason(exc)}"
        if tree is None:
            return "the license is empty"
        unknown = [
            key for key in licensing.unknown_license_keys(tree) if not _CUSTOM.fullmatch(key)
        ]
        if unknown:
            hint = did_you_mean(unknown[0])
            verb = "is not an SPDX license id" if len(unknown) == 1 else "are not SPDX license ids"
            return (
                f"'{_shorten(cleaned)}' is not a valid SPDX expression: "
                f"{', '.join(repr(key) for key in unknown)} {verb}" + (f" ({hint})" if hint else "")
            )
        return LicenseExpression(str(tree), tree)


def is_expression(text: str) -> bool:
    """Whether ``text`` parses as a valid SPDX expression."""
    try:
        parse(text)
    except InvalidLicense:
        return False
    return True


def did_you_mean(word: str) -> str | None:
    """``did you mean 'Apache-2.0'?`` for a misspelt license id, or None."""
    licensing = _licensing()
    keys = [
        key
        for key, symbol in licensing.known_symbols.items()
        if not symbol.is_exception and not key.startswith("LicenseRef-")
    ]
    by_lower = {key.lower(): key for key in keys}
    squashed = re.sub(r"[\s_]+", "-", word.strip()).lower()
    for candidate in (squashed, f"{squashed}.0", squashed.replace("-v", "-")):
        if candidate in by_lower:
            return f"did you mean '{by_lower[candidate]}'?"
    close = difflib.get_close_matches(squashed, list(by_lower), n=1, cutoff=0.75)
    return f"did you mean '{by_lower[close[0]]}'?" if close else None


@dataclass(frozen=True)
class Policy:
    """The allow and deny lists as normalized ids; an empty allow list allows what is not denied."""

    allow: frozenset[str]
    deny: frozenset[str]

    @classmethod
    def of(cls, allow: Sequence[str], deny: Sequence[str]) -> Policy:
        """Read the configured lists; ``InvalidLicense`` names an entry that is not one license."""
        return cls(
            frozenset(_entry(value, f"gates.licenses.allow[{i}]") for i, value in enumerate(allow)),
            frozenset(_entry(value, f"gates.licenses.deny[{i}]") for i, value in enumerate(deny)),
        )

    def judge(self, expression: LicenseExpression) -> Decision:
        """Judge an expression: OR takes its best branch, AND its worst part."""
        return self._node(expression.tree)

    def _node(self, node: Any) -> Decision:
        if isinstance(node, LicenseWithExceptionSymbol):
            full = _key(node)
            if full in self.deny:
                return Decision(Judgement.DENIED, (full,))
            if full in self.allow:
                return Decision(Judgement.ALLOWED)
            decision = self._symbol(node.license_symbol.key)
            return Decision(decision.judgement, (full,) if decision.culprits else ())
        if isinstance(node, LicenseSymbol):
            return self._symbol(node.key)
        licensing = _licensing()
        parts = [self._node(arg) for arg in node.args]
        if isinstance(node, licensing.OR):
            best = min(part.judgement for part in parts)
            if best is Judgement.ALLOWED:
                return Decision(Judgement.ALLOWED)
            return Decision(best, _merged(part.culprits for part in parts))
        worst = max(part.judgement for part in parts)
        return Decision(
            worst,
            _merged(part.culprits for part in parts if part.judgement is not Judgement.ALLOWED),
        )

    def _symbol(self, key: str) -> Decision:
        if key in self.deny:
            return Decision(Judgement.DENIED, (key,))
        if key in self.allow or not self.allow:
            return Decision(Judgement.ALLOWED)
        return Decision(Judgement.NOT_ALLOWED, (key,))


def _entry(value: str, where: str) -> str:
    try:
        parsed = parse(value)
    except InvalidLicense as exc:
        raise InvalidLicense(
            f"{where}: {exc.message}", hint="name one SPDX license id, such as MIT or Apache-2.0"
        ) from None
    if not isinstance(parsed.tree, LicenseSymbol | LicenseWithExceptionSymbol):
        raise InvalidLicense(
            f"{where}: '{value}' is an expression; list each license on its own",
            hint="write one id per entry, such as MIT or "
            "'GPL-2.0-only WITH Classpath-exception-2.0'",
        )
    return _key(parsed.tree)


def _symbols(node: Any) -> Iterable[Any]:
    if isinstance(node, LicenseSymbol | LicenseWithExceptionSymbol):
        yield node
        return
    for arg in node.args:
        yield from _symbols(arg)


def _key(symbol: Any) -> str:
    if isinstance(symbol, LicenseWithExceptionSymbol):
        return f"{symbol.license_symbol.key} WITH {symbol.exception_symbol.key}"
    return str(symbol.key)


def _merged(groups: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(key for group in groups for key in group))


def _reason(exc: Exception) -> str:
    text = str(exc).strip().rstrip(".")
    text = re.sub(r"\s+for token:.*$", "", text)
    return text or "it cannot be parsed"


def _shorten(text: str) -> str:
    return text if len(text) <= 80 else text[:79] + "…"
