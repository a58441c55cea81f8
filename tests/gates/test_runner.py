"""The runner: gates run concurrently, and a gate that breaks fails closed, never passes."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import ClassVar

import pytest

from gates.gatesupport import context
from shipyard.core.errors import ArgumentError
from shipyard.core.state import StateDir
from shipyard.core.store import open_store
from shipyard.gates import (
    GATES,
    Gate,
    GateContext,
    GateError,
    GateKind,
    GateRequest,
    Status,
    UnknownGate,
    Verdict,
    judge,
    run_gates,
)
from shipyard.gates.runner import GATE_ERROR

_meeting = threading.Barrier(2, timeout=30)


class MeetingGate(Gate):
    """Passes only if another gate is running at the same time (they meet at a barrier)."""

    name: ClassVar[str] = "meeting"
    kind: ClassVar[GateKind] = "release"

    @classmethod
    def for_context(cls, context: GateContext) -> Gate:
        return cls()

    def judge(self, context: GateContext) -> Verdict:
        _meeting.wait()
        return Verdict(Status.PASS, summary="met")


class OtherMeetingGate(MeetingGate):
    name: ClassVar[str] = "meeting-too"


class BrokenGate(Gate):
    """Cannot reach a verdict."""

    name: ClassVar[str] = "broken"
    kind: ClassVar[GateKind] = "release"

    @classmethod
    def for_context(cls, context: GateContext) -> Gate:
        return cls()

    def judge(self, context: GateContext) -> Verdict:
        raise GateError("the data is gone", hint="bring it back")


class BuggyGate(BrokenGate):
    name: ClassVar[str] = "buggy"

    def judge(self, context: GateContext) -> Verdict:
        raise ZeroDivisionError("division by zero")


@pytest.fixture(autouse=True)
def _test_gates(monkeypatch: pytest.MonkeyPatch) -> None:
    for gate in (MeetingGate, OtherMeetingGate, BrokenGate, BuggyGate):
        monkeypatch.setitem(GATES, gate.name, gate)


def test_gates_run_concurrently(workspace: Path, state_root: Path) -> None:
    results = run_gates(context(workspace, state_root), ["meeting", "meeting-too"])
    assert [(r.gate, r.status, r.summary) for r in results] == [
        ("meeting", Status.PASS, "met"),
        ("meeting-too", Status.PASS, "met"),
    ]


def test_a_gate_that_cannot_judge_fails_closed(workspace: Path, state_root: Path) -> None:
    broken, buggy = run_gates(context(workspace, state_root), ["broken", "buggy"])
    assert broken.status is Status.FAIL
    assert [(f.id, f.message, f.remediation, f.blocking) for f in broken.findings] == [
        (GATE_ERROR, "the data is gone", "bring it back", True)
    ]
    assert buggy.status is Status.FAIL
    assert buggy.findings[0].message == (
        "internal error in the buggy gate: ZeroDivisionError: division by zero"
    )


def test_unknown_gates_and_overrides_are_refused_before_anything_runs(
    workspace: Path, tmp_path: Path
) -> None:
    state = StateDir(root=tmp_path / "state-dir", repo_root=None, git_common_dir=None)
    store = open_store(state)
    gate_context = context(workspace, state.root)
    with pytest.raises(UnknownGate) as caught:
        judge(store, GateRequest(gate_context, names=("vulnerabilties",)), actor="a@example.com")
    assert caught.value.hint == "did you mean 'vulnerabilities'?"
    request = GateRequest(gate_context, names=("broken",), overrides={"meeting": "why"})
    with pytest.raises(ArgumentError, match="not among the gates run"):
        judge(store, request, actor="a@example.com")
    request = GateRequest(gate_context, names=("broken",), overrides={"broken": "  "})
    with pytest.raises(ArgumentError, match="needs a reason"):
        judge(store, request, actor="a@example.com")
    run = judge(
        store,
        GateRequest(gate_context, names=("broken",), overrides={"broken": "known outage"}),
        actor="a@example.com",
    )
    assert (run.status, run.blocked) == ("overridden", False)
    store.dispose()


def test_configured_gates_are_the_ones_named_under_gates(workspace: Path, state_root: Path) -> None:
    request = GateRequest(context(workspace, state_root))
    assert request.chosen() == ["vulnerabilities"]
