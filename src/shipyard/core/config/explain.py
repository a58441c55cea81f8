"""Turn pydantic validation errors into problems that point at a line and say how to fix them.

Maps each error's location to a key path in the YAML document and to the line and column
recorded for it, and rewrites pydantic's wording as "expected X, got Y" with a hint. It must
not parse YAML, and it must never show pydantic's documentation links or internal type names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from shipyard.core.config.problems import (
    CUSTOM_ERROR_TYPE,
    ConfigProblem,
    KeyPath,
    closest_match,
    describe_value,
    did_you_mean,
    format_path,
)
from shipyard.core.config.schema import allowed_keys
from shipyard.core.config.yamlsafe import Position, YamlDocument

_MISSING = object()
_MOST_KEYS_LISTED = 12

_EXPECTED: dict[str, str] = {
    "string_type": "a string",
    "string_unicode": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "decimal_type": "a number",
    "decimal_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dataclass_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "frozen_set_type": "a list",
    "none_required": "an empty value (null)",
    "date_type": "a date like 2027-01-31",
    "date_parsing": "a date like 2027-01-31",
    "date_from_datetime_parsing": "a date like 2027-01-31",
    "datetime_type": "a date and time like 2027-01-31T12:00:00Z",
    "datetime_parsing": "a date and time like 2027-01-31T12:00:00Z",
    "datetime_from_date_parsing": "a date and time like 2027-01-31T12:00:00Z",
    "url_type": "a URL like https://example.com/path",
    "url_parsing": "a URL like https://example.com/path",
    "url_scheme": "a URL like https://example.com/path",
}

_SHOULD = re.compile(r"^(?:Input|Value|String|List|Dictionary|Tuple|Set|Data) should ")


@dataclass(frozen=True)
class _Issue:
    """One pydantic error, placed in the document."""

    error: ErrorDetails
    path: KeyPath
    branch_at: KeyPath | None


def explain_validation_error(
    error: ValidationError, document: YamlDocument, model: type[BaseModel]
) -> list[ConfigProblem]:
    """Describe every error in ``error`` as a problem located in ``document``."""
    issues = [_place(details, document.data) for details in error.errors(include_url=False)]
    # A misspelt required key is reported once, as the unknown key with its suggestion.
    suggested = {
        (*issue.path[:-1], match)
        for issue in issues
        if issue.error["type"] == "extra_forbidden" and issue.path
        if (match := closest_match(str(issue.path[-1]), _siblings(issue, model, document.data)))
        is not None
    }
    issues = [i for i in issues if not (i.error["type"] == "missing" and i.path in suggested)]
    problems: list[ConfigProblem] = []
    by_branch: dict[KeyPath, list[_Issue]] = {}
    for issue in issues:
        if issue.branch_at is None:
            problems.append(_problem(issue, document, model))
        else:
            by_branch.setdefault(issue.branch_at, []).append(issue)
    for branch_at, group in by_branch.items():
        problems.extend(_union_problems(branch_at, group, document, model))
    return problems


def _siblings(issue: _Issue, model: type[BaseModel], data: dict[str, Any]) -> list[str]:
    """The keys allowed beside the unknown key of an extra_forbidden error and not yet used."""
    present = _value_at(data, issue.path[:-1])
    used = present if isinstance(present, dict) else {}
    return [key for key in allowed_keys(model, issue.error["loc"][:-1]) if key not in used]


def _place(details: ErrorDetails, data: dict[str, Any]) -> _Issue:
    """Follow the error's location through the data; parts that are not there are union tags."""
    path: list[str | int] = []
    branch_at: KeyPath | None = None
    node: Any = data
    loc = details["loc"]
    for index, part in enumerate(loc):
        child = _child(node, part)
        if child is not _MISSING:
            node = child
        elif details["type"] == "missing" and index == len(loc) - 1:
            node = _MISSING
        else:
            if branch_at is None:
                branch_at = tuple(path)
            continue
        path.append(part)
    at = details.get("ctx", {}).get("at") if details["type"] == CUSTOM_ERROR_TYPE else None
    if at:
        path.extend(at)
    return _Issue(details, tuple(path), branch_at)


def _position(issue: _Issue, document: YamlDocument) -> Position:
    kind = issue.error["type"]
    if kind == "extra_forbidden":
        return document.locate(issue.path).key
    if kind == "missing":
        return document.locate(issue.path[:-1]).key
    value = _value_at(document.data, issue.path)
    if issue.path not in document.locations or value is None or isinstance(value, dict | list):
        # A whole mapping or list, an empty value, or a key that is not there: point at the key.
        return document.locate(issue.path).key
    return document.locate(issue.path).value


def _value_at(data: dict[str, Any], path: KeyPath) -> Any:
    node: Any = data
    for part in path:
        node = _child(node, part)
    return node


