"""``shipyard demo`` as a newcomer runs it, in a real process: the whole loop in a folder of
its own, both outcomes read back from the demo's store, and nothing left running.

The one end-to-end run takes about a minute (its time is measured in bench/bench_demo.py).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
from sqlalchemy import select

from shipyard.cd import deployments
from shipyard.cd.deployments import Deployment, DeploymentStatus
from shipyard.core import incidents, measurements, outbox
from shipyard.core import state as state_dir
from shipyard.core.store import Store, open_store
from shipyard.core.store.tables import outbox_deliveries
from support import run_cli

pytestmark = pytest.mark.slow  # real processes end to end: started first (conftest)

DEMO_TIMEOUT = 600.0  # seconds: only a bound for a hung demo; it takes about one


def test_the_demo_ships_a_good_release_rolls_back_a_bad_one_and_stops_everything(
    tmp_path: Path,
) -> None:
    # From a folder outside any repository, with Shipyard's variables pointing elsewhere.
    directory = tmp_path / "demo"
    elsewhere = tmp_path / "elsewhere"
    result = run_cli(
        "demo",
        "--dir",
        str(directory),
        "--json",
        cwd=tmp_path,
        env={
            "SHIPYARD_HOME": str(elsewhere / "home"),
            "SHIPYARD_DATABASE_URL": f"sqlite:///{elsewhere}/shipyard.db",
            "XDG_CONFIG_HOME": str(elsewhere / "config"),
        },
        timeout=DEMO_TIMEOUT,
    )
    assert result.code == 0, result.output
    store = open_store(state_dir.locate(directory))
    good, bad = _outcomes(store)
    _notified(store, directory, bad)
    _nothing_runs(directory, str(bad.progress["address"]))
    # Nothing of Shipyard's went where the variables point: no state, database or signing key.
    assert [path.name for path in elsewhere.glob("*")] in ([], ["config"])
    assert not (elsewhere / "config" / "shipyard").exists()
    # The summary names the deployments the store holds, and the report it wrote is there.
    summary = json.loads(result.stdout)
    assert (summary["good"]["deployment"], summary["bad"]["deployment"]) == (good.id, bad.id)
    assert (summary["ok"], summary["kept"]) == (True, False)
    assert Path(summary["report"]).read_text().startswith("<!DOCTYPE html>")


def _outcomes(store: Store) -> tuple[Deployment, Deployment]:
    """The good release went through staging and a passing canary, watched, to production;
    the bad one through staging, then its canary failed and was rolled back with an incident."""
    production = {
        deployment.version: deployment
        for deployment in deployments.for_environment(store, "webapp", "production")
    }
    assert {version: found.status for version, found in production.items()} == {
        "0.1.0": DeploymentStatus.SUCCEEDED,
        "0.2.0": DeploymentStatus.SUCCEEDED,
        "0.3.0": DeploymentStatus.ROLLED_BACK,
    }
    good, bad = production["0.2.0"], production["0.3.0"]
    assert (good.strategy, good.previous_version) == ("canary", "0.1.0")
    assert (bad.strategy, bad.previous_version) == ("canary", "0.2.0")
    staging = deployments.for_environment(store, "webapp", "staging")
    assert {d.version: d.status for d in staging} == dict.fromkeys(
        ("0.1.0", "0.2.0", "0.3.0"), DeploymentStatus.SUCCEEDED
    )  # the bad release looked fine without traffic
    with store.read() as conn:
        good_looks = measurements.for_deployment(conn, good.id)
        bad_looks = measurements.for_deployment(conn, bad.id)
        [incident] = incidents.for_deployment(conn, bad.id)
    passed = {look.phase for look in good_looks if look.verdict == "pass"}
    assert passed == {"step 1", "step 2", "watch"}
    assert {look.verdict for look in good_looks} <= {"pass", "inconclusive"}
    assert (bad_looks[-1].metric, bad_looks[-1].verdict) == ("error_rate", "fail")
    assert (incident.caused_by_version, incident.restored_by_version) == ("0.3.0", "0.2.0")
    return good, bad


def _notified(store: Store, directory: Path, bad: Deployment) -> None:
    """The rollback's events were delivered, as the store records, and the demo's receiver
    wrote down each of them once."""
    with store.read() as conn:
        events = outbox.read(conn, types=["deployment.rolled_back", "incident.opened"])
        delivered = set(
            conn.execute(
                select(outbox_deliveries.c.event_id).where(
                    outbox_deliveries.c.delivered_at.is_not(None)
                )
            ).scalars()
        )
    assert [event.subject for event in events if event.type == "deployment.rolled_back"] == [
        bad.subject
    ]
    assert {event.id for event in events} <= delivered
    received = [
        json.loads(line)
        for line in (directory / ".demo" / "notifications.jsonl").read_text().splitlines()
    ]
    assert sorted(item["event"]["id"] for item in received) == [event.id for event in events]


def _nothing_runs(directory: Path, router: str) -> None:
    """No process of the demo is left, and production's router port is closed."""
    address = urlsplit(router)
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect((address.hostname, address.port))
    running = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        words = " ".join(process.info["cmdline"] or ()) + " " + (process.info["cwd"] or "")
        if str(directory) in words:
            running.append(words)
    assert running == []


def test_a_folder_that_is_not_empty_is_refused_and_left_alone(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine\n")
    result = run_cli("demo", "--dir", str(taken), cwd=tmp_path, timeout=60)
    assert result.code == 2, result.output
    assert f"--dir {taken}: is not empty" in result.stderr
    assert "hint: name a new or empty folder" in result.stderr
    assert "Traceback" not in result.output
    assert [path.name for path in taken.iterdir()] == ["notes.txt"]
