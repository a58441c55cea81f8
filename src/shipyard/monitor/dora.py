"""The five DORA metrics of the 2024 report, per environment and period, with their bands.

``compute`` is pure: it turns a ``History`` (deployments, incidents and the commits each
deployment delivered) into a ``Scorecard``; ``trend`` does so for consecutive slices of a
period. The readers below it fill a ``History`` from the store's tables and from git; they
import no pillar and change nothing. docs/dora.md defines every figure and cites the bands.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from sqlalchemy import Connection, select

from shipyard.core import incidents as incident_store
from shipyard.core.errors import ArgumentError, GitError
from shipyard.core.git import Git
from shipyard.core.incidents import Incident
from shipyard.core.store import Store
from shipyard.core.store.tables import deployments, releases

DAY = timedelta(days=1)
WEEK = timedelta(days=7)
MONTH = timedelta(days=30)
"""The report's "month", for the bands: thirty days."""

REWORK_WINDOW = DAY
"""How long after a failure in an environment a deployment there counts as unplanned."""

DEPLOY, ROLLBACK = "deploy", "rollback"
SUCCEEDED, ROLLED_BACK, FAILED = "succeeded", "rolled_back", "failed"
FINAL = frozenset({SUCCEEDED, ROLLED_BACK, FAILED})
NEEDED_REMEDIATION = frozenset({ROLLED_BACK, FAILED})


class Band(StrEnum):
    """A performance level of the 2024 report; the values are what JSON holds."""

    ELITE = "elite"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


@dataclass(frozen=True)
class DeploymentRecord:
    """What DORA needs of one deployment: where, what, which kind, how it ended and when."""

    id: int
    environment: str
    version: str
    kind: str
    status: str
    created_at: datetime
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        """Whether the deployment reached a final status (succeeded, rolled back or failed)."""
        return self.status in FINAL and self.finished_at is not None


@dataclass(frozen=True)
class Change:
    """One commit, and when it was committed."""

    sha: str
    committed_at: datetime


@dataclass(frozen=True)
class History:
    """A project's deployments and incidents, and the commits each deployment delivered first.

    ``changes`` maps a deployment's id to the commits that reached its environment with it,
    (none for a deployment that delivered nothing new there, or whose commit git does not know).
    """

    deployments: tuple[DeploymentRecord, ...]
    incidents: tuple[Incident, ...] = ()
    changes: Mapping[int, tuple[Change, ...]] = field(default_factory=dict)

    def environments(self) -> list[str]:
        """The environments with a deployment, in the order of their first deployment."""
        return list(dict.fromkeys(d.environment for d in sorted(self.deployments, key=_order)))


@dataclass(frozen=True)
class Period:
    """A stretch of time: from ``start`` (included) to ``end`` (excluded)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a period needs timezone-aware datetimes; use datetime.now(UTC)")
        if self.end <= self.start:
            raise ArgumentError(
                f"the period from {self.start.isoformat()} to {self.end.isoformat()} is empty",
                hint="give a positive duration, such as --since 30d",
            )

    @classmethod
    def last(cls, length: timedelta, *, end: datetime) -> Period:
        """The ``length`` of time that ends at ``end``."""
        return cls(end - length, end)

    @property
    def days(self) -> float:
        """How long the period is, in days."""
        return (self.end - self.start) / DAY

    def __contains__(self, moment: object) -> bool:
        return isinstance(moment, datetime) and self.start <= moment < self.end

    def slices(self, step: timedelta) -> list[Period]:
        """Consecutive periods of ``step`` from the start; the last one ends with this period."""
        if step <= timedelta(0):
            raise ValueError("a slice of a period must be longer than nothing")
        cuts: list[Period] = []
        start = self.start
        while start < self.end:
            cuts.append(Period(start, min(start + step, self.end)))
            start += step
        return cuts

    def as_json(self) -> dict[str, Any]:
        """The period as plain JSON values."""
        return {"since": self.start.isoformat(), "until": self.end.isoformat(), "days": self.days}


@dataclass(frozen=True)
class Metric:
    """One figure: its value (None without data), unit, band, and the counts behind it."""

    name: str
    value: float | None
    unit: str
    band: Band | None
    counts: Mapping[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The metric as plain JSON values."""
        return {
            "value": self.value,
            "unit": self.unit,
            "band": None if self.band is None else self.band.value,
            **self.counts,
        }


