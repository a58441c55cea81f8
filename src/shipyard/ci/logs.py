"""Job logs: one append-only file per job attempt, written masked, read back or followed live.

The store keeps a log's path, size and line offsets (``LogSummary``), never its lines. Nothing
here decides a job's outcome: a writer that hit its cap says so, and the executor fails the job.

Each line of output becomes one record, UTF-8, ending in a newline::

    2025-01-31T09:15:02.123Z o Collecting requests
    2025-01-31T09:15:02.125Z e+ the first 65536 characters of a very long line…
    2025-01-31T09:15:02.125Z e …and the rest of it
    2025-01-31T09:15:03.000Z s log limit of 10.0 MiB reached; the rest of the output was …

The timestamp is UTC with milliseconds; the stream is ``o`` (stdout), ``e`` (stderr) or ``s``
(Shipyard's own notes), with ``+`` when the line goes on in the next record of that stream;
the text is everything after the second space and never holds a newline (a ``\\r\\n`` ending
is stored as ``\\n``). Records are numbered from 0; the index holds the byte offset of
every 1000th record.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Literal

from shipyard.core.errors import HostError, NotFoundError
from shipyard.core.secrets import Masker, StreamMasker

__all__ = [
    "DEFAULT_LIMIT_BYTES",
    "INDEX_EVERY",
    "MAX_LINE_CHARS",
    "LogError",
    "LogFormatError",
    "LogLine",
    "LogStream",
    "LogSummary",
    "LogWriter",
    "follow_log",
    "read_log",
    "summarize_log",
]

DEFAULT_LIMIT_BYTES = 10 * 1024 * 1024
"""The cap of one job attempt's log unless the pipeline configures another."""

INDEX_EVERY = 1000
"""The index holds the byte offset of record 0, 1000, 2000…"""

MAX_LINE_CHARS = 64 * 1024
"""A longer line is stored as several records, each but the last marked as continued."""

LogStream = Literal["out", "err", "shipyard"]
"""Where a line came from: the job's stdout or stderr, or Shipyard itself."""

_CODES: dict[LogStream, str] = {"out": "o", "err": "e", "shipyard": "s"}
_STREAMS: dict[bytes, tuple[LogStream, bool]] = {
    code.encode() + suffix: (stream, suffix == b"+")
    for stream, code in _CODES.items()
    for suffix in (b"", b"+")
}
_SURROGATES = re.compile("[\ud800-\udfff]")
_READ_SIZE = 1 << 16


class LogError(HostError):
    """A log file cannot be created, written or read."""


class LogFormatError(LogError):
    """A log file holds a line that is not a log record."""


@dataclass(frozen=True)
class LogLine:
    """One record of a log: when it was written, from which stream, and its text."""

    time: datetime
    stream: LogStream
    text: str
    continued: bool = False


@dataclass(frozen=True)
class LogSummary:
    """What the store keeps about a log: where it is, its size, its records and their index."""

    path: Path
    size_bytes: int
    lines: int
    index: tuple[int, ...]
    limit_exceeded: bool = False


class _Stream:
    """The state of one of a job's output streams: its masker and its unfinished line."""

    __slots__ = ("masker", "partial")

    def __init__(self, masker: StreamMasker) -> None:
        self.masker = masker
        self.partial = ""


