"""Run Shipyard's benchmarks and print one table of ratios against in-run baselines.

Usage: ``python bench/run.py [NAME ...] [--json FILE]``. Each ``bench/bench_<name>.py``
module has a ``run(report)`` function that measures Shipyard and a baseline in the same
invocation and records both through ``report.ratio(...)`` or ``report.figure(...)``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Row:
    """One measured figure: what, Shipyard's value, the baseline's, their ratio, the goal."""

    benchmark: str
    metric: str
    value: float
    unit: str
    baseline: float | None
    baseline_name: str | None
    ratio: float | None
    goal: str
    ok: bool | None
    note: str = ""


@dataclass
class Report:
    """Collects the rows of one benchmark module."""

    benchmark: str
    rows: list[Row] = field(default_factory=list)

    def ratio(
        self,
        metric: str,
        value: float,
        baseline: float,
        *,
        unit: str,
        baseline_name: str,
        max_ratio: float | None = None,
        min_ratio: float | None = None,
        note: str = "",
    ) -> Row:
        """Record value/baseline and whether it meets the goal."""
        ratio = value / baseline if baseline else float("inf")
        goal, ok = "", None
        if max_ratio is not None:
            goal, ok = f"<= {max_ratio:g}x", ratio <= max_ratio
        if min_ratio is not None:
            goal, ok = f">= {min_ratio:g}x", ratio >= min_ratio
        row = Row(
            self.benchmark, metric, value, unit, baseline, baseline_name, ratio, goal, ok, note
        )
        self.rows.append(row)
        return row

    def figure(
        self,
        metric: str,
        value: float,
        *,
        unit: str,
        max_value: float | None = None,
        note: str = "",
    ) -> Row:
        """Record an absolute figure (memory, a latency) with an optional ceiling."""
        goal, ok = "", None
        if max_value is not None:
            goal, ok = f"<= {max_value:g} {unit}", value <= max_value
        row = Row(self.benchmark, metric, value, unit, None, None, None, goal, ok, note)
        self.rows.append(row)
        return row


def _load(name: str) -> object:
    path = HERE / f"bench_{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"no benchmark {name!r} ({path})")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(HERE))
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def main() -> int:
    """Run the named benchmarks (default: all) and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    args = parser.parse_args()
    names = args.names or sorted(p.stem[len("bench_") :] for p in HERE.glob("bench_*.py"))
    rows: list[Row] = []
    failed = False
    for name in names:
        report = Report(name)
        print(f"[bench] {name} …", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            _load(name).run(report)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            traceback.print_exc()
            failed = True
        print(f"[bench] {name} done in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        rows.extend(report.rows)
    _print(rows)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 1 if failed or any(r.ok is False for r in rows) else 0


def _print(rows: list[Row]) -> None:
    header = ["benchmark", "metric", "shipyard", "baseline", "ratio", "goal", "ok"]
    table = [header]
    for r in rows:
        base = f"{r.baseline:.4g} {r.unit} ({r.baseline_name})" if r.baseline is not None else ""
        table.append(
            [
                r.benchmark,
                r.metric,
                f"{r.value:.4g} {r.unit}",
                base,
                f"{r.ratio:.3g}x" if r.ratio is not None else "",
                r.goal,
                "" if r.ok is None else ("yes" if r.ok else "NO"),
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


if __name__ == "__main__":
    raise SystemExit(main())
