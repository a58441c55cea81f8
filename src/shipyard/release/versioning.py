"""The next version of a project, computed from its release tags and Conventional Commits.

It reads git (one ``for-each-ref`` and usually one ``git log``) and decides; it never creates
tags, writes files or prints: warnings come back in the result for the caller to show.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from types import MappingProxyType

from shipyard.core.errors import GitError, UserError
from shipyard.core.git import Git
from shipyard.release.commits import CONVENTIONAL_TYPES, ConventionalCommit, parse_message
from shipyard.release.semver import BumpLevel, InvalidVersion, Version, excerpt

__all__ = [
    "DEFAULT_BUMP_TABLE",
    "BranchNotReleasable",
    "InvalidTagFormat",
    "NextVersion",
    "ReleaseAsRejected",
    "ReleaseTag",
    "ShallowHistory",
    "TagFormat",
    "VersioningError",
    "channel_token",
    "next_version",
]

DEFAULT_BUMP_TABLE: Mapping[str, BumpLevel] = MappingProxyType(
    {"feat": BumpLevel.MINOR, "fix": BumpLevel.PATCH, "perf": BumpLevel.PATCH}
)
"""What each commit type is worth when ``release.bump`` says nothing; breaking is always major."""

_TOKEN = re.compile(r"[A-Za-z][0-9A-Za-z-]{0,31}")
_BAD_TAG_CHARACTERS = frozenset(" ~^:?*[\\\t\n\r\0{}")
_REASONS_LISTED = 5
# One record of `git log -z`: sha, parents and raw message, each field ending with a NUL.
_LOG_FORMAT = "--format=%H%x00%P%x00%B"


class VersioningError(UserError):
    """The next version cannot be computed from this repository and these settings."""


class InvalidTagFormat(VersioningError):
    """A tag format does not contain ``{version}`` once, or would not make a valid tag name."""


class ShallowHistory(VersioningError):
    """The clone is shallow and the history since the last release is incomplete."""


class ReleaseAsRejected(VersioningError):
    """A ``Release-As`` footer names no version, or one not greater than the current release."""


class BranchNotReleasable(VersioningError):
    """The branch is not one that ``release.channels`` lists, or HEAD is detached."""


@dataclass(frozen=True)
class TagFormat:
    """How a project's versions are spelled as tags: ``v{version}``, ``api-v{version}``."""

    pattern: str = "v{version}"
    prefix: str = field(init=False, repr=False, compare=False)
    suffix: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.pattern.count("{version}") != 1:
            raise InvalidTagFormat(
                f"the tag format {self.pattern!r} must contain {{version}} exactly once",
                hint="write something like 'v{version}' or 'api-v{version}'",
            )
        prefix, _, suffix = self.pattern.partition("{version}")
        rest = prefix + suffix
        if any(ch in _BAD_TAG_CHARACTERS for ch in rest) or ".." in rest or rest.startswith("-"):
            raise InvalidTagFormat(
                f"the tag format {self.pattern!r} would not give valid git tag names",
                hint="use letters, digits, '-', '_', '.' and '/' around {version}",
            )
        object.__setattr__(self, "prefix", prefix)
        object.__setattr__(self, "suffix", suffix)

    @property
    def glob(self) -> str:
        """A ``git for-each-ref`` pattern, under ``refs/tags/``, for this format's tags."""
        return f"refs/tags/{self.prefix}*{self.suffix}"

    def tag(self, version: Version) -> str:
        """The tag name of ``version``."""
        return f"{self.prefix}{version}{self.suffix}"

    def version_text(self, tag: str) -> str | None:
        """What stands for ``{version}`` in ``tag``, or None when the tag has another shape."""
        if len(tag) <= len(self.prefix) + len(self.suffix):
            return None
        if not (tag.startswith(self.prefix) and tag.endswith(self.suffix)):
            return None
        return tag[len(self.prefix) : len(tag) - len(self.suffix)]

    def parse(self, tag: str) -> Version | None:
        """The version ``tag`` names, or None when it is not this format's tag of a semver."""
        text = self.version_text(tag)
        return None if text is None else Version.try_parse(text)


