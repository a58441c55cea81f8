"""The router's files in the state directory: admin token, saved routes and admin address.

They live in ``<state>/router/<env>/``. Routes are written atomically (temporary file, fsync,
rename, fsync of the folder), so a router killed at any moment restarts with the last table it
acknowledged. Nothing here opens the database.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.cd.router.errors import InvalidRoutes, RouterStateError
from shipyard.cd.router.routes import RouteTable

ENV_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
"""What an environment name may look like (it names a folder)."""

STATE_FORMAT = 1
"""Version of the routes file's layout."""


@dataclass(frozen=True)
class AdminAddress:
    """Where a running router listens: its admin API and its public port, and its pid."""

    host: str
    port: int
    public_host: str
    public_port: int
    pid: int

    def as_json(self) -> dict[str, Any]:
        """The JSON form written to ``admin.json``."""
        return {
            "host": self.host,
            "port": self.port,
            "public_host": self.public_host,
            "public_port": self.public_port,
            "pid": self.pid,
        }


@dataclass(frozen=True)
class SavedRoutes:
    """A route table as last saved, with its revision."""

    table: RouteTable
    revision: int


@dataclass(frozen=True)
class RouterFiles:
    """The files of one environment's router."""

    directory: Path
    env: str

    @classmethod
    def at(cls, state_root: Path, env: str) -> RouterFiles:
        """The files of environment ``env`` under the state directory ``state_root``."""
        if not ENV_NAME.fullmatch(env):
            raise InvalidRoutes(
                [f"{env!r} is not a valid environment name"],
                hint="use letters, digits, '-' and '_', starting with a letter or digit",
            )
        return cls(state_root / "router" / env, env)

    @property
    def token_path(self) -> Path:
        """The admin token (mode 0600)."""
        return self.directory / "admin.token"

    @property
    def routes_path(self) -> Path:
        """The saved route table."""
        return self.directory / "routes.json"

    @property
    def address_path(self) -> Path:
        """Where the running router's admin API listens."""
        return self.directory / "admin.json"

    def ensure(self) -> RouterFiles:
        """Create the folder (owner only); returns self."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise RouterStateError(
                f"cannot create {self.directory}: {exc.strerror}",
                hint="make the state directory writable, or set SHIPYARD_HOME",
            ) from exc
        return self

    def token(self, *, create: bool = False) -> str:
        """The admin token; generated (mode 0600) when missing and ``create`` is set."""
        path = self.token_path
        if create:
            self.ensure()
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            except OSError as exc:
                raise RouterStateError(f"cannot create {path}: {exc.strerror}") from exc
            else:
                with os.fdopen(descriptor, "w", encoding="ascii") as handle:
                    handle.write(secrets.token_urlsafe(32) + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
        try:
            token = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            raise RouterStateError(
                f"no admin token at {path}",
                hint=f"start the router of environment {self.env!r} once to create it",
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise RouterStateError(f"cannot read the admin token {path}: {exc}") from exc
        if len(token) < 16:
            raise RouterStateError(
                f"the admin token in {path} is too short",
                hint="delete the file; the router creates a new one when it starts",
            )
        return token

    def save_routes(self, table: RouteTable, revision: int) -> None:
        """Write the table atomically, durable before this returns."""
        document = {
            "format": STATE_FORMAT,
            "env": self.env,
            "revision": revision,
            "saved_at": time.time(),
            "routes": table.as_json(),
        }
        _write_atomically(self.routes_path, json.dumps(document, indent=2) + "\n")

    def load_routes(self) -> SavedRoutes | None:
        """The saved table, None if there is none; ``RouterStateError`` if it is unusable."""
        path = self.routes_path
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise RouterStateError(f"cannot read {path}: {exc}") from exc
        try:
            document = json.loads(text)
            if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
                raise ValueError(f"not a routes file of format {STATE_FORMAT}")
            revision = document.get("revision")
            if not isinstance(revision, int) or revision < 0:
                raise ValueError("the revision must be a non-negative integer")
            table = RouteTable.from_json(document.get("routes"))
        except (ValueError, InvalidRoutes) as exc:
            raise RouterStateError(f"{path} is unusable: {exc}") from exc
        return SavedRoutes(table, revision)

    def set_aside(self, path: Path) -> Path:
        """Rename an unusable file out of the way, so the router can start; returns its name."""
        target = path.with_name(f"{path.name}.unusable-{int(time.time())}")
        try:
            path.rename(target)
        except OSError as exc:
            raise RouterStateError(f"cannot move {path} aside: {exc.strerror}") from exc
        return target

    def write_address(self, address: AdminAddress) -> None:
        """Record where the running router listens."""
        _write_atomically(self.address_path, json.dumps(address.as_json()) + "\n")

    def read_address(self) -> AdminAddress:
        """Where the router of this environment listens (as it recorded at start)."""
        path = self.address_path
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return AdminAddress(
                host=str(data["host"]),
                port=int(data["port"]),
                public_host=str(data["public_host"]),
                public_port=int(data["public_port"]),
                pid=int(data["pid"]),
            )
        except FileNotFoundError:
            raise RouterStateError(
                f"the router of environment {self.env!r} is not running ({path} is missing)",
                hint=f"start it with: shipyard router --env {self.env} --port PORT",
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RouterStateError(f"{path} is unusable: {exc}") from exc

    def forget_address(self, pid: int) -> None:
        """Remove the address file if it still names process ``pid`` (on a clean stop)."""
        with contextlib.suppress(RouterStateError, OSError):
            if self.read_address().pid == pid:
                self.address_path.unlink()


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise RouterStateError(f"cannot write {path}: {exc.strerror or exc}") from exc
