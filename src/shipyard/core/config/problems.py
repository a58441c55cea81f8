"""What can be wrong with a configuration file, written so a person can fix it.

Holds the ``ConfigProblem`` record, the ``ConfigInvalid`` error that carries a list of them,
and small wording helpers shared by the YAML reader, the validators and the explainer. It must
not read files, parse YAML or validate models.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic_core import PydanticCustomError

from shipyard.core.errors import ConfigError

KeyPath = tuple[str | int, ...]
"""Where a value sits in a document: mapping keys and list indices from the top."""

CUSTOM_ERROR_TYPE = "shipyard_config"
"""The pydantic error type of problems raised with :func:`config_value_error`."""

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_<>-]+")
_LONGEST_SHOWN = 40


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in a configuration file: where it is, what is wrong, how to fix it."""

    file: str
    line: int | None
    column: int | None
    path: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class ConfigInvalid(ConfigError):
    """The configuration file has problems; its message lists them, one line each, by line."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        ordered = sorted(_unique(problems), key=_reading_order)
        if not ordered:
            raise ValueError("ConfigInvalid needs at least one problem")
        super().__init__("\n".join(str(problem) for problem in ordered))
        self.problems: list[ConfigProblem] = ordered


def format_path(path: Sequence[str | int]) -> str:
    """Write a key path as ``a.b[1].c``; keys that are not plain names are quoted."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f'["{part}"]'
    return text


def describe_value(value: Any) -> str:
    """Say what a value is, for 'expected X, got Y' messages: ``the string 'abc'``."""
    if value is None:
        return "an empty value (null)"
    if isinstance(value, bool):
        return f"the boolean {'true' if value else 'false'}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= _LONGEST_SHOWN else value[: _LONGEST_SHOWN - 1] + "…"
        return f"the string {shown!r}" if value else "an empty string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a value of type {type(value).__name__}"


def closest_match(word: str, choices: Iterable[str]) -> str | None:
    """The choice most like ``word`` (ignoring case), or None when nothing is close enough."""
    by_lower = {option.lower(): option for option in sorted(set(choices))}
    if word.lower() in by_lower:
        return by_lower[word.lower()]
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """Return ``did you mean 'x'?`` for the choice closest to ``word``, or None if none is close."""
    match = closest_match(word, choices)
    return f"did you mean '{match}'?" if match is not None and match != word else None


def config_value_error(
    message: str, *, hint: str | None = None, at: Sequence[str | int] = ()
) -> PydanticCustomError:
    """Build the error a validator raises so the loader reports ``message`` and ``hint``.

    ``at`` is a key path relative to the value being validated: a model validator that checks a
    cross-reference passes the path of the offending key so the problem points at its line.
    """
    # The text travels in the context, not the template, so braces in it are never formatted.
    return PydanticCustomError(
        CUSTOM_ERROR_TYPE, "{message}", {"hint": hint, "at": tuple(at), "message": message}
    )


def _reading_order(problem: ConfigProblem) -> tuple[int, int, str, str]:
    return (problem.line or 0, problem.column or 0, problem.path, problem.message)


def _unique(problems: Iterable[ConfigProblem]) -> list[ConfigProblem]:
    seen: set[ConfigProblem] = set()
    result: list[ConfigProblem] = []
    for problem in problems:
        if problem not in seen:
            seen.add(problem)
            result.append(problem)
    return result
