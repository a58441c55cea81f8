"""Errors of the traffic router, its files and its admin API.

::

    RouterError (HostError)          the router, its files or its admin API are not as needed
    ├── RouterConfigError (also a UserError)  the router was given unusable options
    ├── RouterStateError             the token, state or address file cannot be read or written
    ├── RouterUnavailable            no router answers at the recorded admin address
    ├── RouterAuthError              the admin API refused the token
    ├── AdminRequestError            the admin API answered with an error status
    │   └── RevisionConflict         the routes changed since the revision the caller read
    ├── InvalidRoutes (also a UserError)  a route table, weights or instance was rejected
    ├── BadMessage                   an HTTP message on the data path is malformed (has a status)
    ├── PeerGone                     a data-path connection closed while the router needed it
    └── PeerTimeout                  a data-path connection was silent past its deadline

The last three never leave the router process: the data path turns them into responses.
"""

from __future__ import annotations

from collections.abc import Sequence

from shipyard.core.errors import HostError, UserError


class RouterError(HostError):
    """Base of every error of the traffic router and its admin client."""


class RouterConfigError(RouterError, UserError):
    """The router was given unusable options (a public admin address, a bad port)."""


class RouterStateError(RouterError):
    """The router's token, state or address file cannot be read or written."""


class RouterUnavailable(RouterError):
    """No router answers at the recorded admin address."""


class RouterAuthError(RouterError):
    """The admin API refused the token."""


class AdminRequestError(RouterError):
    """The admin API answered with an error status."""

    def __init__(self, message: str, *, status: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class RevisionConflict(AdminRequestError):
    """The routes changed since the revision the caller read."""


class InvalidRoutes(RouterError, UserError):
    """A route table, a weight change or an instance named in a request was rejected."""

    def __init__(self, problems: Sequence[str], *, hint: str | None = None) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid routes: " + "; ".join(self.problems), hint=hint)


class BadMessage(RouterError):
    """An HTTP message on the data path is malformed; ``status`` is the answer to give."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class PeerGone(RouterError):
    """A data-path connection closed or was reset while the router needed it."""


class PeerTimeout(RouterError):
    """A data-path connection was silent past its deadline."""
