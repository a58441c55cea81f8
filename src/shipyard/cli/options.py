"""Options shared by many commands, declared once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from shipyard.core.config import parse_duration

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
FileOption = Annotated[
    Path | None,
    typer.Option(
        "--file", "-f", help="The configuration file (default: shipyard.yaml, searched upwards)."
    ),
]


def _duration(value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as error:  # pydantic's custom error is a ValueError
        raise typer.BadParameter(
            f"{value!r} is not a duration; write 30s, 10m, 1h or 30d"
        ) from error


DurationOption = Annotated[
    timedelta | None,
    typer.Option(
        "--older-than",
        parser=_duration,
        metavar="DURATION",
        help="Retention to apply instead of pipeline.retention (e.g. 7d).",
    ),
]
