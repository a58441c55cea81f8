"""Metric providers: builtin on hand-built traffic, http (and the deadline it shares with
prometheus) against a real server, command for real."""

from __future__ import annotations

import base64
import json
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shipyard.core.errors import ConfigError, ShipyardError, StoreError, UserError
from shipyard.monitor.providers import (
    BUILTIN_METRICS,
    PROVIDERS,
    BadMetricValue,
    BuiltinProvider,
    CommandProvider,
    FakeProvider,
    HttpProvider,
    Measurement,
    MetricQuery,
    MetricQueryError,
    MetricsError,
    ProviderSources,
    ProviderUnavailable,
    TrafficSnapshot,
    VersionTraffic,
    provider_for,
)
from shipyard.monitor.providers.builtin import quantile
from shipyard.monitor.providers.http import MAX_BODY_BYTES
from shipyard.monitor.providers.prometheus import PrometheusProvider


def query(metric: str = "m", version: str = "1.4.0", **fields: str) -> MetricQuery:
    return MetricQuery(metric=metric, environment="production", version=version, fields=fields)


# --- values -------------------------------------------------------------------------------


def test_no_data_is_not_zero_and_needs_a_reason() -> None:
    empty = Measurement.no_data("too few requests: 3 of 20", "builtin")
    assert empty.value is None
    assert empty.reason == "too few requests: 3 of 20"
    with pytest.raises(BadMetricValue, match="needs a reason"):
        Measurement(value=None, source="builtin")
    with pytest.raises(BadMetricValue, match="not a finite number"):
        Measurement.of(float("nan"), "builtin")
    assert issubclass(BadMetricValue, MetricsError)
    assert issubclass(MetricsError, ShipyardError)


def test_a_query_keeps_its_own_copy_of_the_fields() -> None:
    fields = {"url": "http://a"}
    asked = MetricQuery("m", "production", "1.0.0", fields=fields)
    fields["url"] = "http://b"
    assert asked.fields["url"] == "http://a"
    with pytest.raises(TypeError):
        asked.fields["url"] = "http://c"  # type: ignore[index]


# --- builtin -------------------------------------------------------------------------------


def builtin(**versions: VersionTraffic) -> BuiltinProvider:
    """A provider reading fixed traffic; ``v1_4_0`` is version ``1.4.0``."""
    snapshot = TrafficSnapshot(
        {name.removeprefix("v").replace("_", "."): traffic for name, traffic in versions.items()}
    )
    return BuiltinProvider(lambda: snapshot)


def test_error_rate_is_5xx_over_requests() -> None:
    traffic = VersionTraffic(requests=200, statuses={"2xx": 150, "4xx": 10, "5xx": 40})
    measured = builtin(v1_4_0=traffic).measure(query("error_rate"))
    assert measured.value == pytest.approx(0.2)
    assert measured.requests == 200
    assert "1.4.0" in measured.source


def test_no_5xx_is_a_real_zero() -> None:
    traffic = VersionTraffic(requests=50, statuses={"2xx": 45, "4xx": 5})
    assert builtin(v1_4_0=traffic).measure(query("error_rate")).value == 0.0


def test_request_rate_is_requests_over_the_window() -> None:
    traffic = VersionTraffic(requests=300, statuses={"2xx": 300}, window_seconds=60.0)
    assert builtin(v1_4_0=traffic).measure(query("request_rate")).value == pytest.approx(5.0)


@pytest.mark.parametrize("metric", ["latency_p50", "latency_p90", "latency_p95", "latency_p99"])
def test_latency_quantiles_are_the_inclusive_definition(metric: str) -> None:
    sample = tuple(0.0001 * (i * 37 % 101) + 0.00005 for i in range(101))
    traffic = VersionTraffic(requests=101, statuses={"2xx": 101}, latencies=sample)
    percent = int(metric.removeprefix("latency_p"))
    expected = statistics.quantiles(sample, n=100, method="inclusive")[percent - 1]
    assert builtin(v1_4_0=traffic).measure(query(metric)).value == pytest.approx(expected)


def test_sub_millisecond_latencies_are_kept() -> None:
    sample = (0.00012, 0.00031, 0.00047, 0.00068, 0.00093) * 10
    traffic = VersionTraffic(requests=50, statuses={"2xx": 50}, latencies=sample)
    measured = builtin(v1_4_0=traffic).measure(query("latency_p50")).value
    assert measured == pytest.approx(0.00047)


def test_quantile_interpolates_between_closest_ranks() -> None:
    assert quantile([4.0, 1.0, 3.0, 2.0], 0.5) == pytest.approx(2.5)
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.0) == 1.0
    assert quantile([1.0, 2.0, 3.0, 4.0], 1.0) == 4.0
    assert quantile([7.0], 0.99) == 7.0


