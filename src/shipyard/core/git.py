"""A typed wrapper around the ``git`` command, the one way Shipyard talks to git.

It runs git without a shell, with a timeout, a fixed C locale and no terminal prompts, and turns
every failure into a ``GitError`` that names the command. It must never let a user-given ref be
read as an option, and it holds no state beyond the directory it was created for.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType

from shipyard.core.errors import GitError

__all__ = [
    "DEFAULT_TIMEOUT",
    "Commit",
    "Git",
    "find_git_common_dir",
]

DEFAULT_TIMEOUT = 60.0
"""Seconds a git command may run before it is killed."""

# Variables that choose a repository. A git hook exports them (GIT_DIR is often relative), and
# inheriting them would make a Git for another directory act on the hook's repository instead.
_REPO_LOCATING_VARIABLES = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_COMMON_DIR",
        "GIT_PREFIX",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    }
)

_FIXED_VARIABLES = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}

_STDERR_LINES_SHOWN = 5

# Known git complaints (in the C locale) and what a user should do about them.
_HINTS: tuple[tuple[str, str], ...] = (
    ("not a git repository", "run Shipyard inside a git repository, or create one with `git init`"),
    ("dubious ownership", "trust the repository with `git config --global --add safe.directory`"),
    ("does not have any commits yet", "make a first commit, then try again"),
    ("must be run in a work tree", "this needs a working tree; a bare repository has none"),
    ("index.lock", "another git process seems to be running; if none is, remove the .lock file"),
    ("unknown revision", "check the ref: `git branch --all` and `git tag --list` show them"),
    ("bad revision", "check the ref: `git branch --all` and `git tag --list` show them"),
    ("not a valid object name", "check the ref: `git branch --all` and `git tag --list` show them"),
    ("already exists", "choose another path, or remove what is there"),
)

_CREDENTIALS_IN_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")

# Fields of one commit record in `git log -z` output: every field ends with a NUL.
_LOG_FORMAT = "%H%x00%P%x00%an%x00%ae%x00%aI%x00%cI%x00%s%x00%b"
_LOG_FIELDS = 8


@dataclass(frozen=True)
class Commit:
    """One commit as ``git log`` reports it."""

    sha: str
    parents: tuple[str, ...]
    author_name: str
    author_email: str
    authored_at: datetime
    committed_at: datetime
    subject: str
    body: str


@dataclass(frozen=True)
class _Completed:
    """What a finished git command returned."""

    returncode: int
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True)
class Git:
    """A git repository, or a directory inside one, reached through the ``git`` command.

    The repository is the one that contains ``cwd``: variables such as ``GIT_DIR`` or
    ``GIT_INDEX_FILE`` inherited from a git hook are dropped; pass them in ``env`` to keep them.
    """

    cwd: Path
    env: Mapping[str, str] = field(default_factory=dict, hash=False, repr=False)
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise GitError(f"the git timeout must be positive, not {self.timeout}")
        # Frozen: fix the directory and copy the variables so later changes cannot leak in.
        object.__setattr__(self, "cwd", Path(self.cwd).absolute())
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))

    # -- running commands -------------------------------------------------------------------

    def run(self, *args: str, input: str | None = None, timeout: float | None = None) -> str:
        """Run ``git *args`` and return its standard output as text."""
        stdin = None if input is None else input.encode()
        return _text(self.run_bytes(*args, input=stdin, timeout=timeout))

    def run_bytes(
        self, *args: str, input: bytes | None = None, timeout: float | None = None
    ) -> bytes:
        """Run ``git *args`` and return its standard output as bytes."""
        return self._run(args, stdin=input, timeout=timeout).stdout

    # -- the repository ---------------------------------------------------------------------

    def toplevel(self) -> Path:
        """The root of the working tree that contains ``cwd``."""
        return Path(self._line("rev-parse", "--show-toplevel"))

    def git_dir(self) -> Path:
        """The absolute git directory of this working tree (per worktree)."""
        return Path(self._line("rev-parse", "--absolute-git-dir"))

    def common_dir(self) -> Path:
        """The absolute git directory shared by all worktrees of the repository."""
        return Path(self._line("rev-parse", "--path-format=absolute", "--git-common-dir"))

    def is_bare(self) -> bool:
        """Whether the repository is bare (has no working tree)."""
        return self._line("rev-parse", "--is-bare-repository") == "true"

    def is_shallow(self) -> bool:
        """Whether the repository is a shallow clone, missing part of its history."""
        return self._line("rev-parse", "--is-shallow-repository") == "true"

    def is_dirty(self) -> bool:
        """Whether tracked files differ from HEAD, staged or not; untracked files do not count."""
        result = self._run(
            ("status", "--porcelain=v1", "-z", "--untracked-files=no"),
            extra_env={"GIT_OPTIONAL_LOCKS": "0"},
        )
        return bool(result.stdout)

    def config_get(self, key: str) -> str | None:
        """The effective value of configuration ``key``, or None when it is not set."""
        if not key or key.startswith("-") or "." not in key or _has_line_break_or_nul(key):
            raise GitError(
                f"{key!r} is not a git configuration key",
                hint="a key looks like section.name, for example user.email",
            )
        result = self._run(("config", "--null", "--get", "--end-of-options", key), ok=(0, 1))
        if result.returncode == 1:
            if result.stderr.strip():
                raise self._failure(("config", "--get", key), result)
            return None
        return _text(result.stdout).removesuffix("\0")

    # -- commits and refs -------------------------------------------------------------------

    def head_commit(self) -> str:
        """The full sha of the commit checked out at HEAD."""
        sha = self.find_commit("HEAD")
        if sha is None:
            raise GitError(
                f"the repository at {self.cwd} has no commit at HEAD yet",
                hint="make a first commit, then try again",
            )
        return sha

    def find_commit(self, ref: str) -> str | None:
        """The full sha of the commit that ``ref`` names, or None when it names none."""
        _check_revision(ref)
        result = self._run(
            ("rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"),
            ok=(0, 1),
        )
        if result.returncode == 1:
            return None
        return _text(result.stdout).strip()

    def resolve_commit(self, ref: str) -> str:
        """The full sha of the commit that ``ref`` names; a GitError naming ``ref`` if none."""
        sha = self.find_commit(ref)
        if sha is None:
            raise GitError(
                f"{ref!r} does not name a commit in the repository at {self.cwd}",
                hint="check the spelling; `git branch --all` and `git tag --list` show the refs",
            )
        return sha

    def current_branch(self) -> str | None:
        """The short name of the branch checked out, or None when HEAD is detached."""
        result = self._run(("symbolic-ref", "--quiet", "HEAD"), ok=(0, 1))
        if result.returncode == 1:
            return None
        return _text(result.stdout).strip().removeprefix("refs/heads/")

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether commit ``ancestor`` is in the history of ``descendant`` (or is it)."""
        first, second = self.resolve_commit(ancestor), self.resolve_commit(descendant)
        result = self._run(
            ("merge-base", "--is-ancestor", "--end-of-options", first, second), ok=(0, 1)
        )
        return result.returncode == 0

    def merge_base(self, first: str, second: str) -> str | None:
        """The best common ancestor of two commits, or None when their histories are unrelated."""
        a, b = self.resolve_commit(first), self.resolve_commit(second)
        result = self._run(("merge-base", "--end-of-options", a, b), ok=(0, 1))
        if result.returncode == 1:
            return None
        return _text(result.stdout).strip()

    def tags_pointing_at(self, ref: str) -> tuple[str, ...]:
        """The names of the tags, lightweight or annotated, on the commit ``ref`` names."""
        sha = self.resolve_commit(ref)
        out = self._line(
            "for-each-ref", "--format=%(refname:strip=2)", f"--points-at={sha}", "refs/tags/"
        )
        return tuple(out.splitlines())

    def log(
        self,
        rev_range: str = "HEAD",
        *,
        paths: Sequence[str] = (),
        max_count: int | None = None,
        first_parent: bool = False,
    ) -> tuple[Commit, ...]:
        """The commits of ``rev_range`` (such as ``v1.0.0..HEAD``), newest first."""
        _check_revision(rev_range)
        args = ["log", "-z", "--no-show-signature", "--no-color", f"--format={_LOG_FORMAT}"]
        if max_count is not None:
            args.append(f"--max-count={max_count}")
        if first_parent:
            args.append("--first-parent")
        args += ["--end-of-options", rev_range, "--", *paths]
        return _parse_log(_text(self.run_bytes(*args)))

    # -- files ------------------------------------------------------------------------------

    def tracked_files(self, commit: str | None = None) -> tuple[str, ...]:
        """Paths from the repository root of the files in ``commit``, or in the index if None."""
        if commit is None:
            out = self.run_bytes("ls-files", "-z", "--full-name", "--", ":(top)")
        else:
            sha = self.resolve_commit(commit)
            out = self.run_bytes(
                "ls-tree", "-r", "-z", "--name-only", "--full-tree", "--end-of-options", sha
            )
        return _nul_separated_paths(out)

    def changed_files(self, base: str, head: str) -> tuple[str, ...]:
        """Paths added, modified or deleted between two commits; a rename counts as both paths."""
        old, new = self.resolve_commit(base), self.resolve_commit(head)
        out = self.run_bytes(
            "diff-tree", "-r", "-z", "--name-only", "--no-renames", "--end-of-options", old, new
        )
        return _nul_separated_paths(out)

    # -- worktrees --------------------------------------------------------------------------

    def archive(self, commit: str, dest: Path) -> None:
        """Write the tree of ``commit`` as an uncompressed tar file to ``dest``."""
        sha = self.resolve_commit(commit)
        self._run(
            ("archive", "--format=tar", "-o", str(self._absolute(dest)), sha),
            timeout=max(self.timeout, 600.0),
        )

    def create_tag(self, name: str, commit: str, message: str) -> None:
        """Create the annotated tag ``name`` on ``commit``."""
        sha = self.resolve_commit(commit)
        if name.startswith("-"):
            raise GitError(f"{name!r} is not a tag name", hint="tag names cannot start with '-'")
        self._run(("tag", "--annotate", "--message", message, "--end-of-options", name, sha))

    def delete_tag(self, name: str) -> None:
        """Delete the tag ``name`` (locally)."""
        self._run(("tag", "--delete", "--end-of-options", name))

    def tag_commit(self, name: str) -> str | None:
        """The commit a tag points at (peeled), or None when there is no such tag."""
        return self.find_commit(f"refs/tags/{name}")

    def worktree_add(self, path: Path, commit: str, *, detach: bool = True) -> None:
        """Check ``commit`` out in a new worktree at ``path``, detached unless told otherwise."""
        _check_revision(commit)
        args = ["worktree", "add"]
        if detach:
            args.append("--detach")
        args += ["--end-of-options", str(self._absolute(path)), commit]
        self._run(tuple(args))

    def worktree_remove(self, path: Path, *, force: bool = True) -> None:
        """Remove the worktree at ``path``; with ``force``, even if it has local changes."""
        args = ["worktree", "remove"]
        if force:
            args.append("--force")
        args += ["--end-of-options", str(self._absolute(path))]
        self._run(tuple(args))

    def worktree_prune(self) -> None:
        """Forget worktrees whose directories were deleted without ``worktree_remove``."""
        self._run(("worktree", "prune"))

    # -- internals --------------------------------------------------------------------------

    def _absolute(self, path: Path) -> Path:
        return path if path.is_absolute() else self.cwd / path

    def _line(self, *args: str) -> str:
        return _text(self._run(args).stdout).rstrip("\n")

    def _run(
        self,
        args: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        ok: tuple[int, ...] = (0,),
        extra_env: Mapping[str, str] | None = None,
    ) -> _Completed:
        result = self._exec(args, stdin=stdin, timeout=timeout, extra_env=extra_env)
        if result.returncode not in ok:
            raise self._failure(args, result)
        return result

    def _exec(
        self,
        args: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> _Completed:
        limit = self.timeout if timeout is None else timeout
        argv = ["git", *args]
        try:
            # A session of its own: on timeout the whole group (hooks, helpers) can be killed,
            # and with no controlling terminal nothing can stop to ask for a password.
            process = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env=self._environment(extra_env),
                stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError:
            if not self.cwd.is_dir():
                raise self._missing_directory() from None
            raise GitError(
                "git is not installed, or not on PATH",
                hint="install git (2.31 or newer) and make sure `git --version` works",
            ) from None
        except NotADirectoryError:
            raise self._missing_directory() from None
        except ValueError as exc:
            raise GitError(f"cannot run {_describe(argv)}: {exc}") from None
        except OSError as exc:
            raise GitError(f"cannot run {_describe(argv)} in {self.cwd}: {exc}") from None
        with process:
            try:
                stdout, stderr = process.communicate(stdin, timeout=limit)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                raise GitError(
                    f"{_describe(argv)} did not finish within {limit:g} s in {self.cwd}",
                    hint="a remote may be unreachable or the repository very large; "
                    "check the network or allow a longer timeout",
                ) from None
            except BaseException:
                _kill_group(process)
                raise
        return _Completed(process.returncode, stdout, stderr)

    def _environment(self, extra_env: Mapping[str, str] | None) -> dict[str, str]:
        environment = {
            name: value
            for name, value in os.environ.items()
            if name not in _REPO_LOCATING_VARIABLES and name != "LANGUAGE"
        }
        environment.update(self.env)
        if extra_env:
            environment.update(extra_env)
        environment.update(_FIXED_VARIABLES)
        return environment

    def _missing_directory(self) -> GitError:
        return GitError(
            f"cannot run git in {self.cwd}: no such directory",
            hint="check the path of the repository",
        )

    def _failure(self, args: Sequence[str], result: _Completed) -> GitError:
        command = _describe(["git", *args])
        stderr = _redact(_text(result.stderr)).strip()
        lines = stderr.splitlines()[:_STDERR_LINES_SHOWN]
        message = f"{command} failed with exit code {result.returncode} in {self.cwd}"
        if lines:
            message += ":\n" + "\n".join(f"    {line}" for line in lines)
        lowered = stderr.lower()
        hint = next((hint for needle, hint in _HINTS if needle in lowered), None)
        if hint is None:
            hint = f"run the command yourself in {self.cwd} to see git's full output"
        return GitError(message, hint=hint)


def find_git_common_dir(start: Path, *, env: Mapping[str, str] | None = None) -> Path | None:
    """The git directory shared by all worktrees of the repository holding ``start``, or None."""
    git = Git(start, env=env or {})
    args = ("rev-parse", "--path-format=absolute", "--git-common-dir")
    result = git._exec(args)
    if result.returncode == 0:
        return Path(_text(result.stdout).rstrip("\n"))
    if b"not a git repository" in result.stderr.lower():
        return None
    raise git._failure(args, result)


def _check_revision(revision: str) -> None:
    if not revision.strip() or _has_line_break_or_nul(revision):
        raise GitError(
            f"{revision!r} is not a valid git revision",
            hint="give a branch, tag or commit sha such as main, v1.2.0 or HEAD~1",
        )


def _has_line_break_or_nul(value: str) -> bool:
    return any(char in value for char in "\0\n\r")


def _parse_log(out: str) -> tuple[Commit, ...]:
    fields = out.split("\0")
    # Every field, the last one included, ends with a NUL, so the split leaves one empty tail.
    if fields[-1] != "" or (len(fields) - 1) % _LOG_FIELDS != 0:
        raise GitError(
            "cannot parse the output of git log",
            hint="a git configuration may change the log format; report this as a bug",
        )
    commits = []
    for start in range(0, len(fields) - 1, _LOG_FIELDS):
        sha, parents, name, email, authored, committed, subject, body = fields[
            start : start + _LOG_FIELDS
        ]
        commits.append(
            Commit(
                sha=sha.strip(),
                parents=tuple(parents.split()),
                author_name=name,
                author_email=email,
                authored_at=datetime.fromisoformat(authored),
                committed_at=datetime.fromisoformat(committed),
                subject=subject,
                body=body.rstrip("\n"),
            )
        )
    return tuple(commits)


def _nul_separated_paths(out: bytes) -> tuple[str, ...]:
    return tuple(os.fsdecode(name) for name in out.split(b"\0") if name)


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _describe(argv: Sequence[str]) -> str:
    return f"`{_redact(shlex.join(argv))}`"


def _redact(text: str) -> str:
    return _CREDENTIALS_IN_URL.sub(r"\g<scheme>***@", text)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