@dataclass(frozen=True)
class Scorecard:
    """The five metrics of one environment over one period."""

    environment: str
    period: Period
    deployment_frequency: Metric
    lead_time: Metric
    change_failure_rate: Metric
    recovery_time: Metric
    rework_rate: Metric

    @property
    def metrics(self) -> tuple[Metric, ...]:
        """The five metrics, in the report's order."""
        return (
            self.deployment_frequency,
            self.lead_time,
            self.change_failure_rate,
            self.recovery_time,
            self.rework_rate,
        )

    def as_json(self) -> dict[str, Any]:
        """The scorecard as plain JSON values."""
        return {
            "environment": self.environment,
            **self.period.as_json(),
            **{metric.name: metric.as_json() for metric in self.metrics},
        }


# -- for people -------------------------------------------------------------------------------


LABELS = {
    "deployment_frequency": "deployment frequency",
    "lead_time": "lead time for changes",
    "change_failure_rate": "change failure rate",
    "recovery_time": "failed deployment recovery time",
    "rework_rate": "rework rate",
}
"""Each metric's name for people, in the report's words."""


def show_value(metric: Metric) -> str:
    """A metric's value for people: 2.5/day, 3.0/week, 4h10m, 25%, or 'no data'."""
    if metric.value is None:
        return "no data"
    if metric.unit == "per_day":
        if metric.value >= 1:
            return f"{metric.value:.1f}/day"
        return f"{metric.value * 7:.1f}/week"
    if metric.unit == "seconds":
        return show_length(timedelta(seconds=metric.value))
    return f"{metric.value:.0%}"


def show_band(metric: Metric) -> str:
    """The band's name, or '-' when there is none (no data, or no band for the metric)."""
    return "-" if metric.band is None else metric.band.value


def show_basis(metric: Metric) -> str:
    """What a figure rests on, in words: '4 of 6 deployments failed'."""
    c = metric.counts
    match metric.name:
        case "deployment_frequency":
            return _plural(c["deployments"], "successful deployment")
        case "lead_time":
            return _plural(c["changes"], "change")
        case "change_failure_rate":
            return f"{c['failed']} of {_plural(c['deployments'], 'deployment')} failed"
        case "recovery_time":
            apart = f", {c['not_restored']} not restored yet" if c["not_restored"] else ""
            return _plural(c["recoveries"], "recovery", "recoveries") + apart
        case _:
            return f"{c['rework']} of {_plural(c['deployments'], 'deployment')} unplanned"


def show_length(value: timedelta) -> str:
    """A duration for people: 2d03h, 4h10m, 12m30s, 40s."""
    seconds = int(value.total_seconds())
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


# -- the bands (docs/dora.md cites the report's table) ---------------------------------------


def frequency_band(per_day: float) -> Band:
    """Elite: more than once a day; high: at least weekly; medium: at least monthly."""
    if per_day > 1:
        return Band.ELITE
    if per_day >= 1 / 7:
        return Band.HIGH
    if per_day >= 1 / 30:
        return Band.MEDIUM
    return Band.LOW


def lead_time_band(lead_time: timedelta) -> Band:
    """Elite: under a day; high: a week at most; medium: a month at most."""
    if lead_time < DAY:
        return Band.ELITE
    if lead_time <= WEEK:
        return Band.HIGH
    if lead_time <= MONTH:
        return Band.MEDIUM
    return Band.LOW


def change_failure_band(rate: float) -> Band:
    """Elite: 5 % at most; high: 20 % at most (the report's medium cluster failed less, 10 %)."""
    if rate <= 0.05:
        return Band.ELITE
    if rate <= 0.20:
        return Band.HIGH
    return Band.LOW


def recovery_band(recovery: timedelta) -> Band:
    """Elite: under an hour; high: under a day (the report's medium cluster too)."""
    if recovery < timedelta(hours=1):
        return Band.ELITE
    if recovery < DAY:
        return Band.HIGH
    return Band.LOW


# -- the figures ------------------------------------------------------------------------------


def compute(
    history: History,
    environment: str,
    period: Period,
    *,
    rework_window: timedelta = REWORK_WINDOW,
) -> Scorecard:
    """The five metrics of ``environment`` over ``period``."""
    ours = tuple(
        sorted((d for d in history.deployments if d.environment == environment), key=_order)
    )
    troubles = tuple(i for i in history.incidents if i.environment == environment and _has_cause(i))
    finished = [d for d in ours if d.finished and d.finished_at in period]
    return Scorecard(
        environment=environment,
        period=period,
        deployment_frequency=deployment_frequency(finished, period),
        lead_time=lead_time(finished, history.changes),
        change_failure_rate=change_failure_rate(finished, ours, troubles),
        recovery_time=recovery_time(finished, ours, troubles, period),
        rework_rate=rework_rate(finished, ours, troubles, rework_window),
    )


def trend(
    history: History,
    environment: str,
    period: Period,
    step: timedelta,
    *,
    rework_window: timedelta = REWORK_WINDOW,
) -> list[Scorecard]:
    """The metrics of ``environment`` for each ``step`` of ``period``, oldest first."""
    return [
        compute(history, environment, part, rework_window=rework_window)
        for part in period.slices(step)
    ]


