"""The metric gate's values are recorded with the deploy check and shown by ``releases show``.

Two real model releases are cut with ``shipyard release`` (each with its eval.json artifact);
the metric gate judges the newer one against the older one as the release running in
production, reading the artifacts from the store, and the run is recorded as a deploy check.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shipyard.core.blobs import BlobStore
from shipyard.core.config import load_config
from shipyard.core.errors import NotFoundError
from shipyard.core.state import StateDir
from shipyard.core.store import Store, open_store
from shipyard.gates import GateContext, record_gate_run, run_gates
from shipyard.gates.metrics import recorded_metrics
from shipyard.release import records
from support import git, run_cli

CONFIG = """project: model
pipeline:
  jobs:
    evaluate:
      run: cp model/scores.json eval.json
      artifacts: [eval.json]
gates:
  metrics: [{name: accuracy, file: eval.json, path: metrics.accuracy, min: 0.9,
             no_regression: 0.01}]
"""


@pytest.fixture
def project(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A model repository with two releases: 0.1.0 scores 0.95, 0.2.0 scores 0.93."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SHIPYARD_USER", "releaser@example.com")
    (repo / "shipyard.yaml").write_text(CONFIG)
    for version, accuracy in (("0.1.0", 0.95), ("0.2.0", 0.93)):
        (repo / "model").mkdir(exist_ok=True)
        (repo / "model" / "scores.json").write_text(json.dumps({"metrics": {"accuracy": accuracy}}))
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"feat: the model of {version}")
        if version == "0.1.0":
            assert run_cli("keys", "generate", cwd=repo).code == 0
        released = run_cli("release", "--json", cwd=repo)
        assert released.code == 0, released.output
        assert json.loads(released.stdout)["version"] == version
    return repo


def judge_deploy(repo: Path, store: Store, version: str, running: str | None) -> int:
    """The metric gate on a deployment of ``version`` to production, recorded; its run id."""
    state = StateDir(repo / ".shipyard", repo, repo / ".git")
    blobs = BlobStore.for_state(state)

    def read_artifact(release: str, path: str) -> bytes | None:
        try:
            digest = records.get(store, "model", release).artifacts.get(path)
        except NotFoundError:
            return None
        return None if digest is None else blobs.read_bytes(digest)

    context = GateContext(
        workspace=repo,
        config=load_config(repo / "shipyard.yaml"),
        state_root=state.root,
        release=version,
        environment="production",
        release_record=records.get(store, "model", version).as_json(),
        running=records.get(store, "model", running).as_json() if running else None,
        read_artifact=read_artifact,
    )
    moment = datetime.now(UTC)
    run = record_gate_run(
        store,
        kind="deploy",
        project="model",
        actor="deployer@example.com",
        results=run_gates(context, ["metrics"]),
        started_at=moment,
        finished_at=moment,
        subject=f"deploy:model/production@{version}",
        release=version,
        environment="production",
    )
    return run.id


def test_releases_show_gives_the_recorded_values_and_verdicts(project: Path) -> None:
    store = open_store(StateDir(project / ".shipyard", project, project / ".git"))
    try:
        first = judge_deploy(project, store, "0.1.0", None)
        refused = judge_deploy(project, store, "0.2.0", "0.1.0")
        [recorded] = recorded_metrics(store, "model", "0.2.0")
    finally:
        store.dispose()
    assert (recorded.gate_run, recorded.environment, recorded.metric) == (
        refused,
        "production",
        "accuracy",
    )
    assert (recorded.value, recorded.running_version, recorded.running_value) == (
        0.93,
        "0.1.0",
        0.95,
    )
    assert recorded.verdict == "fail"
    assert recorded.reasons == ("regressed by 0.02, more than no_regression 0.01",)

    shown = run_cli("releases", "show", "0.2.0", cwd=project, env={"CI": "1"})
    assert shown.code == 0, shown.output
    assert "metric gates" in shown.stdout
    [row] = [line for line in shown.stdout.splitlines() if line.startswith("production")]
    assert row.split() == ["production", "accuracy", "0.93", "0.1.0", "0.95", "fail", f"#{refused}"]

    data = json.loads(run_cli("releases", "show", "0.1.0", "--json", cwd=project).stdout)
    [metric] = data["metrics"]
    assert metric["gate_run"] == first
    assert (metric["value"], metric["running_version"], metric["verdict"]) == (0.95, None, "pass")