@dataclass(frozen=True)
class ReleaseTag:
    """A tag of the project's format that names a semantic version."""

    name: str
    version: Version
    commit: str


@dataclass(frozen=True)
class NextVersion:
    """What the next release would be, and why; ``version`` is None when there is none."""

    current: Version | None
    current_tag: str | None
    version: Version | None
    tag: str | None
    level: BumpLevel
    commits: tuple[ConventionalCommit, ...]
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    levels: tuple[BumpLevel, ...] = ()
    """What each of ``commits`` is worth on its own (breaking is major), in the same order."""

    @property
    def released(self) -> bool:
        """Whether the commits call for a release."""
        return self.version is not None


def channel_token(branch: str | None, channels: Mapping[str, str | None]) -> str | None:
    """The prerelease token ``release.channels`` gives ``branch``; None means full releases.

    Exact branch names win over patterns such as ``release/*``. With no channels at all every
    branch makes full releases; otherwise an unlisted branch or a detached HEAD is an error.
    """
    if not channels:
        return None
    listed = ", ".join(channels)
    if branch is None:
        raise BranchNotReleasable(
            "HEAD is detached, so no entry of release.channels applies",
            hint=f"check out one of the branches {listed}, or name the prerelease token",
        )
    if branch in channels:
        return channels[branch]
    for pattern, token in channels.items():
        if fnmatchcase(branch, pattern):
            return token
    raise BranchNotReleasable(
        f"branch {branch!r} is not listed in release.channels ({listed})",
        hint="release from one of those branches, or add this one to release.channels",
    )


def next_version(
    git: Git,
    *,
    tag_format: TagFormat | str = "v{version}",
    initial_version: Version | str = "0.1.0",
    bump_table: Mapping[str, BumpLevel | str] = DEFAULT_BUMP_TABLE,
    major_on_zero: bool = False,
    prerelease: str | None = None,
    paths: Sequence[str] = (),
    ref: str = "HEAD",
) -> NextVersion:
    """The next version of the project whose tags have ``tag_format``, at ``ref``.

    Only commits since the newest release tag in the history of ``ref`` count, and of those
    only the ones touching ``paths`` when given: paths from the repository's root, whichever
    folder of the repository ``git.cwd`` is.
    """
    fmt = tag_format if isinstance(tag_format, TagFormat) else TagFormat(tag_format)
    initial = _initial(initial_version)
    table = _bump_table(bump_table)
    if prerelease is not None and not _TOKEN.fullmatch(prerelease):
        raise VersioningError(
            f"{excerpt(prerelease)} is not a prerelease token",
            hint="use a short word that starts with a letter, such as rc, beta or alpha",
        )
    head, shallow = _resolve(git, ref)
    warnings: list[str] = []
    tags = _release_tags(git, fmt, warnings)
    history = _History.read(git, head, tags, paths, CONVENTIONAL_TYPES.union(table))
    if shallow is not None:
        _check_not_cut(history, shallow, fmt, ref)
    return _Decision(
        fmt, initial, table, major_on_zero, prerelease, tags, history, warnings
    ).decide()


def _initial(initial_version: Version | str) -> Version:
    if isinstance(initial_version, Version):
        return initial_version
    try:
        return Version.parse(initial_version)
    except InvalidVersion as error:
        raise VersioningError(
            f"release.initial_version: {error.message}", hint=error.hint
        ) from error


# -- reading git ------------------------------------------------------------------------------


def _resolve(git: Git, ref: str) -> tuple[str, frozenset[str] | None]:
    """The commit ``ref`` names, and the shallow clone's cut commits (None when not shallow)."""
    if ref.startswith("-"):
        ref = git.resolve_commit(ref)  # never let a ref be read as an option
    try:
        out = git.run(
            "rev-parse",
            "--is-shallow-repository",
            "--git-path",
            "shallow",
            "--verify",
            "--quiet",
            f"{ref}^{{commit}}",
        )
        flag, shallow_path, head = out.splitlines()
    except (GitError, ValueError):
        git.resolve_commit(ref)
        raise
    if flag != "true":
        return head, None
    try:
        text = (git.cwd / Path(shallow_path)).read_text()
    except OSError:
        text = ""
    return head, frozenset(text.split())


