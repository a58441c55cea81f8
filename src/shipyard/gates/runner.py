"""Run gates concurrently, time each, and record the verdicts with any overrides.

Each gate runs in its own thread; a gate that raises ``GateError`` fails closed with the
error as its finding, and an unexpected exception fails it too, so one broken gate never
hides the others or passes silently. Recording goes through ``records``; nothing here prints.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shipyard.core.errors import ArgumentError
from shipyard.core.store import Store
from shipyard.gates.interface import (
    Finding,
    Gate,
    GateContext,
    GateError,
    GateKind,
    GateResult,
    Severity,
    Status,
    configured_gates,
    gate_named,
)
from shipyard.gates.records import GateRun, record_gate_run

GATE_ERROR = "SHIPYARD-GATE-ERROR"
"""The finding id of a gate that could not reach a verdict."""


@dataclass(frozen=True)
class GateRequest:
    """Which gates to run on a context, and which failures a person lets through."""

    context: GateContext
    kind: GateKind = "release"
    names: tuple[str, ...] = ()
    overrides: Mapping[str, str] = field(default_factory=dict)

    def chosen(self) -> list[str]:
        """The named gates (each must exist), else every configured gate of this kind."""
        if self.names:
            for name in self.names:
                gate_named(name)
            return list(dict.fromkeys(self.names))
        return configured_gates(self.context.config, self.kind)


def run_gates(context: GateContext, names: Sequence[str]) -> list[GateResult]:
    """Run the named gates concurrently and return their results in the order named."""
    if not names:
        return []
    with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="gate") as pool:
        futures = [pool.submit(_run_one, name, context) for name in names]
        return [future.result() for future in futures]


def judge(store: Store, request: GateRequest, *, actor: str, subject: str | None = None) -> GateRun:
    """Run the request's gates, then store the run, its results and the overrides."""
    names = request.chosen()
    unknown = sorted(set(request.overrides) - set(names))
    if unknown:
        for name in unknown:
            gate_named(name)
        raise ArgumentError(
            f"--override names {', '.join(unknown)}, which {'is' if len(unknown) == 1 else 'are'}"
            " not among the gates run",
            hint=f"the gates run are: {', '.join(names) or 'none'}",
        )
    for name, reason in request.overrides.items():
        if not reason.strip():
            raise ArgumentError(
                f"overriding {name!r} needs a reason", hint='add --reason "why this may ship"'
            )
    started = datetime.now(UTC)
    results = run_gates(request.context, names)
    return record_gate_run(
        store,
        kind=request.kind,
        project=request.context.config.project,
        actor=actor,
        results=results,
        started_at=started,
        finished_at=datetime.now(UTC),
        subject=subject,
        release=request.context.release,
        environment=request.context.environment,
        commit=request.context.commit,
        overrides=request.overrides,
    )


def _run_one(name: str, context: GateContext) -> GateResult:
    started = time.perf_counter()
    try:
        gate: Gate = gate_named(name).for_context(context)
        verdict = gate.judge(context)
    except GateError as error:
        return _failed(name, error.message, error.hint, time.perf_counter() - started)
    except Exception as error:  # noqa: BLE001 - a broken gate fails closed, it never passes
        return _failed(
            name,
            f"internal error in the {name} gate: {type(error).__name__}: {error}",
            "this is a bug in Shipyard; run again with --debug and report it",
            time.perf_counter() - started,
        )
    return GateResult(
        gate=name,
        status=verdict.status,
        findings=verdict.findings,
        summary=verdict.summary,
        duration_s=time.perf_counter() - started,
    )


def _failed(name: str, message: str, hint: str | None, duration: float) -> GateResult:
    finding = Finding(
        id=GATE_ERROR,
        severity=Severity.HIGH,
        location=name,
        message=message,
        remediation=hint,
        blocking=True,
    )
    return GateResult(
        gate=name,
        status=Status.FAIL,
        findings=(finding,),
        summary=f"could not judge: {message}",
        duration_s=duration,
    )
