"""The ``if`` expressions of CI jobs: grammar, values, functions, globs and error columns."""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from shipyard.ci.expressions import (
    MAX_DEPTH,
    MAX_LENGTH,
    Constant,
    Expression,
    ExpressionContext,
    ExpressionError,
    GlobError,
    glob_to_regex,
    normalize_path,
    parse,
    path_matches,
)
from shipyard.core.errors import ConfigError, UserError

CHANGED = ("src/app.py", "docs/index.md")


def context(**overrides: Any) -> ExpressionContext:
    """A push to main of commit abc123, with a few variables set, changing CHANGED."""
    values: dict[str, Any] = {
        "branch": "main",
        "tag": None,
        "event": "push",
        "commit": "abc123",
        "env": {"HOME": "/home/ada", "EMPTY": "", "CI": "true", "FLAG": "false"},
        "matrix": {"python": "3.12", "os": "linux"},
        "needs": {
            "build": {"outputs": {"version": "1.2.3", "empty": ""}, "result": "passed"},
            "web.v2": {"outputs": {"url": "https://example.com"}},
        },
        "vars": {"REGION": "eu", "BRANCHES": "main|next", "BAD": "[unclosed"},
        "changed_files": lambda: CHANGED,
    }
    values.update(overrides)
    return ExpressionContext(**values)


def holds(source: str, **overrides: Any) -> bool:
    """Parse ``source`` and evaluate it in :func:`context` with ``overrides``."""
    return parse(source).evaluate(context(**overrides))


class CountingChanges:
    """A ``changed_files`` callable that counts how often the scheduler would run git."""

    def __init__(self, files: Sequence[str] = CHANGED) -> None:
        self.files = tuple(files)
        self.calls = 0

    def __call__(self) -> Sequence[str]:
        self.calls += 1
        return self.files


# --------------------------------------------------------------------------- precedence


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("true or false and false", True),
        ("false and false or true", True),
        ("false and (false or true)", False),
        ("(true or false) and false", False),
        ("not false and false", False),
        ("not (false and false)", True),
        ("not not true", True),
        ("not not not true", False),
        ("not branch == 'dev'", True),
        ("not branch in ('dev', 'next')", True),
        ("not tag and branch == 'main'", True),
        ("false or false or true", True),
        ("true and true and false", False),
        ("branch == 'main' and tag == null or event == 'tag'", True),
        ("branch == 'dev' or tag == null and event == 'push'", True),
        ("(branch == 'dev' or tag == null) and event == 'schedule'", False),
        ("((((branch == 'main'))))", True),
    ],
)
def test_precedence(source: str, expected: bool) -> None:
    assert holds(source) is expected


def test_and_and_or_stop_at_the_first_deciding_operand() -> None:
    changes = CountingChanges()
    assert holds("branch == 'main' or changed('src/**')", changed_files=changes)
    assert not holds("branch == 'dev' and changed('src/**')", changed_files=changes)
    assert changes.calls == 0


# --------------------------------------------------------------------------- operators


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("branch == 'main'", True),
        ('branch == "main"', True),
        ("'main' == branch", True),
        ("branch != 'main'", False),
        ("branch == 'Main'", False),
        ("branch != 'dev'", True),
        ("tag == null", True),
        ("tag != null", False),
        ("null == null", True),
        ("null == ''", False),
        ("'' == null", False),
        ("null != ''", True),
        ("env.EMPTY == ''", True),
        ("env.EMPTY == null", False),
        ("env.UNSET == null", True),
        ("env.UNSET == ''", False),
        ("true == true", True),
        ("true == false", False),
        ("true != false", True),
        ("true == 'true'", True),
        ("false == 'false'", True),
        ("env.CI == true", True),
        ("env.FLAG == false", True),
        ("env.CI == 'TRUE'", False),
        ("true == null", False),
        ("branch in ('main', 'next')", True),
        ("branch in ['dev']", False),
        ("branch in ('dev', 'main',)", True),
        ("branch in ()", False),
        ("branch not in ('dev',)", True),
        ("branch not in ['main']", False),
        ("branch not in []", True),
        ("tag in (null)", True),
        ("tag in ('v1', null)", True),
        ("tag in ('', 'v1')", False),
        ("env.CI in (true)", True),
        ("env.EMPTY in ('', null)", True),
        ("changed('src/**') == true", True),
        ("changed('src/**') in (true)", True),
    ],
)
def test_operators(source: str, expected: bool) -> None:
    assert holds(source) is expected


