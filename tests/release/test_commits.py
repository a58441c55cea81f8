"""Conventional Commits parsing: headers, breaking changes, footers, reverts, squash bodies."""

from __future__ import annotations

import pytest

from shipyard.release.commits import ConventionalCommit, parse_message

SHA = "0123456789abcdef0123456789abcdef01234567"


def one(message: str) -> ConventionalCommit:
    commits = parse_message(SHA, message)
    assert len(commits) == 1, commits
    return commits[0]


def test_header_with_type_scope_and_description() -> None:
    commit = one("feat(api): add tokens\n")
    assert (commit.type, commit.scope, commit.description) == ("feat", "api", "add tokens")
    assert not commit.breaking and not commit.is_revert
    assert commit.sha == SHA and commit.short_sha == "0123456"
    assert commit.title == "feat(api): add tokens"


def test_type_is_case_insensitive_and_scope_optional() -> None:
    commit = one("Fix: handle an empty file")
    assert (commit.type, commit.scope) == ("fix", None)
    assert one("fix(): blank scope").scope is None


@pytest.mark.parametrize(
    "message",
    [
        "Update the readme",
        "Merge branch 'topic' into main",
        "fixup! feat: add tokens",
        "feat:no space after the colon",
        "feat add tokens",
        "",
        "\n\n",
    ],
)
def test_messages_that_follow_no_convention_give_nothing(message: str) -> None:
    assert parse_message(SHA, message) == ()


def test_bang_marks_a_breaking_change() -> None:
    commit = one("feat(api)!: drop the v1 routes")
    assert commit.breaking
    assert commit.breaking_notes == ()


@pytest.mark.parametrize("token", ["BREAKING CHANGE", "BREAKING-CHANGE"])
def test_breaking_change_footer_in_either_spelling(token: str) -> None:
    commit = one(
        f"refactor: new configuration loader\n\nRewrites the loader.\n\n"
        f"{token}: the key `path` is now `paths`.\nMigrate with `shipyard config fix`.\n"
        "Refs: #42\n"
    )
    assert commit.breaking
    assert commit.breaking_notes == (
        "the key `path` is now `paths`.\nMigrate with `shipyard config fix`.",
    )
    assert commit.body == "Rewrites the loader."
    assert commit.footers == (
        (token, "the key `path` is now `paths`.\nMigrate with `shipyard config fix`."),
        ("Refs", "#42"),
    )


def test_breaking_change_footer_must_be_upper_case() -> None:
    commit = one("fix: typo\n\nBreaking change: none, this is prose.\n")
    assert not commit.breaking


def test_footers_follow_the_body_and_take_both_separators() -> None:
    commit = one(
        "fix(db): retry on lock\n\n"
        "The database was locked by a backup.\n"
        "See https://example.com/issue for details.\n\n"
        "Fixes #12\n"
        "Reviewed-by: Grace Hopper\n"
    )
    assert commit.body == (
        "The database was locked by a backup.\nSee https://example.com/issue for details."
    )
    assert commit.footers == (("Fixes", "12"), ("Reviewed-by", "Grace Hopper"))
    assert commit.footer("reviewed-BY") == "Grace Hopper"
    assert commit.footer("Refs") is None


def test_a_body_without_footers() -> None:
    commit = one("docs: explain channels\n\nFirst paragraph.\n\nSecond one, with: a colon.\n")
    assert commit.footers == ()
    assert commit.body == "First paragraph.\n\nSecond one, with: a colon."


def test_release_as_footer() -> None:
    commit = one("chore: prepare the big one\n\nRelease-As: 2.0.0\n")
    assert commit.release_as == "2.0.0"
    assert one("chore: x\n\nrelease-as: 3.1.0\n").release_as == "3.1.0"
    assert (
        one("chore: mention release-as in prose\n\nwe might use release-as later").release_as
        is None
    )


def test_git_revert_message() -> None:
    commit = one(
        'Revert "feat(api): add tokens"\n\nThis reverts commit '
        "89abcdef0123456789abcdef0123456789abcdef.\n"
    )
    assert commit.is_revert and commit.type == "revert"
    assert commit.description == "feat(api): add tokens"
    assert commit.reverted_sha == "89abcdef0123456789abcdef0123456789abcdef"


def test_conventional_revert_with_refs_footer() -> None:
    commit = one(
        "revert: let us never again speak of the noodle incident\n\nRefs: 676104e, a215868\n"
    )
    assert commit.is_revert
    assert commit.reverted_sha == "676104e"


def test_squash_merge_body_with_bulleted_conventional_lines() -> None:
    commits = parse_message(
        SHA,
        "feat(api): tokens for the admin API (#12)\n\n"
        "* feat(api): tokens for the admin API\n\n"
        "* fix(db): close the session on error\n\n"
        "* perf: cache the token lookup\n"
        "  with a small LRU\n\n"
        "* docs: token how-to\n\n"
        "---------\n\n"
        "Co-authored-by: Grace Hopper <grace@example.com>\n"
        "Signed-off-by: Ada Lovelace <ada@example.com>\n",
    )
    assert [c.title for c in commits] == [
        "feat(api): tokens for the admin API (#12)",
        "fix(db): close the session on error",
        "perf: cache the token lookup",
        "docs: token how-to",
    ]
    assert all(c.sha == SHA for c in commits)
    assert commits[2].body == "with a small LRU"
    assert commits[3].footer("Co-authored-by") == "Grace Hopper <grace@example.com>"


def test_squash_body_under_a_non_conventional_title_with_a_breaking_line() -> None:
    commits = parse_message(
        SHA,
        "Tokens and cleanups (#13)\n\n"
        "- feat: tokens\n"
        "- refactor!: rename the store module\n"
        "- fix: trailing slash\n\n"
        "feat(cli): `shipyard token` command\n\n"
        "BREAKING CHANGE: `shipyard auth` is gone\n",
    )
    assert [(c.type, c.breaking) for c in commits] == [
        ("feat", False),
        ("refactor", True),
        ("fix", False),
        ("feat", True),
    ]
    assert commits[3].scope == "cli"
    assert commits[3].breaking_notes == ("`shipyard auth` is gone",)


def test_lines_of_unknown_types_or_mid_paragraph_do_not_split_a_body() -> None:
    commits = parse_message(
        SHA,
        "fix: escape names\n\nNote: names were not escaped.\nfeat: this line is prose\n",
    )
    assert len(commits) == 1
    assert commits[0].footers[0][0] == "Note"
    assert parse_message(SHA, "Rename\n\nwip: not a known type\n") == ()
    assert len(parse_message(SHA, "Rename\n\nwip: custom\n", types={"wip"})) == 1


def test_windows_line_endings() -> None:
    commit = one("feat: x\r\n\r\nBody.\r\n\r\nBREAKING CHANGE: y\r\n")
    assert commit.breaking and commit.breaking_notes == ("y",) and commit.body == "Body."
