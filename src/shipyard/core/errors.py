"""The one error hierarchy of Shipyard.

Every failure a user can meet is a ``ShipyardError`` with a message that says what went wrong,
where, and how to fix it. Exit codes and HTTP statuses are assigned at the edges (``cli/``,
``server/``) from the class, never here.

::

    ShipyardError                     root; anything Shipyard raises on purpose
    ├── UserError                     the user's input is wrong (exit 2)
    │   ├── ConfigError               shipyard.yaml is malformed or inconsistent
    │   ├── ArgumentError             a command-line argument is wrong
    │   └── NotFoundError             a named thing (run, release, environment…) does not exist
    ├── CheckFailed                   the thing checked failed: pipeline, gate, deploy (exit 1)
    │   └── AuditChainBroken          the audit log does not verify
    ├── WaitingForPerson              stopped until somebody acts: approval, pause (exit 3)
    └── HostError                     the machine or a service is not as needed (exit 2)
        ├── StateDirError             the state directory cannot be found or used
        ├── StoreError                the database cannot be opened, migrated or written
        ├── GitError                  a git command failed or git is missing
        └── ProcessError              a process could not be started or stopped
"""

from __future__ import annotations


class ShipyardError(Exception):
    """Root of every error Shipyard raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class UserError(ShipyardError):
    """The user's input is wrong; fixing the input fixes the problem."""


class ConfigError(UserError):
    """``shipyard.yaml`` cannot be loaded, or is inconsistent."""


class ArgumentError(UserError):
    """A command-line argument is wrong."""


class NotFoundError(UserError):
    """A named thing (run, release, environment, file) does not exist."""


class CheckFailed(ShipyardError):
    """The thing that was checked failed: a pipeline, a gate, a deployment."""


class AuditChainBroken(CheckFailed):
    """The audit log does not verify: an event was edited, removed, inserted or reordered."""

    def __init__(self, message: str, *, seq: int | None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.seq = seq


class WaitingForPerson(ShipyardError):
    """Stopped until somebody acts: an approval is required or a deployment is paused."""


class HostError(ShipyardError):
    """The machine or a service Shipyard needs is not as needed."""


class StateDirError(HostError):
    """The state directory cannot be found, created or used."""


class StoreError(HostError):
    """The database cannot be opened, migrated or written."""


class GitError(HostError):
    """A git command failed, timed out, or git is not installed."""


class ProcessError(HostError):
    """A process could not be started, signalled or stopped."""


def excerpt(text: str, limit: int = 40, *, quote: bool = True) -> str:
    """``text`` for a message, cut to its first ``limit`` characters when longer.

    A value a user typed may be megabytes long: a message shows its start and its length.
    """
    if len(text) <= limit:
        return repr(text) if quote else text
    return f"{text[:limit]!r}… ({len(text):,} characters)"
