"""The git wrapper against real repositories built with the git command."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

from shipyard.core.errors import GitError
from shipyard.core.git import Commit, Git, find_git_common_dir

if TYPE_CHECKING:
    from conftest import Repo

# -- the repository ---------------------------------------------------------------------------


def test_toplevel_and_git_dirs_from_a_subfolder(empty_repo: Repo) -> None:
    empty_repo.commit("first", {"src/app.py": "print(1)\n"})
    git = Git(empty_repo.path / "src")

    assert git.toplevel() == empty_repo.path
    assert git.git_dir() == empty_repo.path / ".git"
    assert git.common_dir() == empty_repo.path / ".git"
    assert not git.is_bare()
    assert not git.is_shallow()


def test_a_worktree_shares_the_common_dir_but_has_its_own_git_dir(
    empty_repo: Repo, tmp_path: Path
) -> None:
    sha = empty_repo.commit("first", {"a.txt": "a\n"})
    worktree = tmp_path / "wt"
    Git(empty_repo.path).worktree_add(worktree, sha)
    git = Git(worktree)

    assert git.common_dir() == empty_repo.path / ".git"
    assert git.git_dir() != empty_repo.path / ".git"
    assert git.toplevel() == worktree
    assert find_git_common_dir(worktree) == empty_repo.path / ".git"


def test_bare_and_shallow_clones_are_recognised(empty_repo: Repo, tmp_path: Path) -> None:
    empty_repo.commit("first")
    empty_repo.commit("second")
    bare = tmp_path / "bare.git"
    shallow = tmp_path / "shallow"
    empty_repo.git("clone", "--quiet", "--bare", str(empty_repo.path), str(bare))
    empty_repo.git("clone", "--quiet", "--depth=1", f"file://{empty_repo.path}", str(shallow))

    assert Git(bare).is_bare()
    assert Git(bare).common_dir() == bare
    assert Git(shallow).is_shallow()
    assert len(Git(shallow).log()) == 1


def test_find_git_common_dir_outside_a_repository_is_none(
    tmp_path: Path, isolated_git: None
) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()

    assert find_git_common_dir(outside) is None


def test_a_hooks_git_variables_do_not_redirect_another_repository(
    new_repo: Callable[[str], Repo], monkeypatch: pytest.MonkeyPatch
) -> None:
    hooked = new_repo("hooked")
    other = new_repo("other")
    hooked.commit("hook side")
    other.commit("other side")
    monkeypatch.setenv("GIT_DIR", str(hooked.path / ".git"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(hooked.path / ".git" / "index"))

    git = Git(other.path)

    assert git.toplevel() == other.path
    assert git.log()[0].subject == "other side"


# -- commits and refs -------------------------------------------------------------------------


def test_head_and_refs_resolve_to_full_commit_shas(empty_repo: Repo) -> None:
    first = empty_repo.commit("first")
    second = empty_repo.commit("second")
    empty_repo.git("tag", "light", first)
    empty_repo.git("tag", "--annotate", "--message=annotated", "v1.0.0", second)
    git = Git(empty_repo.path)

    assert git.head_commit() == second
    assert git.resolve_commit("main") == second
    assert git.resolve_commit("HEAD~1") == first
    assert git.resolve_commit(first[:10]) == first
    assert git.resolve_commit("light") == first
    # An annotated tag is peeled to the commit, never the tag object.
    assert git.resolve_commit("v1.0.0") == second


def test_an_unknown_ref_is_a_clear_error_naming_it(empty_repo: Repo) -> None:
    empty_repo.commit("first")
    git = Git(empty_repo.path)

    with pytest.raises(GitError) as caught:
        git.resolve_commit("no-such-branch")

    assert "'no-such-branch'" in str(caught.value)
    assert caught.value.hint
    assert git.find_commit("no-such-branch") is None


def test_a_ref_that_names_a_file_not_a_commit_is_not_a_commit(empty_repo: Repo) -> None:
    empty_repo.commit("first", {"a.txt": "a\n"})

    assert Git(empty_repo.path).find_commit("HEAD:a.txt") is None


def test_refs_that_look_like_options_are_never_options(empty_repo: Repo, tmp_path: Path) -> None:
    sha = empty_repo.commit("first", {"a.txt": "a\n"})
    empty_repo.git("update-ref", "refs/heads/-dash", sha)
    empty_repo.git("update-ref", "refs/tags/-tagged", sha)
    git = Git(empty_repo.path)
    trap = tmp_path / "written-by-git"

    # A real ref whose name starts with a dash resolves as a ref.
    assert git.resolve_commit("-dash") == sha
    assert [c.sha for c in git.log("-dash")] == [sha]
    assert git.tags_pointing_at("-dash") == ("-tagged",)
    # Option-shaped input is a revision that does not exist, not an instruction to git.
    for hostile in (f"--output={trap}", "--all", "-h", "--git-dir"):
        assert git.find_commit(hostile) is None
        with pytest.raises(GitError):
            git.log(hostile)
        with pytest.raises(GitError):
            git.changed_files(hostile, "HEAD")
    assert not trap.exists()


def test_empty_and_multiline_revisions_are_rejected(empty_repo: Repo) -> None:
    empty_repo.commit("first")
    git = Git(empty_repo.path)

    for bad in ("", "  ", "main\n--all", "ma\0in"):
        with pytest.raises(GitError, match="not a valid git revision"):
            git.resolve_commit(bad)


def test_head_of_an_empty_repository_is_a_clear_error(empty_repo: Repo) -> None:
    with pytest.raises(GitError, match="no commit") as caught:
        Git(empty_repo.path).head_commit()

    assert caught.value.hint == "make a first commit, then try again"


def test_current_branch_and_detached_head(empty_repo: Repo) -> None:
    git = Git(empty_repo.path)
    assert git.current_branch() == "main"  # unborn, but checked out

    first = empty_repo.commit("first")
    empty_repo.git("tag", "main-tag")
    empty_repo.git("checkout", "--quiet", "-b", "feature/x")
    assert git.current_branch() == "feature/x"

    empty_repo.git("checkout", "--quiet", "--detach", first)
    assert git.current_branch() is None


def test_ancestry_and_merge_base(empty_repo: Repo) -> None:
    base = empty_repo.commit("base")
    left = empty_repo.commit("left")
    empty_repo.git("checkout", "--quiet", "-b", "right", base)
    right = empty_repo.commit("right")
    empty_repo.git("checkout", "--quiet", "--orphan", "unrelated")
    empty_repo.commit("unrelated root")
    git = Git(empty_repo.path)

    assert git.is_ancestor(base, left)
    assert git.is_ancestor(left, left)
    assert not git.is_ancestor(left, right)
    assert git.merge_base(left, right) == base
    assert git.merge_base("main", "unrelated") is None


def test_tags_pointing_at_a_commit(empty_repo: Repo) -> None:
    first = empty_repo.commit("first")
    second = empty_repo.commit("second")
    empty_repo.git("tag", "v1.0.0", second)
    empty_repo.git("tag", "--annotate", "--message=release", "v1.0.1", second)
    git = Git(empty_repo.path)

    assert git.tags_pointing_at("HEAD") == ("v1.0.0", "v1.0.1")
    assert git.tags_pointing_at(first) == ()


# -- log --------------------------------------------------------------------------------------


def test_log_parses_every_field_of_a_commit(empty_repo: Repo) -> None:
    first = empty_repo.commit("feat: first")
    body = "Line one of the body.\n\nRecord\x1eseparators and\ttabs stay.\nBREAKING CHANGE: x"
    second = empty_repo.commit(
        f"fix: second\n\n{body}",
        author=("Zoë Ünicode", "zoe@example.com"),
        date="2024-05-06T07:08:09-04:00",
    )

    commits = Git(empty_repo.path).log()

    assert [c.sha for c in commits] == [second, first]
    assert commits[0] == Commit(
        sha=second,
        parents=(first,),
        author_name="Zoë Ünicode",
        author_email="zoe@example.com",
        authored_at=datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(-timedelta(hours=4))),
        committed_at=datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(-timedelta(hours=4))),
        subject="fix: second",
        body=body,
    )
    assert commits[1].parents == ()
    assert commits[1].body == ""


def test_log_over_a_range_with_paths_and_limits(empty_repo: Repo) -> None:
    empty_repo.commit("one", {"src/a.py": "1\n"})
    empty_repo.git("tag", "v1.0.0")
    two = empty_repo.commit("two", {"docs/readme.md": "2\n"})
    three = empty_repo.commit("three", {"src/a.py": "3\n"})
    git = Git(empty_repo.path)

    assert [c.sha for c in git.log("v1.0.0..HEAD")] == [three, two]
    assert [c.sha for c in git.log("v1.0.0..HEAD", paths=["src"])] == [three]
    assert [c.sha for c in git.log(max_count=1)] == [three]
    assert git.log("HEAD..HEAD") == ()


def test_log_of_a_merge_and_first_parent(empty_repo: Repo) -> None:
    base = empty_repo.commit("base")
    empty_repo.git("checkout", "--quiet", "-b", "topic")
    topic = empty_repo.commit("topic work")
    empty_repo.git("checkout", "--quiet", "main")
    main_work = empty_repo.commit("main work")
    empty_repo.git("merge", "--quiet", "--no-ff", "--no-edit", "topic")
    merge = empty_repo.git("rev-parse", "HEAD")
    git = Git(empty_repo.path)

    assert git.log(max_count=1)[0].parents == (main_work, topic)
    assert [c.sha for c in git.log(first_parent=True)] == [merge, main_work, base]
    assert {c.sha for c in git.log()} == {merge, main_work, topic, base}


def test_log_of_an_unknown_range_names_the_command(empty_repo: Repo) -> None:
    empty_repo.commit("first")

    with pytest.raises(GitError) as caught:
        Git(empty_repo.path).log("v9.9.9..HEAD")

    message = str(caught.value)
    assert "git log" in message
    assert "v9.9.9..HEAD" in message
    assert "exit code 128" in message


# -- files ------------------------------------------------------------------------------------


def test_tracked_files_in_the_index_and_in_a_commit(empty_repo: Repo) -> None:
    odd = "dir with space/new\nline ü.txt"
    sha = empty_repo.commit("first", {"a.txt": "a\n", odd: "x\n", "sub/b.txt": "b\n"})
    empty_repo.write("staged.txt", "s\n")
    empty_repo.git("add", "staged.txt")
    empty_repo.write("untracked.txt", "u\n")
    git = Git(empty_repo.path / "sub")  # from a subfolder, paths still start at the root

    assert set(git.tracked_files()) == {"a.txt", odd, "sub/b.txt", "staged.txt"}
    assert set(git.tracked_files(sha)) == {"a.txt", odd, "sub/b.txt"}


def test_changed_files_between_commits(empty_repo: Repo) -> None:
    base = empty_repo.commit("base", {"keep.txt": "k\n", "edit.txt": "1\n", "old/name.txt": "r\n"})
    (empty_repo.path / "edit.txt").write_text("2\n")
    (empty_repo.path / "new").mkdir()
    empty_repo.git("mv", "old/name.txt", "new/name.txt")
    empty_repo.write("added.txt", "+\n")
    head = empty_repo.commit("change")

    changed = Git(empty_repo.path).changed_files(base, head)

    assert set(changed) == {"edit.txt", "old/name.txt", "new/name.txt", "added.txt"}
    assert Git(empty_repo.path).changed_files(head, head) == ()


def test_is_dirty_counts_tracked_changes_only(empty_repo: Repo) -> None:
    empty_repo.commit("first", {"a.txt": "a\n"})
    git = Git(empty_repo.path)
    assert not git.is_dirty()

    empty_repo.write("untracked.txt", "u\n")
    assert not git.is_dirty()

    empty_repo.write("a.txt", "changed\n")
    assert git.is_dirty()

    empty_repo.git("add", "a.txt")
    assert git.is_dirty()


def test_config_get(empty_repo: Repo) -> None:
    empty_repo.git("config", "shipyard.note", "  spaced value  ")
    git = Git(empty_repo.path)

    assert git.config_get("shipyard.note") == "  spaced value  "
    assert git.config_get("shipyard.missing") is None
    for bad in ("nosection", "--global", ""):
        with pytest.raises(GitError, match="not a git configuration key"):
            git.config_get(bad)


# -- worktrees --------------------------------------------------------------------------------


def test_worktree_add_detached_and_remove(empty_repo: Repo, tmp_path: Path) -> None:
    first = empty_repo.commit("first", {"a.txt": "one\n"})
    empty_repo.commit("second", {"a.txt": "two\n"})
    git = Git(empty_repo.path)
    path = tmp_path / "workspaces" / "run-1"

    git.worktree_add(path, first)

    assert (path / "a.txt").read_text() == "one\n"
    assert Git(path).head_commit() == first
    assert Git(path).current_branch() is None

    (path / "a.txt").write_text("dirty\n")
    git.worktree_remove(path)
    assert not path.exists()
    assert str(path) not in empty_repo.git("worktree", "list")


def test_worktree_add_on_a_branch(empty_repo: Repo, tmp_path: Path) -> None:
    empty_repo.commit("first")
    empty_repo.git("branch", "topic")
    path = tmp_path / "topic"

    Git(empty_repo.path).worktree_add(path, "topic", detach=False)

    assert Git(path).current_branch() == "topic"


def test_worktree_prune_forgets_deleted_worktrees(empty_repo: Repo, tmp_path: Path) -> None:
    sha = empty_repo.commit("first", {"a.txt": "a\n"})
    git = Git(empty_repo.path)
    path = tmp_path / "gone"
    git.worktree_add(path, sha)
    for child in sorted(path.rglob("*"), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink()
    path.rmdir()

    git.worktree_prune()

    assert str(path) not in empty_repo.git("worktree", "list")
    git.worktree_add(path, sha)  # the path can be used again
    assert (path / "a.txt").exists()


def test_adding_a_worktree_where_one_exists_is_a_clear_error(
    empty_repo: Repo, tmp_path: Path
) -> None:
    sha = empty_repo.commit("first", {"a.txt": "a\n"})
    path = tmp_path / "taken"
    path.mkdir()
    (path / "file").write_text("x\n")

    with pytest.raises(GitError, match="git worktree add") as caught:
        Git(empty_repo.path).worktree_add(path, sha)

    assert "already exists" in str(caught.value)


# -- running git ------------------------------------------------------------------------------


def test_run_returns_stdout_and_feeds_stdin(empty_repo: Repo) -> None:
    git = Git(empty_repo.path)

    sha = git.run("hash-object", "-w", "--stdin", input="hello\n").strip()

    assert git.run_bytes("cat-file", "blob", sha) == b"hello\n"
    assert git.run("cat-file", "-t", sha) == "blob\n"


def test_git_always_runs_in_the_c_locale_without_prompts(empty_repo: Repo) -> None:
    git = Git(empty_repo.path, env={"LC_ALL": "de_DE.UTF-8", "GIT_TERMINAL_PROMPT": "1"})

    env_lines = git.run("-c", "alias.showenv=!env", "showenv").splitlines()

    assert "LC_ALL=C" in env_lines
    assert "GIT_TERMINAL_PROMPT=0" in env_lines


def test_extra_env_reaches_git(empty_repo: Repo) -> None:
    git = Git(empty_repo.path, env={"SHIPYARD_PROBE": "here"})

    assert "SHIPYARD_PROBE=here" in git.run("-c", "alias.showenv=!env", "showenv").splitlines()


def test_a_failure_names_command_exit_code_stderr_and_hint(
    tmp_path: Path, isolated_git: None
) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()

    with pytest.raises(GitError) as caught:
        Git(outside).run("rev-parse", "--show-toplevel")

    error = caught.value
    assert "`git rev-parse --show-toplevel` failed with exit code 128" in error.message
    assert str(outside) in error.message
    assert "not a git repository" in error.message
    assert error.hint is not None
    assert "git init" in error.hint


def test_credentials_in_urls_never_reach_the_error(empty_repo: Repo) -> None:
    git = Git(empty_repo.path, timeout=60)

    with pytest.raises(GitError) as caught:
        git.run("ls-remote", "https://robot:s3cr3t-token@127.0.0.1:9/none.git")

    assert "s3cr3t-token" not in str(caught.value)
    assert "https://***@127.0.0.1:9/none.git" in str(caught.value)


def test_git_not_installed_is_a_clear_error(tmp_path: Path) -> None:
    empty_path = tmp_path / "no-binaries"
    empty_path.mkdir()

    with pytest.raises(GitError, match="git is not installed") as caught:
        Git(tmp_path, env={"PATH": str(empty_path)}).run("--version")

    assert caught.value.hint is not None


def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="no such directory"):
        Git(tmp_path / "nowhere").run("status")


def test_a_git_command_that_hangs_is_killed_with_its_children(empty_repo: Repo) -> None:
    probe = os.urandom(8).hex()
    git = Git(empty_repo.path, env={"SHIPYARD_HANG_PROBE": probe})

    with pytest.raises(GitError, match=r"did not finish within 0\.5 s") as caught:
        git.run("-c", "alias.hang=!sleep 600; :", "hang", timeout=0.5)

    assert "git -c" in str(caught.value)
    assert _wait_until(lambda: not _processes_with("SHIPYARD_HANG_PROBE", probe))


def test_the_timeout_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="must be positive"):
        Git(tmp_path, timeout=0)


def test_git_is_a_hashable_frozen_value(tmp_path: Path) -> None:
    git = Git(tmp_path, env={"A": "1"})

    assert git == Git(tmp_path, env={"A": "1"})
    assert hash(git) == hash(Git(tmp_path))
    with pytest.raises(AttributeError):
        git.cwd = Path("/")  # type: ignore[misc]


def test_the_extra_env_stays_out_of_the_repr(tmp_path: Path) -> None:
    git = Git(tmp_path, env={"GIT_ASKPASS_TOKEN": "s3cr3t"})

    assert "s3cr3t" not in repr(git)


def _processes_with(name: str, value: str) -> list[int]:
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(name) == value and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())
