"""``shipyard init`` and ``shipyard validate`` as users run them, on real repositories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import git, run_cli

ALIAS_BOMB = (
    "project: x\n"
    + "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n"
        for i in range(8)
    )
)

# name -> (content, what the message must name: line, and key path where one applies)
MALFORMED: dict[str, tuple[bytes, list[str]]] = {
    "yaml syntax": (b"project: demo\nsteps: [1, 2\n", [":3:1:"]),
    "empty file": (b"", ["empty"]),
    "only comments": (b"# nothing here\n", ["only comments"]),
    "binary junk": (bytes(range(256)) * 4, ["binary"]),
    "invalid utf-8": (b"project: caf\xe9\n", ["UTF-8"]),
    "list at the top": (b"- project: demo\n", [":1:1:", "mapping"]),
    "scalar at the top": (b"just text\n", [":1:1:", "mapping"]),
    "duplicate keys": (b"project: a\nproject: b\n", [":2:1:", "project", "line 1"]),
    "alias bomb": (ALIAS_BOMB.encode(), ["alias"]),
    "typo": (b"project: demo\nprojetc: x\n", [":2:1:", "projetc"]),
    "wrong type": (b"project: [a, b]\n", [":1:", "project", "expected a string"]),
    "bad project name": (b"project: 'has spaces'\n", [":1:10:", "project"]),
    "two documents": (b"project: a\n---\nproject: b\n", ["document"]),
    "non-string key": (b"project: a\n1: b\n", [":2:1:", "key"]),
    "python tag": (b"project: !!python/object:os.system x\n", [":1:10:", "tag"]),
    "missing project": (b"{}\n", ["project"]),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_configuration_exits_2_naming_where(name: str, repo: Path) -> None:
    content, expected = MALFORMED[name]
    (repo / "shipyard.yaml").write_bytes(content)
    result = run_cli("validate", cwd=repo)
    assert result.code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in expected:
        assert fragment in result.stderr, (fragment, result.stderr)


def test_a_ten_megabyte_file_is_refused_without_a_traceback(repo: Path) -> None:
    (repo / "shipyard.yaml").write_bytes(b"project: demo\n" + b"# padding\n" * 1_100_000)
    result = run_cli("validate", cwd=repo)
    assert result.code == 2
    assert "too large" in result.stderr or "MiB" in result.stderr
    assert "Traceback" not in result.output


def test_typos_get_a_suggestion_in_json_too(repo: Path) -> None:
    (repo / "shipyard.yaml").write_text("project: demo\nprojetc: x\n")
    result = run_cli("validate", "--json", cwd=repo)
    assert result.code == 2
    error = json.loads(result.stdout)["error"]
    assert "projetc" in error["message"]
    assert "project" in error["message"]


def test_init_writes_a_configuration_that_validates(repo: Path) -> None:
    (repo / "pyproject.toml").write_text(
        '[project]\nname = "tiny-app"\nversion = "0.1.0"\n'
        '[project.optional-dependencies]\ntest = ["pytest"]\n'
    )
    (repo / "tests").mkdir()
    (repo / "tests" / "test_tiny.py").write_text("def test_ok():\n    assert True\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "feat: tiny app")
    written = run_cli("init", "--json", cwd=repo)
    assert written.code == 0, written.output
    assert json.loads(written.stdout)["file"] == str(repo / "shipyard.yaml")
    checked = run_cli("validate", "--json", cwd=repo / "tests")
    assert checked.code == 0, checked.output
    assert json.loads(checked.stdout)["project"] == "tiny-app"


def test_init_says_to_commit_the_configuration_and_installs_test_plugins(repo: Path) -> None:
    (repo / "requirements.txt").write_text("requests==2.32.3\n")
    (repo / "pytest.ini").write_text("[pytest]\naddopts = --cov=app -n auto\n")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_app.py").write_text("def test_ok():\n    assert True\n")
    written = run_cli("init", cwd=repo, env={"CI": "1"})
    assert written.code == 0, written.output
    assert "next: 'shipyard validate', then commit it: 'git add shipyard.yaml" in written.stdout
    assert (
        "pip install -r requirements.txt pytest pytest-cov pytest-xdist"
        in (repo / "shipyard.yaml").read_text()
    )


def test_init_refuses_to_overwrite_without_force(repo: Path) -> None:
    (repo / "shipyard.yaml").write_text("project: mine\n")
    refused = run_cli("init", cwd=repo)
    assert refused.code == 2
    assert "--force" in refused.stderr
    assert (repo / "shipyard.yaml").read_text() == "project: mine\n"
    forced = run_cli("init", "--force", cwd=repo)
    assert forced.code == 0
    assert "project: repo" in (repo / "shipyard.yaml").read_text()


def test_validate_without_a_configuration_says_how_to_get_one(repo: Path) -> None:
    result = run_cli("validate", cwd=repo)
    assert result.code == 2
    assert "shipyard init" in result.stderr


def _matrix_config(axes: int, values: int, extra: str = "") -> str:
    lines = "".join(
        f"        a{axis}: [{', '.join(str(v) for v in range(values))}]\n" for axis in range(axes)
    )
    return (
        "project: demo\npipeline:\n  jobs:\n    t:\n      run: echo\n      matrix:\n"
        + lines
        + extra
    )


def test_a_huge_matrix_is_refused_without_being_built(repo: Path) -> None:
    (repo / "shipyard.yaml").write_text(_matrix_config(10, 10))
    result = run_cli("validate", cwd=repo, timeout=60)
    assert result.code == 2, result.output
    assert "pipeline.jobs.t.matrix" in result.stderr
    assert "10000000000 jobs, more than 256" in result.stderr
    assert "Traceback" not in result.output


def test_a_huge_matrix_that_exclude_cuts_down_is_expanded_to_what_is_left(repo: Path) -> None:
    # 2 x 10^9 combinations, of which exclude keeps those with z=keep and a0..a8 all 0.
    keep = "".join(
        f"        - {{z: keep, a{axis}: {v}}}\n" for axis in range(9) for v in range(1, 10)
    )
    config = _matrix_config(9, 10, "        z: [drop, keep]\n        exclude:\n")
    config += "        - {z: drop}\n" + keep
    (repo / "shipyard.yaml").write_text(config)
    result = run_cli("validate", "--json", cwd=repo, timeout=60)
    assert result.code == 0, result.output
    (repo / "shipyard.yaml").write_text(config.replace("        - {z: drop}\n", ""))
    refused = run_cli("validate", cwd=repo, timeout=60)
    assert refused.code == 2, refused.output
    assert "more than 256" in refused.stderr


# name -> (pipeline, the key path the problem is reported at)
REFUSED_BY_RUN: dict[str, tuple[str, str]] = {
    "if syntax": ("t: {run: echo, if: \"branch = 'main'\"}", "pipeline.jobs.t.if"),
    "if unknown name": ("t: {run: echo, if: 'brnch'}", "pipeline.jobs.t.if"),
    "if bad regex": ("t: {run: echo, if: \"matches(tag, 'v[0-9')\"}", "pipeline.jobs.t.if"),
    "shell not installed": (
        "t: {run: echo, shell: [no-such-shell-anywhere, -c]}",
        "pipeline.jobs.t.shell",
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED_BY_RUN))
def test_validate_refuses_what_run_refuses_with_the_same_message(repo: Path, name: str) -> None:
    pipeline, at = REFUSED_BY_RUN[name]
    (repo / "shipyard.yaml").write_text(f"project: demo\npipeline:\n  jobs:\n    {pipeline}\n")
    git(repo, "add", "shipyard.yaml")
    git(repo, "commit", "-q", "-m", "ci: pipeline")
    checked = run_cli("validate", cwd=repo)
    ran = run_cli("run", cwd=repo, env={"CI": "1"})
    assert ran.code == 2, ran.output
    assert checked.code == 2, checked.output
    assert at in checked.stderr
    problem = next(line for line in ran.stderr.splitlines() if at in line)
    assert problem.split(at, 1)[1] in checked.stderr
    assert "Traceback" not in checked.output + ran.output
