"""Semantic versions: parsing, precedence as SemVer 2.0.0 defines it, bumps and prereleases."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.core.errors import UserError
from shipyard.release.semver import BumpLevel, InvalidVersion, Version


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("0.0.0", (0, 0, 0, (), ())),
        ("1.2.3", (1, 2, 3, (), ())),
        ("10.20.30", (10, 20, 30, (), ())),
        ("1.0.0-alpha", (1, 0, 0, ("alpha",), ())),
        ("1.0.0-rc.1", (1, 0, 0, ("rc", "1"), ())),
        ("1.0.0-0A.is.legal", (1, 0, 0, ("0A", "is", "legal"), ())),
        ("1.0.0-x-y-z.--", (1, 0, 0, ("x-y-z", "--"), ())),
        ("1.0.0+20130313144700", (1, 0, 0, (), ("20130313144700",))),
        ("1.0.0-beta+exp.sha.5114f85", (1, 0, 0, ("beta",), ("exp", "sha", "5114f85"))),
        ("1.0.0+001", (1, 0, 0, (), ("001",))),
    ],
)
def test_parses_every_part_and_prints_the_same_text(
    text: str, parts: tuple[int, int, int, tuple[str, ...], tuple[str, ...]]
) -> None:
    version = Version.parse(text)
    assert (version.major, version.minor, version.patch, version.prerelease, version.build) == parts
    assert str(version) == text


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("1.2", "three numbers"),
        ("1.2.3.4", "three numbers"),
        ("01.2.3", "leading zeros"),
        ("v1.2.3", "drop the leading 'v'"),
        ("1.2.3-01", "MAJOR.MINOR.PATCH"),
        ("1.2.3-", "MAJOR.MINOR.PATCH"),
        ("1.2.3+", "MAJOR.MINOR.PATCH"),
        ("1.2.3-a..b", "MAJOR.MINOR.PATCH"),
        ("1.2.3 ", "MAJOR.MINOR.PATCH"),
        ("", "three numbers"),
    ],
)
def test_rejects_what_semver_does_not_allow_with_a_hint(text: str, hint: str) -> None:
    with pytest.raises(InvalidVersion) as caught:
        Version.parse(text)
    assert repr(text) in caught.value.message
    assert caught.value.hint is not None and hint in caught.value.hint
    assert isinstance(caught.value, UserError)
    assert Version.try_parse(text) is None


def test_checks_parts_given_directly() -> None:
    with pytest.raises(InvalidVersion, match="whole number"):
        Version(1, -1, 0)
    with pytest.raises(InvalidVersion, match="leading zero"):
        Version(1, 0, 0, ("rc", "01"))
    with pytest.raises(InvalidVersion, match="not a valid build metadata identifier"):
        Version(1, 0, 0, (), ("a+b",))


def test_precedence_follows_the_semver_specification_example() -> None:
    chain = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.1.0",
        "2.0.0",
        "10.0.0",
    ]
    shuffled = chain[:]
    random.Random(7).shuffle(shuffled)
    assert [str(v) for v in sorted(Version.parse(t) for t in shuffled)] == chain
    assert Version.parse("1.0.0-rc.2") < Version.parse("1.0.0-rc.10")  # numeric, not text
    assert Version.parse("1.0.0-10") < Version.parse("1.0.0-9a")  # numeric below alphanumeric


def test_build_metadata_plays_no_part_in_precedence_but_in_equality() -> None:
    one, other = Version.parse("1.0.0+a"), Version.parse("1.0.0+b")
    assert not one < other and not other < one
    assert one <= other and other >= one
    assert one.same_precedence(other)
    assert one != other
    assert Version.parse("1.0.0+a") == one
    assert hash(Version.parse("1.0.0+a")) == hash(one)


@pytest.mark.parametrize(
    ("start", "level", "expected"),
    [
        ("1.2.3", BumpLevel.MAJOR, "2.0.0"),
        ("1.2.3", BumpLevel.MINOR, "1.3.0"),
        ("1.2.3", BumpLevel.PATCH, "1.2.4"),
        ("1.2.3", BumpLevel.NONE, "1.2.3"),
        ("1.3.0-rc.2+b.7", BumpLevel.PATCH, "1.3.1"),
        ("0.9.9", BumpLevel.MINOR, "0.10.0"),
    ],
)
def test_bump(start: str, level: BumpLevel, expected: str) -> None:
    assert Version.parse(start).bump(level) == Version.parse(expected)


def test_prerelease_and_finalize() -> None:
    version = Version.parse("1.3.0")
    assert str(version.with_prerelease("rc", 2)) == "1.3.0-rc.2"
    assert version.with_prerelease("rc", 2).is_prerelease
    assert Version.parse("1.3.0-rc.2+b.7").finalize() == version
    with pytest.raises(InvalidVersion, match="prerelease token"):
        version.with_prerelease("r.c", 1)
    with pytest.raises(InvalidVersion, match="prerelease token"):
        version.with_prerelease("12", 1)
    with pytest.raises(InvalidVersion, match="1 or more"):
        version.with_prerelease("rc", 0)


def test_bump_levels_order_and_names() -> None:
    assert BumpLevel.NONE < BumpLevel.PATCH < BumpLevel.MINOR < BumpLevel.MAJOR
    assert max([BumpLevel.PATCH, BumpLevel.MAJOR, BumpLevel.MINOR]) is BumpLevel.MAJOR
    assert BumpLevel.from_name("Minor") is BumpLevel.MINOR
    with pytest.raises(InvalidVersion, match="'huge' is not a bump level"):
        BumpLevel.from_name("huge")


_numbers = st.integers(min_value=0, max_value=10_000)
_identifiers = st.one_of(
    _numbers.map(str), st.from_regex(r"[A-Za-z-][0-9A-Za-z-]{0,6}", fullmatch=True)
)


# No deadline: a loaded machine is slow, not wrong (tests assert no timings).
@settings(deadline=None)
@given(
    _numbers,
    _numbers,
    _numbers,
    st.lists(_identifiers, max_size=3),
    st.lists(st.from_regex(r"[0-9A-Za-z-]{1,6}", fullmatch=True), max_size=2),
)
def test_any_valid_version_prints_and_parses_back(
    major: int, minor: int, patch: int, prerelease: list[str], build: list[str]
) -> None:
    version = Version(major, minor, patch, tuple(prerelease), tuple(build))
    assert Version.parse(str(version)) == version
    assert version.finalize() >= version
