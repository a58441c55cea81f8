"""The osv-api source against a local OSV API over real HTTP: batches, pages, cache, failures."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gates.gatesupport import NOW, context, osv
from shipyard.gates import Status, run_gates
from shipyard.gates.advisories import OsvApi, PackageVersion
from shipyard.gates.interface import AdvisorySourceError
from shipyard.gates.vulnerabilities import SOURCE_FAILED


@dataclass
class FakeOsv:
    """An OSV API in a thread: answers querybatch from its records and counts requests."""

    records: dict[str, dict[str, Any]]
    page_size: int = 100
    broken: str | None = None
    requests: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def matches(self, query: dict[str, Any]) -> list[dict[str, str]]:
        from shipyard.gates.advisories.matching import is_affected
        from shipyard.gates.advisories.model import parse_advisory

        package = query["package"]
        return [
            {"id": r["id"], "modified": r["modified"]}
            for r in self.records.values()
            if is_affected(
                parse_advisory(r, "fake"), package["ecosystem"], package["name"], query["version"]
            )
        ]


@pytest.fixture
def fake_osv() -> Iterator[FakeOsv]:
    fake = FakeOsv(records={})

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            return

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            fake.requests.append(f"POST {self.path}")
            if fake.broken == "500":
                self._send(500, b'{"error": "boom"}')
                return
            if fake.broken == "garbage":
                self._send(200, b"<html>not json</html>")
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            results = []
            for query in body["queries"]:
                vulns = fake.matches(query)
                start = int(query.get("page_token", "0"))
                page = vulns[start : start + fake.page_size]
                result: dict[str, Any] = {"vulns": page} if page else {}
                if start + fake.page_size < len(vulns):
                    result["next_page_token"] = str(start + fake.page_size)
                results.append(result)
            self._send(200, json.dumps({"results": results}).encode())

        def do_GET(self) -> None:
            fake.requests.append(f"GET {self.path}")
            vuln_id = self.path.rsplit("/", 1)[-1]
            if vuln_id not in fake.records:
                self._send(404, b'{"code": 5, "message": "Bug not found."}')
                return
            self._send(200, json.dumps(fake.records[vuln_id]).encode())

    fake.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    thread.join(timeout=10)


def api(fake: FakeOsv, state_root: Path) -> OsvApi:
    return OsvApi(fake.url, timeout=10, cache_dir=state_root / "osv-api")


def test_querybatch_then_records_by_id_then_the_cache(fake_osv: FakeOsv, state_root: Path) -> None:
    fake_osv.records = {
        "GHSA-1": osv("GHSA-1", "requests", events=[{"introduced": "0"}, {"fixed": "2.20.0"}]),
        "PYSEC-2": osv("PYSEC-2", "requests", versions=["2.19.0"]),
    }
    source = api(fake_osv, state_root)
    wanted = [PackageVersion("PyPI", "requests", "2.19.0"), PackageVersion("PyPI", "six", "1.0")]
    found = source.advisories(wanted)
    assert sorted(a.id for a in found[wanted[0]]) == ["GHSA-1", "PYSEC-2"]
    assert found[wanted[1]] == []
    assert sorted(fake_osv.requests) == [
        "GET /v1/vulns/GHSA-1",
        "GET /v1/vulns/PYSEC-2",
        "POST /v1/querybatch",
    ]
    fake_osv.requests.clear()
    again = api(fake_osv, state_root).advisories(wanted)
    assert sorted(a.id for a in again[wanted[0]]) == ["GHSA-1", "PYSEC-2"]
    assert fake_osv.requests == ["POST /v1/querybatch"]  # unchanged records come from the cache


def test_a_modified_record_is_fetched_again(fake_osv: FakeOsv, state_root: Path) -> None:
    record = osv("GHSA-1", "requests", versions=["2.19.0"])
    fake_osv.records = {"GHSA-1": record}
    wanted = [PackageVersion("PyPI", "requests", "2.19.0")]
    api(fake_osv, state_root).advisories(wanted)
    fake_osv.records["GHSA-1"] = {**record, "modified": "2026-05-31T00:00:00Z", "summary": "new"}
    fake_osv.requests.clear()
    [advisory] = api(fake_osv, state_root).advisories(wanted)[wanted[0]]
    assert advisory.summary == "new"
    assert "GET /v1/vulns/GHSA-1" in fake_osv.requests


def test_pages_are_followed(fake_osv: FakeOsv, state_root: Path) -> None:
    fake_osv.records = {
        f"GHSA-{n}": osv(f"GHSA-{n}", "requests", versions=["1.0"]) for n in range(5)
    }
    fake_osv.page_size = 2
    wanted = PackageVersion("PyPI", "requests", "1.0")
    found = api(fake_osv, state_root).advisories([wanted])
    assert len(found[wanted]) == 5
    assert fake_osv.requests.count("POST /v1/querybatch") == 3


def test_the_gate_uses_the_api_and_matches_by_the_spec(
    fake_osv: FakeOsv, state_root: Path, workspace: Path
) -> None:
    fake_osv.records = {
        "GHSA-1": osv("GHSA-1", "requests", events=[{"introduced": "0"}, {"fixed": "2.20.0"}])
    }
    (workspace / "requirements.txt").write_text("requests==2.19.0\n")
    gates = f"{{sources: [osv-api], osv_api: {{url: '{fake_osv.url}', timeout: 10s}}}}"
    [result] = run_gates(context(workspace, state_root, gates), ["vulnerabilities"])
    assert result.status is Status.FAIL
    assert [f.id for f in result.findings] == ["GHSA-1"]
    assert result.findings[0].details["upgrade"] == "2.20.0"


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("500", "answered 500"),
        ("garbage", "gave an unexpected answer: the answer is not JSON"),
    ],
)
def test_a_failing_api_is_named(
    fake_osv: FakeOsv, state_root: Path, broken: str, message: str
) -> None:
    fake_osv.broken = broken
    with pytest.raises(AdvisorySourceError) as caught:
        api(fake_osv, state_root).advisories([PackageVersion("PyPI", "requests", "1.0")])
    assert f"the OSV API at {fake_osv.url}/v1/querybatch" in caught.value.message
    assert message in caught.value.message


def test_an_invalid_record_from_the_api_is_named(fake_osv: FakeOsv, state_root: Path) -> None:
    bad = osv("GHSA-1", "requests", versions=["1.0"])
    fake_osv.records = {"GHSA-1": bad}
    wanted = PackageVersion("PyPI", "requests", "1.0")
    fake_osv.records["GHSA-1"] = {
        **bad,
        "affected": [{"package": {"name": "requests"}, "versions": ["1.0"]}],
    }
    # The fake matches with its own copy; the client must refuse what it is sent.
    fake_osv.matches = lambda query: [{"id": "GHSA-1", "modified": bad["modified"]}]  # type: ignore[method-assign]
    with pytest.raises(AdvisorySourceError) as caught:
        api(fake_osv, state_root).advisories([wanted])
    assert f"{fake_osv.url}/v1/vulns/GHSA-1" in caught.value.message
    assert "affected[0].package.ecosystem: is missing" in caught.value.message


def test_an_unreachable_api_fails_the_gate_closed(
    state_root: Path, workspace: Path, unused_port: int
) -> None:
    (workspace / "requirements.txt").write_text("requests==2.31.0\n")
    url = f"http://127.0.0.1:{unused_port}"
    gates = f"{{sources: [osv-api], osv_api: {{url: '{url}', timeout: 5s}}}}"
    [result] = run_gates(context(workspace, state_root, gates, now=NOW), ["vulnerabilities"])
    assert result.status is Status.FAIL
    [finding] = result.findings
    assert finding.id == SOURCE_FAILED
    assert finding.message.startswith(f"the OSV API at {url}/v1/querybatch cannot be reached")
    assert finding.message.endswith("the gate fails closed")


@pytest.fixture
def unused_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
