"""Job logs on real files: the record format, masking, the cap, the index, and live following."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shipyard.ci.logs import (
    DEFAULT_LIMIT_BYTES,
    INDEX_EVERY,
    MAX_LINE_CHARS,
    LogFormatError,
    LogLine,
    LogWriter,
    follow_log,
    read_log,
)
from shipyard.core.errors import NotFoundError
from shipyard.core.secrets import Masker

PATIENCE = 30.0  # seconds; only ever an upper bound for polling
SECRET = "pypi-AgEIcHlwaS5vcmcCJDk3ZjE1ZDQ2"
MOMENT = datetime(2025, 1, 31, 9, 15, 2, 123456, tzinfo=UTC)


def fixed_clock() -> datetime:
    """A clock that always says MOMENT."""
    return MOMENT


def wait_for(condition: Callable[[], bool], timeout: float = PATIENCE) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; return whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def texts(path: Path) -> list[tuple[str, str]]:
    """(stream, text) of every record of a log."""
    return [(line.stream, line.text) for line in read_log(path)]


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    """Where a test's log goes: folders that do not exist yet."""
    return tmp_path / "state" / "logs" / "run-1" / "test" / "attempt-1.log"


def test_lines_become_timestamped_records(log_path: Path) -> None:
    writer = LogWriter(log_path, limit_bytes=DEFAULT_LIMIT_BYTES, clock=fixed_clock)
    writer.write("Collecting req", "out")
    writer.write("uests\nwarning: ", "out")
    writer.write("deprecated\n", "err")
    writer.write("Installing\n", "out")
    writer.note("exit code 0")
    summary = writer.close()
    stamp = "2025-01-31T09:15:02.123Z"
    expected = (
        f"{stamp} o Collecting requests\n"
        f"{stamp} e deprecated\n"
        f"{stamp} o warning: Installing\n"
        f"{stamp} s exit code 0\n"
    )
    assert log_path.read_text() == expected
    assert summary.path == log_path
    assert summary.size_bytes == len(expected.encode())
    assert summary.lines == 4
    assert summary.index == (0,)
    assert not summary.limit_exceeded
    assert list(read_log(log_path)) == [
        LogLine(MOMENT.replace(microsecond=123000), "out", "Collecting requests"),
        LogLine(MOMENT.replace(microsecond=123000), "err", "deprecated"),
        LogLine(MOMENT.replace(microsecond=123000), "out", "warning: Installing"),
        LogLine(MOMENT.replace(microsecond=123000), "shipyard", "exit code 0"),
    ]