# --------------------------------------------------------------------------- functions


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("startswith(branch, 'ma')", True),
        ("startswith(branch, 'in')", False),
        ("startswith(branch, '')", True),
        ("startswith(tag, '')", False),
        ("startswith(branch, tag)", False),
        ("endswith(branch, 'in')", True),
        ("endswith(branch, 'ma')", False),
        ("endswith(env.UNSET, '')", False),
        ("contains(branch, 'ai')", True),
        ("contains(branch, 'x')", False),
        ("contains(env.HOME, '/home/')", True),
        ("contains(true, 'ru')", True),
        ("contains(null, 'x')", False),
        ("matches(branch, 'ma.*')", True),
        ("matches(branch, 'ma')", False),
        ("matches(branch, 'ai')", False),
        ("matches(tag, '.*')", False),
        ("matches(needs.build.outputs.version, '[0-9]+[.][0-9]+[.][0-9]+')", True),
        ("matches(needs.build.outputs.version, '\\d+\\.\\d+\\.\\d+')", True),
        ("matches(needs.build.outputs.version, '\\\\d+.*')", True),
        ("matches(matrix.python, '3\\.1[0-9]')", True),
        ("matches(branch, vars.BRANCHES)", True),
        ("matches('next', vars.BRANCHES)", True),
        ("matches('dev', vars.BRANCHES)", False),
        ("matches(branch, vars.UNSET)", False),
        ("startswith(branch, 'ma') and not endswith(branch, 'x')", True),
        ("contains(vars.REGION, 'e') or changed('nothing/**')", True),
        ("changed('src/**')", True),
        ("changed('docs/**')", True),
        ("changed('tests/**')", False),
        ("changed('tests/**', 'docs/*.md')", True),
        ("changed('*.py')", False),
        ("changed('**/*.py')", True),
    ],
)
def test_functions(source: str, expected: bool) -> None:
    assert holds(source) is expected


def test_a_regex_from_a_variable_that_does_not_compile_is_reported_with_its_column() -> None:
    expression = parse("matches(branch, vars.BAD)")
    with pytest.raises(ExpressionError) as caught:
        expression.evaluate(context())
    assert caught.value.column == 17
    assert "vars.BAD" in caught.value.message
    assert "not a valid regular expression" in caught.value.message


# --------------------------------------------------------------------------- strings


@pytest.mark.parametrize(
    ("source", "text"),
    [
        ("'main'", "main"),
        ('"main"', "main"),
        ("''", ""),
        ('""', ""),
        ("'it\\'s'", "it's"),
        ('"say \\"hi\\""', 'say "hi"'),
        ("'say \"hi\"'", 'say "hi"'),
        ('"it\'s"', "it's"),
        ("'a\\\"b'", 'a"b'),
        ("'back\\\\slash'", "back\\slash"),
        ("'\\\\'", "\\"),
        ("'v\\d+'", "v\\d+"),
        ("'tab\\t'", "tab\\t"),
        ("'spaces  and\ttabs'", "spaces  and\ttabs"),
        ("'données ✓'", "données ✓"),
        ("'and or not in null'", "and or not in null"),
    ],
)
def test_string_literals_and_their_escapes(source: str, text: str) -> None:
    assert parse(source).root == Constant(text, 1)


