"""The deployment controller: the one driver of a deployment's state machine.

It holds a lease in the store (owner, expiry, renewed by a heartbeat and at every step);
another process takes over only after the lease expires, and carries on from the stored
progress, while the one that lost it stops at its next step. It acts on requested actions
between steps and while a strategy waits: pause (the driver stops; exit 3), resume, abort
(undo). A strategy may also stop to wait for a person, who resumes it. A deployment whose
approvals do not suffice is not started: it waits (exit 3) until ``shipyard approve`` starts
a driver for it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from shipyard.cd import checks, deployments
from shipyard.cd.checks import ApprovalRequired
from shipyard.cd.deployments import Deployment, DeploymentStatus
from shipyard.cd.observe import FAILED, AnalysisFailed, Observer
from shipyard.cd.settings import DeploySettings
from shipyard.cd.strategies import STRATEGIES, StepContext
from shipyard.cd.targets import InstanceUnhealthy, Release, Target, TargetError
from shipyard.core import incidents
from shipyard.core.errors import CheckFailed, ShipyardError, UserError, WaitingForPerson
from shipyard.core.process import pid_alive
from shipyard.core.secrets import Masker
from shipyard.core.store import Store

LEASE_TTL = timedelta(seconds=10)
HEARTBEAT_S = 2.0
QUEUE_POLL_S = 0.5
WAIT_POLL_S = 0.02
"""How often a strategy's wait looks for a pause or abort request (and a lost lease)."""


class LeaseHeld(UserError):
    """Another live driver is driving this deployment."""


class DeploymentPaused(WaitingForPerson):
    """The deployment was paused; it continues with ``shipyard deployments resume``."""


class DeploymentFailed(CheckFailed):
    """The deployment failed or was aborted; what ran before is serving again."""


class _Pause(Exception):
    def __init__(self, why: str = "") -> None:
        super().__init__(why)
        self.why = why


class _Abort(Exception):
    pass


class _LeaseLost(Exception):
    pass


