"""The acting identity, from SHIPYARD_USER, a real repository's git config, or the OS."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from shipyard.core.errors import ConfigError, GitError
from shipyard.core.git import Git
from shipyard.core.identity import Actor, current_actor, validate_actor_name

if TYPE_CHECKING:
    from conftest import Repo


def test_shipyard_user_comes_first_and_is_stripped(empty_repo: Repo) -> None:
    empty_repo.git("config", "user.email", "git@example.com")

    actor = current_actor(empty_repo.path, environ={"SHIPYARD_USER": "  alice@example.com \n"})

    assert actor == Actor("alice@example.com", "SHIPYARD_USER")


def test_git_user_email_of_the_repository_when_shipyard_user_is_unset(empty_repo: Repo) -> None:
    empty_repo.git("config", "user.email", " bob@example.com ")

    for environ in ({}, {"SHIPYARD_USER": ""}, {"SHIPYARD_USER": "   "}):
        assert current_actor(Git(empty_repo.path), environ=environ) == Actor(
            "bob@example.com", "git user.email"
        )


def test_the_current_directory_is_the_default_repository(
    empty_repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_repo.git("config", "user.email", "carol@example.com")
    (empty_repo.path / "sub").mkdir()
    monkeypatch.chdir(empty_repo.path / "sub")

    assert current_actor(environ={}) == Actor("carol@example.com", "git user.email")


def test_the_login_name_at_this_host_when_git_has_no_email(empty_repo: Repo) -> None:
    actor = current_actor(empty_repo.path, environ={"LOGNAME": "dave", "USER": "other"})

    assert actor == Actor(f"dave@{socket.gethostname()}", "os user")


def test_the_login_name_without_login_variables_comes_from_the_user_database(
    empty_repo: Repo,
) -> None:
    actor = current_actor(empty_repo.path, environ={})

    assert actor.source == "os user"
    assert actor.name.endswith(f"@{socket.gethostname()}")
    assert actor.name.split("@")[0]


def test_without_git_installed_the_os_user_is_used(tmp_path: Path) -> None:
    no_binaries = tmp_path / "empty-path"
    no_binaries.mkdir()
    git = Git(tmp_path, env={"PATH": str(no_binaries)})

    actor = current_actor(git, environ={"USER": "erin"})

    assert actor == Actor(f"erin@{socket.gethostname()}", "os user")


def test_a_broken_repository_is_reported_not_papered_over(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="no such directory"):
        current_actor(tmp_path / "missing", environ={})


def test_control_characters_in_shipyard_user_are_rejected() -> None:
    for hostile in ("ali\x1b[31mce", "alice\nrelease approved by bob", "ev\u202eil", "a\tb"):
        with pytest.raises(ConfigError, match=r"\$SHIPYARD_USER.*control character") as caught:
            current_actor(environ={"SHIPYARD_USER": hostile})
        assert caught.value.hint is not None


def test_control_characters_in_git_user_email_are_rejected(empty_repo: Repo) -> None:
    empty_repo.git("config", "user.email", "mallory\t@example.com")

    with pytest.raises(ConfigError, match=r"git config user\.email") as caught:
        current_actor(empty_repo.path, environ={})

    assert "U+0009" in str(caught.value)


def test_validate_actor_name() -> None:
    assert validate_actor_name("  Zoë Ünicode <zoe@example.com> ", origin="--as") == (
        "Zoë Ünicode <zoe@example.com>"
    )
    with pytest.raises(ConfigError, match="from --as is empty"):
        validate_actor_name(" \t ", origin="--as")


def test_an_actor_is_a_frozen_value() -> None:
    actor = Actor("alice", "SHIPYARD_USER")

    with pytest.raises(AttributeError):
        actor.name = "mallory"  # type: ignore[misc]