# --------------------------------------------------------------------------- names and truthiness


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("branch", True),
        ("tag", False),
        ("event", True),
        ("commit", True),
        ("env.HOME", True),
        ("env.EMPTY", False),
        ("env.UNSET", False),
        ("env.FLAG", True),
        ("''", False),
        ("'x'", True),
        ("'false'", True),
        ("null", False),
        ("true", True),
        ("false", False),
        ("not tag", True),
        ("not env.EMPTY", True),
        ("needs.build", False),
        ("needs.build.result", True),
        ("needs.build.result == 'passed'", True),
        ("needs.missing.result", False),
        ("needs.build.outputs.version != ''", True),
        ("needs.build.outputs.version == '1.2.3'", True),
        ("needs.build.outputs.empty != ''", False),
        ("needs.build.outputs.version.major == null", True),
        ("needs.web.v2.outputs.url == 'https://example.com'", True),
        ("matrix.python == '3.12'", True),
        ("matrix.os != 'windows'", True),
        ("matrix.missing == null", True),
        ("vars.REGION == 'eu'", True),
        ("event == 'push'", True),
        ("commit == 'abc123'", True),
        ("startswith(commit, 'abc')", True),
    ],
)
def test_names_and_truthiness(source: str, expected: bool) -> None:
    assert holds(source) is expected


def test_tag_is_null_on_a_branch_and_set_on_a_tag() -> None:
    assert holds("tag == null and branch == 'main'")
    assert holds("tag == 'v1.0.0' and branch == null", tag="v1.0.0", branch=None)
    assert holds("matches(tag, 'v[0-9]+(\\.[0-9]+){2}')", tag="v1.0.0")


def test_context_lookup_resolves_dotted_names() -> None:
    ctx = context()
    assert ctx.lookup("branch") == "main"
    assert ctx.lookup("branch.name") is None
    assert ctx.lookup("env.HOME") == "/home/ada"
    assert ctx.lookup("needs.build.outputs.version") == "1.2.3"
    assert ctx.lookup("needs.web.v2.outputs.url") == "https://example.com"
    assert ctx.lookup("needs.build") is None
    assert ctx.lookup("nothing.here") is None


@pytest.mark.parametrize(
    ("source", "names"),
    [
        ("branch == 'main' or changed('src/**')", {"branch"}),
        ("true", set()),
        (
            "env.HOME and needs.build.outputs.version and not matrix.python in ('3.11')",
            {"env.HOME", "needs.build.outputs.version", "matrix.python"},
        ),
        ("contains(vars.A, tag) or matches(event, vars.B)", {"vars.A", "tag", "event", "vars.B"}),
        ("branch == 'a' or branch == 'b'", {"branch"}),
    ],
)
def test_names_lists_the_dotted_names_referenced(source: str, names: set[str]) -> None:
    assert parse(source).names() == frozenset(names)


@pytest.mark.parametrize(
    ("source", "uses"),
    [
        ("changed('src/**')", True),
        ("branch == 'main' or changed('src/**')", True),
        ("not (tag and changed('docs/'))", True),
        ("branch == 'main'", False),
        ("'changed(x)' == branch", False),
    ],
)
def test_uses_changed(source: str, uses: bool) -> None:
    assert parse(source).uses_changed() is uses


def test_expression_keeps_its_source_and_is_immutable() -> None:
    expression = parse("tag != null")
    assert expression.source == "tag != null"
    assert str(expression) == "tag != null"
    assert expression == parse("tag != null")
    with pytest.raises(dataclasses.FrozenInstanceError):
        expression.source = "true"  # type: ignore[misc]


# --------------------------------------------------------------------------- changed files


def test_changed_files_are_computed_at_most_once_per_context() -> None:
    changes = CountingChanges()
    ctx = context(changed_files=changes)
    assert parse("changed('src/**') and changed('docs/**')").evaluate(ctx)
    assert not parse("changed('tests/**')").evaluate(ctx)
    assert changes.calls == 1


def test_changed_files_are_not_computed_when_unused() -> None:
    changes = CountingChanges()
    ctx = context(changed_files=changes)
    assert parse("branch == 'main' and env.CI == 'true'").evaluate(ctx)
    assert changes.calls == 0


