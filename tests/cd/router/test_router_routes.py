"""Route tables: what is accepted, what is refused and why."""

from __future__ import annotations

import pytest

from shipyard.cd.router.errors import InvalidRoutes
from shipyard.cd.router.routes import Instance, RouteTable, Stickiness


def test_a_table_round_trips_through_json() -> None:
    raw = {
        "versions": [
            {"name": "v1.2.0", "weight": 90, "instances": ["127.0.0.1:8001", "[::1]:8002"]},
            {"name": "v1.3.0", "weight": 10, "instances": [{"address": "host-a:8003"}]},
        ],
        "sticky": {"cookie": "sid"},
        "health": {"path": "/healthz", "interval": 1, "timeout": 0.5},
    }
    table = RouteTable.from_json(raw)
    assert table.versions[0].instances[1] == Instance("::1", 8002)
    assert table.versions[0].instances[1].address == "[::1]:8002"
    assert table.sticky == Stickiness("cookie", "sid")
    assert RouteTable.from_json(table.as_json()) == table


def test_an_empty_table_is_valid_and_routes_nothing() -> None:
    assert RouteTable.from_json({"versions": []}).versions == ()


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"versions": [{"name": "a", "weight": 50, "instances": ["h:1"]}]}, "add up to 50"),
        (
            {
                "versions": [
                    {"name": "a", "weight": 50, "instances": ["h:1"]},
                    {"name": "a", "weight": 50, "instances": ["h:2"]},
                ]
            },
            "listed twice",
        ),
        ({"versions": [{"name": "a", "weight": 100, "instances": []}]}, "no instance"),
        (
            {"versions": [{"name": "a", "weight": 100, "instances": ["h:1", "h:1"]}]},
            "more than once",
        ),
        ({"versions": [{"name": "a", "weight": True, "instances": ["h:1"]}]}, "integer"),
        ({"versions": [{"name": "a", "weight": 100, "instances": ["h:0"]}]}, "port from 1"),
        ({"versions": [{"name": "a", "weight": 100, "instances": ["[zz]:1"]}]}, "host:port"),
        ({"versions": [], "sticky": {"header": "X-Shipyard-Version"}}, "override header"),
        ({"versions": [], "sticky": {"query": "x"}}, "sticky"),
        ({"versions": [], "health": {"path": "healthz"}}, "absolute path"),
        ({"versions": [], "weights": {}}, "unknown key 'weights'"),
        ([], "JSON object"),
    ],
)
def test_bad_tables_are_refused_with_the_reason(raw: object, problem: str) -> None:
    with pytest.raises(InvalidRoutes) as raised:
        RouteTable.from_json(raw)
    assert problem in str(raised.value)


def test_weight_changes_are_checked_against_the_whole_table() -> None:
    table = RouteTable.from_json(
        {
            "versions": [
                {"name": "blue", "weight": 100, "instances": ["h:1"]},
                {"name": "green", "weight": 0, "instances": ["h:2"]},
            ]
        }
    )
    assert table.with_weights({"blue": 25, "green": 75}).weights == {"blue": 25, "green": 75}
    with pytest.raises(InvalidRoutes, match="add up to 125"):
        table.with_weights({"green": 25})
    with pytest.raises(InvalidRoutes, match="no version named 'red'"):
        table.with_weights({"red": 0})
    drained = table.with_drained("h:1", True)
    assert drained.versions[0].instances[0].drained
    with pytest.raises(InvalidRoutes, match="no instance at"):
        table.with_drained("h:3", True)