class LogWriter:
    """Appends a job attempt's output to its log file, masked, up to a size limit."""

    def __init__(
        self,
        path: Path,
        *,
        limit_bytes: int,
        masker: Masker | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if limit_bytes < 1:
            raise ValueError("limit_bytes must be positive")
        self.path = path
        self.limit_bytes = limit_bytes
        self.limit_exceeded = False
        self._masker = masker if masker is not None else Masker(())
        self._clock = clock if clock is not None else _utc_now
        self._streams: dict[Literal["out", "err"], _Stream] = {
            "out": _Stream(self._masker.stream()),
            "err": _Stream(self._masker.stream()),
        }
        self._lock = threading.Lock()
        self._closed = False
        try:
            _make_private_dirs(path.parent)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
            self._fd = os.open(path, flags, 0o600)
        except OSError as exc:
            raise LogError(
                f"cannot open the log {path}: {exc.strerror}",
                hint="make the state directory writable",
            ) from exc
        try:
            self._size, self._lines, self._index, torn = _scan(path)
            if torn:
                # A writer that died mid-record left it without its newline: end it.
                self._write_bytes(b"\n")
                self._size += 1
                self._lines += 1
        except LogError:
            os.close(self._fd)
            raise

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def write(self, text: str, stream: Literal["out", "err"]) -> None:
        """Add a piece of a job's output, as read from its pipe; complete lines are stored."""
        with self._lock:
            self._check_open()
            if self.limit_exceeded or not text:
                return
            state = self._streams[stream]
            state.partial += state.masker.feed(_clean(text))
            *lines, state.partial = state.partial.split("\n")
            records = [record for line in lines for record in _records(stream, line)]
            while len(state.partial) > MAX_LINE_CHARS:
                records.append((_CODES[stream] + "+", state.partial[:MAX_LINE_CHARS]))
                state.partial = state.partial[MAX_LINE_CHARS:]
            self._append(records)

    def note(self, text: str) -> None:
        """Add Shipyard's own line(s); these are kept even after the limit is reached."""
        with self._lock:
            self._check_open()
            masked = self._masker.mask(_clean(text).removesuffix("\n"))
            records = [r for line in masked.split("\n") for r in _records("shipyard", line)]
            self._append(records, exempt=True)

    def flush(self) -> None:
        """Store unfinished lines as continued records, except what may begin a secret."""
        with self._lock:
            self._check_open()
            if self.limit_exceeded:
                return
            records = []
            for name, state in self._streams.items():
                if state.partial:
                    records.append((_CODES[name] + "+", state.partial))
                    state.partial = ""
            self._append(records)

    def close(self) -> LogSummary:
        """Store the rest of every stream, close the file and return the summary."""
        with self._lock:
            if self._closed:
                return self._summary()
            try:
                records: list[tuple[str, str]] = []
                for name, state in self._streams.items():
                    rest = state.partial + state.masker.flush()
                    state.partial = ""
                    if rest and not self.limit_exceeded:
                        lines = rest.split("\n")
                        if not lines[-1]:
                            lines.pop()
                        for line in lines:
                            records.extend(_records(name, line))
                self._append(records)
            finally:
                self._closed = True
                os.close(self._fd)
            return self._summary()

    def summary(self) -> LogSummary:
        """Where the log is, its size, its records and index so far."""
        with self._lock:
            return self._summary()

    def _summary(self) -> LogSummary:
        return LogSummary(
            path=self.path,
            size_bytes=self._size,
            lines=self._lines,
            index=tuple(self._index),
            limit_exceeded=self.limit_exceeded,
        )

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"the log writer of {self.path} is closed")

    def _append(self, records: Sequence[tuple[str, str]], *, exempt: bool = False) -> None:
        """Write records in one go; past the limit, stop with a note saying so."""
        if not records:
            return
        stamp = _stamp(self._clock())
        chunks: list[bytes] = []
        size, lines, index = self._size, self._lines, list(self._index)
        for code, text in records:
            data = f"{stamp} {code} {text}\n".encode()
            if not exempt and size + len(data) > self.limit_bytes:
                self.limit_exceeded = True
                message = (
                    f"log limit of {_human_size(self.limit_bytes)} reached; "
                    "the rest of the output was discarded and the job fails"
                )
                data = f"{stamp} s {message}\n".encode()
            if lines % INDEX_EVERY == 0:
                index.append(size)
            chunks.append(data)
            size += len(data)
            lines += 1
            if self.limit_exceeded and not exempt:
                break
        self._write_bytes(b"".join(chunks))
        self._size, self._lines, self._index = size, lines, index

    def _write_bytes(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            raise LogError(
                f"cannot write the log {self.path}: {exc.strerror}",
                hint="free some disk space, or lower the log limit",
            ) from exc


def read_log(
    path: Path, *, start_line: int = 0, index: Sequence[int] | None = None
) -> Iterator[LogLine]:
    """The records of a log from ``start_line`` on; ``index`` (from its summary) skips ahead."""
    if start_line < 0:
        raise ValueError("start_line must not be negative")
    if not path.is_file():
        raise NotFoundError(f"there is no log at {path}")
    return _read(path, start_line, index or ())


def follow_log(
    path: Path,
    *,
    finished: Callable[[], bool],
    poll_interval: float = 0.1,
    start_line: int = 0,
) -> Iterator[LogLine]:
    """The records of a log as another process appends them, until ``finished()`` and read out.

    The file may not exist yet. While the writer runs only complete records are yielded; a
    torn last record is yielded once ``finished()`` holds.
    """
    if start_line < 0:
        raise ValueError("start_line must not be negative")
    return _follow(path, finished, poll_interval, start_line)


def _read(path: Path, start_line: int, index: Sequence[int]) -> Iterator[LogLine]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise LogError(f"cannot read the log {path}: {exc.strerror}") from exc
    with handle:
        number = 0
        if index and start_line >= INDEX_EVERY:
            block = min(start_line // INDEX_EVERY, len(index) - 1)
            handle.seek(index[block])
            number = block * INDEX_EVERY
        for raw in handle:
            if number >= start_line:
                yield _parse(raw.removesuffix(b"\n"), path, number)
            number += 1


def _follow(
    path: Path, finished: Callable[[], bool], poll_interval: float, start_line: int
) -> Iterator[LogLine]:
    handle = _open_when_there(path, finished, poll_interval)
    if handle is None:
        return
    with handle:
        number = 0
        pending = b""
        done = False
        while True:
            chunk = handle.read(_READ_SIZE)
            if chunk:
                *complete, pending = (pending + chunk).split(b"\n")
                for raw in complete:
                    if number >= start_line:
                        yield _parse(raw, path, number)
                    number += 1
                continue
            if done:
                if pending and number >= start_line:
                    yield _parse(pending, path, number)
                return
            # Once finished() holds nothing more is written: read to the end one last time.
            done = finished()
            if not done:
                time.sleep(poll_interval)


def _open_when_there(
    path: Path, finished: Callable[[], bool], poll_interval: float
) -> BinaryIO | None:
    """The log opened for reading once it exists; None if the writer finished without it."""
    while True:
        handle = _open_if_there(path)
        if handle is not None:
            return handle
        if finished():
            # It may have been created between the two checks.
            return _open_if_there(path)
        time.sleep(poll_interval)


def _open_if_there(path: Path) -> BinaryIO | None:
    try:
        return path.open("rb", buffering=0)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LogError(f"cannot read the log {path}: {exc.strerror}") from exc


def _parse(raw: bytes, path: Path, number: int) -> LogLine:
    parts = raw.split(b" ", 2)
    kind = _STREAMS.get(parts[1]) if len(parts) == 3 else None
    try:
        when = datetime.fromisoformat(parts[0].decode("ascii")) if kind else None
    except (UnicodeDecodeError, ValueError):
        when = None
    if kind is None or when is None or when.tzinfo is None:
        raise LogFormatError(
            f"{path}: record {number} is not a log record",
            hint="the file was changed by something other than Shipyard",
        )
    stream, continued = kind
    return LogLine(when, stream, parts[2].decode("utf-8", "replace"), continued)


def summarize_log(path: Path) -> LogSummary:
    """Size, record count and index of a complete log file (such as a replayed one)."""
    size, lines, index, _torn = _scan(path)
    return LogSummary(path=path, size_bytes=size, lines=lines, index=tuple(index))


def _records(stream: LogStream, line: str) -> list[tuple[str, str]]:
    """The records of one line: pieces of at most MAX_LINE_CHARS, all but the last continued."""
    line = line.removesuffix("\r")
    code = _CODES[stream]
    pieces = [line[i : i + MAX_LINE_CHARS] for i in range(0, len(line), MAX_LINE_CHARS)] or [""]
    records = [(code + "+", piece) for piece in pieces[:-1]]
    records.append((code, pieces[-1]))
    return records


def _scan(path: Path) -> tuple[int, int, list[int], bool]:
    """Size, record count, index and whether the last record is torn, of an existing log."""
    size, lines, index = 0, 0, []
    at_record_start = True
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_READ_SIZE):
                position = 0
                while position < len(chunk):
                    if at_record_start and lines % INDEX_EVERY == 0:
                        index.append(size + position)
                    newline = chunk.find(b"\n", position)
                    if newline == -1:
                        at_record_start = False
                        break
                    lines += 1
                    at_record_start = True
                    position = newline + 1
                size += len(chunk)
    except OSError as exc:
        raise LogError(f"cannot read the log {path}: {exc.strerror}") from exc
    return size, lines, index, not at_record_start


def _make_private_dirs(folder: Path) -> None:
    """Create ``folder`` and its missing parents, owner-only."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)


def _clean(text: str) -> str:
    """Text that encodes as UTF-8: lone surrogates become the replacement character."""
    return _SURROGATES.sub("\ufffd", text)


def _stamp(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _human_size(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"
