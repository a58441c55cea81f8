"""The demo's wall time: ``shipyard demo`` from an empty folder to the report and
``shipyard down``, against one plain release and blue-green deployment of the same example
service, timed in the same run.

Run with ``python bench/run.py demo``. Goal: the whole demo within 3 minutes on a 2-core
machine (issue 20); the ratio says how many plain release-and-deploy rounds it costs.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_cd import bench_env, release_example_twice, shipyard

ROUNDS = 2
GOAL_S = 180.0


def run(report: object) -> None:
    """Time the demo and the baseline, one after the other, ``ROUNDS`` times."""
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-demo-") as tmp:
        env = bench_env(Path(tmp))
        plain, demos = [], []
        for index in range(ROUNDS):
            plain.append(_release_and_deploy(Path(tmp) / f"plain-{index}", env))
            demos.append(_demo(Path(tmp) / f"demo-{index}", env))
    report.ratio(  # type: ignore[attr-defined]
        "shipyard demo, wall time (median)",
        statistics.median(demos),
        statistics.median(plain),
        unit="s",
        baseline_name="release + blue-green deploy",
        note="3 ships (release, staging, production canary), DORA, report, down",
    )
    report.figure(  # type: ignore[attr-defined]
        "shipyard demo, wall time (slowest)",
        max(demos),
        unit="s",
        max_value=GOAL_S,
        note=f"{ROUNDS} runs: " + ", ".join(f"{seconds:.0f} s" for seconds in demos),
    )


def _release_and_deploy(repo: Path, env: dict[str, str]) -> float:
    """Seconds of ``shipyard release`` then ``shipyard deploy`` of a new release to staging,
    in a repository of the example service released twice before (not timed)."""
    release_example_twice(repo, env)
    subprocess.run(
        ["git", "commit", "-q", "--allow-empty", "-m", "feat: c"], cwd=repo, env=env, check=True
    )
    try:
        released, _ = shipyard(repo, env, "release")
        deployed, _ = shipyard(repo, env, "deploy", "0.3.0", "--env", "staging")
    finally:
        shipyard(repo, env, "down")
    return released + deployed


def _demo(folder: Path, env: dict[str, str]) -> float:
    """Seconds of the whole ``shipyard demo`` command; RuntimeError unless it went as shown."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "shipyard", "demo", "--dir", str(folder), "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0 or not json.loads(result.stdout)["ok"]:
        raise RuntimeError(f"shipyard demo (exit {result.returncode}): {result.stderr[-4000:]}")
    return seconds