def _release_tags(git: Git, fmt: TagFormat, warnings: list[str]) -> tuple[ReleaseTag, ...]:
    """Every tag of the format that names a semver, in any history; the others are warned of."""
    out = git.run(
        "for-each-ref",
        "--format=%(refname:strip=2)%00%(objecttype)%00%(objectname)"
        "%00%(*objecttype)%00%(*objectname)",
        fmt.glob,
    )
    tags = []
    for line in out.splitlines():
        name, kind, objectname, peeled_kind, peeled = line.split("\0")
        text = fmt.version_text(name)
        if text is None:
            continue
        version = Version.try_parse(text)
        if version is None:
            warnings.append(
                f"tag {excerpt(name)} matches the tag format {fmt.pattern!r} but "
                f"{excerpt(text)} is not a semantic version; it is skipped"
            )
        elif (peeled_kind or kind) != "commit":
            warnings.append(f"tag {excerpt(name)} does not point at a commit; it is skipped")
        else:
            tags.append(ReleaseTag(name, version, peeled or objectname))
    return tuple(tags)


@dataclass
class _History:
    """The commits since the release tags reachable from HEAD, and how they connect."""

    head: str
    # Every commit of the range → its parents, as git prints them (space-separated shas).
    parents: dict[str, str]
    # Non-merge commits touching the paths, newest first, each with its conventional changes.
    changes: list[tuple[str, tuple[ConventionalCommit, ...]]]
    # Release tags in the history of HEAD whose history is excluded (the newest one is the base).
    reached: list[ReleaseTag]

    @classmethod
    def read(
        cls,
        git: Git,
        head: str,
        tags: Sequence[ReleaseTag],
        paths: Sequence[str],
        types: Collection[str],
    ) -> _History:
        """Walk HEAD's history, stopping at every full release tag; usually one git command."""
        by_commit: dict[str, list[ReleaseTag]] = {}
        for tag in tags:
            if not tag.version.is_prerelease:
                by_commit.setdefault(tag.commit, []).append(tag)
        # Excluding every full release tag, even ones on other branches, takes one walk. A tag
        # outside HEAD's history may hide commits: that shows as a boundary commit that is no
        # release tag, and a second walk from there recovers what it hid.
        parents, messages = _walk(git, [head], list(by_commit), with_messages=not paths)
        reached_commits = {head} & by_commit.keys()
        unexplained = []
        for sha in _boundary(parents):
            if sha in by_commit:
                reached_commits.add(sha)
            else:
                unexplained.append(sha)
        if unexplained:
            extra_parents, extra_messages = _walk(
                git, unexplained, sorted(reached_commits), with_messages=not paths
            )
            # Release tags among the recovered commits are in HEAD's history after all.
            hidden = extra_parents.keys() & by_commit.keys()
            reached_commits |= hidden
            dropped = _ancestors(extra_parents, hidden)
            for sha in dropped:
                del extra_parents[sha]
            parents.update(extra_parents)
            messages += [(sha, message) for sha, message in extra_messages if sha not in dropped]
        if paths:
            messages = _walk_messages(git, head, sorted(reached_commits), paths)
        changes = [
            (sha, parse_message(sha, message, types=types))
            for sha, message in messages
            if " " not in parents.get(sha, " ")  # merges, and anything outside the range
        ]
        reached = [tag for sha in reached_commits for tag in by_commit[sha]]
        return cls(head, parents, changes, reached)

    def since(self, commit: str) -> set[str]:
        """The commits of the range that are not in the history of ``commit``."""
        return self.parents.keys() - _ancestors(self.parents, {commit})