@dataclass
class Controller:
    """Drives deployments to a final status (or to a pause), one lease at a time."""

    store: Store
    target_for: Callable[[DeploySettings], Target]
    actor: str
    on_event: Callable[[str], None] = lambda _text: None
    owner: str = ""
    on_saved: Callable[[deployments.EnvironmentState], None] = lambda _state: None
    """Called with what an environment runs once a deployment recorded it (e.g. to make sure
    a version kept warm is stopped when its window ends)."""

    def __post_init__(self) -> None:
        if not self.owner:
            self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def drive(self, deployment_id: int) -> Deployment:
        """Drive one deployment (after any stale one queued ahead of it) to its end or pause."""
        try:
            return self._drive(deployment_id)
        except DeploymentPaused:
            # A resume or abort asked while this driver paused found its lease still held, so
            # nobody else started a driver for it: this one carries on.
            current = deployments.get(self.store, deployment_id)
            asked = current.requested_action
            if current.status != DeploymentStatus.PAUSED or asked not in ("resume", "abort"):
                raise
            if driver_alive(current):
                raise  # somebody else drives it now
            self.on_event(f"{asked} of deployment {deployment_id} asked as it paused")
            return self._drive(deployment_id)

    def _drive(self, deployment_id: int) -> Deployment:
        self._break_dead_lease(deployment_id)
        if not deployments.acquire_lease(self.store, deployment_id, self.owner, LEASE_TTL):
            current = deployments.get(self.store, deployment_id)
            raise LeaseHeld(
                f"deployment {deployment_id} is driven by {current.lease_owner}",
                hint="wait for it; if that driver died, its lease expires within "
                f"{int(LEASE_TTL.total_seconds())}s and resume takes over",
            )
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(deployment_id, stop), daemon=True)
        beat.start()
        try:
            self._wait_for_queue(deployment_id)
            return self._run(deployment_id)
        finally:
            stop.set()
            beat.join()
            deployments.release_lease(self.store, deployment_id, self.owner)

    def _break_dead_lease(self, deployment_id: int) -> None:
        """A lease held by a process of this host that no longer exists is given up at once."""
        current = deployments.get(self.store, deployment_id)
        holder = current.lease_owner
        if holder and not driver_alive(current):
            deployments.break_lease(self.store, deployment_id, holder, actor=self.actor)
            self.on_event(f"the driver {holder} is gone; taking over deployment {deployment_id}")

    def _heartbeat(self, deployment_id: int, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_S):
            # A busy or briefly unreachable database must not end the heartbeat for good:
            # the next beat tries again, well before the lease runs out.
            with contextlib.suppress(ShipyardError, SQLAlchemyError):
                deployments.renew_lease(self.store, deployment_id, self.owner, LEASE_TTL)

    def _wait_for_queue(self, deployment_id: int) -> None:
        """One deployment per environment: wait for (or take over) those asked for earlier."""
        while True:
            me = deployments.get(self.store, deployment_id)
            ahead = deployments.ahead_of(self.store, me)
            if not ahead:
                return
            first = ahead[0]
            if first.status == DeploymentStatus.PAUSED:
                raise DeploymentPaused(
                    f"deployment {first.id} of {me.environment} is paused; {me.id} waits for it",
                    hint=f"resume or abort it: shipyard deployments resume|abort {first.id}",
                )
            if first.status == DeploymentStatus.WAITING and first.requested_action != "abort":
                tally = checks.approval_tally(self.store, first)
                if tally is None or not tally.suffices:
                    raise ApprovalRequired(
                        f"deployment {first.id} of {me.environment} waits for approval "
                        f"({tally.describe() if tally else 'none recorded'}); {me.id} waits "
                        "for it",
                        hint=f"approve it (shipyard approve {first.id}) or abort it (shipyard "
                        f"deployments abort {first.id}); then: shipyard deployments resume {me.id}",
                    )
            self._break_dead_lease(first.id)
            if deployments.acquire_lease(self.store, first.id, self.owner, LEASE_TTL):
                self.on_event(f"taking over deployment {first.id}, whose driver is gone")
                try:
                    self._run(first.id)
                except DeploymentFailed as failed:  # that one's failure is not this one's
                    self.on_event(failed.message)
                finally:
                    deployments.release_lease(self.store, first.id, self.owner)
                continue
            self.on_event(f"waiting for deployment {first.id} of {me.environment}")
            time.sleep(QUEUE_POLL_S)

    def _run(self, deployment_id: int) -> Deployment:
        current = deployments.get(self.store, deployment_id)
        if current.finished:
            return current
        if current.status == DeploymentStatus.ABORTED:
            return self._roll_back(current, "aborted earlier")
        if current.requested_action == "abort":  # asked while nobody drove it
            deployments.take_request(self.store, current.id)
            deployments.transition(
                self.store,
                current.id,
                DeploymentStatus.ABORTED,
                actor=self.actor,
                message="abort requested",
            )
            return self._roll_back(
                deployments.get(self.store, current.id),
                "aborted; the previous version serves again",
            )
        if current.status in (DeploymentStatus.PENDING, DeploymentStatus.WAITING):
            approved = self._approved(current)
            current = deployments.transition(
                self.store,
                current.id,
                DeploymentStatus.PROGRESSING,
                actor=self.actor,
                message=approved,
            )
        elif current.status == DeploymentStatus.PAUSED:
            awaiting = current.progress.get("awaiting")
            if awaiting:  # a person resumes what a strategy waited for: it may go on
                released = [*current.progress.get("released", []), awaiting]
                progress_now = {**current.progress, "released": released}
                progress_now.pop("awaiting")
                deployments.save_progress(self.store, current.id, progress_now)
            current = deployments.transition(
                self.store,
                current.id,
                DeploymentStatus.PROGRESSING,
                actor=self.actor,
                message="resumed",
            )
        settings = DeploySettings.from_json(current.settings["deploy"])
        previous = current.settings.get("previous")
        release = Release(current.project, current.version, str(current.settings["bundle"]))
        target = self.target_for(settings)
        strategy = STRATEGIES[current.strategy]()
        before = deployments.environment(self.store, current.project, current.environment)
        if current.progress.get("before"):
            before = _state_from(current.progress["before"], before)
        progress: dict[str, Any] = dict(current.progress)
        progress.setdefault("before", before.as_json())
        progress.setdefault("before_instances", dict(before.instances))
        if current.settings.get("previous_bundle"):
            progress.setdefault("previous_bundle", current.settings["previous_bundle"])
        ctx = StepContext(
            deployment_id=current.id,
            settings=settings,
            release=release,
            target=target,
            before=before,
            progress=progress,
            save=lambda p: deployments.save_progress(self.store, current.id, p),
            checkpoint=lambda: self._checkpoint(current.id),
            previous_settings=DeploySettings.from_json(previous) if previous else None,
            wait=lambda seconds: self._wait(current.id, seconds),
            wait_for_person=lambda point, why: self._wait_for_person(ctx, point, why),
        )
        observer = Observer(self.store, _masker_of(ctx), on_event=self.on_event)
        ctx.observer = observer.observe
        ctx.save(progress)
        try:
            self.on_event(
                f"deploying {current.version} to {current.environment} ({current.strategy})"
            )
            observer.check(ctx)
            after = strategy.deploy(ctx)
        except _LeaseLost:
            # Another driver took over (this one's lease had expired): leave it everything.
            holder = deployments.get(self.store, current.id).lease_owner
            raise LeaseHeld(
                f"deployment {current.id} is driven by {holder} now; this driver stopped"
                if holder
                else f"this driver's lease of deployment {current.id} was broken; it stopped",
                hint="its lease expired before it was renewed; another driver carries on "
                f"(shipyard deployments resume {current.id} starts one if none runs)",
            ) from None
        except _Pause as pause:
            deployments.transition(
                self.store,
                current.id,
                DeploymentStatus.PAUSED,
                actor=self.actor,
                message=pause.why or None,
            )
            self.on_event(f"deployment {current.id} paused")
            raise DeploymentPaused(
                f"deployment {current.id} is paused" + (f": {pause.why}" if pause.why else ""),
                hint=f"continue with 'shipyard deployments resume {current.id}', "
                f"or 'shipyard deployments abort {current.id}'",
            ) from None
        except _Abort:
            deployments.transition(
                self.store,
                current.id,
                DeploymentStatus.ABORTED,
                actor=self.actor,
                message="abort requested",
            )
            return self._undo_and_finish(
                current,
                strategy,
                ctx,
                DeploymentStatus.ROLLED_BACK,
                "aborted; the previous version serves again",
            )
        except AnalysisFailed as failure:
            deployments.transition(
                self.store,
                current.id,
                DeploymentStatus.ABORTED,
                actor=self.actor,
                message=failure.message,
            )
            self.on_event(f"deployment {current.id}: {failure.message}; rolling back")
            rolled_back = self._undo_and_finish(
                current, strategy, ctx, DeploymentStatus.ROLLED_BACK, failure.message
            )
            raise DeploymentFailed(
                f"deployment {current.id} of {current.version} was rolled back: "
                f"{rolled_back.message}",
                hint=failure.hint,
            ) from None
        except (InstanceUnhealthy, TargetError, ShipyardError) as error:
            masker = _masker_of(ctx)  # the error may quote what the service wrote
            problem = masker.mask(error.message)
            self._undo_and_finish(current, strategy, ctx, DeploymentStatus.FAILED, problem)
            raise DeploymentFailed(
                f"deployment {current.id} of {current.version} failed: {problem}",
                hint=masker.mask(error.hint) if error.hint else None,
            ) from None
        deployments.save_environment(self.store, after)
        self.on_saved(after)
        self.on_event(
            f"{current.version} serves {current.environment} at {after.router.get('address')}"
        )
        return deployments.transition(
            self.store, current.id, DeploymentStatus.SUCCEEDED, actor=self.actor
        )

    def _approved(self, current: Deployment) -> str | None:
        """Let a deployment start only once its approvals suffice; else it waits (exit 3).

        Returns what to say of the approvals as it starts (None when it needs none).
        """
        tally = checks.approval_tally(self.store, current)
        if tally is None:
            return None
        if tally.suffices:
            return f"approved: {tally.describe()}"
        if current.status == DeploymentStatus.PENDING:
            deployments.transition(
                self.store,
                current.id,
                DeploymentStatus.WAITING,
                actor=self.actor,
                message=checks.waiting_message(tally.rule),
            )
        self.on_event(f"deployment {current.id} waits for approval: {tally.describe()}")
        raise ApprovalRequired(
            f"deployment {current.id} of {current.version} to {current.environment} waits for "
            f"approval: {tally.describe()}",
            hint=f"an approver runs 'shipyard approve {current.id}'; it starts by itself once "
            "the approvals suffice",
        )

    def _undo_and_finish(
        self,
        current: Deployment,
        strategy: Any,
        ctx: StepContext,
        status: DeploymentStatus,
        message: str,
    ) -> Deployment:
        incident = self._open_incident(current, ctx)
        back = False
        try:
            strategy.undo(ctx)
        except ShipyardError as error:
            problem = _masker_of(ctx).mask(error.message)
            message = f"{message}; putting the previous version back also failed: {problem}"
        else:
            back = True
            restored = ctx.progress.get("restored")
            if restored:  # the old version runs again, as new instances: record those
                deployments.save_environment(
                    self.store,
                    replace(ctx.before, instances={**ctx.before.instances, "active": restored}),
                )
        finished = deployments.transition(
            self.store, current.id, status, actor=self.actor, message=message
        )
        if incident is not None and back and ctx.before.active_version:
            with self.store.write() as conn:
                incidents.restored(
                    conn, incident, version=ctx.before.active_version, actor=self.actor
                )
        return finished

    def _open_incident(self, current: Deployment, ctx: StepContext) -> int | None:
        """The incident of a version the analysis failed (opened once, whoever drives)."""
        why = ctx.progress.get(FAILED)
        if not why:
            return None
        if ctx.progress.get("incident"):
            return int(ctx.progress["incident"])
        phase = "watch" if ctx.did("watched") or "watch_began" in ctx.progress else "analysis"
        with self.store.write() as conn:
            opened = incidents.open(
                conn,
                project=current.project,
                environment=current.environment,
                title=f"{current.version} failed its analysis in {current.environment}",
                reason=str(why),
                source=phase,
                actor=self.actor,
                caused_by_version=current.version,
                deployment_id=current.id,
            )
        ctx.progress["incident"] = opened.id
        ctx.save(ctx.progress)
        self.on_event(f"incident {opened.id} opened: {opened.title}")
        return opened.id

    def _roll_back(self, current: Deployment, why: str) -> Deployment:
        settings = DeploySettings.from_json(current.settings["deploy"])
        release = Release(current.project, current.version, str(current.settings["bundle"]))
        before = _state_from(
            current.progress.get("before", {}),
            deployments.environment(self.store, current.project, current.environment),
        )
        progress: dict[str, Any] = dict(current.progress)
        if current.settings.get("previous_bundle"):
            progress.setdefault("previous_bundle", current.settings["previous_bundle"])
        previous = current.settings.get("previous")
        ctx = StepContext(
            deployment_id=current.id,
            settings=settings,
            release=release,
            target=self.target_for(settings),
            before=before,
            progress=progress,
            save=lambda p: deployments.save_progress(self.store, current.id, p),
            checkpoint=lambda: None,
            wait=lambda _seconds: None,
            # A recreate stopped the old version: putting it back needs its settings.
            previous_settings=DeploySettings.from_json(previous) if previous else None,
        )
        failed = progress.get(FAILED)
        finished = self._undo_and_finish(
            current,
            STRATEGIES[current.strategy](),
            ctx,
            DeploymentStatus.ROLLED_BACK,
            f"the analysis failed {current.version}: {failed}" if failed else why,
        )
        if failed:
            raise DeploymentFailed(
                f"deployment {current.id} of {current.version} was rolled back: {finished.message}",
                hint=f"see 'shipyard analysis show {current.id}'",
            )
        return finished

    def _checkpoint(self, deployment_id: int) -> None:
        if not deployments.renew_lease(self.store, deployment_id, self.owner, LEASE_TTL):
            raise _LeaseLost
        action = deployments.take_request(self.store, deployment_id)
        if action == "pause":
            raise _Pause
        if action == "abort":
            raise _Abort

    def _wait(self, deployment_id: int, seconds: float) -> None:
        """Let ``seconds`` pass, acting on a pause or abort request within WAIT_POLL_S."""
        deadline = time.monotonic() + seconds
        self._checkpoint(deployment_id)
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(WAIT_POLL_S, left))
            now = deployments.get(self.store, deployment_id)
            if now.requested_action in ("pause", "abort") or now.lease_owner != self.owner:
                self._checkpoint(deployment_id)

    def _wait_for_person(self, ctx: StepContext, point: str, why: str) -> None:
        """Pause the deployment at ``point`` until a person resumes it (once per point)."""
        if point in ctx.progress.get("released", []):
            return
        self._checkpoint(ctx.deployment_id)
        ctx.progress["awaiting"] = point
        ctx.save(ctx.progress)
        raise _Pause(why)


