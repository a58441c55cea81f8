"""The next version, computed on real git repositories: every rule of the release pillar."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from shipyard.core.config.release import Release
from shipyard.core.errors import GitError
from shipyard.core.git import Git
from shipyard.release import planning
from shipyard.release.semver import MAX_VERSION_LENGTH, BumpLevel, InvalidVersion, Version
from shipyard.release.versioning import (
    BranchNotReleasable,
    InvalidTagFormat,
    NextVersion,
    ReleaseAsRejected,
    ShallowHistory,
    TagFormat,
    VersioningError,
    channel_token,
    next_version,
)

if TYPE_CHECKING:
    from conftest import Repo


def released(repo: Repo, **options: object) -> str | None:
    """The next version as text, or None when there is no release."""
    result = next_version(repo.api, **options)  # type: ignore[arg-type]
    return None if result.version is None else str(result.version)


@pytest.fixture
def v1(git_project: Repo) -> Repo:
    """A project released as v1.0.0 (annotated tag) with one commit before the release."""
    git_project.commit("feat: first feature")
    git_project.commit("chore: release 1.0.0")
    git_project.tag("v1.0.0")
    return git_project


# -- tag formats and channels -------------------------------------------------------------------


def test_tag_format_spells_and_reads_tags() -> None:
    fmt = TagFormat("api-v{version}")
    assert fmt.glob == "refs/tags/api-v*"
    assert fmt.tag(Version.parse("1.2.0")) == "api-v1.2.0"
    assert fmt.parse("api-v1.2.0-rc.1") == Version.parse("1.2.0-rc.1")
    assert fmt.parse("v1.2.0") is None
    assert fmt.parse("api-vnext") is None
    assert TagFormat("{version}").parse("1.0.0") == Version.parse("1.0.0")


@pytest.mark.parametrize("pattern", ["v", "v{version}-{version}", "v {version}", "v*{version}"])
def test_tag_format_must_make_valid_tag_names(pattern: str) -> None:
    with pytest.raises(InvalidTagFormat):
        TagFormat(pattern)


def test_channels_map_branches_to_prerelease_tokens() -> None:
    channels = {"main": None, "next": "rc", "beta/*": "beta"}
    assert channel_token("main", channels) is None
    assert channel_token("next", channels) == "rc"
    assert channel_token("beta/2.0", channels) == "beta"
    assert channel_token("anything", {}) is None
    assert channel_token(None, {}) is None
    with pytest.raises(BranchNotReleasable, match="'topic' is not listed"):
        channel_token("topic", channels)
    with pytest.raises(BranchNotReleasable, match="detached"):
        channel_token(None, channels)


def test_channel_of_the_current_branch_drives_the_prerelease(v1: Repo) -> None:
    v1.git("switch", "--quiet", "-c", "next")
    v1.commit("feat: preview")
    token = channel_token(v1.api.current_branch(), {"main": None, "next": "rc"})
    assert released(v1, prerelease=token) == "1.1.0-rc.1"


# -- first release and the bump table -----------------------------------------------------------


def test_first_release_is_the_initial_version(git_project: Repo) -> None:
    git_project.commit("fix: something")
    result = next_version(git_project.api, initial_version="0.3.0")
    assert result.released
    assert result.version == Version.parse("0.3.0") and result.tag == "v0.3.0"
    assert result.current is None and result.current_tag is None
    assert any("initial_version" in reason for reason in result.reasons)


def test_first_prereleases_start_from_the_initial_version(git_project: Repo) -> None:
    git_project.commit("feat: start")
    assert released(git_project, prerelease="beta") == "0.1.0-beta.1"
    git_project.tag("v0.1.0-beta.1")
    git_project.commit("fix: more")
    result = next_version(git_project.api, prerelease="beta")
    assert str(result.version) == "0.1.0-beta.2" and result.current is None
    assert released(git_project) == "0.1.0"


def test_no_qualifying_commit_means_no_release(v1: Repo) -> None:
    v1.commit("docs: explain")
    v1.commit("chore: tidy up")
    result = next_version(v1.api)
    assert not result.released and result.version is None and result.tag is None
    assert result.level is BumpLevel.NONE
    assert result.current == Version.parse("1.0.0") and result.current_tag == "v1.0.0"
    assert any(reason.startswith("no release") for reason in result.reasons)
    assert [c.type for c in result.commits] == ["chore", "docs"]


def test_nothing_since_the_tag_means_no_release(v1: Repo) -> None:
    assert released(v1) is None
    assert next_version(v1.api).commits == ()


def test_no_commit_of_any_convention_and_no_tag(git_project: Repo) -> None:
    git_project.commit("initial import")
    assert released(git_project) is None


@pytest.mark.parametrize(
    ("message", "expected", "level"),
    [
        ("fix: a bug", "1.0.1", BumpLevel.PATCH),
        ("perf: faster", "1.0.1", BumpLevel.PATCH),
        ("feat: a feature", "1.1.0", BumpLevel.MINOR),
        ("feat(api)!: remove v1", "2.0.0", BumpLevel.MAJOR),
        ("chore!: drop Python 3.10", "2.0.0", BumpLevel.MAJOR),
        ("refactor: x\n\nBREAKING CHANGE: the store moved", "2.0.0", BumpLevel.MAJOR),
        ("fix: x\n\nBREAKING-CHANGE: exit codes changed", "2.0.0", BumpLevel.MAJOR),
        ("docs: a page", None, BumpLevel.NONE),
    ],
)
def test_default_bump_table(v1: Repo, message: str, expected: str | None, level: BumpLevel) -> None:
    v1.commit(message)
    result = next_version(v1.api)
    assert (None if result.version is None else str(result.version)) == expected
    assert result.level is level


def test_the_largest_bump_wins(v1: Repo) -> None:
    v1.commit("fix: one")
    v1.commit("feat: two")
    v1.commit("fix: three")
    result = next_version(v1.api)
    assert str(result.version) == "1.1.0"
    assert any(reason.startswith("minor: feat: two") for reason in result.reasons)


def test_custom_bump_table(v1: Repo) -> None:
    v1.commit("docs: a page")
    table = {"docs": "patch", "feat": "minor"}
    assert released(v1, bump_table=table) == "1.0.1"
    v1.commit("fix: not in this table")
    assert released(v1, bump_table={"feat": "minor"}) is None
    v1.commit("feat: counts as major here")
    assert released(v1, bump_table={"feat": BumpLevel.MAJOR}) == "2.0.0"
    with pytest.raises(VersioningError, match=r"release\.bump"):
        next_version(v1.api, bump_table={"feat": "huge"})


def test_a_breaking_change_bumps_the_minor_while_the_major_is_zero(git_project: Repo) -> None:
    git_project.commit("feat: start")
    git_project.tag("v0.3.0")
    git_project.commit("feat!: new format")
    result = next_version(git_project.api)
    assert str(result.version) == "0.4.0"
    assert result.level is BumpLevel.MINOR
    assert any("major_on_zero" in reason for reason in result.reasons)
    assert released(git_project, major_on_zero=True) == "1.0.0"


def test_only_commits_since_the_newest_tag_count(v1: Repo) -> None:
    v1.commit("feat: lands in 1.1.0")
    v1.tag("v1.1.0", annotated=False)
    v1.commit("fix: after 1.1.0")
    result = next_version(v1.api)
    assert str(result.version) == "1.1.1"
    assert result.current_tag == "v1.1.0"
    assert [c.description for c in result.commits] == ["after 1.1.0"]


def test_commits_of_merged_branches_count(v1: Repo) -> None:
    v1.git("switch", "--quiet", "-c", "topic")
    v1.commit("feat: on a branch")
    v1.git("switch", "--quiet", "main")
    v1.commit("fix: on main")
    v1.merge("topic", "Merge branch 'topic'")
    result = next_version(v1.api)
    assert str(result.version) == "1.1.0"
    assert sorted(c.description for c in result.commits) == ["on a branch", "on main"]


def test_a_branch_forked_before_the_tag_and_merged_after_it(v1: Repo) -> None:
    v1.git("switch", "--quiet", "-c", "old-topic", "HEAD~1")
    v1.commit("fix: from an old branch")
    v1.git("switch", "--quiet", "main")
    v1.merge("old-topic", "Merge branch 'old-topic'")
    result = next_version(v1.api)
    assert str(result.version) == "1.0.1"
    assert [c.description for c in result.commits] == ["from an old branch"]


def test_release_tags_outside_the_history_hide_nothing(v1: Repo) -> None:
    v1.commit("feat: on main after 1.0.0")
    v1.git("switch", "--quiet", "-c", "elsewhere")
    v1.commit("feat!: only on the other branch")
    v1.tag("v5.0.0")
    v1.git("switch", "--quiet", "main")
    v1.commit("fix: on main")
    result = next_version(v1.api)
    assert result.current_tag == "v1.0.0"
    assert str(result.version) == "1.1.0"
    assert [c.description for c in result.commits] == ["on main", "on main after 1.0.0"]


def test_the_release_tag_may_be_on_a_merge_commit(v1: Repo) -> None:
    v1.git("switch", "--quiet", "-c", "topic")
    v1.commit("feat: in 1.1.0")
    v1.git("switch", "--quiet", "main")
    v1.merge("topic", "Merge branch 'topic'")
    v1.tag("v1.1.0")
    v1.commit("fix: after")
    assert released(v1) == "1.1.1"


def test_ref_selects_the_commit(v1: Repo) -> None:
    v1.commit("fix: a")
    v1.commit("feat: b")
    assert released(v1, ref="HEAD~1") == "1.0.1"
    with pytest.raises(GitError, match="does not name a commit"):
        next_version(v1.api, ref="no-such-branch")
    with pytest.raises(GitError):
        next_version(v1.api, ref="--all")


# -- prereleases ------------------------------------------------------------------------------


def test_prerelease_sequence_then_final_release(v1: Repo) -> None:
    v1.commit("feat: tokens")
    assert released(v1, prerelease="rc") == "1.1.0-rc.1"
    v1.tag("v1.1.0-rc.1")
    v1.commit("fix: token expiry")
    result = next_version(v1.api, prerelease="rc")
    assert str(result.version) == "1.1.0-rc.2" and result.tag == "v1.1.0-rc.2"
    assert result.current_tag == "v1.0.0"
    v1.tag("v1.1.0-rc.2")
    # Nothing new since rc.2: no third candidate.
    assert released(v1, prerelease="rc") is None
    # The full release finalizes the series from every commit since 1.0.0.
    final = next_version(v1.api)
    assert str(final.version) == "1.1.0"
    assert [c.description for c in final.commits] == ["token expiry", "tokens"]
    v1.tag("v1.1.0")
    v1.commit("fix: after the release")
    assert released(v1, prerelease="rc") == "1.1.1-rc.1"


def test_another_token_restarts_at_one_and_only_the_same_token_counts(v1: Repo) -> None:
    v1.commit("feat: tokens")
    v1.tag("v1.1.0-rc.1")
    v1.commit("fix: one")
    v1.tag("v1.1.0-rc.2")
    v1.commit("fix: two")
    assert released(v1, prerelease="beta") == "1.1.0-beta.1"
    v1.tag("v1.1.0-beta.1")
    v1.commit("fix: three")
    assert released(v1, prerelease="rc") == "1.1.0-rc.3"
    assert released(v1, prerelease="beta") == "1.1.0-beta.2"


def test_a_bigger_bump_starts_a_new_series(v1: Repo) -> None:
    v1.commit("fix: small")
    v1.tag("v1.0.1-rc.1")
    v1.commit("feat!: big")
    assert released(v1, prerelease="rc") == "2.0.0-rc.1"


def test_prerelease_numbers_never_repeat_a_tag_from_another_branch(v1: Repo) -> None:
    v1.git("switch", "--quiet", "-c", "other")
    v1.commit("feat: elsewhere")
    v1.tag("v1.1.0-rc.1")
    v1.git("switch", "--quiet", "main")
    v1.commit("feat: here")
    assert released(v1, prerelease="rc") == "1.1.0-rc.2"


def test_prerelease_token_is_checked(v1: Repo) -> None:
    with pytest.raises(VersioningError, match="prerelease token"):
        next_version(v1.api, prerelease="r.c")


# -- Release-As and reverts -------------------------------------------------------------------


def test_release_as_overrides_the_computed_version(v1: Repo) -> None:
    v1.commit("chore: the big one\n\nRelease-As: 3.0.0")
    result = next_version(v1.api)
    assert str(result.version) == "3.0.0"
    assert any("Release-As: 3.0.0" in reason for reason in result.reasons)
    assert released(v1, prerelease="rc") == "3.0.0-rc.1"
    v1.commit("feat: more")
    assert released(v1) == "3.0.0"


def test_release_as_must_be_greater_than_the_current_release(v1: Repo) -> None:
    sha = v1.commit("fix: x\n\nRelease-As: 1.0.0")
    with pytest.raises(
        ReleaseAsRejected, match=r"not greater than the current release 1\.0\.0"
    ) as e:
        next_version(v1.api)
    assert sha[:7] in e.value.message


def test_release_as_must_be_a_version(v1: Repo) -> None:
    v1.commit("fix: x\n\nRelease-As: v2")
    with pytest.raises(ReleaseAsRejected, match="'v2', which is not a semantic version"):
        next_version(v1.api)


def test_a_reverted_feature_does_not_count(v1: Repo) -> None:
    v1.commit("fix: keep me")
    v1.commit("feat: regret me")
    v1.git("revert", "--no-edit", "HEAD")
    result = next_version(v1.api)
    assert str(result.version) == "1.0.1"
    assert [c.description for c in result.commits] == ["keep me"]
    assert any("is reverted by" in reason for reason in result.reasons)


def test_reverting_the_revert_counts_the_feature_again(v1: Repo) -> None:
    v1.commit("feat: flip-flop")
    v1.git("revert", "--no-edit", "HEAD")
    assert released(v1) is None
    v1.git("revert", "--no-edit", "HEAD")
    result = next_version(v1.api)
    assert str(result.version) == "1.1.0"
    assert [c.description for c in result.commits] == ["flip-flop"]


def test_reverting_a_released_commit_is_a_revert_type(v1: Repo) -> None:
    v1.git("revert", "--no-edit", "HEAD~1")
    assert released(v1) is None
    assert released(v1, bump_table={"revert": "patch"}) == "1.0.1"


def test_reverting_an_unreleased_non_conventional_commit_cancels_both(v1: Repo) -> None:
    v1.commit("Quick experiment")
    v1.git("revert", "--no-edit", "HEAD")
    assert released(v1, bump_table={"revert": "patch"}) is None


# -- squash merges ----------------------------------------------------------------------------


def test_a_squash_merge_counts_every_conventional_line(v1: Repo) -> None:
    v1.commit(
        "Tokens and fixes (#12)\n\n* fix: expiry\n\n* feat(api): tokens\n\n"
        "Co-authored-by: Grace <grace@example.com>"
    )
    result = next_version(v1.api)
    assert str(result.version) == "1.1.0"
    assert [c.title for c in result.commits] == ["fix: expiry", "feat(api): tokens"]


def test_types_of_the_bump_table_count_in_squash_bodies(v1: Repo) -> None:
    v1.commit("Squashed (#14)\n\n* security: pin the TLS version\n\n* docs: explain")
    assert released(v1) is None
    assert released(v1, bump_table={"security": "patch"}) == "1.0.1"


def test_a_breaking_line_in_a_squash_body(v1: Repo) -> None:
    v1.commit("fix: small things (#13)\n\n* fix: one\n\n* refactor!: store layout")
    assert released(v1) == "2.0.0"


# -- monorepos --------------------------------------------------------------------------------


@pytest.fixture
def monorepo(git_project: Repo) -> Repo:
    """Two projects, api/ and web/, each released once with its own tag format."""
    git_project.commit("feat(api): start", {"api/app.py": "1\n"})
    git_project.commit("feat(web): start", {"web/index.html": "1\n"})
    git_project.tag("api-v1.0.0")
    git_project.tag("web-v2.0.0")
    return git_project


def test_monorepo_paths_and_tag_formats_keep_projects_apart(monorepo: Repo) -> None:
    monorepo.commit("feat(api): tokens", {"api/app.py": "2\n"})
    monorepo.commit("fix(web): layout", {"web/index.html": "2\n"})
    monorepo.commit("docs: both", {"api/README.md": "x\n", "web/README.md": "x\n"})
    api = next_version(monorepo.api, tag_format="api-v{version}", paths=["api"])
    web = next_version(monorepo.api, tag_format="web-v{version}", paths=["web"])
    assert (str(api.version), api.tag) == ("1.1.0", "api-v1.1.0")
    assert (str(web.version), web.tag) == ("2.0.1", "web-v2.0.1")
    assert [c.title for c in api.commits] == ["docs: both", "feat(api): tokens"]
    assert [c.title for c in web.commits] == ["docs: both", "fix(web): layout"]
    assert api.warnings == () and web.warnings == ()
    # Releasing one project does not change the other's next version.
    monorepo.tag("api-v1.1.0")
    assert released(monorepo, tag_format="api-v{version}", paths=["api"]) is None
    assert released(monorepo, tag_format="web-v{version}", paths=["web"]) == "2.0.1"


def test_monorepo_paths_are_from_the_root_whichever_folder_git_runs_in(monorepo: Repo) -> None:
    monorepo.commit("fix(api): inside", {"api/app.py": "3\n", "api/src/x.py": "3\n"})
    monorepo.commit("feat: outside", {"web/index.html": "3\n"})
    for folder in (monorepo.path, monorepo.path / "api", monorepo.path / "api" / "src"):
        result = next_version(Git(folder), tag_format="api-v{version}", paths=["api"])
        assert str(result.version) == "1.0.1", folder
        assert [c.title for c in result.commits] == ["fix(api): inside"]
    everything = next_version(Git(monorepo.path / "web"), tag_format="api-v{version}", paths=["."])
    assert [c.title for c in everything.commits] == ["feat: outside", "fix(api): inside"]


def test_plan_takes_release_paths_from_the_project_folder(monorepo: Repo) -> None:
    monorepo.commit("fix(shared): colour", {"shared/style.css": "x\n"})
    monorepo.commit("fix(api): inside", {"api/app.py": "3\n"})
    monorepo.commit("feat(web): outside", {"web/index.html": "3\n"})
    section = Release(tag_format="api-v{version}", paths=[".", "../shared"])
    for folder in ("", "api", "api/deep", "web"):
        (monorepo.path / folder).mkdir(parents=True, exist_ok=True)
        found = planning.plan(Git(monorepo.path / folder), section, project_dir="api")
        assert found.version == "1.0.1", folder
        assert [c.title for c in found.next.commits] == ["fix(api): inside", "fix(shared): colour"]
        assert found.next.levels == (BumpLevel.PATCH, BumpLevel.PATCH)


@pytest.mark.parametrize("path", ["../..", "../../elsewhere", "/etc"])
def test_plan_refuses_release_paths_outside_the_repository(monorepo: Repo, path: str) -> None:
    section = Release(tag_format="api-v{version}", paths=[".", path])
    with pytest.raises(VersioningError, match="leads outside the repository") as caught:
        planning.plan(monorepo.api, section, project_dir="api")
    assert repr(path) in caught.value.message


def test_monorepo_prerelease_series_since_the_last_candidate(monorepo: Repo) -> None:
    monorepo.commit("feat(api): tokens", {"api/app.py": "2\n"})
    monorepo.tag("api-v1.1.0-rc.1")
    monorepo.commit("fix(web): elsewhere", {"web/index.html": "2\n"})
    options = {"tag_format": "api-v{version}", "paths": ["api"], "prerelease": "rc"}
    assert released(monorepo, **options) is None
    monorepo.commit("fix(api): here", {"api/app.py": "3\n"})
    assert released(monorepo, **options) == "1.1.0-rc.2"


# -- bad input --------------------------------------------------------------------------------


def test_non_semver_tags_are_skipped_with_a_warning(v1: Repo) -> None:
    v1.commit("fix: a")
    v1.tag("v1.5")
    v1.tag("vnext", annotated=False)
    v1.tag("api-v9.0.0")  # another format: not this project's, not a warning
    tree = v1.git("rev-parse", "HEAD^{tree}")
    v1.tag("v8.0.0", tree, annotated=False)
    v1.commit("fix: b")
    result = next_version(v1.api)
    assert str(result.version) == "1.0.1"
    assert result.current_tag == "v1.0.0"
    assert len(result.warnings) == 3
    assert any("'v8.0.0' does not point at a commit" in w for w in result.warnings)
    assert any("'v1.5'" in w and "not a semantic version" in w for w in result.warnings)
    assert any("'vnext'" in w for w in result.warnings)


def test_warns_when_the_next_tag_exists_elsewhere(v1: Repo) -> None:
    v1.git("switch", "--quiet", "-c", "other")
    v1.commit("fix: there")
    v1.tag("v1.0.1")
    v1.git("switch", "--quiet", "main")
    v1.commit("fix: here")
    result = next_version(v1.api)
    assert str(result.version) == "1.0.1"
    assert any("'v1.0.1' exists already" in w for w in result.warnings)


def _clone(origin: Repo, target: Path, *args: str) -> Git:
    subprocess.run(
        ["git", "clone", "--quiet", *args, f"file://{origin.path}", str(target)],
        check=True,
        capture_output=True,
    )
    return Git(target)


def test_a_shallow_clone_without_the_release_tag_names_the_fix(v1: Repo, tmp_path: Path) -> None:
    for number in range(5):
        v1.commit(f"fix: {number}")
    shallow = _clone(v1, tmp_path / "shallow", "--depth", "1")
    assert shallow.is_shallow()
    with pytest.raises(ShallowHistory) as caught:
        next_version(shallow)
    assert "shallow clone" in caught.value.message
    assert caught.value.hint is not None and "git fetch --unshallow" in caught.value.hint


def test_a_shallow_clone_that_holds_the_whole_range_works(v1: Repo, tmp_path: Path) -> None:
    v1.commit("fix: a")
    v1.commit("feat: b")
    shallow = _clone(v1, tmp_path / "shallow", "--depth", "3")
    assert shallow.is_shallow()
    assert str(next_version(shallow).version) == "1.1.0"
    too_shallow = _clone(v1, tmp_path / "too-shallow", "--depth", "2")
    with pytest.raises(ShallowHistory):
        next_version(too_shallow)


def test_result_is_a_frozen_value(v1: Repo) -> None:
    v1.commit("fix: a")
    result = next_version(v1.api)
    assert isinstance(result, NextVersion)
    with pytest.raises(AttributeError):
        result.version = None  # type: ignore[misc]


def test_many_release_tags(git_project: Repo) -> None:
    for minor in range(30):
        git_project.commit(f"feat: feature {minor}")
        git_project.tag(f"v1.{minor}.0", annotated=minor % 2 == 0)
    git_project.commit("fix: last")
    result = next_version(git_project.api)
    assert (result.current_tag, str(result.version)) == ("v1.29.0", "1.29.1")


# -- absurd sizes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["7" * 5_000_000 + ".0.0", "1.0.0-" + "a" * 5_000_000, "1.0.0+" + "b" * 300]
)
def test_a_version_longer_than_the_limit_is_refused_in_a_short_message(text: str) -> None:
    assert Version.try_parse(text) is None
    with pytest.raises(InvalidVersion, match=f"at most {MAX_VERSION_LENGTH} characters") as caught:
        Version.parse(text)
    assert len(str(caught.value)) < 300
    longest = "1.0.0-" + "a" * (MAX_VERSION_LENGTH - 6)
    assert str(Version.parse(longest)) == longest


def test_a_huge_initial_version_names_the_setting(v1: Repo) -> None:
    with pytest.raises(VersioningError, match=r"release\.initial_version") as caught:
        next_version(v1.api, initial_version="1" * 5_000_000 + ".0.0")
    assert len(str(caught.value)) < 400


def test_a_huge_release_as_footer_names_the_commit(v1: Repo, tmp_path: Path) -> None:
    message = tmp_path / "message.txt"
    message.write_text("feat: jump\n\nRelease-As: " + "9" * 5_000_000 + ".0.0\n")
    v1.git("commit", "--quiet", "--allow-empty", "--file", str(message))
    sha = v1.git("rev-parse", "HEAD")
    with pytest.raises(ReleaseAsRejected, match=sha[:7]) as caught:
        next_version(v1.api)
    assert len(str(caught.value)) < 400


def test_a_huge_tag_is_skipped_with_a_short_warning(v1: Repo) -> None:
    v1.commit("fix: a")
    commit = v1.git("rev-parse", "HEAD")
    with (v1.path / ".git" / "packed-refs").open("a") as packed:
        packed.write(f"{commit} refs/tags/v{'8' * 5_000_000}.0.0\n")
    result = next_version(v1.api)
    assert str(result.version) == "1.0.1"
    assert len(result.warnings) == 1
    assert "is skipped" in result.warnings[0] and len(result.warnings[0]) < 300


def test_a_huge_prerelease_token_is_refused_in_a_short_message(v1: Repo) -> None:
    with pytest.raises(VersioningError, match="is not a prerelease token") as caught:
        next_version(v1.api, prerelease="rc" + "1" * 5_000_000)
    assert len(str(caught.value)) < 300