def test_a_new_context_computes_changed_files_again() -> None:
    changes = CountingChanges()
    first = context(changed_files=changes)
    second = dataclasses.replace(first, matrix={"python": "3.11"})
    parse("changed('src/**')").evaluate(first)
    parse("changed('src/**')").evaluate(second)
    assert changes.calls == 2


def test_unknown_changed_files_make_every_changed_true() -> None:
    assert holds("changed('nothing/**')", changed_files=None)
    assert context(changed_files=None).changed_paths() is None


def test_no_changed_files_make_changed_false() -> None:
    assert not holds("changed('**')", changed_files=list)


def test_changed_files_are_normalised() -> None:
    files = ["./src/app.py", "docs//index.md", "/etc/passwd", "../outside"]
    ctx = context(changed_files=lambda: files)
    assert ctx.changed_paths() == ("src/app.py", "docs/index.md")
    assert parse("changed('src/*.py') and changed('docs/index.md')").evaluate(ctx)
    assert not parse("changed('etc/**', '**/outside')").evaluate(ctx)


# --------------------------------------------------------------------------- globs


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("src/**", "src/a.py", True),
        ("src/**", "src/x/y/z.py", True),
        ("src/**", "src", False),
        ("src/**", "srcx/a.py", False),
        ("src/**", "lib/src/a.py", False),
        ("**/*.py", "a.py", True),
        ("**/*.py", "d/a.py", True),
        ("**/*.py", "d/e/f/a.py", True),
        ("**/*.py", "a.pyc", False),
        ("**/*.py", "d/a.py/readme", False),
        ("*.py", "a.py", True),
        ("*.py", "d/a.py", False),
        ("src/*.py", "src/a.py", True),
        ("src/*.py", "src/x/a.py", False),
        ("src/*", "src/a", True),
        ("src/*", "src/a/b", False),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/b", True),
        ("a/**/b", "a/x/y/b", True),
        ("a/**/b", "a/xb", False),
        ("a/**/b", "ab", False),
        ("a/**/b", "a/b/c", False),
        ("a/**/b/**", "a/x/b/c", True),
        ("a/**/**/b", "a/b", True),
        ("**/**/x", "x", True),
        ("**/test_*.py", "tests/ci/test_expressions.py", True),
        ("**/tests/**", "tests/a.py", True),
        ("**/tests/**", "pkg/tests/sub/a.py", True),
        ("**/tests/**", "pkg/tests", False),
        ("**", "anything/at/all.txt", True),
        ("**", "a", True),
        ("docs/", "docs/index.md", True),
        ("docs/", "docs/a/b.md", True),
        ("docs/", "docs", False),
        ("docs/", "docsx/a.md", False),
        ("./src/*.py", "src/a.py", True),
        ("././src/*.py", "src/a.py", True),
        ("src/*.py", "./src/a.py", True),
        (".//src//a.py", "src/a.py", True),
        ("src/./a.py", "src/a.py", True),
        ("src/a.py", "src/./a.py", True),
        (".", "a/b", True),
        ("./", "a/b", True),
        ("?.py", "a.py", True),
        ("?.py", "ab.py", False),
        ("?.py", ".py", False),
        ("a?b", "a/b", False),
        ("[abc].txt", "b.txt", True),
        ("[abc].txt", "d.txt", False),
        ("[a-c].txt", "b.txt", True),
        ("[a-c].txt", "B.txt", False),
        ("[!a-c].txt", "d.txt", True),
        ("[!a-c].txt", "a.txt", False),
        ("[^a].txt", "b.txt", True),
        ("[^a].txt", "a.txt", False),
        ("[]].txt", "].txt", True),
        ("[!]].txt", "a.txt", True),
        ("[a-].txt", "-.txt", True),
        ("[\\]]x", "]x", True),
        ("a[+-0]b", "a.b", True),
        ("a[+-0]b", "a/b", False),
        ("a[!x]b", "a/b", False),
        ("a+b(c).txt", "a+b(c).txt", True),
        ("a.b", "axb", False),
        ("$x^|y", "$x^|y", True),
        ("{a,b}.txt", "{a,b}.txt", True),
        ("{a,b}.txt", "a.txt", False),
        ("\\*.txt", "*.txt", True),
        ("\\*.txt", "a.txt", False),
        ("\\?", "?", True),
        ("*", ".env", True),
        ("*.md", ".md", True),
        ("**/*.yml", ".github/workflows/ci.yml", True),
        (".github/**", ".github/workflows/ci.yml", True),
        (".*", ".env", True),
        (".*", "env", False),
        ("*/a.py", "a.py", False),
        ("*/a.py", "x/a.py", True),
        ("SRC/**", "src/a.py", False),
        ("**", "../etc/passwd", False),
        ("src/**", "src/../etc/passwd", False),
        ("**", "/etc/passwd", False),
        ("**", "", False),
        ("données/*.csv", "données/a.csv", True),
        ("a b/*", "a b/c d", True),
        ("*", "line\nbreak", True),
        ("*.py", "a.py\n", False),
    ],
)
def test_path_matches(pattern: str, path: str, expected: bool) -> None:
    assert path_matches(path, pattern) is expected


