"""OSV matching on every boundary: introduced, fixed, last_affected, limit, versions lists."""

from __future__ import annotations

from typing import Any

import pytest

from gates.gatesupport import NOW, osv
from shipyard.gates.advisories.matching import fixed_versions, is_affected, smallest_upgrade
from shipyard.gates.advisories.model import Advisory, parse_advisory


def advisory(record: dict[str, Any]) -> Advisory:
    return parse_advisory(record, "test")


def affected(
    record: dict[str, Any], version: str, package: str = "demo", eco: str = "PyPI"
) -> bool:
    return is_affected(advisory(record), eco, package, version)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("0.9", False),  # below introduced
        ("1.0", True),  # introduced is inclusive
        ("1.0.0", True),  # PEP 440: 1.0.0 is 1.0
        ("1.4.9", True),
        ("1.5.0rc1", True),  # a pre-release of the fix is still before it
        ("1.5", False),  # fixed is exclusive
        ("1.5.post1", False),
        ("2.0", False),
    ],
)
def test_introduced_and_fixed_bound_a_half_open_range(version: str, expected: bool) -> None:
    record = osv("PYSEC-1", events=[{"introduced": "1.0"}, {"fixed": "1.5"}])
    assert affected(record, version) is expected


@pytest.mark.parametrize(
    ("version", "expected"),
    [("0", True), ("0.0.1.dev1", True), ("2.1.214", True), ("2.1.215", False), ("3.0", False)],
)
def test_last_affected_is_inclusive(version: str, expected: bool) -> None:
    record = osv("PYSEC-2", events=[{"introduced": "0"}, {"last_affected": "2.1.214"}])
    assert affected(record, version) is expected


@pytest.mark.parametrize(
    ("version", "expected"), [("1.0", True), ("1.9", True), ("2.0", False), ("5.0", False)]
)
def test_limit_caps_an_open_range(version: str, expected: bool) -> None:
    record = osv("PYSEC-3", events=[{"introduced": "1.0"}, {"limit": "2.0"}])
    assert affected(record, version) is expected


def test_a_star_limit_is_infinity_and_any_limit_above_admits() -> None:
    star = osv("PYSEC-4", events=[{"introduced": "1.0"}, {"limit": "*"}])
    assert affected(star, "99.0")
    several = osv("PYSEC-5", events=[{"introduced": "1.0"}, {"limit": "1.5"}, {"limit": "3.0"}])
    assert affected(several, "2.0")
    assert not affected(several, "3.0")


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.0", True),
        ("1.1", False),
        ("3.0", True),
        ("3.2.4", True),
        ("3.2.5", False),
        ("2.5", False),
    ],
)
def test_several_ranges_in_one_list_of_events(version: str, expected: bool) -> None:
    record = osv(
        "PYSEC-6",
        events=[{"introduced": "1.0"}, {"fixed": "1.1"}, {"introduced": "3.0"}, {"fixed": "3.2.5"}],
    )
    assert affected(record, version) is expected


def test_events_are_sorted_before_they_are_read() -> None:
    record = osv("PYSEC-7", events=[{"fixed": "2.0"}, {"introduced": "1.0"}])
    assert affected(record, "1.5")
    assert not affected(record, "2.0")
    assert not affected(record, "0.5")


def test_pep440_order_is_not_string_order() -> None:
    record = osv("PYSEC-8", events=[{"introduced": "1.2"}, {"fixed": "1.10"}])
    assert affected(record, "1.9")  # as strings "1.9" > "1.10"
    assert not affected(record, "1.10")


@pytest.mark.parametrize(
    ("version", "expected"), [("1.0", True), ("1.0.0", True), ("1.1", False), ("2.0", True)]
)
def test_a_versions_only_record_affects_exactly_the_listed_versions(
    version: str, expected: bool
) -> None:
    record = osv("PYSEC-9", versions=["1.0", "2.0"])
    assert affected(record, version) is expected


def test_versions_and_ranges_are_a_union() -> None:
    record = osv("PYSEC-10", events=[{"introduced": "2.0"}, {"fixed": "2.1"}], versions=["1.3"])
    assert affected(record, "1.3")
    assert affected(record, "2.0.5")
    assert not affected(record, "1.4")


def test_withdrawn_records_affect_nothing() -> None:

    record = osv("PYSEC-11", events=[{"introduced": "0"}], withdrawn=NOW)
    assert not affected(record, "1.0")


def test_names_match_after_pep503_normalization() -> None:
    record = osv("PYSEC-12", package="Zope.Interface", events=[{"introduced": "0"}])
    assert affected(record, "1.0", package="zope-interface")
    assert affected(record, "1.0", package="zope_interface")
    assert not affected(record, "1.0", package="zope")


def test_other_ecosystems_never_match() -> None:
    record = osv("GHSA-npm-only", package="demo", ecosystem="npm", events=[{"introduced": "0"}])
    assert not affected(record, "1.0.0", eco="PyPI")
    assert affected(record, "1.0.0", eco="npm")


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("4.17.20", True),
        ("4.17.21-rc.1", True),  # SemVer: a pre-release sorts before its release
        ("4.17.21", False),
        ("4.17.21+build.5", False),  # build metadata does not count
        ("4.2.0", True),  # numeric, not string, order
        ("10.0.0", False),
    ],
)
def test_npm_ranges_follow_semver(version: str, expected: bool) -> None:
    record = osv(
        "GHSA-lodash",
        package="lodash",
        ecosystem="npm",
        events=[{"introduced": "4.0.0"}, {"fixed": "4.17.21"}],
    )
    assert affected(record, version, package="lodash", eco="npm") is expected


def test_semver_ranges_use_semver_order_in_any_ecosystem() -> None:
    record = osv(
        "PYSEC-13",
        ranges=[{"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"fixed": "1.10.0"}]}],
    )
    assert affected(record, "1.9.0")
    assert not affected(record, "1.10.0")


def test_git_ranges_are_left_to_the_versions_list() -> None:
    record = osv(
        "PYSEC-14",
        ranges=[{"type": "GIT", "repo": "https://example.com/r", "events": [{"introduced": "0"}]}],
        versions=["1.2"],
    )
    assert affected(record, "1.2")
    assert not affected(record, "1.3")


def test_unreadable_bounds_are_read_so_that_more_is_affected() -> None:
    fixed = osv("PYSEC-15", events=[{"introduced": "1.0"}, {"fixed": "2019-09-12 build"}])
    assert affected(fixed, "5.0")  # the fix cannot be placed, so nothing is cleared
    introduced = osv("PYSEC-16", events=[{"introduced": "not a version"}, {"fixed": "2.0"}])
    assert affected(introduced, "0.1")
    assert not affected(introduced, "2.0")


def test_fixed_versions_and_the_smallest_upgrade_that_clears_every_advisory() -> None:
    first = advisory(osv("PYSEC-20", events=[{"introduced": "0"}, {"fixed": "1.2"}]))
    second = advisory(
        osv(
            "PYSEC-21",
            events=[
                {"introduced": "1.0"},
                {"fixed": "1.4"},
                {"introduced": "2.0"},
                {"fixed": "2.2"},
            ],
        )
    )
    assert fixed_versions([first, second], "PyPI", "demo", "1.1") == ["1.2", "1.4", "2.2"]
    assert smallest_upgrade([first], "PyPI", "demo", "1.1") == "1.2"
    assert smallest_upgrade([first, second], "PyPI", "demo", "1.1") == "1.4"
    unfixed = advisory(osv("PYSEC-22", events=[{"introduced": "0"}]))
    assert smallest_upgrade([unfixed], "PyPI", "demo", "1.1") is None
