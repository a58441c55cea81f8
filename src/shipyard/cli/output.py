"""How commands print: Rich on a terminal, plain lines in CI or a pipe, JSON with ``--json``.

Commands hand this module finished values (rows, messages, JSON-ready data); it decides the
form. It never decides exit codes and never formats domain objects itself. Rich is loaded only
when something is drawn with it: plain and JSON output never pay for importing it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console


def plain_output(stream: TextIO) -> bool:
    """Plain lines instead of Rich: when ``CI`` is set, or the stream is not a terminal."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return True
    return not stream.isatty()


@dataclass
class Output:
    """The printing side of one command invocation."""

    json_mode: bool = False
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)

    def __post_init__(self) -> None:
        self.plain = plain_output(self.stdout)

    @cached_property
    def console(self) -> Console:
        """Rich on stdout (a terminal, unless ``plain``)."""
        return _console(self.stdout, plain=self.plain)

    @cached_property
    def err(self) -> Console:
        """Rich on stderr."""
        return _console(self.stderr, plain=self.plain_stderr)

    def json(self, value: Any) -> None:
        """Print one JSON document (the only thing printed on stdout in ``--json`` mode)."""
        self.stdout.write(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")
        self.stdout.flush()

    def line(self, text: str = "", *, style: str | None = None) -> None:
        """A line of human output; suppressed in ``--json`` mode."""
        if self.json_mode:
            return
        if self.plain:
            self.stdout.write(f"{text}\n")
            self.stdout.flush()
            return
        from rich.markup import escape

        self.console.print(escape(text) if style is None else f"[{style}]{escape(text)}[/]")

    def success(self, text: str) -> None:
        """A line saying something worked."""
        self.line(text, style="green")

    def warn(self, text: str) -> None:
        """A warning, on stderr so that it never mixes with data on stdout."""
        if self.plain_stderr:
            self.stderr.write(f"warning: {text}\n")
            self.stderr.flush()
            return
        from rich.markup import escape

        self.err.print(f"[yellow]warning:[/] {escape(text)}")

    @property
    def plain_stderr(self) -> bool:
        """Whether stderr gets plain lines."""
        return plain_output(self.stderr)

    def error(self, message: str, hint: str | None = None) -> None:
        """An error for a person: what went wrong and how to fix it, on stderr."""
        if self.plain_stderr:
            self.stderr.write(f"error: {message}\n")
            if hint:
                self.stderr.write(f"  hint: {hint}\n")
            self.stderr.flush()
            return
        from rich.markup import escape

        self.err.print(f"[bold red]error:[/] {escape(message)}")
        if hint:
            self.err.print(f"  [dim]hint:[/] {escape(hint)}")

    def table(
        self, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None
    ) -> None:
        """A table: boxed with Rich on a terminal, aligned columns in plain mode."""
        if self.json_mode:
            return
        cells = [["" if v is None else str(v) for v in row] for row in rows]
        if self.plain:
            if title:
                self.stdout.write(f"{title}\n")
            widths = [len(c) for c in columns]
            for row in cells:
                widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]
            header = "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))
            self.stdout.write(header.rstrip() + "\n")
            for row in cells:
                text = "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True))
                self.stdout.write(text.rstrip() + "\n")
            self.stdout.flush()
            return
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column)
        for row in cells:
            table.add_row(*(escape(v) for v in row))
        self.console.print(table)


def _console(stream: TextIO, *, plain: bool) -> Console:
    from rich.console import Console

    return Console(
        file=stream,
        highlight=False,
        soft_wrap=True,
        force_terminal=False if plain else None,
        no_color=plain,
    )
