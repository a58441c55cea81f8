"""CI benchmarks: orchestration overhead against ``xargs -P2``, the job cache, peak memory.

Run with ``python bench/run.py ci``. Each figure is a ratio against a baseline measured in the
same invocation on the same machine; ``shipyard`` runs as a whole process, start-up included.
"""

from __future__ import annotations

import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROUNDS = 5
FAN_JOBS = 198
SLEEP_FAN = 0.05
CACHE_JOBS = 50
SLEEP_CACHE = 0.2


def run(report: object) -> None:
    """Measure the three CI goals and record them on ``report``."""
    # An installed package is byte-compiled (pip does it); an editable checkout run with
    # PYTHONDONTWRITEBYTECODE would compile every module on every start instead.
    compileall.compile_dir(str(Path(__file__).resolve().parents[1] / "src"), quiet=1)
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-ci-") as tmp:
        root = Path(tmp)
        fan = _repo(root / "fan", _fan_pipeline())
        shipyard_s, peak_mb = [], []
        xargs_s = []
        for _ in range(ROUNDS):
            xargs_s.append(
                _timed(
                    ["sh", "-c", f"seq {FAN_JOBS + 2} | xargs -P2 -I{{}} sleep {SLEEP_FAN}"], fan
                )
            )
            shutil.rmtree(fan / ".shipyard", ignore_errors=True)
            seconds, peak = _shipyard(fan, "run", "-j2")
            shipyard_s.append(seconds)
            peak_mb.append(peak)
        report.ratio(  # type: ignore[attr-defined]
            f"200-job DAG, -j2, 50 ms jobs (median of {ROUNDS})",
            statistics.median(shipyard_s),
            statistics.median(xargs_s),
            unit="s",
            baseline_name="xargs -P2",
            max_ratio=1.5,
        )
        report.figure(  # type: ignore[attr-defined]
            f"peak memory of shipyard run, 200-job DAG (max of {ROUNDS})",
            max(peak_mb),
            unit="MB",
            max_value=150,
        )

        cached = _repo(root / "cache", _cache_pipeline())
        cold, warm = [], []
        for _ in range(ROUNDS):
            shutil.rmtree(cached / ".shipyard", ignore_errors=True)
            cold.append(_shipyard(cached, "run")[0])
            warm.append(_shipyard(cached, "run")[0])
        report.ratio(  # type: ignore[attr-defined]
            f"unchanged re-run, {CACHE_JOBS} jobs of 0.2 s, default -j (median of {ROUNDS})",
            statistics.median(cold),
            statistics.median(warm),
            unit="s",
            baseline_name="cached re-run",
            min_ratio=10,
            note="first run divided by the cached re-run, whole process included",
        )


def _fan_pipeline() -> str:
    lines = ["project: bench-fan", "pipeline:", "  jobs:", f"    start: {{run: sleep {SLEEP_FAN}}}"]
    lines += [f"    j{i}: {{needs: [start], run: sleep {SLEEP_FAN}}}" for i in range(FAN_JOBS)]
    fan_in = ", ".join(f"j{i}" for i in range(FAN_JOBS))
    lines.append(f"    end: {{needs: [{fan_in}], run: sleep {SLEEP_FAN}}}")
    return "\n".join(lines) + "\n"


def _cache_pipeline() -> str:
    lines = ["project: bench-cache", "pipeline:", "  jobs:"]
    lines += [f"    j{i}: {{run: sleep {SLEEP_CACHE}}}" for i in range(CACHE_JOBS)]
    return "\n".join(lines) + "\n"


def _repo(path: Path, config: str) -> Path:
    path.mkdir(parents=True)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
    }
    (path / "shipyard.yaml").write_text(config)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True)
    return path


def _timed(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _shipyard(cwd: Path, *args: str) -> tuple[float, float]:
    """Seconds for a whole ``shipyard`` process, and its peak RSS in MB (sampled)."""
    env = {**os.environ, "CI": "1"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "shipyard", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    peak = 0
    watched = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.01)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"shipyard {' '.join(args)} failed: {process.stderr.read().decode()}")
    return seconds, peak / 1e6
