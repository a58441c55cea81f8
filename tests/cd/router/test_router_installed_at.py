"""The admin API says when the router installed its current table (``installed_at``), the
router-side instant a benchmark or an operator reads a weight change by."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from typing import Any

from cd.router.router_support import RouterInThread, UpstreamServer, table
from shipyard.cd.router.state import RouterFiles


def _routes(router: RouterInThread) -> dict[str, Any]:
    token = RouterFiles.at(router.state_root, router.env).token()
    connection = http.client.HTTPConnection("127.0.0.1", router.router.admin_port, timeout=5)
    try:
        connection.request("GET", "/routes", headers={"Authorization": f"Bearer {token}"})
        answer = json.loads(connection.getresponse().read())
    finally:
        connection.close()
    assert isinstance(answer, dict)
    return answer


def test_routes_say_when_the_current_table_was_installed(
    start_router: Callable[..., RouterInThread], upstream: Callable[[str], UpstreamServer]
) -> None:
    router = start_router()
    blue, green = upstream("blue"), upstream("green")
    assert _routes(router)["installed_at"] is None  # nothing installed through the API yet

    before = time.time()
    router.client.set_routes(table({"blue": (90, [blue.address]), "green": (10, [green.address])}))
    first = _routes(router)
    assert before <= first["installed_at"] <= time.time()

    router.client.set_weights({"blue": 90, "green": 10})  # no change: no new installation
    assert _routes(router)["installed_at"] == first["installed_at"]

    router.client.set_weights({"blue": 0, "green": 100})
    moved = _routes(router)
    assert moved["revision"] == first["revision"] + 1
    assert moved["installed_at"] > first["installed_at"]

    # A router started again restores the saved table: it did not install it through the API.
    state_root = router.state_root
    router.stop()
    again = start_router()
    assert again.state_root == state_root
    restored = _routes(again)
    assert (restored["revision"], restored["installed_at"]) == (moved["revision"], None)
