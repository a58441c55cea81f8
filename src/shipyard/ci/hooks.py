"""Git hooks that start a run for every new commit, in the background.

A non-bare repository gets a ``post-commit`` hook, a bare one a ``post-receive`` hook. The
hook only starts a detached ``shipyard run`` and returns, so a commit or a push is never
slowed by the pipeline. With release branches (``--flow``), a new commit on one of them goes
through the whole release flow instead (``shipyard release --commit``: version, pipeline,
gates, signed release, tag, deployment to the environments marked auto). A hook that is not
Shipyard's is never overwritten silently.
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shipyard.core.errors import ArgumentError, GitError
from shipyard.core.git import Git

MARKER = "# shipyard: managed hook"
BACKUP_SUFFIX = ".before-shipyard"


@dataclass(frozen=True)
class HookFile:
    """Where a repository's hook lives and which kind it is."""

    path: Path
    kind: str

    @property
    def backup(self) -> Path:
        """Where a hook that was there before Shipyard's is kept."""
        return self.path.with_name(self.path.name + BACKUP_SUFFIX)

    def is_ours(self) -> bool:
        """Whether the hook file exists and was written by Shipyard."""
        try:
            return MARKER in self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return False


def hook_file(git: Git) -> HookFile:
    """The hook Shipyard uses in this repository (respecting ``core.hooksPath``)."""
    kind = "post-receive" if git.is_bare() else "post-commit"
    configured = git.config_get("core.hooksPath")
    if configured:
        folder = Path(configured).expanduser()
        if not folder.is_absolute():
            base = git.common_dir() if git.is_bare() else git.toplevel()
            folder = base / folder
    else:
        folder = git.common_dir() / "hooks"
    return HookFile(path=folder / kind, kind=kind)


def install(
    git: Git, *, state_root: Path, force: bool = False, release_branches: Sequence[str] = ()
) -> HookFile:
    """Write the hook; an existing foreign hook is kept and chained only with ``force``.
    Commits on ``release_branches`` are released, the others run."""
    for branch in release_branches:
        _check_branch_name(git, branch)
    hook = hook_file(git)
    if hook.path.exists() and not hook.is_ours():
        if not force:
            raise ArgumentError(
                f"{hook.path} already exists and is not Shipyard's",
                hint="run 'shipyard hook install --force' to keep it as "
                f"{hook.backup.name} and call it before starting the run",
            )
        hook.path.replace(hook.backup)
    hook.path.parent.mkdir(parents=True, exist_ok=True)
    hook.path.write_text(_script(hook, state_root, release_branches), encoding="utf-8")
    hook.path.chmod(hook.path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return hook


def uninstall(git: Git) -> HookFile | None:
    """Remove Shipyard's hook (restoring a hook it had replaced); None if none was installed."""
    hook = hook_file(git)
    if not hook.is_ours():
        return None
    hook.path.unlink()
    if hook.backup.exists():
        hook.backup.replace(hook.path)
    return hook


def _check_branch_name(git: Git, branch: str) -> None:
    try:
        git.run("check-ref-format", "--branch", branch)
    except GitError as error:
        raise ArgumentError(
            f"--branch {branch!r} is not a valid branch name",
            hint="name a branch such as main or release/1.x",
        ) from error


def _script(hook: HookFile, state_root: Path, release_branches: Sequence[str]) -> str:
    python = shlex.quote(sys.executable)
    logs = shlex.quote(str(state_root / "logs" / "hooks"))
    chained = ""
    if hook.backup.exists():
        saved = shlex.quote(str(hook.backup))
        chained = f'input=$(cat)\nprintf "%s\\n" "$input" | {saved} "$@" || exit $?\n'
    detach = f'>> {logs}/"$1".log 2>&1 < /dev/null &'
    run = f'nohup {python} -m shipyard run "$1" --event hook --branch "$2" --json {detach}'
    if release_branches:
        release = f'nohup {python} -m shipyard release --commit "$1" --branch "$2" --json {detach}'
        start = (
            f"mkdir -p {logs}\n"
            f"release_branches={shlex.quote(' '.join(release_branches))}\n"
            'start() {\n  case " $release_branches " in\n'
            f'    *" $2 "*) {release} ;;\n'
            f"    *) {run} ;;\n"
            "  esac\n}\n"
        )
    else:
        start = f"mkdir -p {logs}\nstart() {{ {run} }}\n"
    if hook.kind == "post-commit":
        body = (
            "sha=$(git rev-parse HEAD) || exit 0\n"
            "branch=$(git symbolic-ref --quiet --short HEAD || true)\n"
            'start "$sha" "$branch"\n'
        )
    else:
        source = 'printf "%s\\n" "$input"' if chained else "cat"
        body = (
            f"{source} | while read -r old new ref; do\n"
            '  case "$ref" in refs/heads/*) ;; *) continue ;; esac\n'
            '  [ "$new" = 0000000000000000000000000000000000000000 ] && continue\n'
            '  start "$new" "${ref#refs/heads/}"\n'
            "done\n"
        )
    return (
        f"#!/bin/sh\n{MARKER} ({hook.kind}); remove with 'shipyard hook uninstall'.\n"
        f"# It starts a Shipyard run (or release) in the background and returns at once.\n"
        f"unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE\n{chained}{start}{body}exit 0\n"
    )


def executable(path: Path) -> bool:
    """Whether git would run this hook file."""
    return path.exists() and os.access(path, os.X_OK)
