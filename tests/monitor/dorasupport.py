"""A scripted month of a project, for the DORA and report tests: commits with fixed dates in a
real git repository, and releases, deployments and incidents in a real store, written through
their repository functions.

Every moment is an offset from ``start``, the beginning of a 30-day period that ends at
``start + 30d``; test_dora.py computes each figure by hand from the timeline below.

  release  commit  committed
  1.0.0    a1      start - 11d + 8h
  1.1.0    b2      start + 1d 20h   (b1 before it: start + 1d 8h)
  1.2.0    c1      start + 5d 10h
  1.2.1    d1      start + 6d 15h
  1.3.0    e2      start + 21d      (e1 before it: start + 20d)

  deployment         created           lasted  ended
  P1 prod 1.0.0      start - 10d + 9h  10m     succeeded (before the period)
  S1 staging 1.1.0   start + 1d 22h    10m     succeeded
  P2 prod 1.1.0      start + 2d 8h     1h      succeeded
  S2 staging 1.2.0   start + 5d 12h    5m      succeeded
  P3 prod 1.2.0      start + 6d 10h    30m     rolled back; incident I1 20m in, restored at its end
  P4 prod 1.2.1      start + 6d 16h    20m     succeeded
  P5 prod 1.3.0      start + 21d 12h   30m     succeeded
  (I4 prod, no cause: start + 21d 11h, restored 2h later)
  (I2 prod 1.3.0, no deployment named: start + 22d 8h, restored 2h later)
  P6 prod rollback   start + 22d 9h    15m     succeeded, to 1.2.1
  P7 prod 1.3.0      start + 25d 10h   45m     failed
  P8 prod 1.3.0      start + 25d 11h   20m     succeeded
  (I3 prod 1.3.0: start + 29d 12h, not restored)
  P9 prod 1.3.0      start + 29d 13h   -       still progressing
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from shipyard.cd import deployments
from shipyard.core import incidents
from shipyard.core.store import Store
from shipyard.core.store.tables import deployments as deployments_table
from shipyard.release import records

D, H, M = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
PROJECT = "shop"
BOT = "shipyard-agent"
ONCALL = "oncall@example.com"
CONFIG = """project: shop
service:
  command: python3 -m app --port {port}
environments:
  staging: {}
  production: {}
