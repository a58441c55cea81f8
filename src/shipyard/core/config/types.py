"""Value types shared by every section of ``shipyard.yaml``, and the base class of its models.

``Duration``, ``Percentage`` and ``ProjectName`` parse the forms people write in YAML and say
which forms they accept when a value is wrong. This module must not import any section model.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, PlainSerializer

from shipyard.core.config.problems import config_value_error, describe_value


class StrictModel(BaseModel):
    """Base of every configuration model: immutable, and an unknown key is an error."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, validate_default=True
    )


DURATION_FORMS = "500ms, 30s, 10m, 1h, 1h30m or 2d (a bare number means seconds)"
"""The forms a duration may be written in, as shown in error messages."""

_DURATION = re.compile(
    r"(?:(?P<d>[0-9]{1,9})d)?(?:(?P<h>[0-9]{1,9})h)?(?:(?P<m>[0-9]{1,9})m)?"
    r"(?:(?P<s>[0-9]{1,12})s)?(?:(?P<ms>[0-9]{1,12})ms)?"
)
_DURATION_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))


def parse_duration(value: Any) -> timedelta:
    """Read a duration written as ``30s``, ``1h30m``, ``500ms`` or a bare number of seconds."""
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise config_value_error(
                "a duration cannot be negative", hint=f"write {DURATION_FORMS}"
            )
        return value
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise config_value_error(
            f"expected a duration, got {describe_value(value)}", hint=f"write {DURATION_FORMS}"
        )
    text = str(value).strip()
    if re.fullmatch(r"-?[0-9]+", text):
        if text.startswith("-"):
            raise config_value_error(
                f"a duration cannot be negative, got {text}", hint=f"write {DURATION_FORMS}"
            )
        return _checked_timedelta(int(text) * 1000, text)
    match = _DURATION.fullmatch(text)
    if not text or match is None or not any(match.groupdict().values()):
        hint = f"write {DURATION_FORMS}"
        if text.startswith("-"):
            message = f"a duration cannot be negative, got {text!r}"
        elif "." in text:
            message = f"{text!r} is not a duration: use whole numbers"
            hint = f"e.g. 1h30m rather than 1.5h; write {DURATION_FORMS}"
        else:
            message = f"{text!r} is not a duration" if text else "a duration cannot be empty"
        raise config_value_error(message, hint=hint)
    milliseconds = sum(
        int(amount) * factor
        for (unit, factor) in _DURATION_UNITS
        if (amount := match.group(unit)) is not None
    )
    return _checked_timedelta(milliseconds, text)


def format_duration(value: timedelta) -> str:
    """Write a duration in the shortest accepted form, such as ``1h30m`` or ``500ms``."""
    remaining = value // timedelta(milliseconds=1)
    if remaining <= 0:
        return "0s"
    parts = []
    for unit, factor in _DURATION_UNITS:
        amount, remaining = divmod(remaining, factor)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)


def _checked_timedelta(milliseconds: int, text: str) -> timedelta:
    try:
        return timedelta(milliseconds=milliseconds)
    except OverflowError:
        raise config_value_error(
            f"the duration {text!r} is too long",
            hint="write a duration of less than a million days",
        ) from None


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""A length of time written as ``500ms``, ``30s``, ``10m``, ``1h``, ``1h30m``, ``2d`` or seconds."""


PERCENTAGE_FORMS = "a percentage from 0% to 100% such as 20% or 0.5%, or a fraction from 0 to 1"
"""The forms a percentage may be written in, as shown in error messages."""


def parse_percentage(value: Any) -> float:
    """Read ``20%`` or ``0.5%`` or a fraction such as ``0.2``, and return the fraction."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise config_value_error(
            f"expected a percentage, got {describe_value(value)}", hint=f"write {PERCENTAGE_FORMS}"
        )
    text = str(value).strip()
    per_cent = text.endswith("%")
    number_text = text.removesuffix("%").strip()
    try:
        number = Decimal(number_text)
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        shown = repr(text) if isinstance(value, str) else text
        message = f"{shown} is not a percentage" if text else "a percentage cannot be empty"
        raise config_value_error(message, hint=f"write {PERCENTAGE_FORMS}")
    if per_cent:
        if not 0 <= number <= 100:
            raise config_value_error(
                f"{text} is outside 0% to 100%", hint=f"write {PERCENTAGE_FORMS}"
            )
        return float(number / 100)
    if not 0 <= number <= 1:
        hint = f"write {PERCENTAGE_FORMS}"
        if 1 < number <= 100:
            hint = f"write {number_text}% for {number_text} per cent; a bare number is a fraction"
        raise config_value_error(f"{text} is outside the fractions 0 to 1", hint=hint)
    return float(number)


def format_percentage(value: float) -> str:
    """Write a fraction as a percentage such as ``20%`` or ``0.5%``."""
    per_cent = Decimal(repr(value)) * 100
    return f"{per_cent.normalize():f}%"


Percentage = Annotated[
    float,
    BeforeValidator(parse_percentage),
    PlainSerializer(format_percentage, return_type=str, when_used="json"),
]
"""A share written as ``20%``, ``0.5%`` or a fraction from 0 to 1; the value is the fraction."""


PROJECT_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""What a project name looks like: letters, digits, '-', '_' and '.', 1 to 64 characters."""


def check_project_name(value: str) -> str:
    """Accept a project name of 1-64 letters, digits, '-', '_' or '.', starting alphanumeric."""
    if PROJECT_NAME_PATTERN.fullmatch(value):
        return value
    hint = "use 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit"
    if not value:
        raise config_value_error("the project name is empty", hint=hint)
    if len(value) > 64:
        raise config_value_error(f"the project name is {len(value)} characters long", hint=hint)
    bad = sorted({char for char in value if not re.fullmatch(r"[A-Za-z0-9._-]", char)})
    if bad:
        shown = ", ".join(repr(char) for char in bad)
        raise config_value_error(f"the project name {value!r} contains {shown}", hint=hint)
    raise config_value_error(
        f"the project name {value!r} must start with a letter or digit", hint=hint
    )


ProjectName = Annotated[str, AfterValidator(check_project_name)]
"""The name of a project: letters, digits, '-', '_' and '.', 1 to 64 characters."""


SIZE_FORMS = "a size such as 512KiB, 10MiB, 1GiB, 500KB or a bare number of bytes"
"""The forms a size may be written in, as shown in error messages."""

_SIZE = re.compile(r"(?P<number>[0-9]{1,15})\s*(?P<unit>[KMGT]i?B|B)?", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_size(value: Any) -> int:
    """Read a size written as ``10MiB``, ``500KB`` or a bare number of bytes."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise config_value_error(
            f"expected a size, got {describe_value(value)}", hint=f"write {SIZE_FORMS}"
        )
    if isinstance(value, int):
        if value < 0:
            raise config_value_error("a size cannot be negative", hint=f"write {SIZE_FORMS}")
        return value
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise config_value_error(f"{value!r} is not a size", hint=f"write {SIZE_FORMS}")
    unit = (match.group("unit") or "b").lower()
    return int(match.group("number")) * _SIZE_UNITS[unit]


def format_size(value: int) -> str:
    """Write a number of bytes in the largest binary unit that keeps it whole."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= factor and value % factor == 0:
            return f"{value // factor}{unit}"
    return f"{value}B"


ByteSize = Annotated[
    int,
    BeforeValidator(parse_size),
    PlainSerializer(format_size, return_type=str, when_used="json"),
]
"""A number of bytes written as ``10MiB``, ``500KB``, ``1GiB`` or a bare number."""
