"""The prometheus provider against a real Prometheus scraping a real, supervised router.

Prometheus finds the router through the file-SD target file the local target writes and reads
its token through the scrape configuration of docs/configuration.md, verbatim. Without the
``prometheus`` binary these tests are skipped, except in CI, where that is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from cd.router.router_support import PATIENCE, UpstreamServer, table, wait_for
from shipyard.cd.router.client import RouterClient
from shipyard.cd.router.state import RouterFiles
from shipyard.cd.settings import DeploySettings
from shipyard.cd.targets.local import LocalTarget, free_port, name_part, scrape_target_path
from shipyard.core.state import StateDir
from shipyard.monitor.providers import PROVIDERS, ProviderSources
from shipyard.monitor.providers.interface import Measurement, MetricQuery, MetricQueryError
from shipyard.monitor.providers.prometheus import PrometheusProvider

# Read while collecting: tests/conftest.py removes CI from each test's environment.
IN_CI = os.environ.get("CI", "") not in ("", "0", "false")
PROMETHEUS = shutil.which("prometheus")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
DOCS_ROOT = "/srv/demo/.shipyard"
"""Where the documented scrape configuration's state directory is; tests put theirs there."""


def _settings() -> DeploySettings:
    return DeploySettings(
        project="demo-service",
        environment="production",
        target="local",
        strategy="recreate",
        setup=None,
        command="true",
        health_path="/healthz",
        health_timeout_s=5.0,
        health_interval_s=0.1,
        instances=1,
    )


def _target(root: Path) -> LocalTarget:
    state = StateDir(root=root, repo_root=None, git_common_dir=None)
    keep = ("PATH", "PYTHONPATH", "LANG")
    return LocalTarget(state, environ={k: os.environ[k] for k in keep if k in os.environ})


def _documented_scrape_config(state_root: Path) -> dict[str, object]:
    text = DOCS.read_text(encoding="utf-8")
    found = re.search(r"<!-- prometheus-scrape-config -->\n```yaml\n(.*?)```", text, re.S)
    assert found, "docs/configuration.md lost its Prometheus scrape configuration"
    config = yaml.safe_load(found.group(1).replace(DOCS_ROOT, str(state_root)))
    assert isinstance(config, dict)
    return config