"""


@dataclass
class Script:
    """What the script made: commits by name, deployments and incidents by name to their ids."""

    start: datetime
    commits: dict[str, str] = field(default_factory=dict)
    deployments: dict[str, int] = field(default_factory=dict)
    incidents: dict[str, int] = field(default_factory=dict)


def commit(repo: Path, name: str, when: datetime) -> str:
    """A commit touching ``name``.txt, authored and committed at ``when``; its sha."""
    (repo / f"{name}.txt").write_text(f"{name}\n")
    stamp = when.isoformat()
    env = {**os.environ, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
    run = {"cwd": repo, "env": env, "check": True, "capture_output": True, "text": True}
    subprocess.run(["git", "add", f"{name}.txt"], **run)  # type: ignore[call-overload]
    subprocess.run(["git", "commit", "-q", "-m", f"feat: {name}"], **run)  # type: ignore[call-overload]
    out = subprocess.run(["git", "rev-parse", "HEAD"], **run)  # type: ignore[call-overload]
    return str(out.stdout).strip()


def release(store: Store, version: str, sha: str) -> None:
    """A published release of ``version`` made from ``sha``."""
    pending = records.create_pending(
        store,
        project=PROJECT,
        version=version,
        tag=f"v{version}",
        commit=sha,
        run_id=None,
        gate_run_id=None,
        bundle="sha256:" + "0" * 64,
        artifacts={},
        sbom=None,
        envelope=None,
        key_id=None,
        changelog=f"## {version}\n",
        config_digest="0" * 64,
        config_path="shipyard.yaml",
        gate_results=None,
        actor=ONCALL,
    )
    records.publish(store, pending, actor=ONCALL)


def deploy(
    store: Store,
    environment: str,
    version: str,
    *,
    created: datetime,
    lasted: timedelta | None,
    ends: str = "succeeded",
    kind: str = "deploy",
) -> int:
    """A deployment through the state machine, then dated: asked for at ``created``, finished
    ``lasted`` later (None: still progressing). The repository functions stamp the present
    moment and take no time, so the test dates the row afterwards."""
    made = deployments.create(
        store,
        project=PROJECT,
        environment=environment,
        version=version,
        kind=kind,
        strategy="canary",
        previous_version=None,
        settings={},
        actor=ONCALL,
        on_busy="queue",
    )
    deployments.transition(store, made.id, "progressing", actor=BOT)
    if lasted is not None:
        if ends == "rolled_back":
            deployments.transition(store, made.id, "aborted", actor=BOT, message="analysis failed")
        deployments.transition(store, made.id, ends, actor=BOT)
    finished = None if lasted is None else created + lasted
    with store.write() as conn:
        conn.execute(
            update(deployments_table)
            .where(deployments_table.c.id == made.id)
            .values(created_at=created, updated_at=finished or created, finished_at=finished)
        )
    return made.id


def incident(
    store: Store,
    *,
    opened: datetime,
    restored_after: timedelta | None,
    version: str | None,
    deployment_id: int | None = None,
) -> int:
    """An incident in production, opened at ``opened`` and restored ``restored_after`` later."""
    with store.write() as conn:
        made = incidents.open(
            conn,
            project=PROJECT,
            environment="production",
            title="checkout fails",
            reason="error_rate 0.2 > max 0.01",
            source="analysis" if deployment_id else "manual",
            actor=BOT,
            caused_by_version=version,
            deployment_id=deployment_id,
            opened_at=opened,
        )
        if restored_after is not None:
            incidents.restored(
                conn, made.id, version="1.2.1", actor=BOT, at=opened + restored_after
            )
    return made.id


def script_month(store: Store, repo: Path, start: datetime) -> Script:
    """Write the month of the module's docstring into ``store`` and ``repo``."""
    s = Script(start)
    for name, offset in [
        ("a1", -11 * D + 8 * H),
        ("b1", D + 8 * H),
        ("b2", D + 20 * H),
        ("c1", 5 * D + 10 * H),
        ("d1", 6 * D + 15 * H),
        ("e1", 20 * D),
        ("e2", 21 * D),
    ]:
        s.commits[name] = commit(repo, name, start + offset)
    for version, name in [("1.0.0", "a1"), ("1.1.0", "b2"), ("1.2.0", "c1"), ("1.2.1", "d1")]:
        release(store, version, s.commits[name])
    release(store, "1.3.0", s.commits["e2"])

    def at(offset: timedelta) -> datetime:
        return start + offset

    dep = s.deployments
    dep["P1"] = deploy(store, "production", "1.0.0", created=at(-10 * D + 9 * H), lasted=10 * M)
    dep["S1"] = deploy(store, "staging", "1.1.0", created=at(D + 22 * H), lasted=10 * M)
    dep["P2"] = deploy(store, "production", "1.1.0", created=at(2 * D + 8 * H), lasted=H)
    dep["S2"] = deploy(store, "staging", "1.2.0", created=at(5 * D + 12 * H), lasted=5 * M)
    dep["P3"] = deploy(
        store,
        "production",
        "1.2.0",
        created=at(6 * D + 10 * H),
        lasted=30 * M,
        ends="rolled_back",
    )
    s.incidents["I1"] = incident(
        store,
        opened=at(6 * D + 10 * H + 20 * M),
        restored_after=10 * M,
        version="1.2.0",
        deployment_id=dep["P3"],
    )
    dep["P4"] = deploy(store, "production", "1.2.1", created=at(6 * D + 16 * H), lasted=20 * M)
    dep["P5"] = deploy(store, "production", "1.3.0", created=at(21 * D + 12 * H), lasted=30 * M)
    s.incidents["I4"] = incident(
        store, opened=at(21 * D + 11 * H), restored_after=2 * H, version=None
    )
    s.incidents["I2"] = incident(
        store, opened=at(22 * D + 8 * H), restored_after=2 * H, version="1.3.0"
    )
    dep["P6"] = deploy(
        store, "production", "1.2.1", created=at(22 * D + 9 * H), lasted=15 * M, kind="rollback"
    )
    dep["P7"] = deploy(
        store, "production", "1.3.0", created=at(25 * D + 10 * H), lasted=45 * M, ends="failed"
    )
    dep["P8"] = deploy(store, "production", "1.3.0", created=at(25 * D + 11 * H), lasted=20 * M)
    s.incidents["I3"] = incident(
        store, opened=at(29 * D + 12 * H), restored_after=None, version="1.3.0"
    )
    dep["P9"] = deploy(store, "production", "1.3.0", created=at(29 * D + 13 * H), lasted=None)
    return s
