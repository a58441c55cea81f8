"""Next-version benchmark: 10,000 commits since the last release tag, against ``git log``.

Run with ``python bench/run.py versions``. The repository is built with ``git fast-import``
(2,000 commits and 11 release tags before ``v1.0.0``, then 10,000 conventional commits with
short side branches merged in); each figure is a median of interleaved in-process rounds.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from shipyard.core.git import Git
from shipyard.release.versioning import next_version

ROUNDS = 9
BEFORE = 2_000
SINCE = 10_000
TYPES = ["feat", "fix", "fix", "chore", "docs", "refactor", "test", "perf", "ci", "build"]
SCOPES = ["", "(api)", "(web)", "(db)", "(cli)"]
FOLDERS = ["services/api", "services/web", "docs"]


def run(report: object) -> None:
    """Build the history, then time shipyard's next version against git log on its range."""
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-versions-") as tmp:
        root = Path(tmp) / "repo"
        commits = _build(root)
        git = Git(root)
        result = next_version(git)
        assert str(result.version) == "2.0.0", result.version
        assert len(result.commits) > 0.9 * SINCE, len(result.commits)

        shipyard, baseline = _interleaved(
            lambda: next_version(git), lambda: _git(root, "log", "v1.0.0..HEAD")
        )
        report.ratio(  # type: ignore[attr-defined]
            f"next version, {commits:,} commits since v1.0.0 (median of {ROUNDS})",
            shipyard,
            baseline,
            unit="ms",
            baseline_name="git log v1.0.0..HEAD",
            max_ratio=3,
            note="in-process next_version() against a git log subprocess, output captured",
        )

        shipyard, baseline = _interleaved(
            lambda: next_version(git, paths=["services/api"]),
            lambda: _git(root, "log", "v1.0.0..HEAD", "--", "services/api"),
        )
        report.ratio(  # type: ignore[attr-defined]
            f"next version of services/api only (median of {ROUNDS})",
            shipyard,
            baseline,
            unit="ms",
            baseline_name="git log v1.0.0..HEAD -- services/api",
            note="monorepo: a path-limited log plus an unlimited rev-list for the tags",
        )

        _git(root, "tag", "v2.0.0-rc.1", "HEAD~100")
        shipyard, baseline = _interleaved(
            lambda: next_version(git, prerelease="rc"),
            lambda: _git(root, "log", "v1.0.0..HEAD"),
        )
        report.ratio(  # type: ignore[attr-defined]
            f"next prerelease, rc.1 tagged 100 commits back (median of {ROUNDS})",
            shipyard,
            baseline,
            unit="ms",
            baseline_name="git log v1.0.0..HEAD",
            note="counts the commits since the last candidate as well",
        )


def _interleaved(
    shipyard: Callable[[], object], baseline: Callable[[], object]
) -> tuple[float, float]:
    """Median milliseconds of each, measured alternately after one warm-up of each."""
    shipyard()
    baseline()
    ours, theirs = [], []
    for _ in range(ROUNDS):
        ours.append(_ms(shipyard))
        theirs.append(_ms(baseline))
    return statistics.median(ours), statistics.median(theirs)


def _ms(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def _git(root: Path, *args: str) -> bytes:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, env=_environment()
    ).stdout


def _environment() -> dict[str, str]:
    return {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
    }


def _build(root: Path) -> int:
    """Write the history with one ``git fast-import``; return the commits since v1.0.0."""
    root.mkdir(parents=True)
    _git(root, "init", "--quiet", "--initial-branch=main")
    stream = _Stream(random.Random(20261126))
    for number in range(BEFORE):
        stream.commit(number)
        if number % 200 == 0:
            stream.tag(f"v0.{number // 200}.0")
    stream.tag("v1.0.0")
    since = 0
    while since < SINCE:
        if since % 100 == 50:
            since += stream.side_branch(since, length=3)
        else:
            stream.commit(BEFORE + since)
            since += 1
    stream.commit(BEFORE + since, message="feat(api)!: version 2 of the API\n")
    subprocess.run(
        ["git", "fast-import", "--quiet"],
        cwd=root,
        input=stream.data(),
        check=True,
        env=_environment(),
    )
    _git(root, "reset", "--quiet", "--hard", "main")
    return since + 1


class _Stream:
    """A ``git fast-import`` stream of conventional commits on main and short side branches."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.parts: list[bytes] = []
        self.mark = 0
        self.main = 0  # the mark of main's tip
        self.time = 1_700_000_000

    def data(self) -> bytes:
        """The whole stream."""
        return b"".join(self.parts)

    def commit(self, number: int, *, message: str | None = None) -> None:
        """One commit on main, changing one file in one of the folders."""
        folder = self.rng.choice(FOLDERS)
        self.main = self._commit(
            "refs/heads/main",
            message or self._message(number),
            [self.main] if self.main else [],
            (f"{folder}/file{number % 40}.txt", f"change {number}\n"),
        )

    def side_branch(self, number: int, *, length: int) -> int:
        """``length`` commits on a branch from main's tip, merged back; how many commits."""
        parent = self.main
        for offset in range(length):
            parent = self._commit(
                "refs/heads/topic",
                self._message(number + offset),
                [parent],
                (f"services/api/topic{number}.txt", f"topic {offset}\n"),
            )
        self.main = self._commit(
            "refs/heads/main", f"Merge branch 'topic-{number}'\n", [self.main, parent], None
        )
        return length + 1

    def tag(self, name: str) -> None:
        """An annotated tag on main's tip."""
        message = f"release {name}\n".encode()
        self.parts.append(
            f"tag {name}\nfrom :{self.main}\n"
            f"tagger Bench <bench@example.com> {self.time} +0000\n"
            f"data {len(message)}\n".encode()
            + message
            + b"\n"
        )

    def _commit(
        self, ref: str, message: str, parents: list[int], change: tuple[str, str] | None
    ) -> int:
        self.mark += 1
        self.time += 60
        text = message.encode()
        lines = [
            f"commit {ref}",
            f"mark :{self.mark}",
            f"author Bench <bench@example.com> {self.time} +0000",
            f"committer Bench <bench@example.com> {self.time} +0000",
            f"data {len(text)}",
        ]
        tail = [f"from :{parents[0]}"] if parents else []
        tail += [f"merge :{parent}" for parent in parents[1:]]
        if change is not None:
            path, content = change
            tail += [f"M 644 inline {path}", f"data {len(content.encode())}", content]
        self.parts.append(
            ("\n".join(lines) + "\n").encode() + text + ("\n" + "\n".join(tail) + "\n").encode()
        )
        return self.mark

    def _message(self, number: int) -> str:
        kind = self.rng.choice(TYPES)
        scope = self.rng.choice(SCOPES)
        header = f"{kind}{scope}: change number {number}\n"
        roll = self.rng.random()
        if roll < 0.5:
            return header
        body = (
            "\nExplain what changed and why, over a couple of lines\n"
            "so that the body looks like a real one.\n"
        )
        if roll < 0.8:
            return header + body
        return header + body + f"\nRefs: #{number}\nReviewed-by: Grace <grace@example.com>\n"
