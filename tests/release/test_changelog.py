"""Changelog rendering, and adding a section to a changelog without touching what it holds."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from shipyard.release.changelog import (
    ChangelogError,
    prepend,
    prepend_to_file,
    render_release,
    render_unreleased,
)
from shipyard.release.commits import ConventionalCommit, parse_message
from shipyard.release.semver import Version
from shipyard.release.versioning import next_version

if TYPE_CHECKING:
    from conftest import Repo

DAY = datetime.date(2026, 11, 26)


def change(sha_digit: str, message: str) -> ConventionalCommit:
    (commit,) = parse_message(sha_digit * 40, message)
    return commit


COMMITS = [
    change("a", "feat(api): tokens for the admin API"),
    change("b", "fix: trailing slash in routes"),
    change("c", "docs: how to rotate tokens"),
    change("d", "perf(db): batch the inserts"),
    change("e", "feat!: new configuration file"),
    change(
        "f",
        "refactor(store): one table per pillar\n\n"
        "BREAKING CHANGE: the database must be migrated.\nRun `shipyard db upgrade`.",
    ),
    change("1", "fix(cli): exit code 2 on a bad argument"),
]


def test_release_section_groups_breaking_changes_first_then_types() -> None:
    assert render_release(Version.parse("1.3.0"), DAY, COMMITS) == (
        "## 1.3.0 (2026-11-26)\n"
        "\n"
        "### ⚠ Breaking changes\n"
        "\n"
        "- new configuration file (eeeeeee)\n"
        "- **store:** the database must be migrated. (fffffff)\n"
        "  Run `shipyard db upgrade`.\n"
        "\n"
        "### Features\n"
        "\n"
        "- **api:** tokens for the admin API (aaaaaaa)\n"
        "- new configuration file (eeeeeee)\n"
        "\n"
        "### Bug fixes\n"
        "\n"
        "- trailing slash in routes (bbbbbbb)\n"
        "- **cli:** exit code 2 on a bad argument (1111111)\n"
        "\n"
        "### Performance\n"
        "\n"
        "- **db:** batch the inserts (ddddddd)\n"
    )


def test_links_to_commits_when_the_repository_url_is_known() -> None:
    text = render_release("1.3.1", DAY, [COMMITS[1]], repo_url="https://git.example.com/o/r/")
    assert text == (
        "## 1.3.1 (2026-11-26)\n\n### Bug fixes\n\n- trailing slash in routes "
        f"([bbbbbbb](https://git.example.com/o/r/commit/{'b' * 40}))\n"
    )


def test_unreleased_section_and_custom_sections() -> None:
    text = render_unreleased(COMMITS[:3], sections=[("docs", "Documentation")])
    assert text == ("## Unreleased\n\n### Documentation\n\n- how to rotate tokens (ccccccc)\n")


def test_a_release_with_nothing_to_show() -> None:
    assert render_release("2.0.0", DAY, [COMMITS[2]]) == (
        "## 2.0.0 (2026-11-26)\n\nNo notable changes.\n"
    )


def test_changelog_from_a_real_history(git_project: Repo) -> None:
    git_project.commit("feat: first")
    git_project.tag("v0.1.0")
    fix = git_project.commit("fix(api): second")
    feat = git_project.commit("feat: third")
    result = next_version(git_project.api)
    assert result.version is not None
    text = render_release(result.version, DAY, result.commits)
    assert text == (
        "## 0.2.0 (2026-11-26)\n\n"
        f"### Features\n\n- third ({feat[:7]})\n\n"
        f"### Bug fixes\n\n- **api:** second ({fix[:7]})\n"
    )


SECTION = "## 1.3.0 (2026-11-26)\n\n### Features\n\n- tokens (aaaaaaa)\n"


def removed_once(text: str, part: str) -> str:
    assert part in text
    return text.replace(part, "", 1)


def test_prepend_to_nothing_makes_a_titled_changelog() -> None:
    assert prepend(None, SECTION) == "# Changelog\n\n" + SECTION
    assert prepend("", SECTION, title="# History") == "# History\n\n" + SECTION


def test_prepend_goes_after_the_title_above_the_newest_release() -> None:
    existing = (
        "# Changelog\n\nAll notable changes.\n\n## 1.2.0 (2026-10-01)\n\n- older  \n\n"
        "## 1.1.0\n\n* hand-written, kept as is\t\n"
    )
    text = prepend(existing, SECTION)
    assert text.startswith("# Changelog\n\nAll notable changes.\n\n" + SECTION + "\n## 1.2.0")
    assert removed_once(text, SECTION + "\n") == existing


@pytest.mark.parametrize(
    "existing",
    [
        "# Changelog\n",
        "# Changelog",
        "# Changelog\n\nSome words, no release yet.",
        "Just notes, no title.\n",
        "## 1.0.0\n\n- first\n",
    ],
)
def test_prepend_keeps_any_existing_text_byte_for_byte(existing: str) -> None:
    text = prepend(existing, SECTION)
    assert SECTION in text
    start = text.index(SECTION)
    before, after = text[:start], text[start + len(SECTION) :]
    assert before.strip("\n") + after.strip("\n") in (existing, existing.rstrip("\n"))
    assert existing in text or existing.rstrip("\n") in text


def test_prepend_keeps_windows_line_endings_and_a_byte_order_mark() -> None:
    existing = "\ufeff# Changelog\r\n\r\n## 1.0.0\r\n\r\n- first\r\n"
    text = prepend(existing, SECTION)
    crlf_section = SECTION.replace("\n", "\r\n")
    assert text == "\ufeff# Changelog\r\n\r\n" + crlf_section + "\r\n## 1.0.0\r\n\r\n- first\r\n"
    assert removed_once(text, crlf_section + "\r\n") == existing


def test_prepend_to_file_keeps_the_existing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "docs" / "CHANGELOG.md"
    path.parent.mkdir()
    original = (
        "# Changelog\n\n<!-- kept -->\n\n## 1.2.0 (2026-10-01)\n\n"
        "- ünïcödé, trailing spaces   \n- tabs\there\n\n\n## 1.0.0\n- no blank line before\n"
    ).encode()
    path.write_bytes(original)
    path.chmod(0o640)
    prepend_to_file(path, SECTION)
    data = path.read_bytes()
    inserted = (SECTION + "\n").encode()
    assert data.replace(inserted, b"", 1) == original
    assert data.index(inserted) == len(b"# Changelog\n\n<!-- kept -->\n\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in path.parent.iterdir()] == ["CHANGELOG.md"]  # no temporary left


def test_prepend_to_file_creates_a_missing_changelog(tmp_path: Path) -> None:
    path = tmp_path / "CHANGELOG.md"
    prepend_to_file(path, SECTION)
    assert path.read_text() == "# Changelog\n\n" + SECTION


def test_prepend_to_file_refuses_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "CHANGELOG.md"
    original = "# Changelog\n\n## 1.0.0 - café\n".encode("latin-1")
    path.write_bytes(original)
    with pytest.raises(ChangelogError, match="not UTF-8") as caught:
        prepend_to_file(path, SECTION)
    assert caught.value.hint is not None
    assert path.read_bytes() == original