def test_a_log_and_its_folders_are_private(log_path: Path) -> None:
    LogWriter(log_path, limit_bytes=1000).close()
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600
    for folder in (log_path.parent, log_path.parent.parent, log_path.parent.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_the_real_clock_writes_utc(log_path: Path) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    with LogWriter(log_path, limit_bytes=1000) as writer:
        writer.write("now\n", "out")
    (line,) = read_log(log_path)
    assert line.time.tzinfo is not None and line.time.utcoffset() is not None
    assert line.time >= before


def test_a_secret_split_across_writes_is_masked(log_path: Path) -> None:
    writer = LogWriter(log_path, limit_bytes=100_000, masker=Masker([SECRET]))
    writer.write(f"token: {SECRET[:9]}", "out")
    writer.write("progress on stderr\n", "err")
    writer.write(f"{SECRET[9:20]}", "out")
    writer.write(f"{SECRET[20:]} uploaded\nrepr: '{SECRET[:3]}", "out")
    writer.write(f"{SECRET[3:]}'\n", "out")
    writer.note(f"the command was: twine upload -p {SECRET}")
    writer.write(f"tail without newline {SECRET}", "err")
    writer.close()
    content = log_path.read_text()
    assert SECRET[:8] not in content
    assert texts(log_path) == [
        ("err", "progress on stderr"),
        ("out", "token: *** uploaded"),
        ("out", "repr: '***'"),
        ("shipyard", "the command was: twine upload -p ***"),
        ("err", "tail without newline ***"),
    ]


def test_a_multi_line_secret_is_masked_across_lines(log_path: Path) -> None:
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END KEY-----"
    writer = LogWriter(log_path, limit_bytes=100_000, masker=Masker([key]))
    for chunk in (f"key follows\n{key}\n", "and one line: ", key.split("\n")[1], "\n"):
        writer.write(chunk, "out")
    writer.close()
    assert texts(log_path) == [
        ("out", "key follows"),
        ("out", "***"),
        ("out", "and one line: ***"),
    ]


def test_flush_stores_unfinished_lines_but_not_the_start_of_a_secret(log_path: Path) -> None:
    writer = LogWriter(log_path, limit_bytes=100_000, masker=Masker([SECRET]))
    writer.write("Password for upload: ", "out")
    writer.write("uploading with pypi-AgEI", "err")
    writer.flush()
    assert [(line.stream, line.text, line.continued) for line in read_log(log_path)] == [
        ("out", "Password for upload: ", True),
        ("err", "uploading with ", True),
    ]
    writer.write(SECRET.removeprefix("pypi-AgEI") + "\n", "err")
    writer.write("accepted\n", "out")
    writer.close()
    assert SECRET[:6] not in log_path.read_text()
    assert [(line.stream, line.text, line.continued) for line in read_log(log_path)] == [
        ("out", "Password for upload: ", True),
        ("err", "uploading with ", True),
        ("err", "***", False),
        ("out", "accepted", False),
    ]


def test_long_lines_are_split_into_continued_records(log_path: Path) -> None:
    long_line = "".join(chr(ord("a") + i % 26) for i in range(3 * MAX_LINE_CHARS + 123))
    writer = LogWriter(log_path, limit_bytes=DEFAULT_LIMIT_BYTES)
    for start in range(0, len(long_line), 10_000):
        writer.write(long_line[start : start + 10_000], "out")
    # Without a newline yet, the full pieces are already stored.
    assert writer.summary().lines == 3
    writer.write("\n" + long_line + "\n", "out")
    writer.close()
    records = list(read_log(log_path))
    assert [len(line.text) for line in records] == [MAX_LINE_CHARS] * 3 + [123] + [
        MAX_LINE_CHARS
    ] * 3 + [123]
    assert [line.continued for line in records] == [True, True, True, False] * 2
    assert "".join(line.text for line in records[:4]) == long_line
    assert "".join(line.text for line in records[4:]) == long_line


def test_any_text_survives_a_round_trip(log_path: Path) -> None:
    binary = bytes(range(256)).decode("utf-8", errors="replace")
    weird = "tabs\tnul\x00 bell\x07 vt\x0b ff\x0c fs\x1c nel\x85 ls\u2028 ps\u2029 bidi\u202e end"
    writer = LogWriter(log_path, limit_bytes=100_000)
    writer.write(binary.replace("\n", "") + "\n", "out")
    writer.write(weird + "\n", "err")
    writer.write("windows line\r\nbare\rreturn\n", "out")
    writer.write("lone \udcff surrogate\n", "out")
    writer.write("   spaced   out   \n\n", "out")
    writer.close()
    assert texts(log_path) == [
        ("out", binary.replace("\n", "")),
        ("err", weird),
        ("out", "windows line"),
        ("out", "bare\rreturn"),
        ("out", "lone \ufffd surrogate"),
        ("out", "   spaced   out   "),
        ("out", ""),
    ]
    assert "\ufffd" in binary


def test_the_cap_ends_the_log_with_a_note_and_flags_it(log_path: Path) -> None:
    limit = 10_000
    writer = LogWriter(log_path, limit_bytes=limit)
    line = "x" * 60 + "\n"
    for _ in range(100):
        writer.write(line * 3, "out")
    assert writer.limit_exceeded
    size_at_limit = log_path.stat().st_size
    writer.write(line * 50, "out")
    writer.write("half a line", "err")
    writer.flush()
    assert log_path.stat().st_size == size_at_limit
    writer.note("the job failed: log limit")
    summary = writer.close()

    records = list(read_log(log_path))
    note = "log limit of 9.8 KiB reached; the rest of the output was discarded and the job fails"
    assert [line.text for line in records[-2:]] == [note, "the job failed: log limit"]
    assert [line.stream for line in records[-2:]] == ["shipyard", "shipyard"]
    assert all(line.text == "x" * 60 for line in records[:-2])
    assert summary.limit_exceeded
    assert summary.size_bytes == log_path.stat().st_size
    assert summary.lines == len(records)
    limit_record = len(records[-2].text) + 30
    assert size_at_limit <= limit + limit_record


def test_the_default_cap_is_ten_mebibytes(log_path: Path) -> None:
    writer = LogWriter(log_path, limit_bytes=DEFAULT_LIMIT_BYTES)
    chunk = ("y" * 1000 + "\n") * 1000
    while not writer.limit_exceeded:
        writer.write(chunk, "out")
    writer.close()
    with log_path.open("rb") as handle:
        handle.seek(-200, os.SEEK_END)
        tail = handle.read().decode()
    assert tail.endswith(
        " s log limit of 10.0 MiB reached; the rest of the output was discarded and the job fails\n"
    )
    assert log_path.stat().st_size <= DEFAULT_LIMIT_BYTES + 200


def test_the_index_finds_every_thousandth_record(log_path: Path) -> None:
    writer = LogWriter(log_path, limit_bytes=DEFAULT_LIMIT_BYTES)
    for number in range(5000):
        writer.write(f"line {number} {'é' * (number % 7)}\n", "out" if number % 3 else "err")
    summary = writer.close()
    assert summary.lines == 5000
    assert len(summary.index) == 5
    data = log_path.read_bytes()
    for block, offset in enumerate(summary.index):
        assert offset == 0 or data[offset - 1 : offset] == b"\n"
        record = data[offset:].split(b"\n", 1)[0]
        assert f" line {block * INDEX_EVERY} ".encode() in record
    every = list(read_log(log_path))
    assert [line.text.split(" ")[1] for line in every] == [str(n) for n in range(5000)]
    for start in (0, 1, 999, 1000, 1001, 2500, 3999, 4000, 4999, 5000, 7000):
        seeked = list(read_log(log_path, start_line=start, index=summary.index))
        assert seeked == every[start:], start
        assert list(read_log(log_path, start_line=start)) == every[start:], start


def test_a_second_writer_appends_and_keeps_counting(log_path: Path) -> None:
    with LogWriter(log_path, limit_bytes=DEFAULT_LIMIT_BYTES) as first:
        first.write("".join(f"first {n}\n" for n in range(1500)), "out")
    second = LogWriter(log_path, limit_bytes=DEFAULT_LIMIT_BYTES)
    second.write("".join(f"second {n}\n" for n in range(700)), "out")
    summary = second.close()
    assert summary.lines == 2200
    assert summary.size_bytes == log_path.stat().st_size
    assert len(summary.index) == 3
    assert [line.text for line in read_log(log_path, start_line=2000, index=summary.index)] == [
        f"second {n}" for n in range(500, 700)
    ]


def test_a_torn_last_record_is_ended_by_the_next_writer(log_path: Path) -> None:
    log_path.parent.mkdir(parents=True)
    log_path.write_bytes(b"2025-01-31T09:15:02.123Z o complete\n2025-01-31T09:15:02.124Z o tor")
    with LogWriter(log_path, limit_bytes=1000, clock=fixed_clock) as writer:
        writer.write("after\n", "out")
    assert texts(log_path) == [("out", "complete"), ("out", "tor"), ("out", "after")]
    assert writer.summary().lines == 3


def test_reading_a_missing_or_foreign_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        read_log(tmp_path / "nothing.log")
    foreign = tmp_path / "foreign.log"
    foreign.write_text("2025-01-31T09:15:02.123Z o fine\nthis is not a record\n")
    with pytest.raises(LogFormatError, match=r"foreign\.log: record 1 is not a log record"):
        list(read_log(foreign))


# ---------------------------------------------------------------- following

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from shipyard.ci.logs import LogWriter
    from shipyard.core.secrets import Masker

    log, folder, secret = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

    def wait(name):
        while not (folder / name).exists():
            time.sleep(0.01)

    wait("start")
    writer = LogWriter(log, limit_bytes=10_000_000, masker=Masker([secret]))
    for number in range(100):
        writer.write(f"first {number}\\n", "out")
    writer.write("secret: " + secret[:7], "err")
    wait("go")
    writer.write(secret[7:] + "\\n", "err")
    for number in range(150):
        writer.write(f"second {number}\\n", "out")
    writer.note("done")
    writer.close()
    (folder / "finished").touch()
    """
)


def test_a_follower_sees_lines_as_another_process_writes_them(
    log_path: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(log_path), str(tmp_path), SECRET], env=env
    )
    seen: list[LogLine] = []

    def finished() -> bool:
        return (tmp_path / "finished").exists() or child.poll() is not None

    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            following = pool.submit(
                lambda: seen.extend(follow_log(log_path, finished=finished, poll_interval=0.02))
            )
            assert not log_path.exists()
            (tmp_path / "start").touch()
            # The writer waits for "go": its first lines must reach the follower before that.
            assert wait_for(lambda: len(seen) >= 100)
            assert child.poll() is None
            assert len(seen) == 100
            (tmp_path / "go").touch()
            following.result(timeout=PATIENCE)
        finally:
            (tmp_path / "start").touch()
            (tmp_path / "go").touch()
            child.wait(PATIENCE)
    assert child.returncode == 0
    assert [(line.stream, line.text) for line in seen] == [
        *(("out", f"first {n}") for n in range(100)),
        ("err", "secret: ***"),
        *(("out", f"second {n}") for n in range(150)),
        ("shipyard", "done"),
    ]
    assert seen == list(read_log(log_path))


def test_a_follower_yields_a_record_only_once_it_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "job.log"
    path.write_bytes(b"2025-01-31T09:15:02.123Z o first\n2025-01-31T09:15:02.124Z o sec")
    seen: list[str] = []
    appended = False

    def finished() -> bool:
        nonlocal appended
        # Called only when everything written so far has been read.
        assert seen == (["first", "second"] if appended else ["first"])
        if appended:
            return True
        with path.open("ab") as handle:
            handle.write(b"ond\n2025-01-31T09:15:02.125Z e thi")
        appended = True
        return False

    for line in follow_log(path, finished=finished, poll_interval=0.01):
        seen.append(line.text)
    assert seen == ["first", "second", "thi"]


def test_a_follower_waits_for_the_file_and_can_start_later(tmp_path: Path) -> None:
    path = tmp_path / "later" / "job.log"
    polls = 0

    def finished() -> bool:
        nonlocal polls
        polls += 1
        if polls == 3:
            with LogWriter(path, limit_bytes=10_000) as writer:
                writer.write("".join(f"line {n}\n" for n in range(10)), "out")
        return polls > 3

    lines: Iterator[LogLine] = follow_log(path, finished=finished, poll_interval=0.01, start_line=7)
    assert [line.text for line in lines] == ["line 7", "line 8", "line 9"]
    assert polls >= 3


def test_a_follower_of_a_log_that_never_appears_ends_when_finished(tmp_path: Path) -> None:
    assert list(follow_log(tmp_path / "never.log", finished=lambda: True)) == []
