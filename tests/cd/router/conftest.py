"""Fixtures for the router's tests: real upstream servers and a real router per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cd.router.router_support import RouterInThread, RouterProcess, UpstreamServer
from shipyard.cd.router.proxy import ProxySettings


@pytest.fixture
def upstream() -> Iterator[Callable[[str], UpstreamServer]]:
    """Start upstream servers by name (each answers with its name); all stop afterwards."""
    started: list[UpstreamServer] = []

    def start(name: str) -> UpstreamServer:
        server = UpstreamServer(name).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def state_root(tmp_path: Path) -> Path:
    """A state directory of its own."""
    return tmp_path / "state"


@pytest.fixture(params=["auto", "asyncio"])
def loop_name(request: pytest.FixtureRequest) -> str:
    """The event loop of an in-thread router: what production picks (uvloop), and asyncio's."""
    return str(request.param)


@pytest.fixture
def start_router(state_root: Path, loop_name: str) -> Iterator[Callable[..., RouterInThread]]:
    """Start routers (in this process, on a loop in a thread); all stop afterwards."""
    started: list[RouterInThread] = []

    def start(env: str = "test", **settings: Any) -> RouterInThread:
        router = RouterInThread(
            state_root, env=env, settings=ProxySettings(**settings), loop_name=loop_name
        )
        started.append(router)
        return router

    yield start
    for router in started:
        router.stop()


@pytest.fixture
def router(start_router: Callable[..., RouterInThread]) -> RouterInThread:
    """A router with default settings and no routes yet."""
    return start_router()


@pytest.fixture(autouse=True)
def _no_stray_router_processes() -> Iterator[None]:
    """A router process a test started never outlives it, whatever the test did."""
    yield
    while RouterProcess.running:
        RouterProcess.running.pop().kill()