def _child(node: Any, part: str | int) -> Any:
    """The value under ``part`` in a mapping or list, or _MISSING."""
    if isinstance(node, dict) and isinstance(part, str):
        return node.get(part, _MISSING)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return _MISSING


def _problem(
    issue: _Issue,
    document: YamlDocument,
    model: type[BaseModel],
    message: str | None = None,
    hint: str | None = None,
) -> ConfigProblem:
    if message is None:
        message, hint = _describe(issue, model, document.data)
    where = _position(issue, document)
    return ConfigProblem(
        document.source, where.line, where.column, format_path(issue.path), message, hint
    )


def _union_problems(
    branch_at: KeyPath, group: list[_Issue], document: YamlDocument, model: type[BaseModel]
) -> list[ConfigProblem]:
    """Report a union's failure once: the branch that fits the input, or what was expected."""
    mismatches = [i for i in group if i.path == branch_at and _expected(i.error) is not None]
    rest = [i for i in group if i not in mismatches]
    if rest:
        return [_problem(issue, document, model) for issue in rest]
    expected = list(dict.fromkeys(_expected(issue.error) or "" for issue in mismatches))
    phrase = expected[0] if len(expected) == 1 else ", ".join(expected[:-1]) + " or " + expected[-1]
    first = mismatches[0]
    message = f"expected {phrase}, got {describe_value(first.error['input'])}"
    return [_problem(first, document, model, message, _type_hint(first.error, first.path))]


def _expected(error: ErrorDetails) -> str | None:
    """What a type-mismatch error expected, in words; None for any other kind of error."""
    kind = error["type"]
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    if kind in ("literal_error", "enum"):
        return f"one of {error.get('ctx', {}).get('expected', '?')}"
    return None


def _describe(
    issue: _Issue, model: type[BaseModel], data: dict[str, Any]
) -> tuple[str, str | None]:
    """The message and hint for one error."""
    error = issue.error
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx", {}))
    value = error["input"]
    got = describe_value(value)
    if kind == CUSTOM_ERROR_TYPE:
        return error["msg"], ctx.get("hint")
    if kind == "missing":
        key = issue.path[-1] if issue.path else "?"
        parent = format_path(issue.path[:-1])
        where = f"under '{parent}'" if parent else "at the top level"
        return "this required key is missing", f"add '{key}:' {where}"
    if kind == "extra_forbidden":
        key = str(issue.path[-1]) if issue.path else "?"
        hint = did_you_mean(key, _siblings(issue, model, data))
        choices = allowed_keys(model, error["loc"][:-1])
        if hint is None and choices:
            shown = ", ".join(sorted(choices)[:_MOST_KEYS_LISTED])
            more = ", …" if len(choices) > _MOST_KEYS_LISTED else ""
            hint = f"remove it; the keys allowed here are: {shown}{more}"
        return f"unknown key '{key}'", hint or "remove it"
    if kind in ("literal_error", "enum"):
        expected_text = str(ctx.get("expected", ""))
        choices = re.findall(r"'([^']*)'", expected_text)
        hint = did_you_mean(value, choices) if isinstance(value, str) else None
        return f"expected one of {expected_text}, got {got}", hint
    if kind == "union_tag_invalid":
        tags = str(ctx.get("expected_tags", ""))
        tag = str(ctx.get("tag", ""))
        hint = did_you_mean(tag, re.findall(r"'([^']*)'", tags))
        return f"unknown kind '{tag}': expected one of {tags}", hint
    if kind in ("is_instance_of", "is_subclass_of"):
        return f"{got} is not accepted here", None  # the expected class is internal
    if kind == "union_tag_not_found":
        return f"the key {ctx.get('discriminator', '')} is missing", "add it to say which kind"
    expected = _expected(error)
    if expected is not None:
        return f"expected {expected}, got {got}", _type_hint(error, issue.path)
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message.removeprefix(prefix), None
    if _SHOULD.match(message):
        message = _SHOULD.sub("must ", message)
        if not isinstance(value, dict | list):
            message += f", got {got}"
        return message, None
    return message[:1].lower() + message[1:], None


def _type_hint(error: ErrorDetails, path: Sequence[str | int]) -> str | None:
    """A hint for the usual ways of writing the wrong type in YAML."""
    expected = _EXPECTED.get(error["type"], "")
    value = error["input"]
    key = str(path[-1]) if path and isinstance(path[-1], str) else None
    if expected == "a string" and isinstance(value, bool | int | float):
        return "put the value in quotes to keep it as text"
    if expected == "a mapping" and value is None and key:
        return f"write the keys of '{key}' on the lines below it, indented, or remove '{key}'"
    if expected == "a mapping" and isinstance(value, list):
        return "write 'key: value' lines, without '- ' in front"
    if expected == "a list" and value is None:
        return "write [] for an empty list, or remove the key"
    if expected == "a list" and not isinstance(value, list | dict):
        return "write a list: [a, b] or one '- item' per line"
    if expected == "true or false":
        return "write true or false"
    return None
