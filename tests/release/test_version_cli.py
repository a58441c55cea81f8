"""``shipyard version`` as a user runs it: real git repositories, the real command.

A monorepo has one ``shipyard.yaml`` per project folder; the command works from any folder of
the repository for the project there. Absurd input (megabytes of version) is a clear exit 2.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from support import CliResult, run_cli

if TYPE_CHECKING:
    from conftest import Repo

PLAIN = {"CI": "1"}
# An error for a person says what, where and how to fix it in a few lines, not megabytes.
SHORT = 2_000


def version_json(cwd: Path, *args: str) -> dict[str, Any]:
    """``shipyard version --json`` in ``cwd``, which must succeed."""
    result = run_cli("version", "--json", *args, cwd=cwd)
    assert result.code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def refused(result: CliResult, *words: str) -> None:
    """The command stopped with exit 2 and a short error naming each of ``words``."""
    assert result.code == 2, result.output[:SHORT]
    assert "internal error" not in result.output
    assert "Traceback" not in result.output
    assert len(result.output) < SHORT, result.output[:SHORT]
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.fixture
def monorepo(make_repo: Callable[[str], Repo]) -> Repo:
    """Two projects, ``api`` and ``web`` (which also counts ``shared/``), each released once."""
    repo = make_repo("monorepo")
    repo.commit(
        "chore: set up two projects",
        {
            "README.md": "two projects\n",
            "api/shipyard.yaml": "project: api\nrelease:\n  tag_format: 'api-v{version}'\n",
            "web/shipyard.yaml": (
                "project: web\nrelease:\n  tag_format: 'web-v{version}'\n  paths: [., ../shared]\n"
            ),
            "shared/style.css": "body {}\n",
        },
    )
    repo.tag("api-v1.0.0")
    repo.tag("web-v2.0.0")
    repo.commit("feat(api): list tokens", {"api/src/tokens.py": "TOKENS = []\n"})
    repo.commit("fix(web): escape titles", {"web/page.html": "<title>x</title>\n"})
    repo.commit("fix(shared): darker text", {"shared/style.css": "body {color: #111}\n"})
    repo.commit("docs: say what the projects are", {"README.md": "api and web\n"})
    return repo


# -- a monorepo: from any folder ----------------------------------------------------------------


def test_version_in_a_project_folder_counts_the_commits_of_that_project(monorepo: Repo) -> None:
    api = version_json(monorepo.path / "api")
    assert (api["project"], api["current"], api["version"], api["bump"]) == (
        "api",
        "1.0.0",
        "1.1.0",
        "minor",
    )
    assert [c["title"] for c in api["commits"]] == ["feat(api): list tokens"]
    web = version_json(monorepo.path / "web")
    assert (web["project"], web["current"], web["version"], web["bump"]) == (
        "web",
        "2.0.0",
        "2.0.1",
        "patch",
    )
    # release.paths is relative to the project folder: ../shared counts for web only.
    assert [c["title"] for c in web["commits"]] == [
        "fix(shared): darker text",
        "fix(web): escape titles",
    ]


def test_version_below_a_project_folder_and_from_the_root_agree(monorepo: Repo) -> None:
    deep = version_json(monorepo.path / "api" / "src")
    from_root = version_json(monorepo.path, "--file", "api/shipyard.yaml")
    beside = version_json(monorepo.path / "web", "--file", "../api/shipyard.yaml")
    assert deep["version"] == from_root["version"] == beside["version"] == "1.1.0"
    assert deep["commits"] == from_root["commits"] == beside["commits"]


def test_a_configuration_outside_the_repository_is_refused(monorepo: Repo) -> None:
    outside = monorepo.path.parent / "elsewhere" / "shipyard.yaml"
    outside.parent.mkdir()
    outside.write_text("project: elsewhere\n")
    result = run_cli("version", "--file", str(outside), cwd=monorepo.path / "api", env=PLAIN)
    refused(result, str(outside), "outside the repository")


def test_release_dry_run_in_a_project_folder_plans_that_project(monorepo: Repo) -> None:
    result = run_cli("release", "--dry-run", "--json", cwd=monorepo.path / "web")
    assert result.code == 0, result.output
    outcome = json.loads(result.stdout)
    assert (outcome["project"], outcome["version"]) == ("web", "2.0.1")
    assert "escape titles" in outcome["changelog"]
    assert "list tokens" not in outcome["changelog"]


def test_a_path_leading_out_of_the_repository_is_refused(monorepo: Repo) -> None:
    monorepo.commit(
        "chore: count a folder outside",
        {"api/shipyard.yaml": "project: api\nrelease:\n  paths: [., ../../elsewhere]\n"},
    )
    result = run_cli("version", cwd=monorepo.path / "api", env=PLAIN)
    refused(result, "release.paths", "../../elsewhere", "outside the repository")


# -- what version prints -----------------------------------------------------------------------


def test_version_prints_the_version_then_which_commits_bump_what(monorepo: Repo) -> None:
    result = run_cli("version", cwd=monorepo.path / "web", env=PLAIN)
    assert result.code == 0, result.output
    # stdout is the answer alone, so that $(shipyard version) is the version.
    assert result.stdout == "2.0.1\n"
    lines = result.stderr.splitlines()
    assert "  last release: web-v2.0.0 (" in result.stderr
    assert "  2.0.0 + patch = 2.0.1" in lines
    commits = [line.split() for line in lines if line.startswith("    ")]
    assert [(words[0], " ".join(words[2:])) for words in commits] == [
        ("patch", "fix(shared): darker text"),
        ("patch", "fix(web): escape titles"),
    ]


def test_version_without_a_release_says_why_once(make_repo: Callable[[str], Repo]) -> None:
    repo = make_repo("quiet")
    repo.commit("feat: first", {"shipyard.yaml": "project: quiet\n"})
    repo.tag("v0.1.0")
    repo.commit("docs: explain")
    repo.commit("chore: tidy")
    result = run_cli("version", cwd=repo.path, env=PLAIN)
    assert result.code == 0, result.output
    assert result.stdout == "no release (current: 0.1.0)\n"
    assert "no release: no release" not in result.output
    assert "none of the 2 conventional commit(s) since v0.1.0" in result.stderr
    assert "    none" in result.stderr and "docs: explain" in result.stderr
    data = version_json(repo.path)
    assert data["released"] is False
    assert [(c["title"], c["bump"]) for c in data["commits"]] == [
        ("chore: tidy", "none"),
        ("docs: explain", "none"),
    ]


# -- megabytes of version -----------------------------------------------------------------------


def test_a_huge_initial_version_is_refused_naming_the_key(
    make_repo: Callable[[str], Repo],
) -> None:
    repo = make_repo("huge")
    # Under the 1 MiB a configuration may have, and a valid semantic version by the grammar.
    huge = "1.0.0-" + "a" * 900_000
    repo.commit(
        "feat: first", {"shipyard.yaml": f"project: huge\nrelease:\n  initial_version: '{huge}'\n"}
    )
    refused(run_cli("version", cwd=repo.path, env=PLAIN), "release.initial_version", "256")
    for text in ("1" * 900_000 + ".0.0", "1.0.0-" + "1" * 900_000 + "x!"):
        (repo.path / "shipyard.yaml").write_text(
            f"project: huge\nrelease:\n  initial_version: '{text}'\n"
        )
        for command in ("version", "validate"):
            refused(
                run_cli(command, cwd=repo.path, env=PLAIN),
                "shipyard.yaml:3",
                "release.initial_version",
                "256",
            )


def test_a_huge_release_as_footer_is_refused_naming_the_commit(
    make_repo: Callable[[str], Repo],
) -> None:
    repo = make_repo("footer")
    repo.commit("chore: set up", {"shipyard.yaml": "project: footer\n"})
    message = repo.path.parent / "message.txt"
    for value in ("9" * 5_000_000 + ".0.0", "2.0.0-" + "x" * 5_000_000):
        message.write_text(f"feat: jump\n\nRelease-As: {value}\n")
        repo.git("commit", "--quiet", "--allow-empty", "--file", str(message))
        sha = repo.git("rev-parse", "HEAD")
        refused(run_cli("version", cwd=repo.path, env=PLAIN), "Release-As", sha[:7])
        repo.git("reset", "--quiet", "--hard", "HEAD~1")


def test_a_huge_tag_is_skipped_with_a_short_warning(make_repo: Callable[[str], Repo]) -> None:
    repo = make_repo("tags")
    first = repo.commit("feat: first", {"shipyard.yaml": "project: tags\n"})
    repo.tag("v1.0.0")
    repo.commit("fix: second")
    # A name this long cannot be a file, but a fetched packed-refs file may hold it.
    for name in ("v" + "7" * 5_000_000 + ".0.0", "v2.0.0-" + "y" * 5_000_000):
        with (repo.path / ".git" / "packed-refs").open("a") as packed:
            packed.write(f"{first} refs/tags/{name}\n")
    result = run_cli("version", cwd=repo.path, env=PLAIN)
    assert result.code == 0, result.output[:SHORT]
    assert result.stdout == "1.0.1\n"
    assert len(result.stderr) < 2 * SHORT, result.stderr[:SHORT]
    assert result.stderr.count("is skipped") == 2


def test_a_huge_prerelease_token_is_refused(monorepo: Repo) -> None:
    token = "rc" + "1" * 100_000  # one argument may hold 128 KiB on Linux
    refused(run_cli("version", "--prerelease", token, cwd=monorepo.path / "api"), "prerelease")
