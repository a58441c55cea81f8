"""Who is acting: the name Shipyard records for approvals, releases and the audit log.

It is taken from ``SHIPYARD_USER``, else git's ``user.email``, else the login name at this
host. It proves nothing about the person (that is for signatures and the server), and it must
never hand out a name that could hide or forge text in a log.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shipyard.core.errors import ConfigError
from shipyard.core.git import Git

__all__ = ["ENV_VARIABLE", "Actor", "ActorSource", "current_actor", "validate_actor_name"]

ENV_VARIABLE = "SHIPYARD_USER"
"""The environment variable that names the acting user explicitly."""

ActorSource = Literal["SHIPYARD_USER", "git user.email", "os user"]
"""Where an actor's name came from."""

# Control characters, invisible formatting (such as right-to-left overrides), surrogates and
# line or paragraph separators: each could break a log line or disguise a name.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})

_LOGIN_VARIABLES = ("LOGNAME", "USER", "LNAME", "USERNAME")

_HINT = (
    "set SHIPYARD_USER, or git's user.email, to a plain name such as alice@example.com "
    "(no tabs, line breaks or other control characters)"
)


@dataclass(frozen=True)
class Actor:
    """The person or machine acting, and where that name came from."""

    name: str
    source: ActorSource


def current_actor(
    repo: Git | Path | None = None, *, environ: Mapping[str, str] | None = None
) -> Actor:
    """The acting identity: ``SHIPYARD_USER``, else git ``user.email``, else login@host.

    ``repo`` is the repository whose git configuration counts (default: the current
    directory); ``environ`` defaults to the process environment.
    """
    environment = os.environ if environ is None else environ
    explicit = environment.get(ENV_VARIABLE, "").strip()
    if explicit:
        return Actor(validate_actor_name(explicit, origin=f"${ENV_VARIABLE}"), "SHIPYARD_USER")

    if repo is None:
        repo = Path.cwd()
    email = _git_email(repo if isinstance(repo, Git) else Git(repo))
    if email is not None and email.strip():
        return Actor(validate_actor_name(email, origin="git config user.email"), "git user.email")

    name = f"{_login_name(environment)}@{socket.gethostname()}"
    return Actor(validate_actor_name(name, origin="the login name and host name"), "os user")


def validate_actor_name(name: str, *, origin: str) -> str:
    """``name`` without surrounding whitespace; a ConfigError naming ``origin`` if unusable."""
    stripped = name.strip()
    if not stripped:
        raise ConfigError(f"the user name from {origin} is empty", hint=_HINT)
    for position, char in enumerate(stripped):
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            raise ConfigError(
                f"the user name from {origin} contains the control character "
                f"U+{ord(char):04X} at position {position}: {stripped!r}",
                hint=_HINT,
            )
    return stripped


def _git_email(git: Git) -> str | None:
    # Without git, identity still works; any other git failure is reported, not papered over.
    search_path = git.env.get("PATH", os.environ.get("PATH", os.defpath))
    if shutil.which("git", path=search_path) is None:
        return None
    return git.config_get("user.email")


def _login_name(environment: Mapping[str, str]) -> str:
    for variable in _LOGIN_VARIABLES:
        value = environment.get(variable, "").strip()
        if value:
            return value
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid{os.getuid()}"