def test_too_few_requests_is_no_data() -> None:
    traffic = VersionTraffic(requests=3, statuses={"5xx": 3}, latencies=(0.1, 0.2, 0.3))
    provider = builtin(v1_4_0=traffic)
    for metric in ("error_rate", "latency_p95"):
        measured = provider.measure(query(metric))
        assert measured.value is None
        assert measured.reason == "too few requests: 3 of 20"
        assert measured.requests == 3


def test_the_minimum_of_requests_is_the_querys() -> None:
    traffic = VersionTraffic(requests=3, statuses={"2xx": 2, "5xx": 1})
    asked = MetricQuery("error_rate", "production", "1.4.0", min_requests=3)
    assert builtin(v1_4_0=traffic).measure(asked).value == pytest.approx(1 / 3)


def test_a_version_without_traffic_is_no_data() -> None:
    other = VersionTraffic(requests=100, statuses={"2xx": 100})
    measured = builtin(v1_3_0=other).measure(query("error_rate"))
    assert measured.value is None
    assert measured.reason == "no requests to version 1.4.0"


def test_latency_without_a_sample_is_no_data() -> None:
    traffic = VersionTraffic(requests=100, statuses={"2xx": 100})
    measured = builtin(v1_4_0=traffic).measure(query("latency_p99"))
    assert measured.value is None
    assert measured.reason == "no latency sample"


def test_an_unreadable_router_is_no_data() -> None:
    def read() -> TrafficSnapshot:
        raise StoreError("the router's statistics file is missing")

    measured = BuiltinProvider(read).measure(query("error_rate"))
    assert measured.value is None
    assert measured.reason is not None
    assert "statistics file is missing" in measured.reason


def test_an_unknown_builtin_metric_lists_the_known_ones() -> None:
    with pytest.raises(MetricQueryError) as raised:
        builtin().measure(query("error_ratio"))
    assert "'error_ratio'" in str(raised.value)
    for metric in BUILTIN_METRICS:
        assert metric in str(raised.value)
    assert isinstance(raised.value, UserError)


def test_complaint_rate_is_complaints_over_requests_of_the_window() -> None:
    traffic = VersionTraffic(requests=200, statuses={"2xx": 200}, complaints=7)
    measured = builtin(v1_4_0=traffic).measure(query("complaint_rate"))
    assert measured.value == pytest.approx(0.035)
    assert measured.requests == 200
    quiet = VersionTraffic(requests=50, statuses={"2xx": 50})
    assert builtin(v1_4_0=quiet).measure(query("complaint_rate")).value == 0.0


def test_complaint_rate_below_the_minimum_of_requests_is_no_data() -> None:
    traffic = VersionTraffic(requests=5, statuses={"2xx": 5}, complaints=5)
    measured = builtin(v1_4_0=traffic).measure(query("complaint_rate"))
    assert measured.value is None
    assert measured.reason == "too few requests: 5 of 20"
    idle = VersionTraffic(requests=0, complaints=3)
    assert builtin(v1_4_0=idle).measure(query("complaint_rate")).reason == (
        "no requests to version 1.4.0"
    )


def test_feedback_score_is_the_mean_score_and_no_data_without_scores() -> None:
    traffic = VersionTraffic(requests=3, statuses={"2xx": 3}, scores=4, score_sum=9)
    measured = builtin(v1_4_0=traffic).measure(query("feedback_score"))
    assert measured.value == pytest.approx(2.25)  # few requests do not hide what users said
    unrated = VersionTraffic(requests=500, statuses={"2xx": 500}, complaints=2)
    for provider in (builtin(v1_4_0=unrated), builtin()):
        empty = provider.measure(query("feedback_score"))
        assert empty.value is None
        assert empty.reason == "no scores for version 1.4.0"


# --- http ----------------------------------------------------------------------------------


@dataclass
class JsonServer:
    """A real HTTP server on loopback answering scripted bodies by path."""

    routes: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    hung_up: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, path: str, body: object, status: int = 200) -> str:
        self.routes[path] = (status, body if isinstance(body, bytes) else json.dumps(body).encode())
        return self.url(path)


