"""SBOM gate benchmark: the gate's judge() on npm lockfiles of 1,000 and 6,000 packages.

Run with ``python bench/run.py sbom``. Each package has a version, a license, an integrity
hash and three dependencies, so the gate reads the lockfile, collects licenses, writes the
CycloneDX document with its dependency graph and validates it against the schema. The
baseline, measured in the same run, is the 1,000-package lockfile scaled by six: a gate that
grows linearly keeps the ratio near 1 (the quadratic gate of issue 14 was about 6; the
ceiling of 2 leaves room for the noise of a shared machine).
Imports and the compiled schema are warmed up on a small lockfile first, as in a process that
has judged once. The ceiling of one second applies to the CPU time of the judge (on a machine
that others share, wall time also counts their work); the wall time is reported beside it.
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from shipyard.core.config import load_config_text
from shipyard.gates import GateContext
from shipyard.gates.sbom.gate import SbomGate

ROUNDS = 3
SMALL = 1000
LARGE = 6000
LICENSES = ("MIT", "ISC", "Apache-2.0", "BSD-3-Clause", "MIT OR Apache-2.0")


def _lockfile(folder: Path, packages: int) -> Path:
    """A package-lock.json (v3) of ``packages`` packages, each needing three others."""
    chooser = random.Random(packages)
    entries: dict[str, object] = {"": {"name": "bench", "version": "1.0.0"}}
    for number in range(packages):
        needs = {f"pkg-{other}": "^1.0.0" for other in chooser.sample(range(packages), 3)}
        needs.pop(f"pkg-{number}", None)
        entries[f"node_modules/pkg-{number}"] = {
            "version": f"1.{number % 50}.{number % 7}",
            "license": LICENSES[number % len(LICENSES)],
            "integrity": "sha512-" + "A" * 86 + "==",
            "dependencies": needs,
        }
    folder.mkdir(parents=True)
    lock = {"name": "bench", "lockfileVersion": 3, "packages": entries}
    (folder / "package-lock.json").write_text(json.dumps(lock, indent=2))
    return folder


def _judge(workspace: Path, state: Path) -> tuple[float, float, str]:
    """Wall and CPU seconds of one judge(), and the verdict's summary."""
    config = load_config_text("project: bench\ngates:\n  sbom: {}\n")
    context = GateContext(workspace=workspace, config=config, state_root=state)
    started, cpu = time.perf_counter(), time.process_time()
    verdict = SbomGate.for_context(context).judge(context)
    return time.perf_counter() - started, time.process_time() - cpu, verdict.summary


def _median(workspace: Path, state: Path) -> tuple[float, float, str]:
    walls, cpus, summary = [], [], ""
    for _ in range(ROUNDS):
        wall, cpu, summary = _judge(workspace, state)
        walls.append(wall)
        cpus.append(cpu)
    return statistics.median(walls), statistics.median(cpus), summary


def run(report: object) -> None:
    """Measure the gate at both sizes; record the 6,000-package time and its ratio."""
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-sbom-") as temp:
        root = Path(temp)
        state = root / "state"
        state.mkdir()
        _judge(_lockfile(root / "warm", 20), state)
        _, small, _ = _median(_lockfile(root / "small", SMALL), state)
        wall, large, summary = _median(_lockfile(root / "large", LARGE), state)
    report.ratio(  # type: ignore[attr-defined]
        f"sbom gate CPU time, {LARGE} packages",
        large,
        small * LARGE / SMALL,
        unit="s",
        baseline_name=f"{SMALL} packages x{LARGE // SMALL}",
        max_ratio=2.0,
        note=f"median of {ROUNDS}; near 1 means linear growth",
    )
    report.figure(  # type: ignore[attr-defined]
        f"sbom gate CPU time, {LARGE} packages",
        large,
        unit="s",
        max_value=1.0,
        note=f"{summary}; median of {ROUNDS}",
    )
    report.figure(  # type: ignore[attr-defined]
        f"sbom gate wall time, {LARGE} packages",
        wall,
        unit="s",
        note=f"median of {ROUNDS}; includes other processes' share of the cores",
    )