def deployment_frequency(finished: Sequence[DeploymentRecord], period: Period) -> Metric:
    """Successful deployments of a change (not rollbacks) per day of the period."""
    count = sum(1 for d in finished if d.kind == DEPLOY and d.status == SUCCEEDED)
    per_day = count / period.days
    return Metric(
        "deployment_frequency", per_day, "per_day", frequency_band(per_day), {"deployments": count}
    )


def lead_time(
    finished: Sequence[DeploymentRecord], changes: Mapping[int, tuple[Change, ...]]
) -> Metric:
    """The median time from a commit to its first successful deployment to the environment."""
    samples = [
        (d.finished_at - change.committed_at).total_seconds()
        for d in finished
        if d.status == SUCCEEDED and d.finished_at is not None
        for change in changes.get(d.id, ())
    ]
    if not samples:
        return Metric("lead_time", None, "seconds", None, {"changes": 0})
    median = statistics.median(samples)
    band = lead_time_band(timedelta(seconds=median))
    return Metric("lead_time", median, "seconds", band, {"changes": len(samples)})


def change_failure_rate(
    finished: Sequence[DeploymentRecord],
    ours: Sequence[DeploymentRecord],
    troubles: Sequence[Incident],
) -> Metric:
    """The share of finished deployments of a change that needed remediation."""
    changes = [d for d in finished if d.kind == DEPLOY]
    caused = _incidents_by_deployment(ours, troubles)
    failed = sum(1 for d in changes if d.status in NEEDED_REMEDIATION or caused.get(d.id))
    counts = {"failed": failed, "deployments": len(changes)}
    if not changes:
        return Metric("change_failure_rate", None, "ratio", None, counts)
    rate = failed / len(changes)
    return Metric("change_failure_rate", rate, "ratio", change_failure_band(rate), counts)


def recovery_time(
    finished: Sequence[DeploymentRecord],
    ours: Sequence[DeploymentRecord],
    troubles: Sequence[Incident],
    period: Period,
) -> Metric:
    """The median time from a failure (an incident, or a failed deployment without one) until
    service was restored; failures not restored yet are counted apart."""
    caused = _incidents_by_deployment(ours, troubles)
    durations: list[float] = []
    unrestored = 0
    for incident in troubles:
        if incident.opened_at not in period:
            continue
        if incident.restored_at is None:
            unrestored += 1
        else:
            durations.append((incident.restored_at - incident.opened_at).total_seconds())
    for d in finished:
        if d.kind == DEPLOY and d.status in NEEDED_REMEDIATION and not caused.get(d.id):
            assert d.finished_at is not None
            durations.append((d.finished_at - d.created_at).total_seconds())
    counts = {"recoveries": len(durations), "not_restored": unrestored}
    if not durations:
        return Metric("recovery_time", None, "seconds", None, counts)
    median = statistics.median(durations)
    return Metric(
        "recovery_time", median, "seconds", recovery_band(timedelta(seconds=median)), counts
    )


def rework_rate(
    finished: Sequence[DeploymentRecord],
    ours: Sequence[DeploymentRecord],
    troubles: Sequence[Incident],
    window: timedelta,
) -> Metric:
    """The share of finished deployments that were unplanned: rollbacks, and deployments begun
    while an incident was open or within ``window`` after a failure. The 2024 report gives no
    performance levels for it, so it has no band."""
    failures = [d.finished_at for d in ours if d.finished and d.status in NEEDED_REMEDIATION]
    failures += [i.opened_at for i in troubles]

    def unplanned(d: DeploymentRecord) -> bool:
        if d.kind == ROLLBACK:
            return True
        during = any(
            i.opened_at <= d.created_at and (i.restored_at is None or d.created_at < i.restored_at)
            for i in troubles
        )
        return during or any(f is not None and f <= d.created_at <= f + window for f in failures)

    rework = sum(1 for d in finished if unplanned(d))
    counts = {"rework": rework, "deployments": len(finished)}
    rate = rework / len(finished) if finished else None
    return Metric("rework_rate", rate, "ratio", None, counts)


def _has_cause(incident: Incident) -> bool:
    """Whether an incident is tied to a change: a deployment, or at least a version."""
    return incident.deployment_id is not None or incident.caused_by_version is not None