@pytest.fixture
def server() -> Iterator[JsonServer]:
    fake = JsonServer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def do_GET(self) -> None:
            fake.asked.append(self.path)
            fake.authorizations.append(self.headers.get("Authorization"))
            if self.path == "/hang":
                fake.release.wait()
                return
            if self.path.startswith(("/drip-body", "/stall-body", "/drip-headers", "/not-http")):
                self.answer_slowly()
                return
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "/error-rate")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            unknown = (404, b'{"error": "no such path"}')
            status, body = fake.routes.get(
                self.path, fake.routes.get(self.path.split("?")[0], unknown)
            )
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def answer_slowly(self) -> None:
            """Drip the body or the headers a byte every 0.2 s, or stall after the headers,
            until the test ends or the client hangs up; or answer something that is not HTTP."""
            if self.path.startswith("/not-http"):
                self.wfile.write(b"HELLO\r\n")
                return
            if self.path.startswith("/drip-headers"):
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            else:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
            if self.path.startswith("/stall-body"):
                fake.release.wait()
                return
            try:
                while not fake.release.wait(0.2):
                    self.wfile.write(b"1")
            except OSError:
                fake.hung_up.set()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    fake.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_http_reads_a_number(server: JsonServer) -> None:
    url = server.serve("/error-rate", 0.0125)
    measured = HttpProvider().measure(query(url=url, path="$"))
    assert measured.value == pytest.approx(0.0125)


def test_http_reads_a_nested_path_and_fills_in_version_and_env(server: JsonServer) -> None:
    body = {"data": {"result": [{"value": [1700000000, "0.25"]}, {"value": [0, "9"]}]}}
    server.serve("/q?v=1.4.0%2Bbuild.7&env=production", body)
    asked = MetricQuery(
        "p99",
        "production",
        "1.4.0+build.7",
        fields={
            "url": server.url("/q?v={{version}}&env={{ env }}"),
            "path": "data.result[0].value[1]",
        },
    )
    measured = HttpProvider().measure(asked)
    assert measured.value == pytest.approx(0.25)
    assert server.asked == ["/q?v=1.4.0%2Bbuild.7&env=production"]


@pytest.mark.parametrize(
    ("body", "path", "reason"),
    [
        ({"a": {"b": 1}}, "a.c", "$.a has no key 'c'"),
        ({"a": [1]}, "a[3]", "$.a has no item [3]"),
        ({"a": 1}, "a.b", "$.a has no key 'b'"),
        ({"a": "fast"}, "a", "$.a is 'fast', not a number"),
        ({"a": True}, "a", "$.a is true, not a number"),
        ({"a": None}, "a", "$.a is null, not a number"),
        ({"a": {"b": 1}}, "a", "$.a is a dict, not a number"),
        (b'{"a": NaN}', "a", "$.a is nan, not a finite number"),
        (b'{"a": Infinity}', "a", "$.a is inf, not a finite number"),
        (b"<html>down</html>", "a", "the answer is not JSON: '<html>down</html>'"),
    ],
)
def test_http_without_a_number_is_no_data_with_the_reason(
    server: JsonServer, body: object, path: str, reason: str
) -> None:
    url = server.serve("/metric", body)
    measured = HttpProvider().measure(query(url=url, path=path))
    assert measured.value is None
    assert measured.reason == reason


def test_http_error_status_is_no_data(server: JsonServer) -> None:
    url = server.serve("/metric", {"value": 1}, status=503)
    measured = HttpProvider().measure(query(url=url, path="value"))
    assert measured.value is None
    assert measured.reason == "the server answered 503 Service Unavailable"


def test_http_unreachable_is_no_data() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    measured = HttpProvider().measure(query(url=f"http://127.0.0.1:{port}/m", path="v"))
    assert measured.value is None
    assert measured.reason is not None
    assert measured.reason.startswith("cannot reach the server: ")


def test_http_without_an_answer_in_time_is_no_data(server: JsonServer) -> None:
    asked = MetricQuery(
        "m",
        "production",
        "1.0.0",
        fields={"url": server.url("/hang"), "path": "v"},
        timeout_seconds=0.3,
    )
    measured = HttpProvider().measure(asked)
    assert measured.value is None
    assert measured.reason == "no answer within 0.3 s"


def measured_or_hung(
    provider: HttpProvider | PrometheusProvider, asked: MetricQuery
) -> Measurement:
    """``provider.measure(asked)``, failing the test when it has not returned after 30 s.

    A hang detector that keeps a broken provider from hanging the test run, not a timing
    assertion: the providers under test have a timeout of 1 s.
    """
    measured: list[Measurement] = []
    worker = threading.Thread(target=lambda: measured.append(provider.measure(asked)), daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), f"{provider.name} is still measuring after 30 s"
    return measured[0]


