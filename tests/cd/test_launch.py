"""The launcher supervisord runs: it loads an owner-only environment file and becomes the
program, and it never shows a value from that file."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from shipyard.cd.launch import EnvFileError, read_env_file, write_env_file

SECRET = "s3cr3t-launch-value-91b2"
SHOW_ENV = "import json, os; print(json.dumps({'pid': os.getpid(), **os.environ}))"


def launch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the launcher as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "shipyard.cd.launch", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_the_program_gets_the_environment_and_replaces_the_launcher(tmp_path: Path) -> None:
    env_file = tmp_path / "web.env"
    write_env_file(env_file, {"LOG_LEVEL": "info"}, {"API_TOKEN": SECRET})
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600

    launcher = [sys.executable, "-m", "shipyard.cd.launch", str(env_file), "--"]
    process = subprocess.Popen(
        [*launcher, sys.executable, "-c", SHOW_ENV],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "INHERITED": "yes", "LOG_LEVEL": "debug"},
    )
    out, _ = process.communicate(timeout=60)
    seen = json.loads(out)
    assert process.returncode == 0
    assert seen["pid"] == process.pid  # exec'd in place: supervisord signals the program itself
    assert seen["API_TOKEN"] == SECRET
    assert seen["LOG_LEVEL"] == "info"  # the file wins over the inherited environment
    assert seen["INHERITED"] == "yes"


def test_the_command_can_come_from_the_file(tmp_path: Path) -> None:
    env_file = tmp_path / "web.env"
    code = "import sys\nprint(sys.argv[1])"
    write_env_file(env_file, {}, {}, argv=[sys.executable, "-c", code, "two\nlines"])
    result = launch(str(env_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "two\nlines\n"


def test_a_file_others_can_read_is_refused_without_showing_it(tmp_path: Path) -> None:
    env_file = tmp_path / "web.env"
    write_env_file(env_file, {}, {"API_TOKEN": SECRET})
    env_file.chmod(0o644)
    result = launch(str(env_file), "--", sys.executable, "-c", SHOW_ENV)
    assert result.returncode == 2
    assert "must be 600" in result.stderr
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("not json", "not JSON"),
        ('{"format": 99, "env": {}, "secret": []}', "format 1"),
        ('{"format": 1, "env": {"A": 1}, "secret": []}', "'env' must map"),
        ('{"format": 1, "env": {}, "secret": "A"}', "'secret' must list"),
    ],
)
def test_a_broken_file_is_refused(tmp_path: Path, content: str, complaint: str) -> None:
    env_file = tmp_path / "web.env"
    env_file.write_text(content)
    env_file.chmod(0o600)
    with pytest.raises(EnvFileError, match=complaint):
        read_env_file(env_file)
    result = launch(str(env_file), "--", "true")
    assert result.returncode == 2
    assert complaint in result.stderr


def test_a_missing_command_exits_127(tmp_path: Path) -> None:
    env_file = tmp_path / "web.env"
    write_env_file(env_file, {}, {"API_TOKEN": SECRET})
    result = launch(str(env_file), "--", "no-such-command-for-shipyard")
    assert result.returncode == 127
    assert "no-such-command-for-shipyard: command not found" in result.stderr
    assert SECRET not in result.stderr


def test_the_program_is_found_on_the_path_the_file_sets(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "hello-tool"
    tool.write_text("#!/bin/sh\necho hello from the tool\n")
    tool.chmod(0o755)
    env_file = tmp_path / "web.env"
    write_env_file(env_file, {"PATH": f"{bin_dir}:/usr/bin:/bin"}, {})
    result = launch(str(env_file), "--", "hello-tool")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello from the tool\n"


@pytest.mark.parametrize("args", [[], ["only.env", "extra"], ["x.env", "--"]])
def test_bad_usage_exits_2(args: list[str]) -> None:
    result = launch(*args)
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_the_file_round_trips_and_its_repr_hides_values(tmp_path: Path) -> None:
    folder = tmp_path / "programs"
    folder.mkdir()
    env_file = folder / "web.env"
    write_env_file(env_file, {"A": "1"}, {"TOKEN": SECRET})
    loaded = read_env_file(env_file)
    assert dict(loaded.env) == {"A": "1", "TOKEN": SECRET}
    assert loaded.secret_names == frozenset({"TOKEN"})
    assert loaded.secret_values == (SECRET,)
    assert loaded.argv is None
    assert SECRET not in repr(loaded)
    assert [p.name for p in folder.iterdir()] == ["web.env"]  # no temporary file left


def test_a_program_of_a_sealed_release_starts_only_while_the_tree_is_as_sealed(
    tmp_path: Path,
) -> None:
    from shipyard.cd.launch import Sealed
    from shipyard.release import unpacked

    folder = tmp_path / "release"
    (folder / "app").mkdir(parents=True)
    (folder / "app" / "main.py").write_text("print('verified')\n")
    unpacked.seal(folder, "sha256:" + "ab" * 32)
    env_file = tmp_path / "web.env"
    write_env_file(env_file, {}, {}, sealed=Sealed(str(folder), "sha256:" + "ab" * 32))
    program = ["--", sys.executable, str(folder / "app" / "main.py")]

    started = launch(str(env_file), *program)
    assert (started.returncode, started.stdout) == (0, "verified\n")

    # What supervisord restarts after a crash runs through the same check: an edit is refused.
    target = folder / "app" / "main.py"
    (folder / "app").chmod(0o755)
    target.chmod(0o644)
    target.write_text("print('tampered')\n")
    refused = launch(str(env_file), *program)
    assert refused.returncode == 1
    assert "tampered" not in refused.stdout
    assert "app/main.py changed" in refused.stderr
    assert "refusing to start" in refused.stderr


def test_a_sealed_entry_of_the_wrong_shape_is_refused(tmp_path: Path) -> None:
    env_file = tmp_path / "web.env"
    write_env_file(env_file, {}, {})
    document = json.loads(env_file.read_text())
    document["sealed"] = {"folder": 3}
    env_file.write_text(json.dumps(document))
    env_file.chmod(0o600)
    with pytest.raises(EnvFileError, match="'sealed' must name a folder and a bundle"):
        read_env_file(env_file)
