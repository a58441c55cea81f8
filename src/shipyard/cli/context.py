"""What a command needs from its surroundings: the state directory, the store, the actor.

Each is located lazily, on first use, so that ``shipyard --help`` and ``shipyard validate``
never touch the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from shipyard.core import identity, state
from shipyard.core.store import Store, open_store


@dataclass
class Context:
    """The lazily-located state of one command invocation."""

    cwd: Path = field(default_factory=Path.cwd)

    @cached_property
    def state(self) -> state.StateDir:
        """The state directory of the repository we stand in."""
        return state.locate(self.cwd)

    @cached_property
    def store(self) -> Store:
        """The migrated store of that state directory."""
        return open_store(self.state)

    @cached_property
    def actor(self) -> str:
        """Who is acting: SHIPYARD_USER, else git's user.email, else the OS user."""
        return identity.current_actor(self.cwd).name