def _incidents_by_deployment(
    ours: Sequence[DeploymentRecord], troubles: Sequence[Incident]
) -> dict[int, list[Incident]]:
    """Each deployment's incidents: those naming it, and those naming only its version (given
    to the latest deployment of that version begun before the incident was opened)."""
    found: dict[int, list[Incident]] = {}
    known = {d.id for d in ours}
    for incident in troubles:
        cause: int | None = incident.deployment_id
        if cause is None or cause not in known:
            candidates = [
                d
                for d in ours
                if d.kind == DEPLOY
                and d.version == incident.caused_by_version
                and d.created_at <= incident.opened_at
            ]
            cause = candidates[-1].id if candidates else None
        if cause is not None:
            found.setdefault(cause, []).append(incident)
    return found


def _order(d: DeploymentRecord) -> tuple[datetime, int]:
    return d.created_at, d.id


# -- readers ----------------------------------------------------------------------------------


def read_deployments(conn: Connection, project: str) -> tuple[DeploymentRecord, ...]:
    """Every deployment of ``project``, in the order they were asked for."""
    rows = conn.execute(
        select(
            deployments.c.id,
            deployments.c.environment,
            deployments.c.version,
            deployments.c.kind,
            deployments.c.status,
            deployments.c.created_at,
            deployments.c.finished_at,
        )
        .where(deployments.c.project == project)
        .order_by(deployments.c.id)
    )
    return tuple(
        DeploymentRecord(
            id=int(row.id),
            environment=row.environment,
            version=row.version,
            kind=row.kind,
            status=row.status,
            created_at=row.created_at,
            finished_at=row.finished_at,
        )
        for row in rows
    )


def release_commits(conn: Connection, project: str) -> dict[str, str]:
    """Each release's version and commit, in the order the releases were made."""
    rows = conn.execute(
        select(releases.c.version, releases.c.commit_sha)
        .where(releases.c.project == project)
        .order_by(releases.c.id)
    )
    return {row.version: row.commit_sha for row in rows}


def delivered_changes(
    git: Git,
    records: Iterable[DeploymentRecord],
    commits: Mapping[str, str],
    *,
    since: datetime | None = None,
) -> dict[int, tuple[Change, ...]]:
    """The commits each successful deployment brought to its environment for the first time.

    Those are the commits of its release that no earlier successful deployment there had; an
    environment's first deployment brings what its release adds to the release made before it.
    Only deployments finished at ``since`` or later are looked up in git (the others still
    count as delivered). A release whose commit git does not know delivers nothing.
    """
    order = list(commits)
    known: dict[str, bool] = {}

    def exists(sha: str) -> bool:
        if sha not in known:
            known[sha] = _commit_exists(git, sha)
        return known[sha]

    found: dict[int, tuple[Change, ...]] = {}
    by_environment: dict[str, list[DeploymentRecord]] = {}
    for d in records:
        if d.status == SUCCEEDED and d.finished_at is not None:
            by_environment.setdefault(d.environment, []).append(d)
    for done in by_environment.values():
        delivered: list[str] = []
        for d in sorted(done, key=lambda d: (d.finished_at, d.id)):
            sha = commits.get(d.version)
            if sha is None or sha in delivered:
                continue
            wanted = since is None or (d.finished_at is not None and d.finished_at >= since)
            if wanted and exists(sha):
                before = delivered or _release_before(order, commits, d.version)
                found[d.id] = _commits_between(git, sha, [s for s in before if exists(s)])
            delivered.append(sha)
    return found


def load_history(
    store: Store, project: str, git: Git | None, *, since: datetime | None = None
) -> History:
    """Deployments, incidents and delivered commits of ``project``; without ``git``, no commits
    (so no lead time). ``since`` limits the git look-ups to deployments finished from then on."""
    with store.read() as conn:
        records = read_deployments(conn, project)
        troubles = tuple(incident_store.list_incidents(conn, project=project))
        commits = release_commits(conn, project)
    changes = {} if git is None else delivered_changes(git, records, commits, since=since)
    return History(records, troubles, MappingProxyType(changes))


def _release_before(order: Sequence[str], commits: Mapping[str, str], version: str) -> list[str]:
    at = order.index(version)
    return [commits[order[at - 1]]] if at > 0 else []


def _commit_exists(git: Git, sha: str) -> bool:
    try:
        return git.find_commit(sha) is not None
    except GitError:
        return False


def _commits_between(git: Git, head: str, excluded: Sequence[str]) -> tuple[Change, ...]:
    """The commits reachable from ``head`` and from none of ``excluded``, newest first."""
    revisions = "".join(f"{line}\n" for line in (head, *(f"^{sha}" for sha in excluded)))
    out = git.run(
        "log", "--no-show-signature", "--no-color", "--format=%H %cI", "--stdin", input=revisions
    )
    changes = []
    for line in out.splitlines():
        sha, _, when = line.partition(" ")
        if sha and when:
            changes.append(Change(sha, datetime.fromisoformat(when)))
    return tuple(changes)
