"""Every start runs exactly the verified bundle: an edit under the unpacked release is refused.

The first tests deploy the example service for real (supervisor, router, HTTP); the rest drive
the local target's ``prepare`` and ``start`` on a real bundle without starting processes.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.cd.settings import DeploySettings
from shipyard.cd.supervisor import Supervisor
from shipyard.cd.targets import Release
from shipyard.cd.targets.local import LocalTarget
from shipyard.core import state as state_dir
from shipyard.core.blobs import BlobStore
from shipyard.core.errors import CheckFailed
from shipyard.core.git import Git
from shipyard.release import bundle
from shipyard.release.unpacked import UnpackedReleaseChanged
from support import CliResult, git, run_cli

pytestmark = pytest.mark.slow  # real processes end to end: started first (conftest)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "webapp"

CONFIG = """project: webapp
release:
  version_files: [VERSION]
service:
  command: python3 -m app --port {port}
  instances: 1
  health: {http: /healthz, timeout: 15s, interval: 100ms}
  stop: {signal: TERM, grace: 5s}
environments:
  production:
    strategy: {recreate: {}}
"""


def _writable(path: Path) -> None:
    """What somebody who edits the unpacked tree does first (it is read-only)."""
    for item in (path, *path.parents):
        if item.name == "releases":
            break
        item.chmod(item.stat().st_mode | stat.S_IWUSR)


def _unpacked(repo: Path, version: str) -> Path:
    found = sorted((repo / ".shipyard" / "deploy" / "releases").glob(f"webapp-{version}-*"))
    assert len(found) == 1, found
    return found[0] / f"webapp-{version}"


class Site:
    """The example service in a repository, released, with helpers to deploy and ask it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def cli(self, *args: str) -> CliResult:
        return run_cli(*args, cwd=self.path)

    def release(self, message: str) -> str:
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        result = self.cli("release", "--json")
        assert result.code == 0, result.output
        return str(json.loads(result.stdout)["version"])

    def deploy(self, version: str) -> CliResult:
        return self.cli("deploy", version, "--env", "production", "--json")

    def serves(self) -> str:
        status = json.loads(self.cli("status", "--env", "production", "--json").stdout)[0]
        import urllib.request

        address = str(status["router"]["address"])
        with urllib.request.urlopen(address, timeout=5) as response:  # noqa: S310 - local
            return str(response.read().decode().strip())


