"""Options shared by many commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
FileOption = Annotated[
    Path | None,
    typer.Option(
        "--file", "-f", help="The configuration file (default: shipyard.yaml, searched upwards)."
    ),
]
