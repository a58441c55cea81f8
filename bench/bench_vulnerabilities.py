"""Vulnerability gate benchmarks on the PyPA advisory snapshot: importing it, and scanning a
lockfile of 1,000 pinned dependencies against the warm index.

Run with ``python bench/run.py vulnerabilities``. Needs the snapshot at
``../shared/data/pypa-advisory-db`` beside the repository (or ``SHIPYARD_BENCH_ADVISORIES``);
without it the benchmark says so and records nothing. Baselines, measured in the same run:
parsing every record with libyaml and nothing else (the floor of any import), and matching the
same lockfile by testing every advisory against every dependency (no index).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from shipyard.core.config import load_config_text
from shipyard.gates import GateContext, VulnerabilityGate
from shipyard.gates.advisories import import_advisories
from shipyard.gates.advisories import severity as severity_module
from shipyard.gates.advisories import versions as versions_module
from shipyard.gates.advisories.matching import is_affected
from shipyard.gates.advisories.model import Advisory, parse_advisory
from shipyard.gates.deps import read_dependencies

ROUNDS = 5
DEPENDENCIES = 1000
REPO = Path(__file__).resolve().parents[1]


def _snapshot() -> Path | None:
    override = os.environ.get("SHIPYARD_BENCH_ADVISORIES")
    candidates = [Path(override)] if override else []
    candidates.append(REPO.parent / "shared" / "data" / "pypa-advisory-db")
    return next((path for path in candidates if path.is_dir()), None)


def _files(snapshot: Path) -> list[Path]:
    return sorted(snapshot.rglob("*.yaml"))


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def _lockfile(records: list[Advisory], folder: Path) -> Path:
    """1,000 pins: every package of the snapshot at a listed (mostly vulnerable) version, then
    packages no advisory names."""
    pins: dict[str, str] = {}
    for advisory in records:
        for entry in advisory.affected:
            readable = [
                v for v in entry.versions if versions_module.version_key("PyPI", v) is not None
            ]
            if readable and entry.name not in pins:
                pins[entry.name] = readable[len(readable) // 2]
    lines = [f"{name}=={version}" for name, version in list(pins.items())[:DEPENDENCIES]]
    lines += [f"unlisted-package-{n}==1.0.{n}" for n in range(DEPENDENCIES - len(lines))]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "requirements.txt"
    target.write_text("\n".join(lines) + "\n")
    return target


def _cold_caches() -> None:
    """Forget parsed versions and scores, as a new process would."""
    for cached in (
        versions_module._pep440,
        versions_module._semver,
        versions_module.canonical_version,
        versions_module.normalize_name,
        severity_module._scored,
    ):
        cached.cache_clear()


def run(report: object) -> None:
    """Measure the import and the scan; record figures and ratios."""
    snapshot = _snapshot()
    if snapshot is None:
        print(
            "[bench] vulnerabilities: skipped, no PyPA advisory snapshot at "
            f"{REPO.parent / 'shared/data/pypa-advisory-db'} (set SHIPYARD_BENCH_ADVISORIES)",
            file=sys.stderr,
        )
        return
    files = _files(snapshot)
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-vulns-") as temp:
        root = Path(temp)
        parse_times, import_times = [], []
        for round_ in range(ROUNDS):
            started = time.perf_counter()
            for path in files:
                yaml.load(path.read_bytes(), Loader=yaml.CBaseLoader)  # noqa: S506 - base loader
            parse_times.append(time.perf_counter() - started)
            state = root / f"state-{round_}"
            started = time.perf_counter()
            summary = import_advisories(snapshot, state)
            import_times.append(time.perf_counter() - started)
        report.ratio(  # type: ignore[attr-defined]
            f"import {summary.records} records",
            _median(import_times),
            _median(parse_times),
            unit="s",
            baseline_name="libyaml parse only",
            max_ratio=3.0,
            note=f"median of {ROUNDS}",
        )
        report.figure(  # type: ignore[attr-defined]
            "import the whole snapshot",
            _median(import_times),
            unit="s",
            max_value=5.0,
            note=f"{len(files)} files, median of {ROUNDS}",
        )

        records = [
            parse_advisory(yaml.load(p.read_bytes(), Loader=yaml.CBaseLoader), str(p))  # noqa: S506
            for p in files
        ]
        workspace = root / "project"
        _lockfile(records, workspace)
        state = root / "state-0"
        config = load_config_text("project: bench\ngates:\n  vulnerabilities: {max_age: 100000d}\n")
        context = GateContext(workspace=workspace, config=config, state_root=state)
        scan_times, findings = [], 0
        for _ in range(ROUNDS):
            _cold_caches()
            started = time.perf_counter()
            verdict = VulnerabilityGate.for_context(context).judge(context)
            scan_times.append(time.perf_counter() - started)
            findings = sum(1 for f in verdict.findings if not f.id.startswith("SHIPYARD-"))

        naive_times = []
        dependencies = read_dependencies(workspace).dependencies
        for _ in range(2):
            _cold_caches()
            started = time.perf_counter()
            for dependency in dependencies:
                assert dependency.version is not None
                for advisory in records:
                    is_affected(advisory, "PyPI", dependency.name, dependency.version)
            naive_times.append(time.perf_counter() - started)
        report.ratio(  # type: ignore[attr-defined]
            f"scan {DEPENDENCIES} pins, warm index",
            _median(scan_times),
            _median(naive_times),
            unit="s",
            baseline_name="match every advisory, no index",
            max_ratio=0.5,
            note=f"{findings} findings; median of {ROUNDS}, cold version caches",
        )
        report.figure(  # type: ignore[attr-defined]
            f"scan {DEPENDENCIES} pins, warm index",
            _median(scan_times),
            unit="s",
            max_value=0.5,
            note="the gate's judge(): read lockfile, query index, match, severities",
        )

        (workspace / "shipyard.yaml").write_text(
            "project: bench\ngates:\n  vulnerabilities: {max_age: 100000d}\n"
        )
        env = {**os.environ, "SHIPYARD_HOME": str(state), "CI": "1"}
        command = [sys.executable, "-m", "shipyard", "scan", "--json"]
        subprocess.run(command, cwd=workspace, env=env, capture_output=True, check=False)
        cli_times = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run(command, cwd=workspace, env=env, capture_output=True, check=False)
            cli_times.append(time.perf_counter() - started)
        report.figure(  # type: ignore[attr-defined]
            "'shipyard scan --json' end to end",
            _median(cli_times),
            unit="s",
            note="new process: interpreter, imports, config, scan, store write; median of 3",
        )