def _walk(
    git: Git, include: Sequence[str], exclude: Sequence[str], *, with_messages: bool
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Commits of ``include`` not in ``exclude``'s history: parents, and messages if asked."""
    revisions = "".join(f"{sha}\n" for sha in include) + "".join(f"^{sha}\n" for sha in exclude)
    if not with_messages:
        out = git.run_bytes("rev-list", "--parents", "--stdin", input=revisions.encode())
        lines = (line.partition(" ") for line in out.decode("ascii").splitlines())
        return {sha: parents for sha, _, parents in lines}, []
    fields = _log(git, revisions, ())
    shas = fields[0:-1:3]
    return dict(zip(shas, fields[1:-1:3], strict=True)), list(
        zip(shas, fields[2:-1:3], strict=True)
    )


def _walk_messages(
    git: Git, head: str, exclude: Sequence[str], paths: Sequence[str]
) -> list[tuple[str, str]]:
    """Messages of the commits since ``exclude`` that touch ``paths``, newest first."""
    revisions = f"{head}\n" + "".join(f"^{sha}\n" for sha in exclude)
    fields = _log(git, revisions, paths)
    return list(zip(fields[0:-1:3], fields[2:-1:3], strict=True))


def _pathspecs(paths: Sequence[str]) -> list[str]:
    """``paths`` (from the repository's root) as pathspecs that git reads so from any folder."""
    return [":(top)" if path in ("", ".") else f":(top){path}" for path in paths]


def _log(git: Git, revisions: str, paths: Sequence[str]) -> list[str]:
    out = git.run_bytes(
        "-c",
        "log.follow=false",
        "log",
        "-z",
        "--no-show-signature",
        "--no-color",
        "--encoding=UTF-8",
        _LOG_FORMAT,
        "--stdin",
        "--",
        *_pathspecs(paths),
        input=revisions.encode(),
    )
    fields = out.decode("utf-8", errors="replace").split("\0")
    if fields[-1] != "" or (len(fields) - 1) % 3 != 0:
        raise GitError(
            "cannot parse the output of git log",
            hint="a commit message may contain a NUL byte; report this as a bug",
        )
    return fields


def _boundary(parents: Mapping[str, str]) -> set[str]:
    """Commits outside the range whose children are in it."""
    return set(" ".join(parents.values()).split()) - parents.keys()


def _ancestors(parents: Mapping[str, str], starts: Iterable[str]) -> set[str]:
    """``starts`` and every commit of the range in their history."""
    seen: set[str] = set()
    stack = [sha for sha in starts if sha in parents]
    while stack:
        sha = stack.pop()
        if sha in seen:
            continue
        seen.add(sha)
        stack.extend(parent for parent in parents[sha].split() if parent in parents)
    return seen


def _find_commit(wanted: str, shas: Collection[str]) -> str | None:
    """The one sha of ``shas`` that ``wanted`` names in full or abbreviated, or None."""
    if wanted in shas:
        return wanted
    matches = [sha for sha in shas if sha.startswith(wanted)]
    return matches[0] if len(matches) == 1 else None


def _check_not_cut(history: _History, cut: frozenset[str], fmt: TagFormat, ref: str) -> None:
    if history.reached and not (cut & history.parents.keys()):
        return
    if history.reached:
        newest = max(history.reached, key=lambda tag: tag.version)
        what = f"the history since {newest.name} is incomplete"
    else:
        what = f"no tag matching {fmt.pattern!r} was found in the history of {ref}"
    raise ShallowHistory(
        f"this is a shallow clone and {what}, so the next version cannot be computed",
        hint="fetch the whole history with `git fetch --unshallow --tags` "
        "(in CI, set the checkout depth to 0)",
    )


# -- deciding ---------------------------------------------------------------------------------


def _bump_table(table: Mapping[str, BumpLevel | str]) -> dict[str, BumpLevel]:
    levels = {}
    for kind, level in table.items():
        try:
            levels[kind.lower()] = (
                level if isinstance(level, BumpLevel) else BumpLevel.from_name(level)
            )
        except InvalidVersion as error:
            raise VersioningError(
                f"release.bump gives the type {kind!r} the level {level!r}",
                hint="use major, minor or patch",
            ) from error
    return levels


@dataclass
class _Decision:
    """The rules, applied in order to one history."""

    fmt: TagFormat
    initial: Version
    table: Mapping[str, BumpLevel]
    major_on_zero: bool
    token: str | None
    tags: Sequence[ReleaseTag]
    history: _History
    warnings: list[str]
    reasons: list[str] = field(default_factory=list)

    def decide(self) -> NextVersion:
        base = max(self.history.reached, key=lambda tag: tag.version, default=None)
        if base is None:
            self.reasons.append(
                f"no tag matching {self.fmt.pattern!r} in the history; the first release is "
                f"{self.initial} (release.initial_version)"
            )
        else:
            self.reasons.append(f"last release: {base.name} ({base.commit[:7]})")
        commits = self._without_reverted()
        level = self._level(commits, base)
        target = self._target(commits, level, base)
        if target is None:
            return self._result(base, None, level, commits)
        if self.token is None:
            version: Version | None = target
        else:
            version = self._prerelease(target, commits)
        if version is not None:
            self._warn_if_tag_exists(version)
        return self._result(base, version, level, commits)

    def _without_reverted(self) -> tuple[ConventionalCommit, ...]:
        """The changes, newest first, without reverted commits and the reverts that undo them.

        A commit is undone when a revert of it is in the range and is not undone itself, so a
        revert of a revert makes the original count again; the order of the log plays no part.
        """
        changes = self.history.changes
        reverts = [
            (sha, wanted)
            for sha, units in changes
            for wanted in [next((u.reverted_sha for u in units if u.reverted_sha), None)]
            if wanted is not None
        ]
        if not reverts:
            return tuple(unit for _, units in changes for unit in units)
        units_of = dict(changes)
        target_of: dict[str, str] = {}
        for sha, wanted in reverts:
            target = _find_commit(wanted, units_of)
            if target is not None and target != sha:
                target_of[sha] = target
        reverts_of: dict[str, list[str]] = {}
        for revert, target in target_of.items():
            reverts_of.setdefault(target, []).append(revert)
        undone: dict[str, bool] = {}

        def is_undone(sha: str, visiting: frozenset[str] = frozenset()) -> bool:
            if sha not in undone:
                # A message may claim to revert a later commit; a cycle undoes nothing.
                inner = visiting | {sha}
                undone[sha] = any(
                    revert not in inner and not is_undone(revert, inner)
                    for revert in reverts_of.get(sha, ())
                )
            return undone[sha]

        for revert, target in target_of.items():
            if not is_undone(revert):
                reverted = units_of[target]
                title = f"{reverted[0].title} ({target[:7]})" if reverted else target[:7]
                self.reasons.append(f"{title} is reverted by {revert[:7]}; neither counts")
        return tuple(
            unit
            for sha, units in changes
            if sha not in target_of and not is_undone(sha)
            for unit in units
        )

    def _level_of(self, change: ConventionalCommit) -> BumpLevel:
        if change.breaking:
            return BumpLevel.MAJOR
        return self.table.get(change.type, BumpLevel.NONE)

    def _level(self, commits: Sequence[ConventionalCommit], base: ReleaseTag | None) -> BumpLevel:
        level = max((self._level_of(change) for change in commits), default=BumpLevel.NONE)
        if level is not BumpLevel.NONE:
            deciding = [change for change in commits if self._level_of(change) is level]
            listed = ", ".join(f"{c.title} ({c.short_sha})" for c in deciding[:_REASONS_LISTED])
            more = len(deciding) - _REASONS_LISTED
            self.reasons.append(
                f"{level.name.lower()}: {listed}" + (f" and {more} more" if more > 0 else "")
            )
        zero = base is not None and base.version.major == 0
        if level is BumpLevel.MAJOR and zero and not self.major_on_zero:
            self.reasons.append(
                "the major version is 0, so a breaking change bumps the minor "
                "(release.major_on_zero is false)"
            )
            return BumpLevel.MINOR
        return level

    def _target(
        self, commits: Sequence[ConventionalCommit], level: BumpLevel, base: ReleaseTag | None
    ) -> Version | None:
        """The release the commits lead to, before any prerelease suffix."""
        release_as = next((c for c in commits if c.release_as is not None), None)
        if release_as is not None:
            return self._release_as(release_as, base)
        if level is BumpLevel.NONE:
            counted = sorted(self.table)
            self.reasons.append(
                f"no release: none of the {len(commits)} conventional commit(s) since "
                f"{base.name if base else 'the start'} is a breaking change or of a type "
                f"that release.bump releases ({', '.join(counted)})"
            )
            return None
        if base is None:
            return self.initial
        target = base.version.bump(level)
        self.reasons.append(f"{base.version} + {level.name.lower()} = {target}")
        return target

    def _release_as(self, commit: ConventionalCommit, base: ReleaseTag | None) -> Version:
        text = (commit.release_as or "").strip()
        try:
            wanted = Version.parse(text)
        except InvalidVersion as error:
            raise ReleaseAsRejected(
                f"commit {commit.short_sha} asks for Release-As {excerpt(text)}, which is not a "
                "semantic version",
                hint=f"{error.hint}; then amend the commit, or tag the release by hand",
            ) from error
        if base is not None and not wanted > base.version:
            raise ReleaseAsRejected(
                f"commit {commit.short_sha} asks for Release-As {wanted}, which is not greater "
                f"than the current release {base.version} ({base.name})",
                hint="name a greater version in a new commit's Release-As footer",
            )
        self.reasons.append(f"Release-As: {wanted} in commit {commit.short_sha}")
        return wanted

    def _prerelease(self, target: Version, commits: Sequence[ConventionalCommit]) -> Version | None:
        """The next prerelease of ``target``, or None when nothing counts since the last one."""
        assert self.token is not None
        final = target.finalize()
        series = [
            (int(tag.version.prerelease[1]), tag)
            for tag in self.tags
            if tag.version.finalize() == final
            and len(tag.version.prerelease) == 2
            and tag.version.prerelease[0] == self.token
            and tag.version.prerelease[1].isdigit()
        ]
        if not series:
            self.reasons.append(f"prerelease {self.token}: the first of {final}")
            return final.with_prerelease(self.token, 1)
        number, latest = max(series, key=lambda item: item[0])
        in_history = [(n, tag) for n, tag in series if tag.commit in self.history.parents]
        if in_history:
            _, last = max(in_history, key=lambda item: item[0])
            since = self.history.since(last.commit)
            qualifying = [
                change
                for change in commits
                if change.sha in since
                and (self._level_of(change) is not BumpLevel.NONE or change.release_as)
            ]
            if not qualifying:
                self.reasons.append(
                    f"no release: nothing that counts since the prerelease {last.name}"
                )
                return None
        self.reasons.append(
            f"prerelease {self.token}: {latest.name} exists, so this is {self.token}.{number + 1}"
        )
        return final.with_prerelease(self.token, number + 1)

    def _warn_if_tag_exists(self, version: Version) -> None:
        name = self.fmt.tag(version)
        if any(tag.name == name for tag in self.tags):
            self.warnings.append(
                f"the tag {name!r} exists already, outside the history of this commit"
            )

    def _result(
        self,
        base: ReleaseTag | None,
        version: Version | None,
        level: BumpLevel,
        commits: tuple[ConventionalCommit, ...],
    ) -> NextVersion:
        return NextVersion(
            current=None if base is None else base.version,
            current_tag=None if base is None else base.name,
            version=version,
            tag=None if version is None else self.fmt.tag(version),
            level=level,
            commits=commits,
            reasons=tuple(self.reasons),
            warnings=tuple(self.warnings),
            levels=tuple(self._level_of(change) for change in commits),
        )
