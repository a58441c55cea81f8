"""The example web service as a real process: its version, health, failure and latency knobs,
and a graceful stop on SIGTERM — all checked over real HTTP."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "webapp"
PATIENCE = 30.0  # seconds: only ever an upper bound for waiting on something to happen
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


def wait_for(condition: Callable[[], bool], timeout: float = PATIENCE) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; return whether it held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@dataclass
class App:
    """A running example service."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def get(self, path: str = "/", method: str = "GET") -> tuple[int, str, dict[str, str]]:
        """One request on a new connection: status, body and headers."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=PATIENCE)
        try:
            return request(connection, path, method)
        finally:
            connection.close()

    def connect(self) -> http.client.HTTPConnection:
        """A keep-alive connection to the service."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=PATIENCE)


def request(
    connection: http.client.HTTPConnection, path: str = "/", method: str = "GET"
) -> tuple[int, str, dict[str, str]]:
    """One request on ``connection``: status, body and headers."""
    connection.request(method, path)
    response = connection.getresponse()
    return response.status, response.read().decode(), dict(response.getheaders())


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Callable[..., App]]:
    """Start the service (``python -m app --port 0``) with settings; all stop afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start(folder: Path = EXAMPLE, **settings: str) -> App:
        log = tmp_path / f"app-{len(started)}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "app", "--port", "0"],
                cwd=folder,
                env={**env, **settings},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        started.append(process)

        def listening() -> bool:
            return bool(LISTENING.search(log.read_text())) or process.poll() is not None

        assert wait_for(listening), log.read_text()
        found = LISTENING.search(log.read_text())
        assert found, f"the service did not start: {log.read_text()}"
        return App(process=process, port=int(found.group(1)), log=log)

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=PATIENCE)


def test_root_answers_with_the_version_file(start_app: Callable[..., App]) -> None:
    app = start_app(APP_VERSION="9.9.9")
    expected = (EXAMPLE / "VERSION").read_text().strip()
    status, body, headers = app.get("/")
    assert (status, body) == (200, expected + "\n")
    assert headers["X-App-Version"] == expected
    status, body, _ = app.get("/", method="HEAD")
    assert (status, body) == (200, "")


def test_without_a_version_file_the_environment_names_the_version(
    start_app: Callable[..., App], tmp_path: Path
) -> None:
    copy = tmp_path / "webapp"
    shutil.copytree(EXAMPLE / "app", copy / "app", ignore=shutil.ignore_patterns("__pycache__"))
    assert start_app(copy, APP_VERSION="2.3.4").get("/")[:2] == (200, "2.3.4\n")
    assert start_app(copy).get("/")[:2] == (200, "0.0.0+unknown\n")
    (copy / "VERSION").write_text("3.0.0-rc.1\n")
    assert start_app(copy, APP_VERSION="2.3.4").get("/")[:2] == (200, "3.0.0-rc.1\n")


def test_health_check(start_app: Callable[..., App]) -> None:
    assert start_app().get("/healthz")[:2] == (200, "ok\n")
    unhealthy = start_app(APP_HEALTHY="0")
    status, body, _ = unhealthy.get("/healthz")
    assert status == 503
    assert "unhealthy" in body
    assert unhealthy.get("/")[0] == 200  # unhealthy, but it still answers


def test_start_delay_delays_readiness(start_app: Callable[..., App]) -> None:
    app = start_app(APP_START_DELAY="2")
    assert app.get("/healthz")[:2] == (503, "starting\n")
    assert app.get("/")[:2] == (503, "starting\n")
    assert wait_for(lambda: app.get("/healthz")[0] == 200)
    assert app.get("/")[0] == 200


@pytest.mark.parametrize(("rate", "failures"), [("0", 0), ("0.25", 25), ("0.29", 29), ("1", 100)])
def test_fail_rate_fails_exactly_that_share(
    start_app: Callable[..., App], rate: str, failures: int
) -> None:
    app = start_app(APP_FAIL_RATE=rate)
    connection = app.connect()  # one keep-alive connection for all of them
    statuses = [request(connection)[0] for _ in range(100)]
    connection.close()
    assert statuses.count(500) == failures
    assert statuses.count(200) == 100 - failures
    assert app.get("/healthz")[0] == 200  # health checks never fail
    stats = json.loads(app.get("/stats")[1])
    assert stats["failed"] == failures
    if failures:
        assert "500" in app.log.read_text()  # server errors are logged


def test_latency_is_added_to_each_request(start_app: Callable[..., App]) -> None:
    app = start_app(APP_LATENCY_MS="300")
    began = time.monotonic()
    assert app.get("/")[0] == 200
    assert time.monotonic() - began >= 0.3  # a lower bound only: sleeping never ends early


def test_the_regression_appears_only_after_regress_after(start_app: Callable[..., App]) -> None:
    app = start_app(APP_REGRESS_AFTER="2", APP_FAIL_RATE="1")
    assert json.loads(app.get("/stats")[1])["regressed"] is False
    connection = app.connect()
    assert [request(connection)[0] for _ in range(5)] == [200] * 5  # healthy at first
    assert wait_for(lambda: request(connection)[0] == 500), "the regression never came"
    assert [request(connection)[0] for _ in range(5)] == [500] * 5  # and it stays
    connection.close()
    stats = json.loads(app.get("/stats")[1])
    assert (stats["regressed"], stats["failed"]) == (True, 6)
    assert app.get("/healthz")[0] == 200  # health checks never see it


def test_unknown_paths_are_404(start_app: Callable[..., App]) -> None:
    assert start_app().get("/nope")[0] == 404


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("APP_FAIL_RATE", "2"),
        ("APP_FAIL_RATE", "often"),
        ("APP_HEALTHY", "maybe"),
        ("APP_REGRESS_AFTER", "-1"),
        ("APP_REGRESS_AFTER", "soon"),
    ],
)
def test_unusable_settings_stop_it_at_start(setting: str, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "--port", "0"],
        cwd=EXAMPLE,
        env={**os.environ, setting: value},
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )
    assert result.returncode == 2
    assert setting in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_sigterm_finishes_requests_in_flight_then_exits(start_app: Callable[..., App]) -> None:
    app = start_app(APP_LATENCY_MS="1500")
    idle = app.connect()
    assert request(idle, "/healthz")[0] == 200  # an idle keep-alive connection stays open

    answers: list[tuple[int, str]] = []
    slow = threading.Thread(target=lambda: answers.append(app.get("/")[:2]))
    slow.start()
    assert wait_for(lambda: json.loads(app.get("/stats")[1])["in_flight"] >= 1)

    app.process.send_signal(signal.SIGTERM)
    slow.join(timeout=PATIENCE)
    assert answers == [(200, (EXAMPLE / "VERSION").read_text())]
    assert app.process.wait(timeout=PATIENCE) == 0  # the idle connection did not hold it up
    with pytest.raises(ConnectionRefusedError):
        app.get("/healthz")
    assert "stopped" in app.log.read_text()
    idle.close()