@pytest.fixture
def site(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """The example service with a signing key and release 0.1.0."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SHIPYARD_USER", "deployer@example.com")
    shutil.copytree(EXAMPLE / "app", repo / "app", ignore=shutil.ignore_patterns("__pycache__"))
    for item in ("VERSION", "pyproject.toml"):
        shutil.copy(EXAMPLE / item, repo / item)
    (repo / "shipyard.yaml").write_text(CONFIG)
    site = Site(repo)
    assert site.cli("keys", "generate").code == 0
    site.release("feat: the service")
    try:
        yield site
    finally:
        Supervisor.for_state(state_dir.locate(repo)).shutdown()


def test_an_edited_unpacked_release_is_neither_redeployed_nor_rolled_back_to(site: Site) -> None:
    first = site.deploy("0.1.0")
    assert first.code == 0, first.output
    assert site.serves() == "0.1.0"
    # The same version again starts new instances from the same unpacked tree: still fine.
    again = site.deploy("0.1.0")
    assert again.code == 0, again.output
    assert site.release("feat: two") == "0.2.0"
    assert site.deploy("0.2.0").code == 0
    assert site.serves() == "0.2.0"
    tree = _unpacked(site.path, "0.1.0")
    _writable(tree / "VERSION")
    (tree / "VERSION").write_text("6.6.6\n")  # the service answers with its VERSION file

    back = site.cli("rollback", "--env", "production", "--to", "0.1.0", "--json")
    assert back.code == 1, back.output
    message = json.loads(back.stdout)["error"]["message"]
    assert "webapp-0.1.0/VERSION" in message and "changed" in message
    assert site.serves() == "0.2.0"  # refused before anything was stopped

    redeploy = site.deploy("0.1.0")
    assert redeploy.code == 1, redeploy.output
    assert "webapp-0.1.0/VERSION" in json.loads(redeploy.stdout)["error"]["message"]
    assert site.serves() == "0.2.0"


# --- the local target on a real bundle, without processes ------------------------------------


@pytest.fixture
def target_and_release(repo: Path) -> tuple[LocalTarget, Release, DeploySettings]:
    (repo / "app.py").write_text("print('hello')\n")
    (repo / "run.sh").write_text("#!/bin/sh\nexec python3 app.py\n")
    (repo / "run.sh").chmod(0o755)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "feat: app")
    state = state_dir.locate(repo).ensure()
    blobs = BlobStore.for_state(state)
    built = bundle.build(
        Git(repo),
        Git(repo).head_commit(),
        repo.parent / "demo.tar.gz",
        prefix="demo-1.0.0/",
        replace={},
    )
    stored = blobs.put_file(built)
    settings = DeploySettings(
        project="demo",
        environment="production",
        target="local",
        strategy="recreate",
        setup="mkdir -p .venv && echo made-by-setup > .venv/marker",
        command="python3 app.py",
        health_path="/",
        health_timeout_s=1,
        health_interval_s=0.1,
        instances=1,
    )
    return LocalTarget(state), Release("demo", "1.0.0", str(stored.digest)), settings


def _refusal(target: LocalTarget, release: Release, settings: DeploySettings) -> str:
    with pytest.raises(UnpackedReleaseChanged) as refused:
        target.prepare(release, settings)
    assert isinstance(refused.value, CheckFailed)  # exit 1 at the CLI
    with pytest.raises(UnpackedReleaseChanged):
        target.start(release, settings, refused.value.root, "t0")
    return refused.value.message


def test_the_unpacked_tree_is_read_only_and_a_second_prepare_reuses_it(
    target_and_release: tuple[LocalTarget, Release, DeploySettings],
) -> None:
    target, release, settings = target_and_release
    root = target.prepare(release, settings)
    assert (root / ".venv" / "marker").read_text() == "made-by-setup\n"
    for path in (root / "app.py", root / "run.sh", root, root / ".venv" / "marker"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0, path  # nothing may write there
    marker = root / ".venv" / "marker"
    before = marker.stat().st_ino
    assert target.prepare(release, settings) == root
    assert marker.stat().st_ino == before  # not unpacked again, and setup did not run again


def test_a_changed_file_is_named(
    target_and_release: tuple[LocalTarget, Release, DeploySettings],
) -> None:
    target, release, settings = target_and_release
    root = target.prepare(release, settings)
    _writable(root / "app.py")
    mtime = (root / "app.py").stat().st_mtime_ns
    (root / "app.py").write_text("print('HELLO')\n")  # same size, and the same mtime below
    os.utime(root / "app.py", ns=(mtime, mtime))
    message = _refusal(target, release, settings)
    assert "demo-1.0.0/app.py changed" in message


def test_an_added_file_is_named(
    target_and_release: tuple[LocalTarget, Release, DeploySettings],
) -> None:
    target, release, settings = target_and_release
    root = target.prepare(release, settings)
    _writable(root / "app.py")
    (root / "sitecustomize.py").write_text("import os\n")
    message = _refusal(target, release, settings)
    assert "demo-1.0.0/sitecustomize.py was added" in message


def test_a_removed_file_and_a_changed_setup_output_are_named(
    target_and_release: tuple[LocalTarget, Release, DeploySettings],
) -> None:
    target, release, settings = target_and_release
    root = target.prepare(release, settings)
    _writable(root / "run.sh")
    (root / "run.sh").unlink()
    _writable(root / ".venv" / "marker")
    (root / ".venv" / "marker").write_text("swapped\n")
    message = _refusal(target, release, settings)
    assert "demo-1.0.0/run.sh was removed" in message
    assert "demo-1.0.0/.venv/marker changed" in message


def test_a_changed_mode_is_named(
    target_and_release: tuple[LocalTarget, Release, DeploySettings],
) -> None:
    target, release, settings = target_and_release
    root = target.prepare(release, settings)
    (root / "app.py").chmod(0o755)
    message = _refusal(target, release, settings)
    assert "demo-1.0.0/app.py changed its mode" in message
