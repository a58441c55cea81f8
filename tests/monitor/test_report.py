"""``shipyard report``: one self-contained HTML page, opened in a real headless Chromium that
must paint its charts; the readers behind it, on both backends.

Without the ``chromium`` binary the browser tests are skipped, except in CI, where that is a
failure (.ci/run installs the Debian package).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import update

from monitor.dorasupport import CONFIG, D, M, script_month
from shipyard.ci import runs as ci_runs
from shipyard.ci.model import JobSpec, StepSpec
from shipyard.core import state as state_dir
from shipyard.core.store import Store, open_store
from shipyard.core.store.tables import run_jobs, runs
from shipyard.gates import records as gate_records
from shipyard.gates.interface import GateResult, Status
from shipyard.monitor import report as pages
from shipyard.monitor.dora import History, Period
from support import CliResult, run_cli

# Read while collecting: tests/conftest.py removes CI from each test's environment.
IN_CI = os.environ.get("CI", "") not in ("", "0", "false")
CHARTS = ("chart-dora-trends", "chart-deployments", "chart-gates", "chart-pipelines", "chart-flaky")
JOBS = tuple(
    JobSpec(id=name, name=name, steps=(StepSpec(name, command),), shell=("sh", "-c"))  # noqa: S604
    for name, command in (("lint", "ruff check ."), ("test", "pytest -q"))
)


def pipeline_run(
    store: Store, *, started: datetime, lasted: timedelta, status: str, flaky: str | None = None
) -> int:
    """A run of lint and test through the run repository, then dated (it stamps the present);
    ``flaky`` names the job that failed once and then passed."""
    run = ci_runs.create_run(
        store,
        project="shop",
        commit="f" * 40,
        ref="refs/heads/main",
        branch="main",
        tag=None,
        event="push",
        actor="ada@example.com",
        workspace="clean",
        config_digest="0" * 64,
        jobs=JOBS,
        driver_pid=None,
    )
    for job in JOBS:
        passed = "passed" if status == "passed" or job.id == "lint" else "failed"
        ci_runs.job_finished(store, run.id, job.id, passed, flaky=job.id == flaky)  # type: ignore[arg-type]
    ci_runs.finish_run(store, run.id, status, actor="ada@example.com")  # type: ignore[arg-type]
    with store.write() as conn:
        conn.execute(
            update(runs)
            .where(runs.c.id == run.id)
            .values(created_at=started, started_at=started, finished_at=started + lasted)
        )
        conn.execute(
            update(run_jobs)
            .where(run_jobs.c.run_id == run.id)
            .values(started_at=started, finished_at=started + lasted, attempts=1)
        )
        if flaky:
            conn.execute(
                update(run_jobs)
                .where(run_jobs.c.run_id == run.id, run_jobs.c.job_id == flaky)
                .values(attempts=2)
            )
    return run.id


def gate_run(store: Store, *, kind: str, at: datetime, failed: str, override: bool) -> None:
    """A gate run at ``at`` whose gate ``failed`` failed (overridden or not) and secrets passed."""
    results = [
        GateResult(failed, Status.FAIL, (), "1 finding blocks", 0.5),
        GateResult("secrets", Status.PASS, (), "no secrets", 0.2),
    ]
    gate_records.record_gate_run(
        store,
        kind=kind,  # type: ignore[arg-type]
        project="shop",
        actor="ada@example.com",
        results=results,
        started_at=at,
        finished_at=at + M,
        release="1.2.0",
        overrides={failed: "not reachable from our code"} if override else None,
    )


def script_pipelines(store: Store, start: datetime) -> dict[str, int]:
    """Runs and gate runs in the scripted month, and one of each from before it."""
    made = {
        "R0": pipeline_run(
            store, started=start - 3 * D, lasted=4 * M, status="passed", flaky="test"
        ),
        "R1": pipeline_run(store, started=start + 2 * D, lasted=5 * M, status="passed"),
        "R2": pipeline_run(store, started=start + 3 * D, lasted=8 * M, status="failed"),
        "R3": pipeline_run(
            store, started=start + 10 * D, lasted=6 * M, status="passed", flaky="test"
        ),
        "R4": pipeline_run(
            store, started=start + 20 * D, lasted=12 * M, status="passed", flaky="test"
        ),
        "R5": pipeline_run(
            store, started=start + 21 * D, lasted=7 * M, status="passed", flaky="lint"
        ),
    }
    gate_run(store, kind="release", at=start - D, failed="vulnerabilities", override=False)
    gate_run(store, kind="release", at=start + 5 * D, failed="vulnerabilities", override=False)
    gate_run(store, kind="release", at=start + 9 * D, failed="vulnerabilities", override=True)
    gate_run(store, kind="release", at=start + 12 * D, failed="licenses", override=False)
    gate_run(store, kind="deploy", at=start + 22 * D, failed="approvals", override=False)
    return made


# -- the readers, on both backends -----------------------------------------------------------

START = datetime(2025, 5, 31, tzinfo=UTC)
PERIOD = Period(START, START + 30 * D)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    store.ensure_schema()
    yield store
    store.dispose()


def test_runs_of_the_period_are_read_with_their_durations(store: Store) -> None:
    made = script_pipelines(store, START)
    with store.read() as conn:
        found = pages.read_runs(conn, "shop", PERIOD)
        others = pages.read_runs(conn, "another-project", PERIOD)

    assert [(r.id, r.status, r.duration_s) for r in found] == [
        (made["R1"], "passed", 300),
        (made["R2"], "failed", 480),
        (made["R3"], "passed", 360),
        (made["R4"], "passed", 720),
        (made["R5"], "passed", 420),
    ]
    assert found[0].finished_at == START + 2 * D + 5 * M
    assert others == ()


def test_gate_failures_are_counted_by_gate_and_kind(store: Store) -> None:
    script_pipelines(store, START)
    with store.read() as conn:
        found = pages.read_gate_failures(conn, "shop", PERIOD)

    assert found == (
        pages.GateFailure("approvals", "deploy", failures=1, overridden=0),
        pages.GateFailure("licenses", "release", failures=1, overridden=0),
        pages.GateFailure("vulnerabilities", "release", failures=2, overridden=1),
    )


def test_a_page_without_any_history_says_so_in_words() -> None:
    data = pages.ReportData(
        project="shop",
        period=PERIOD,
        generated_at=PERIOD.end,
        environments=("staging",),
        history=History(()),
    )
    page = pages.render(data)

    for message in (
        pages.NO_DEPLOYMENTS,
        pages.NO_GATE_FAILURES,
        pages.NO_RUNS,
        pages.NO_FLAKY_JOBS,
    ):
        assert f'<p class="empty">{message.capitalize()}.</p>' in page
    assert page.count("<svg") == len(CHARTS)
    assert "no data" in page  # the scorecard


def test_names_from_the_store_are_escaped() -> None:
    data = pages.ReportData(
        project="shop",
        period=PERIOD,
        generated_at=PERIOD.end,
        environments=(),
        history=History(()),
        flaky=(pages.FlakyJob("test", "<b>test</b> [py3.12]", 3, 2, "f" * 40),),
    )
    page = pages.render(data)

    assert "&lt;b&gt;test&lt;/b&gt; [py3.12]" in page
    assert "<b>test</b>" not in page


# -- the command and the browser --------------------------------------------------------------


@pytest.fixture
def shop(repo: Path) -> Path:
    """A repository whose last 30 days are the scripted month, with pipelines and gates."""
    (repo / "shipyard.yaml").write_text(CONFIG)
    store = open_store(state_dir.locate(repo))
    start = datetime.now(UTC).replace(microsecond=0) - 30 * D
    try:
        script_month(store, repo, start)
        script_pipelines(store, start)
    finally:
        store.dispose()
    return repo


def cli(repo: Path, *args: str) -> CliResult:
    return run_cli(*args, cwd=repo, env={"SHIPYARD_USER": "ada@example.com"})


def chromium() -> str:
    """The headless browser's path; skipped (failed in CI) when it is not installed."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if IN_CI:
        pytest.fail("the chromium binary is missing in CI (.ci/run installs it)")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def browse(page: Path, profile: Path, *flags: str) -> str:
    """Run headless Chromium on ``page``; its standard output."""
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *flags,
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "HOME": str(profile)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class Charts(HTMLParser):
    """From a DOM: per chart (a figure with an id), its svg elements and the lengths of the
    ``d`` of its paths."""

    def __init__(self) -> None:
        super().__init__()
        self.current: str | None = None
        self.svgs: dict[str, int] = {}
        self.paths: dict[str, list[int]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "figure" and values.get("id"):
            self.current = values["id"]
            self.svgs[self.current] = 0
            self.paths[self.current] = []
        elif self.current and tag == "svg":
            self.svgs[self.current] += 1
        elif self.current and tag == "path":
            self.paths[self.current].append(len((values.get("d") or "").strip()))

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self.current = None


def test_the_report_is_one_page_that_needs_nothing_from_outside(shop: Path) -> None:
    result = cli(shop, "report", "-o", "out.html")

    assert result.code == 0, result.output
    assert "wrote out.html" in result.stdout
    page = (shop / "out.html").read_text()
    for tag in ("<script", "<link", "<img", "<iframe", "<object", "@import"):
        assert tag not in page
    # References are to the page's own elements (matplotlib's glyphs and clip paths).
    references = re.findall(r'(?:href|src)="([^"]*)"|url\(([^)]*)\)', page)
    references = [href or url for href, url in references]
    assert references
    assert all(ref.startswith("#") for ref in references), references[:5]
    for chart in CHARTS:
        assert f'<figure id="{chart}"' in page
    assert '<p class="empty">' not in page  # every chart has something to show
    # The scorecard of production: 4 of 6 deployments of a change failed.
    assert "4 of 6 deployments failed" in page
    assert "3 of 7 deployments unplanned" in page


def test_chromium_renders_every_chart_of_the_report(shop: Path, tmp_path: Path) -> None:
    browser = chromium()
    assert cli(shop, "report", "-o", str(tmp_path / "report.html")).code == 0
    page = tmp_path / "report.html"

    charts = Charts()
    charts.feed(browse(page, tmp_path / "profile", "--dump-dom"))
    for chart in CHARTS:
        assert charts.svgs.get(chart) == 1, f"{chart} has no svg in the rendered page"
        drawn = [length for length in charts.paths[chart] if length > 0]
        assert len(drawn) >= 20, f"{chart} drew only {len(drawn)} paths"

    shot = tmp_path / "report.png"
    browse(page, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,3000")
    print(f"report screenshot ({browser}): {shot}")
    from matplotlib.image import imread

    pixels = imread(str(shot))[:, :, :3]
    inked = (pixels < 0.9).any(axis=2).mean()
    assert inked > 0.03, f"only {inked:.1%} of the screenshot is not white"
    colours = {tuple(p) for p in (pixels[::7, ::7] * 255).round().astype(int).reshape(-1, 3)}
    assert len(colours) > 30, "the screenshot has too few colours to hold charts"


def test_json_says_where_the_report_is(shop: Path) -> None:
    result = cli(shop, "report", "-o", "r.html", "--since", "7d", "--json")

    assert result.code == 0, result.output
    assert f'"report": "{(shop / "r.html").resolve()}"' in result.stdout
    assert '"days": 7.0' in result.stdout


@pytest.mark.parametrize(
    ("output", "message"),
    [("missing/report.html", "does not exist"), (".", "is a directory")],
)
def test_a_place_the_report_cannot_be_written_is_a_mistake(
    shop: Path, output: str, message: str
) -> None:
    result = cli(shop, "report", "-o", output)

    assert result.code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output
