"""The configuration as a commit holds it: where it lies in the repository, and its text there.

Runs and releases work on commits, not on the working tree, and a bare repository has no
working tree at all: there the configuration is named by its path inside the commit.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from shipyard.core.config import CONFIG_FILE_NAME, LoadedConfig, find_config, load_text
from shipyard.core.errors import ArgumentError, ConfigError, GitError
from shipyard.core.git import Git


def config_location(
    cwd: Path, config_file: Path | None, *, toplevel: Path | None
) -> tuple[PurePosixPath, Path | None]:
    """The configuration's path inside the repository and, in a working tree (``toplevel``),
    the file on disk; in a bare repository (no ``toplevel``) ``--file`` names a path inside
    the commit."""
    if toplevel is None:
        relative = PurePosixPath(config_file.as_posix() if config_file else CONFIG_FILE_NAME)
        if relative.is_absolute() or ".." in relative.parts:
            raise ArgumentError(
                f"--file {relative}: in a bare repository the configuration is named by its "
                "path inside the commit",
                hint=f"give a relative path such as {CONFIG_FILE_NAME}",
            )
        return relative, None
    path = (config_file or find_config(cwd, stop=toplevel)).resolve()
    try:
        relative = PurePosixPath(path.relative_to(toplevel.resolve()).as_posix())
    except ValueError as error:
        raise ConfigError(
            f"{path} is outside the repository {toplevel}",
            hint="keep shipyard.yaml inside the repository",
        ) from error
    return relative, path


def load_committed(
    git: Git, commit: str, relative: PurePosixPath, *, hint: str = "commit it first"
) -> LoadedConfig:
    """The configuration at ``relative`` as ``commit`` holds it; a ConfigError if it has none."""
    try:
        content = git.run_bytes("show", f"{commit}:{relative}")
    except GitError as error:
        raise ConfigError(f"{relative} is not in commit {commit[:12]}", hint=hint) from error
    return load_text(content, f"{relative} (in {commit[:12]})")