@pytest.mark.parametrize("provider", ["http", "prometheus"])
@pytest.mark.parametrize("behaviour", ["/drip-body", "/stall-body", "/drip-headers"])
def test_a_slow_server_gets_no_more_than_the_timeout_in_all(
    server: JsonServer, provider: str, behaviour: str
) -> None:
    if provider == "http":
        measurer: HttpProvider | PrometheusProvider = HttpProvider()
        fields = {"url": server.url(behaviour), "path": "v"}
    else:
        measurer = PrometheusProvider(server.url(behaviour))
        fields = {"query": "vector(1)"}
    asked = MetricQuery("m", "production", "1.0.0", fields=fields, timeout_seconds=1)
    measured = measured_or_hung(measurer, asked)
    assert measured.value is None
    assert measured.reason == "no answer within 1 s"
    assert len(server.asked) == 1
    assert server.asked[0].startswith(behaviour)
    if behaviour.startswith("/drip"):
        # the provider hung up: the server's next bytes found the connection closed
        assert server.hung_up.wait(timeout=30), "the provider kept the connection open"


def test_http_follows_a_redirect(server: JsonServer) -> None:
    server.serve("/error-rate", {"rate": 0.5})
    measured = HttpProvider().measure(query(url=server.url("/moved"), path="rate"))
    assert measured.value == 0.5
    assert server.asked == ["/moved", "/error-rate"]


def test_http_answer_that_is_not_http_is_no_data(server: JsonServer) -> None:
    measured = HttpProvider().measure(query(url=server.url("/not-http"), path="v"))
    assert measured.value is None
    assert measured.reason == "the request failed: not an HTTP answer: 'HELLO'"


def test_prometheus_sends_url_credentials_and_hides_them(server: JsonServer) -> None:
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [0, "2.5"]}}
    server.serve("/prom/api/v1/query", scalar)
    provider = PrometheusProvider(f"http://ada:s3cret-pass@127.0.0.1:{server.port}/prom")
    measured = provider.measure(MetricQuery("m", "production", "1.0.0", fields={"query": "x"}))
    assert measured.value == 2.5
    assert server.authorizations == ["Basic " + base64.b64encode(b"ada:s3cret-pass").decode()]
    assert "s3cret-pass" not in measured.source
    assert f"127.0.0.1:{server.port}/prom" in measured.source


def test_http_reads_at_most_one_mib(server: JsonServer) -> None:
    url = server.serve("/big", b"[" + b" " * MAX_BODY_BYTES + b"1]")
    measured = HttpProvider().measure(query(url=url, path="[0]"))
    assert measured.value is None
    assert measured.reason == "the answer is larger than 1 MiB"


def test_http_sends_url_credentials_and_hides_them_in_the_source(server: JsonServer) -> None:
    server.serve("/m?token=s3cr3t-value", {"v": 2})
    url = f"http://user:hunter22@127.0.0.1:{server.port}/m?token=s3cr3t-value"
    measured = HttpProvider().measure(query(url=url, path="v"))
    assert measured.value == 2.0
    assert server.authorizations == ["Basic " + base64.b64encode(b"user:hunter22").decode()]
    assert "hunter22" not in measured.source
    assert "s3cr3t" not in measured.source
    assert f"127.0.0.1:{server.port}/m" in measured.source


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"path": "v"}, "has no 'url'"),
        ({"url": "http://127.0.0.1:1/"}, "has no 'path'"),
        ({"url": "file:///etc/passwd", "path": "v"}, "is not http or https"),
        ({"url": "http://127.0.0.1:80a/", "path": "v"}, "has a port that is not a number"),
        ({"url": "http:///metric", "path": "v"}, "names no host"),
        ({"url": "http://127.0.0.1:1/", "path": "a..b"}, "is malformed at character 2"),
        ({"url": "http://127.0.0.1:1/{{release}}", "path": "v"}, "unknown placeholder {{release}}"),
    ],
)
def test_http_query_mistakes_are_user_errors(fields: dict[str, str], message: str) -> None:
    with pytest.raises(MetricQueryError, match=message.replace("{", r"\{").replace("}", r"\}")):
        HttpProvider().measure(query(**fields))


# --- command -------------------------------------------------------------------------------


