"""Loading shipyard.yaml from disk: finding it, refusing bad files, and the error's shape."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from shipyard.core.config import (
    MAX_CONFIG_BYTES,
    ConfigInvalid,
    ConfigProblem,
    ShipyardConfig,
    find_config,
    load_config,
    load_config_text,
)
from shipyard.core.errors import ConfigError, UserError

Writer = Callable[[str | bytes], Path]


def test_load_config_from_a_file(write_config: Writer) -> None:
    path = write_config("# the demo\nproject: demo\n")
    assert load_config(path) == ShipyardConfig(project="demo")


def test_messages_name_the_file_as_given(write_config: Writer) -> None:
    path = write_config("project: demo\nprojet: again\n")
    with pytest.raises(ConfigInvalid) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}:2:1: projet: unknown key 'projet' (hint: ")
    assert "project" in str(caught.value)


def test_invalid_is_a_user_error_with_structured_problems() -> None:
    with pytest.raises(ConfigInvalid) as caught:
        load_config_text("project: 'a b'\nextra: 1\n", "configs/app.yaml")
    error = caught.value
    assert isinstance(error, ConfigError)
    assert isinstance(error, UserError)
    assert error.hint is None
    assert error.problems == [
        ConfigProblem(
            file="configs/app.yaml",
            line=1,
            column=10,
            path="project",
            message="the project name 'a b' contains ' '",
            hint="use 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit",
        ),
        ConfigProblem(
            file="configs/app.yaml",
            line=2,
            column=1,
            path="extra",
            message="unknown key 'extra'",
            hint="remove it; the keys allowed here are: "
            "environments, gates, notifications, pipeline, project, release, service",
        ),
    ]
    assert str(error).splitlines() == [str(problem) for problem in error.problems]


def test_a_ten_megabyte_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "shipyard.yaml"
    with path.open("wb") as stream:
        stream.truncate(10 * 1024 * 1024)  # sparse: the size is known without writing it
    with pytest.raises(ConfigInvalid) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: the file is 10.0 MiB, larger than the 1 MiB")


def test_a_file_just_over_the_limit_is_refused(write_config: Writer) -> None:
    path = write_config("project: demo\n" + "#" * MAX_CONFIG_BYTES)
    with pytest.raises(ConfigInvalid, match="larger than the 1 MiB allowed"):
        load_config(path)


def test_a_binary_file_is_refused(write_config: Writer) -> None:
    path = write_config(bytes(range(256)) * 4)
    with pytest.raises(ConfigInvalid, match=r":1:1: the file contains a NUL byte"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "shipyard.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.message == f"{path}: the file does not exist"
    assert caught.value.hint == "run 'shipyard init' to write one, or pass --file PATH"


def test_a_folder_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder, not a file"):
        load_config(tmp_path)


def test_a_fifo_is_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "shipyard.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_config(fifo)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file(write_config: Writer) -> None:
    path = write_config("project: demo\n")
    path.chmod(0)
    with pytest.raises(ConfigError, match=f"{path}: cannot read the file: Permission denied"):
        load_config(path)


def test_a_dangling_symlink(tmp_path: Path) -> None:
    link = tmp_path / "shipyard.yaml"
    link.symlink_to(tmp_path / "elsewhere.yaml")
    with pytest.raises(ConfigError, match="the file does not exist"):
        load_config(link)


class TestFindConfig:
    """shipyard.yaml is found in the start folder or above it, never beyond the stop."""

    def test_in_the_start_folder(self, tmp_path: Path) -> None:
        (tmp_path / "shipyard.yaml").write_text("project: demo\n")
        assert find_config(tmp_path) == (tmp_path / "shipyard.yaml").resolve()

    def test_in_a_folder_above(self, tmp_path: Path) -> None:
        (tmp_path / "shipyard.yaml").write_text("project: demo\n")
        deep = tmp_path / "src" / "pkg"
        deep.mkdir(parents=True)
        assert find_config(deep, stop=tmp_path) == (tmp_path / "shipyard.yaml").resolve()

    def test_the_nearest_wins(self, tmp_path: Path) -> None:
        (tmp_path / "shipyard.yaml").write_text("project: outer\n")
        inner = tmp_path / "services" / "api"
        (inner / "tests").mkdir(parents=True)
        (inner / "shipyard.yaml").write_text("project: api\n")
        assert find_config(inner / "tests") == (inner / "shipyard.yaml").resolve()

    def test_not_beyond_the_stop(self, tmp_path: Path) -> None:
        (tmp_path / "shipyard.yaml").write_text("project: outside\n")
        repo = tmp_path / "repo"
        start = repo / "src"
        start.mkdir(parents=True)
        with pytest.raises(ConfigError) as caught:
            find_config(start, stop=repo)
        assert caught.value.message == (
            f"no shipyard.yaml found in {start.resolve()} or any folder above it up to "
            f"{repo.resolve()}"
        )
        assert caught.value.hint == "run 'shipyard init' to write one, or pass --file PATH"

    def test_a_start_file_searches_its_folder(self, tmp_path: Path) -> None:
        (tmp_path / "shipyard.yaml").write_text("project: demo\n")
        (tmp_path / "README.md").write_text("hi\n")
        assert find_config(tmp_path / "README.md") == (tmp_path / "shipyard.yaml").resolve()

    def test_a_near_miss_is_named(self, tmp_path: Path) -> None:
        (tmp_path / "shipyard.yml").write_text("project: demo\n")
        with pytest.raises(ConfigError) as caught:
            find_config(tmp_path, stop=tmp_path)
        assert caught.value.message.endswith(f"there is {tmp_path.resolve() / 'shipyard.yml'}")
        assert caught.value.hint is not None
        assert caught.value.hint.startswith("rename it to shipyard.yaml")

    def test_a_folder_named_shipyard_yaml_is_not_a_config(self, tmp_path: Path) -> None:
        (tmp_path / "shipyard.yaml").mkdir()
        with pytest.raises(ConfigError, match=r"no shipyard\.yaml found"):
            find_config(tmp_path, stop=tmp_path)