def test_glob_regex_is_anchored_so_any_match_method_agrees() -> None:
    regex = glob_to_regex("src/*.py")
    assert regex.search("lib/src/a.py") is None
    assert regex.match("src/a.pyc") is None
    assert regex.match("src/a.py") is not None
    assert glob_to_regex("src/*.py") is regex


@pytest.mark.parametrize(
    ("pattern", "column", "fragment"),
    [
        ("", 1, "empty"),
        ("/src/**", 1, "relative to the repository root"),
        ("src/../x", 5, "outside the repository"),
        ("a**", 2, "whole path segment"),
        ("src/**.py", 5, "whole path segment"),
        ("src/a**b", 6, "whole path segment"),
        ("[abc", 1, "never closed"),
        ("x/[abc", 3, "never closed"),
        ("[]", 1, "never closed"),
        ("[z-a]", 2, "the range 'z-a' is empty"),
        ("a\\", 2, "'\\' must be followed"),
    ],
)
def test_bad_globs_say_where(pattern: str, column: int, fragment: str) -> None:
    with pytest.raises(GlobError) as caught:
        glob_to_regex(pattern)
    assert caught.value.column == column
    assert caught.value.pattern == pattern
    assert fragment in caught.value.message
    assert isinstance(caught.value, UserError)


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("a/b", "a/b"),
        ("./a/b", "a/b"),
        ("a//b/", "a/b"),
        ("a/./b", "a/b"),
        ("/a/b", None),
        ("a/../b", None),
        ("", None),
        (".", None),
    ],
)
def test_normalize_path(path: str, normal: str | None) -> None:
    assert normalize_path(path) == normal


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("source", "column", "message"),
    [
        (
            "(branch == 'main'",
            18,
            "expected ')' to close the '(' at column 1, found end of expression",
        ),
        (
            "branch == 'main' and (tag",
            26,
            "expected ')' to close the '(' at column 22, found end of expression",
        ),
        (
            "(branch == 'main' tag)",
            19,
            "expected ')' to close the '(' at column 1, found the name 'tag'",
        ),
        ("branch == 'main", 11, "unterminated string: the ' at column 11 is never closed"),
        ('branch == "main', 11, 'unterminated string: the " at column 11 is never closed'),
        ("branch == 'it\\'", 11, "unterminated string"),
        ("branch == 'main' and", 21, "expected a value after 'and', found end of expression"),
        ("branch == 'main' or", 20, "expected a value after 'or', found end of expression"),
        ("branch ==", 10, "expected a value after '==', found end of expression"),
        ("branch != and tag", 11, "expected a value after '!=', found 'and'"),
        ("== 'main'", 1, "expected a value, found '=='"),
        ("branch or or tag", 11, "expected a value after 'or', found 'or'"),
        ("not", 4, "expected a value after 'not', found end of expression"),
        ("()", 2, "expected a value after '(', found ')'"),
        ("brnach == 'main'", 1, "unknown name 'brnach' (did you mean 'branch'?)"),
        ("tag == 'v1' and evnt == 'push'", 17, "unknown name 'evnt' (did you mean 'event'?)"),
        ("env.HOME == 'x' and enf.PATH", 21, "unknown name 'enf' (did you mean 'env'?)"),
        ("branch == main", 11, "unknown name 'main'"),
        ("True", 1, "unknown name 'True' (did you mean 'true'?)"),
        ("tag == None", 8, "unknown name 'None' (did you mean 'null'?)"),
        ("branch == 'a' AND tag", 15, "unknown word 'AND' (did you mean 'and'?)"),
        ("chnaged('src/**')", 1, "unknown function 'chnaged' (did you mean 'changed'?)"),
        ("startwith(branch, 'a')", 1, "unknown function 'startwith' (did you mean 'startswith'?)"),
        ("__import__('os')", 1, "unknown function '__import__'"),
        ("env.HOME('x')", 1, "'env.HOME' is not a function"),
        ("branch('x')", 1, "'branch' is not a function"),
        ("changed", 1, "'changed' is a function and needs arguments"),
        ("env", 1, "'env' needs a field after it"),
        ("env.A.B == 'x'", 1, "'env.A.B' has too many parts: env takes one name"),
        ("branch.name", 1, "'branch' is a plain value and has no fields"),
        ("env. == 'x'", 5, "expected a name after the '.' of 'env.'"),
        ("matches(tag, 'v[0-9')", 14, "invalid regular expression 'v[0-9': missing ]"),
        ("matches(tag, 'a{1001}')", 14, "invalid regular expression 'a{1001}': invalid repetition"),
        ("matches(tag, '(a)\\1')", 14, r"invalid regular expression '(a)\\1': invalid escape"),
        (
            "matches(tag, 'v(?=1)')",
            14,
            "invalid regular expression 'v(?=1)': invalid perl operator",
        ),
        ("matches(tag, null)", 14, "matches() needs a regular expression written as a quoted"),
        ("changed()", 1, "changed() needs at least one glob"),
        ("changed(branch)", 9, "changed() takes globs written as quoted strings"),
        ("changed('src/**', true)", 19, "changed() takes globs written as quoted strings"),
        ("changed('src/**.py')", 9, "invalid glob 'src/**.py': '**' must be a whole path"),
        ("changed('/src')", 9, "invalid glob '/src': patterns are relative"),
        (
            "changed('src/**'",
            17,
            "expected ',' or ')' to close the '(' of changed( at column 8, found end of expression",
        ),
        ("changed(,)", 9, "expected a value after '(', found ','"),
        ("startswith(branch)", 1, "startswith() takes 2 arguments, got 1"),
        ("endswith(branch, 'a', 'b')", 23, "endswith() takes 2 arguments, got 3"),
        ("contains()", 1, "contains() takes 2 arguments, got 0"),
        ("branch = 'main'", 8, "'=' is not an operator"),
        ("branch == 'a' && tag", 15, "'&&' is not an operator"),
        ("branch == 'a' || tag", 15, "'||' is not an operator"),
        ("!tag", 1, "'!' is not an operator"),
        ("branch < 'b'", 8, "only '==' and '!=' compare"),
        ("matrix.python == 3.12", 18, "numbers are not values here: 3.12"),
        ("tag == 'v1' @", 13, "unexpected character '@'"),
        ("tag == 'v1' \x00", 13, "unexpected character '\\x00' (U+0000)"),
        (
            "branch == 'a' 'b'",
            15,
            "expected 'and', 'or' or end of expression, found the string 'b'",
        ),
        ("branch tag", 8, "expected 'and', 'or' or end of expression, found the name 'tag'"),
        ("branch)", 7, "unmatched ')'"),
        ("branch == 'a' == 'b'", 15, "comparisons cannot be chained: unexpected '=='"),
        ("(branch == 'a' != 'b')", 16, "comparisons cannot be chained"),
        ("branch in ('a') in ('b')", 17, "comparisons cannot be chained"),
        ("branch == not tag", 11, "expected a value after '==', found 'not'"),
        ("branch in 'main'", 11, "expected a list after 'in', found the string 'main'"),
        ("branch in tag", 11, "expected a list after 'in', found the name 'tag'"),
        (
            "branch in ('a' 'b')",
            16,
            "expected ',' or ')' to close the '(' at column 11, found the string 'b'",
        ),
        (
            "branch in ['a'",
            15,
            "expected ',' or ']' to close the '[' at column 11, found end of expression",
        ),
        ("branch in ('a', tag)", 17, "a list after 'in' holds only quoted strings"),
        ("", 1, "the expression is empty"),
        ("   ", 1, "the expression is empty"),
    ],
)
def test_syntax_errors_say_what_and_where(source: str, column: int, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse(source)
    error = caught.value
    assert error.message.startswith(message)
    assert error.column == column
    assert error.source == source


def test_unknown_bare_names_suggest_quoting_them() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse("branch == main")
    assert caught.value.hint is not None
    assert "quote it: 'main'" in caught.value.hint


def test_nesting_is_limited() -> None:
    deepest = "(" * MAX_DEPTH + "true" + ")" * MAX_DEPTH
    assert holds(deepest)
    assert holds("not " * MAX_DEPTH + "false") is (MAX_DEPTH % 2 == 1)
    too_deep = [
        ("(" * (MAX_DEPTH + 1) + "true" + ")" * (MAX_DEPTH + 1), MAX_DEPTH + 1),
        ("not " * (MAX_DEPTH + 1) + "true", 4 * MAX_DEPTH + 1),
        ("contains(" * (MAX_DEPTH + 1) + "'a', 'b')" * (MAX_DEPTH + 1), 9 * MAX_DEPTH + 9),
    ]
    for source, column in too_deep:
        with pytest.raises(ExpressionError) as caught:
            parse(source)
        assert caught.value.message == f"the expression nests more than {MAX_DEPTH} levels deep"
        assert caught.value.column == column


def test_length_is_limited() -> None:
    longest = "'" + "a" * (MAX_LENGTH - 2) + "'"
    assert holds(longest)
    with pytest.raises(ExpressionError) as caught:
        parse(longest + " ")
    assert caught.value.message == (
        f"the expression is {MAX_LENGTH + 1} characters long; the limit is {MAX_LENGTH}"
    )
    assert caught.value.column == MAX_LENGTH + 1


def test_expression_errors_are_configuration_errors() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse("branch ==")
    assert isinstance(caught.value, ConfigError)
    assert isinstance(caught.value, UserError)


def test_an_error_shows_the_expression_with_a_caret_under_the_column() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse("branch == 'main' and (tag")
    assert str(caught.value) == (
        "expected ')' to close the '(' at column 22, found end of expression (column 26)\n"
        "  branch == 'main' and (tag\n"
        "                           ^"
    )


def test_an_error_shows_its_hint() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse("chnaged('src/**')")
    assert str(caught.value).splitlines() == [
        "unknown function 'chnaged' (did you mean 'changed'?) (column 1)",
        "  chnaged('src/**')",
        "  ^",
        "  hint: functions are changed, startswith, endswith, contains, matches",
    ]


@pytest.mark.parametrize("prefix", [0, 10, 50, 200])
def test_the_caret_of_a_long_expression_points_at_the_offending_token(prefix: int) -> None:
    source = "branch == 'x' or " * prefix + "brnach == 'y'" + " or tag == 'z'" * 20
    with pytest.raises(ExpressionError) as caught:
        parse(source)
    _, shown, caret, *_ = str(caught.value).splitlines()
    assert len(shown) <= 80
    assert shown[caret.index("^") :].startswith("brnach")


def test_line_breaks_in_a_multi_line_expression_count_as_one_column() -> None:
    source = "branch == 'main'\n  and brnach"
    with pytest.raises(ExpressionError) as caught:
        parse(source)
    assert caught.value.column == 24
    _, shown, caret, *_ = str(caught.value).splitlines()
    assert shown[caret.index("^") :] == "brnach"


# --------------------------------------------------------------------------- robustness

_PIECES = (
    "(", ")", "[", "]", ",", "==", "!=", "=", "!", "&&", "|", "<", ".", "and", "or", "not",
    "in", "true", "false", "null", "None", "branch", "tag", "event", "commit", "env.HOME",
    "env", "env.", "matrix.python", "needs.build.outputs.version", "vars.BAD", "brnach",
    "changed", "matches", "startswith", "endswith", "contains", "chnaged", "'src/**'",
    "'**/*.py'", "'['", "'[a-'", "'a**'", "'/x'", "''", "'\\''", "'\\\\'", "\"", "'", "\\",
    "3.12", "-1", "é", "\x00", "\n", " ", "**", "'v\\d+'", "'(' ", "'(?P<'",
)  # fmt: skip


def _parse_or_fail_cleanly(source: str) -> None:
    """Parsing gives an Expression or an ExpressionError, and evaluating gives a bool."""
    try:
        expression = parse(source)
    except ExpressionError as error:
        assert 1 <= error.column <= len(source) + 1
        assert error.source == source
        str(error)
        return
    assert isinstance(expression, Expression)
    expression.names()
    expression.uses_changed()
    try:
        result = expression.evaluate(context())
    except ExpressionError as error:
        assert 1 <= error.column <= len(source)
        return
    assert isinstance(result, bool)


def _soup(rng: random.Random, joiner: str) -> str:
    return joiner.join(rng.choice(_PIECES) for _ in range(rng.randint(0, 12)))


def test_parse_fails_only_with_expression_errors_on_random_token_soup() -> None:
    rng = random.Random(20240601)
    for _ in range(3000):
        _parse_or_fail_cleanly(_soup(rng, rng.choice(("", " "))))


def test_parse_fails_only_with_expression_errors_on_random_characters() -> None:
    rng = random.Random(7)
    alphabet = "()[],=!'\"\\. abnotrueflsxhgc*?/-_0123456789\t\n\x00é"
    for _ in range(3000):
        _parse_or_fail_cleanly("".join(rng.choices(alphabet, k=rng.randint(0, 30))))


def _given_text(check: Callable[[str], None]) -> None:
    hypothesis = pytest.importorskip("hypothesis")
    strategies = hypothesis.strategies
    sources = strategies.one_of(
        strategies.text(max_size=120),
        strategies.lists(strategies.sampled_from(_PIECES), max_size=16).map(" ".join),
        strategies.lists(strategies.sampled_from(_PIECES), max_size=16).map("".join),
    )
    hypothesis.settings(max_examples=1500, deadline=None)(hypothesis.given(sources)(check))()


def test_parse_fails_only_with_expression_errors_on_any_text() -> None:
    _given_text(_parse_or_fail_cleanly)


# --------------------------------------------------------------------------- the documentation

DOCS = Path(__file__).resolve().parents[2] / "docs" / "expressions.md"


def _section(title: str) -> str:
    text = DOCS.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_every_documented_example_parses_and_evaluates() -> None:
    rows = re.findall(r"^\| `([^`]+)` \|", _section("Examples"), flags=re.MULTILINE)
    assert len(rows) >= 4
    for source in rows:
        assert isinstance(parse(source).evaluate(context()), bool), source


def test_documented_errors_are_the_errors_shown() -> None:
    blocks = re.findall(r"```text\n(.*?)\n```", _section("How errors look"), flags=re.DOTALL)
    assert len(blocks) >= 3
    for block in blocks:
        source = block.splitlines()[1].removeprefix("  ")
        with pytest.raises(ExpressionError) as caught:
            parse(source)
        assert str(caught.value) == block