def test_command_prints_a_number_with_version_and_env_quoted(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    pwned = tmp_path / "pwned"
    asked = MetricQuery(
        "m",
        "pre prod",
        f"1.4.0;touch {pwned}",
        fields={"command": f"printf '%s|%s' {{{{version}}}} {{{{env}}}} > {seen}; echo ' 0.042 '"},
    )
    measured = CommandProvider().measure(asked)
    assert measured.value == pytest.approx(0.042)
    assert seen.read_text() == f"1.4.0;touch {pwned}|pre prod"
    assert not pwned.exists()


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("echo fast", "printed 'fast', not one number"),
        ("echo 1; echo 2", "printed '1\\n2', not one number"),
        ("true", "printed nothing, not one number"),
        ("echo nan", "printed 'nan', not a finite number"),
        ("echo 0.5; echo 'db is down' >&2; exit 3", "exited with status 3; stderr: db is down"),
        ("exit 1", "exited with status 1"),
    ],
)
def test_command_without_one_number_is_no_data_with_the_reason(command: str, reason: str) -> None:
    measured = CommandProvider().measure(query(command=command))
    assert measured.value is None
    assert measured.reason == reason


def test_command_reasons_are_cut_to_200_characters() -> None:
    measured = CommandProvider().measure(query(command="printf 'x%.0s' $(seq 500) >&2; exit 4"))
    assert measured.reason is not None
    assert measured.reason.startswith("exited with status 4; stderr: ")
    assert len(measured.reason) <= 200
    printed = CommandProvider().measure(query(command="printf 'y%.0s' $(seq 500)"))
    assert printed.reason is not None
    assert len(printed.reason) <= 200 + len("printed '', not one number")


def test_command_output_is_read_up_to_a_bound() -> None:
    flood = "head -c 10000000 /dev/zero | tr '\\0' 1"
    measured = CommandProvider().measure(query(command=flood))
    assert measured.value is None
    assert measured.reason == "printed more than 64 KiB, not one number"
    noisy = CommandProvider().measure(query(command=f"{flood} >&2; echo failed >&2; exit 5"))
    assert noisy.reason is not None
    assert noisy.reason.endswith("1111failed")
    assert len(noisy.reason) == 200


def test_command_past_its_timeout_is_killed_with_what_it_started(tmp_path: Path) -> None:
    started = tmp_path / "sleep.pid"
    asked = MetricQuery(
        "m",
        "production",
        "1.0.0",
        fields={"command": f"sleep 30 & echo $! > {started}; wait; echo 1"},
        timeout_seconds=2,
    )
    measured = CommandProvider().measure(asked)
    assert measured.value is None
    assert measured.reason == "no answer within 2 s (the command was killed)"
    # The background sleep held the output pipe, so the provider returning means it was killed:
    # the kernel closes its files before it becomes a zombie, so it may still be finishing its
    # exit (R or D) for a moment; it ends gone or a zombie, where a live `sleep 30` would stay
    # sleeping (S) for half a minute.
    stat_file = Path(f"/proc/{started.read_text().strip()}/stat")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = stat_file.read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state == "Z":
            return
        assert state != "S", "the background sleep outlived the killed command"
        time.sleep(0.01)
    raise AssertionError("the background sleep did not finish exiting")


def test_command_without_a_command_is_a_user_error() -> None:
    with pytest.raises(MetricQueryError, match="has no 'command'"):
        CommandProvider().measure(query())


# --- registry and fake ---------------------------------------------------------------------


def test_the_registry_builds_providers_by_name() -> None:
    snapshot = TrafficSnapshot(
        {"1.4.0": VersionTraffic(requests=40, statuses={"5xx": 4, "2xx": 36})}
    )
    sources = ProviderSources(traffic=lambda: snapshot)
    assert isinstance(provider_for("http", sources), HttpProvider)
    assert isinstance(provider_for("command", sources), CommandProvider)
    measured = provider_for("builtin", sources).measure(query("error_rate"))
    assert measured.value == pytest.approx(0.1)
    assert {"builtin", "http", "command"} <= set(PROVIDERS)


def test_an_unknown_provider_names_where_and_the_known_ones() -> None:
    with pytest.raises(ConfigError) as raised:
        provider_for(
            "prometeus", ProviderSources(), where="environments.production.analysis.metrics[2]"
        )
    assert "environments.production.analysis.metrics[2]" in str(raised.value)
    assert "'prometeus'" in str(raised.value)
    assert "builtin, command, http" in str(raised.value)


def test_builtin_without_a_router_is_unavailable() -> None:
    with pytest.raises(ProviderUnavailable, match="no router here"):
        provider_for("builtin", ProviderSources())


def test_the_fake_answers_its_script_in_order_then_repeats_the_last() -> None:
    fake = FakeProvider({"error_rate": [0.5, None, Measurement.of(0.01, "scripted")]})
    answers = [fake.measure(query("error_rate")).value for _ in range(4)]
    assert answers == [0.5, None, 0.01, 0.01]
    assert fake.measure(query("latency_p95")).reason == "no scripted values for 'latency_p95'"
    assert [asked.metric for asked in fake.queries] == ["error_rate"] * 4 + ["latency_p95"]