@dataclass
class Scraped:
    """A real Prometheus scraping the router of demo-service/production, and that router."""

    url: str
    router: RouterClient
    upstream: UpstreamServer


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    """Prometheus (1 s scrapes) on the documented configuration, the router with 10 requests
    answered for version 1.0.0 (3 of them 503), all scraped."""
    if PROMETHEUS is None:
        if IN_CI:
            pytest.fail("the prometheus binary is missing in CI (.ci/run installs it)")
        pytest.skip("the prometheus binary is not installed (apt-get install prometheus)")
    base = tmp_path_factory.mktemp("prometheus")
    target = _target(base / "state")
    upstream = UpstreamServer("1.0.0").start()
    prometheus: subprocess.Popen[bytes] | None = None
    try:
        router = target.router_client(_settings())
        router.set_routes(table({"1.0.0": (100, [upstream.address])}))
        config = {
            "global": {"scrape_interval": "1s"},
            **_documented_scrape_config(target.state.root),
        }
        (base / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        port = free_port()
        with (base / "prometheus.log").open("wb") as log:
            prometheus = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={base / 'prometheus.yml'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    f"--storage.tsdb.path={base / 'tsdb'}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        url = f"http://127.0.0.1:{port}"
        assert wait_for(lambda: _ready(url), PATIENCE), (base / "prometheus.log").read_text()
        address = RouterFiles.at(target.state.root, _settings().router_key).read_address()
        answered = [_get(f"http://127.0.0.1:{address.public_port}{path}") for path in PATHS]
        assert answered == [200] * 7 + [503] * 3
    except BaseException:
        _stop(prometheus)
        upstream.stop()
        target.supervisor.shutdown()
        raise
    yield Scraped(url, router, upstream)
    _stop(prometheus)
    upstream.stop()
    target.supervisor.shutdown()


PATHS = ["/"] * 7 + ["/status?code=503"] * 3
"""The requests sent through the router: 7 answered 200, 3 answered 503."""


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=PATIENCE) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.close()
        return error.code


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:  # noqa: S310
            return int(response.status) == 200
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None:
        return
    process.terminate()
    try:
        process.wait(PATIENCE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _query(
    promql: str, version: str = "1.0.0", timeout: float = 10.0, **fields: str
) -> MetricQuery:
    return MetricQuery(
        metric="requests",
        environment="production",
        version=version,
        fields={"query": promql, **fields},
        timeout_seconds=timeout,
    )


def _measure_when_scraped(url: str, promql: str, expected: float) -> Measurement:
    """Measure until Prometheus has scraped the figure (a bounded wait); the last measurement."""
    provider = PrometheusProvider(url)
    seen: list[Measurement] = []

    def arrived() -> bool:
        seen.append(provider.measure(_query(promql)))
        return seen[-1].value == expected

    wait_for(arrived, PATIENCE)
    return seen[-1]


def test_a_query_of_the_routers_requests_gives_their_number(scraped: Scraped) -> None:
    total = 'sum(shipyard_router_requests_total{version="{{version}}",traffic="weighted"})'
    assert _measure_when_scraped(scraped.url, total, 10.0).value == 10.0
    failed = 'sum(shipyard_router_requests_total{version="{{version}}",code="5xx"})'
    measured = PrometheusProvider(scraped.url).measure(_query(failed))
    assert (measured.value, measured.reason) == (3.0, None)
    assert "prometheus http://127.0.0.1" in measured.source
    assert 'version="1.0.0"' in measured.source


def test_the_target_files_labels_name_project_and_environment(scraped: Scraped) -> None:
    promql = (
        'sum(shipyard_router_requests_total{environment="{{env}}",project="demo-service",'
        'job="shipyard-demo-service-production"})'
    )
    assert _measure_when_scraped(scraped.url, promql, 10.0).value == 10.0


def test_the_registry_builds_it_and_the_metric_names_the_server(scraped: Scraped) -> None:
    provider = PROVIDERS["prometheus"](ProviderSources())
    measured = provider.measure(_query("scalar(vector(2.5))", url=scraped.url))
    assert measured.value == 2.5
    # Without a url, Prometheus's own default address (nothing listens there in tests).
    assert "prometheus http://127.0.0.1:9090" in provider.measure(_query("vector(1)")).source
    with pytest.raises(MetricQueryError, match="not a Prometheus URL"):
        provider.measure(_query("vector(1)", url="file:///etc/passwd"))


def test_a_timeout_of_a_fraction_of_a_second_reaches_prometheus(scraped: Scraped) -> None:
    measured = PrometheusProvider(scraped.url).measure(_query("vector(4)", timeout=0.75))
    assert (measured.value, measured.reason) == (4.0, None)


def test_no_series_is_no_value(scraped: Scraped) -> None:
    promql = 'sum(shipyard_router_requests_total{version="{{version}}"})'
    measured = PrometheusProvider(scraped.url).measure(_query(promql, version="9.9.9"))
    # sum() of nothing is an empty vector, not 0: no data is never a pass
    assert measured.value is None
    assert measured.reason == "no series: the query matched nothing"


def test_several_series_are_no_value_and_are_named(scraped: Scraped) -> None:
    _measure_when_scraped(
        scraped.url, 'sum(shipyard_router_requests_total{version="{{version}}"})', 10.0
    )
    promql = 'shipyard_router_requests_total{version="{{version}}",traffic="weighted"}'
    measured = PrometheusProvider(scraped.url).measure(_query(promql))
    assert measured.value is None
    assert measured.reason is not None
    assert "the query returns 5 series, not one" in measured.reason
    assert 'shipyard_router_requests_total{code="' in measured.reason
    assert "and 2 more" in measured.reason
    assert "sum(...)" in measured.reason


def test_bad_promql_gives_prometheus_own_message(scraped: Scraped) -> None:
    measured = PrometheusProvider(scraped.url).measure(_query("sum(rate(x[1m])"))
    assert measured.value is None
    assert measured.reason is not None
    assert measured.reason.startswith("Prometheus refused the query: bad_data:")
    assert "parse error" in measured.reason


def test_a_range_vector_is_not_a_sample(scraped: Scraped) -> None:
    measured = PrometheusProvider(scraped.url).measure(_query("up[5m]"))
    assert measured.value is None
    assert measured.reason is not None
    assert "returns a matrix, not a single sample" in measured.reason


def test_a_value_that_is_not_finite_is_no_value(scraped: Scraped) -> None:
    measured = PrometheusProvider(scraped.url).measure(_query("scalar(vector(0) / 0)"))
    assert measured.value is None
    assert measured.reason is not None
    assert "NaN, not a finite number" in measured.reason


@pytest.mark.parametrize("quote", ['"', "'"])
def test_the_version_is_escaped_inside_a_promql_string(scraped: Scraped, quote: str) -> None:
    awkward = "1.0.0\"'`\\\n-rc"
    matcher = f'label_replace(vector(1), "v", {quote}{{{{version}}}}{quote}, "", "")'
    # the substituted label equals the version exactly: count_values would disagree otherwise
    promql = f'count({matcher} == on(v) label_replace(vector(1), "v", "{_go(awkward)}", "", ""))'
    measured = PrometheusProvider(scraped.url).measure(_query(promql, version=awkward))
    assert (measured.value, measured.reason) == (1.0, None)


def _go(text: str) -> str:
    """``text`` as a double-quoted PromQL literal's body, written out independently."""
    return json.dumps(text)[1:-1].replace("'", "\\x27").replace("`", "\\x60")


def test_an_unreachable_prometheus_is_no_value_with_the_cause() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    measured = PrometheusProvider(url).measure(_query("vector(1)"))
    assert measured.value is None
    assert measured.reason is not None
    assert measured.reason.startswith("Prometheus did not answer:")
    assert "refused" in measured.reason.lower()


def test_a_password_in_the_url_never_reaches_a_message() -> None:
    url = f"http://ada:s3cret-pass@127.0.0.1:{free_port()}"
    measured = PrometheusProvider(url).measure(_query("vector(1)"))
    assert measured.value is None
    assert "s3cret-pass" not in f"{measured.source} {measured.reason}"


def test_the_routers_admin_port_is_kept_for_its_environment(tmp_path: Path) -> None:
    target = _target(tmp_path / "state")
    settings = _settings()
    try:
        target.router_client(settings)
        files = RouterFiles.at(target.state.root, settings.router_key)
        first = files.read_address()
        written = json.loads(scrape_target_path(target.state.root, settings).read_text())
        assert written == [
            {
                "targets": [f"127.0.0.1:{first.port}"],
                "labels": {"project": "demo-service", "environment": "production"},
            }
        ]
        assert scrape_target_path(target.state.root, settings) == (
            target.state.root / "prometheus" / "demo-service-production.json"
        )
        target.supervisor.remove(name_part(f"router.{settings.router_key}"))
        target.router_client(settings)
        second = files.read_address()
        assert second.pid != first.pid
        assert second.port == first.port
        assert json.loads(scrape_target_path(target.state.root, settings).read_text()) == written
    finally:
        target.supervisor.shutdown()
