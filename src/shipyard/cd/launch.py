"""``python -m shipyard.cd.launch ENVFILE -- PROGRAM [ARG...]``: how supervisord starts a program.

It reads the program's environment (secrets included) from an owner-only file, adds it to its
own, and replaces itself with the program, so the secrets never appear in supervisord's config.
When the file names a sealed release tree, the tree is checked against its manifest before
every start (a restart by supervisord too), so an instance only ever runs the verified bundle.
It must stay tiny and import nothing heavy, and it never prints a value of the environment.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EnvFile", "EnvFileError", "Sealed", "main", "read_env_file", "write_env_file"]

EXIT_USAGE = 2
EXIT_CHANGED = 1
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127

_FORMAT = 1
_USAGE = "usage: python -m shipyard.cd.launch ENVFILE [-- PROGRAM [ARG...]]"


class EnvFileError(Exception):
    """An environment file cannot be written or read, or does not hold an environment."""


@dataclass(frozen=True)
class Sealed:
    """A sealed release tree the program runs from, and the bundle it was unpacked from."""

    folder: str
    bundle: str


@dataclass(frozen=True)
class EnvFile:
    """The contents of an environment file: every variable, which are secret, maybe the argv."""

    env: Mapping[str, str] = field(repr=False)
    secret_names: frozenset[str]
    argv: tuple[str, ...] | None = None
    sealed: Sealed | None = None

    @property
    def secret_values(self) -> tuple[str, ...]:
        """The values of the secret variables (to mask them in what Shipyard shows)."""
        return tuple(self.env[name] for name in sorted(self.secret_names) if self.env.get(name))


def write_env_file(
    path: Path,
    env: Mapping[str, str],
    secret_env: Mapping[str, str],
    argv: Sequence[str] | None = None,
    sealed: Sealed | None = None,
) -> None:
    """Atomically write ``env`` and ``secret_env`` (and ``argv``) to ``path``, owner-only.

    ``argv`` is for a command the config file cannot hold (an argument with a line break);
    ``sealed`` is the release tree to check before every start.
    """
    document: dict[str, object] = {
        "format": _FORMAT,
        "env": {**env, **secret_env},
        "secret": sorted(secret_env),
    }
    if argv is not None:
        document["argv"] = list(argv)
    if sealed is not None:
        document["sealed"] = {"folder": sealed.folder, "bundle": sealed.bundle}
    data = json.dumps(document, ensure_ascii=False, sort_keys=True).encode("utf-8")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # Created 0600 from the start: the secret is never readable by others, not even briefly.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise EnvFileError(f"cannot write {path}: {exc.strerror}") from None


def read_env_file(path: Path) -> EnvFile:
    """Read an environment file written by ``write_env_file``; refuse one others can read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise EnvFileError(f"cannot read {path}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_IMODE(mode) & 0o077:
            raise EnvFileError(
                f"{path} is readable by others (mode {stat.S_IMODE(mode):o}); it must be 600"
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read()
    finally:
        os.close(fd)
    try:
        document = json.loads(raw)
    except ValueError:
        raise EnvFileError(f"{path} is not an environment file (not JSON)") from None
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        raise EnvFileError(f"{path} is not an environment file of format {_FORMAT}")
    env = document.get("env")
    secret = document.get("secret")
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise EnvFileError(f"{path}: 'env' must map names to strings")
    if not isinstance(secret, list) or not all(isinstance(name, str) for name in secret):
        raise EnvFileError(f"{path}: 'secret' must list names")
    argv = document.get("argv")
    if argv is not None and (
        not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv)
    ):
        raise EnvFileError(f"{path}: 'argv' must list the command and its arguments")
    sealed = document.get("sealed")
    if sealed is not None and not (
        isinstance(sealed, dict)
        and isinstance(sealed.get("folder"), str)
        and isinstance(sealed.get("bundle"), str)
    ):
        raise EnvFileError(f"{path}: 'sealed' must name a folder and a bundle")
    return EnvFile(
        env=dict(env),
        secret_names=frozenset(secret),
        argv=tuple(argv) if argv is not None else None,
        sealed=Sealed(sealed["folder"], sealed["bundle"]) if sealed is not None else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Load the environment file and exec the program; return an exit code only on failure."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or (len(args) > 1 and (args[1] != "--" or len(args) < 3)):
        sys.stderr.write(f"{_USAGE}\n")
        return EXIT_USAGE
    try:
        loaded = read_env_file(Path(args[0]))
    except EnvFileError as error:
        sys.stderr.write(f"shipyard launch: {error}\n")
        return EXIT_USAGE
    program = list(args[2:] or loaded.argv or ())
    if not program:
        sys.stderr.write(f"shipyard launch: {args[0]} names no command\n{_USAGE}\n")
        return EXIT_USAGE
    if loaded.sealed is not None and not _sealed_tree_intact(loaded.sealed):
        return EXIT_CHANGED
    environment = dict(os.environ)
    environment.update(loaded.env)
    sys.stderr.flush()
    sys.stdout.flush()
    try:
        os.execvpe(program[0], program, environment)  # noqa: S606 - argv, never a shell
    except FileNotFoundError:
        sys.stderr.write(f"shipyard launch: {program[0]}: command not found\n")
        return EXIT_NOT_FOUND
    except OSError as exc:
        sys.stderr.write(f"shipyard launch: cannot run {program[0]}: {exc.strerror}\n")
        return EXIT_CANNOT_EXECUTE


def _sealed_tree_intact(sealed: Sealed) -> bool:
    """Whether the release tree is as sealed; says what changed on stderr if it is not."""
    from shipyard.release import unpacked  # only for programs that run from a release

    folder = Path(sealed.folder)
    try:
        unpacked.check(folder, sealed.bundle, root=folder)
    except unpacked.UnpackedReleaseChanged as changed:
        sys.stderr.write(f"shipyard launch: refusing to start: {changed.message}\n")
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