def _masker_of(ctx: StepContext) -> Masker:
    """What hides the secrets of the deployment and of the version it replaces in its output."""
    previous = ctx.previous_settings.secrets if ctx.previous_settings else ()
    return ctx.target.masker([*ctx.settings.secrets, *previous])


def driver_alive(deployment: Deployment) -> bool:
    """Whether a driver holds the deployment's lease and may still be running it."""
    holder = deployment.lease_owner
    if not holder:
        return False
    if deployment.lease_expires_at is not None and deployment.lease_expires_at < datetime.now(UTC):
        return False
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host == socket.gethostname() and pid_text.isdigit():
        return pid_alive(int(pid_text))
    return True


def _state_from(
    data: Mapping[str, Any], fallback: deployments.EnvironmentState
) -> deployments.EnvironmentState:
    if not data:
        return fallback

    def when(key: str) -> datetime | None:
        value = data.get(key)
        return datetime.fromisoformat(value) if value else None

    return deployments.EnvironmentState(
        project=fallback.project,
        environment=fallback.environment,
        active_version=data.get("active_version"),
        active_deployment=data.get("active_deployment"),
        warm_version=data.get("warm_version"),
        warm_deployment=data.get("warm_deployment", fallback.warm_deployment),
        warm_until=when("warm_until"),
        instances=data.get("instances", {}),
        router=data.get("router", {}),
        since=when("since"),
    )
