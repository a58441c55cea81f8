"""The ``if`` expressions of CI jobs, and the repository path globs that ``changed()`` uses.

Parsed by hand into an immutable tree and never ``eval``-ed; this module must not read files or
run git: the scheduler hands the changed files in through :class:`ExpressionContext`. Regular
expressions run on RE2, whose time is linear in the text whatever the pattern, and globs are
compiled so that they never backtrack through every split of a path: no ``if`` can hang a run.
"""

from __future__ import annotations

import difflib
import functools
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from string import ascii_letters, digits
from typing import Literal, TypeAlias

import re2  # type: ignore[import-untyped]

from shipyard.core.errors import ConfigError

MAX_LENGTH = 4096
"""The longest expression accepted, in characters."""

MAX_DEPTH = 64
"""How deeply parentheses, function calls and ``not`` may nest."""

PLAIN_NAMES = ("branch", "tag", "event", "commit")
"""Names that stand for one value and have no fields."""

DOTTED_ROOTS = ("env", "matrix", "needs", "vars")
"""Names whose fields are reached with a dot, as in ``env.HOME``."""

FUNCTIONS = ("changed", "startswith", "endswith", "contains", "matches")
"""The functions an expression may call."""

KEYWORDS = ("and", "or", "not", "in", "true", "false", "null")
"""Words with a meaning of their own; they cannot be used as names."""

Value: TypeAlias = str | bool | None
"""What an expression or a part of one evaluates to."""

NestedText: TypeAlias = Mapping[str, "str | NestedText"]
"""Text values in nested mappings, as under ``needs``: job → ``outputs`` → name → text."""


class GlobError(ConfigError):
    """A path glob is malformed; ``column`` is the 1-based position in ``pattern``."""

    def __init__(self, message: str, pattern: str, column: int, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.pattern = pattern
        self.column = column

    def __str__(self) -> str:
        text = f"invalid glob {_shown(self.pattern)} at column {self.column}: {self.message}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class ExpressionError(ConfigError):
    """An ``if`` expression is malformed or cannot be evaluated; ``column`` is 1-based."""

    def __init__(self, message: str, column: int, source: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.column = column
        self.source = source

    def __str__(self) -> str:
        shown, caret = _snippet(self.source, self.column)
        text = f"{self.message} (column {self.column})\n  {shown}\n  {' ' * caret}^"
        return f"{text}\n  hint: {self.hint}" if self.hint else text


# --------------------------------------------------------------------------- patterns


class TextPattern:
    """A compiled regular expression in RE2 syntax: matching takes time linear in the text.

    Unlike Python's ``re`` it has no backreferences or lookaround, and so no pattern that
    backtracks for ever (``(a+)+$``). Text that is not valid Unicode (a file name or variable
    in another encoding) is matched with its undecodable bytes as U+FFFD.
    """

    __slots__ = ("_compiled", "pattern")

    def __init__(self, pattern: str) -> None:
        """Compile ``pattern``; :class:`RegexSyntaxError` says why it is not valid."""
        self.pattern = pattern
        try:
            self._compiled = re2.compile(_valid_text(pattern), options=_RE2_OPTIONS)
        except re2.error as error:
            raise RegexSyntaxError(_re2_message(error)) from None

    def match(self, text: str) -> object | None:
        """A match at the start of ``text``, or None."""
        found: object | None = self._compiled.match(_valid_text(text))
        return found

    def search(self, text: str) -> object | None:
        """A match anywhere in ``text``, or None."""
        found: object | None = self._compiled.search(_valid_text(text))
        return found

    def fullmatch(self, text: str) -> object | None:
        """A match of the whole of ``text``, or None."""
        found: object | None = self._compiled.fullmatch(_valid_text(text))
        return found

    def __repr__(self) -> str:
        return f"TextPattern({self.pattern!r})"


class RegexSyntaxError(ConfigError):
    """A regular expression is not valid RE2 syntax; the message says why."""


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error is reported to the user, not on stderr


def _valid_text(text: str) -> str:
    """``text`` as RE2 can take it: lone surrogates (undecodable bytes) become U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def _re2_message(error: Exception) -> str:
    detail = error.args[0] if error.args else str(error)
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    return str(detail)


# --------------------------------------------------------------------------- path globs


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a repository path glob to an anchored regex over normalised '/' paths (no
    empty segments, as :func:`normalize_path` gives).

    Matching takes time polynomial of low degree whatever the glob: the part between two
    wildcards is matched at its first place in an atomic group (as fnmatch does), so
    ``*a*a*a*b`` or ``**/a/**/a/**/b`` never backtracks through every way to split a path.
    """
    return _compiled_glob(pattern)


def path_matches(path: str, pattern: str) -> bool:
    """Whether the repository-relative ``path`` matches the glob ``pattern``."""
    normal = normalize_path(path)
    return normal is not None and glob_to_regex(pattern).match(normal) is not None


def normalize_path(path: str) -> str | None:
    """``path`` without ``./`` and empty segments; None if it is absolute or uses ``..``."""
    if path.startswith("/"):
        return None
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts or not parts:
        return None
    return "/".join(parts)


@functools.lru_cache(maxsize=1024)
def _compiled_glob(pattern: str) -> re.Pattern[str]:
    if not pattern:
        raise GlobError("the pattern is empty", pattern, 1, hint="write a path such as 'src/**'")
    if pattern.startswith("/"):
        raise GlobError(
            "patterns are relative to the repository root",
            pattern,
            1,
            hint=f"drop the leading '/': {pattern.lstrip('/') or '**'!r}",
        )
    segments = list(_glob_segments(pattern))
    if not segments:
        segments = [("**", 1)]
    parts: list[str] = []
    index = 0
    while index < len(segments):
        segment, column = segments[index]
        last = index == len(segments) - 1
        if segment != "**":
            parts.append(_segment_regex(segment, pattern, column) + ("" if last else "/"))
            index += 1
            continue
        if last:
            parts.append("[^/]+(?:/[^/]+)*")  # one or more segments at the end
            break
        # Zero or more segments, then the fixed segments up to the next '**': if another
        # '**' follows, their first place is as good as any and is taken for good.
        following = index + 1
        fixed: list[str] = []
        while following < len(segments) and segments[following][0] != "**":
            text, at = segments[following]
            ends = following == len(segments) - 1
            fixed.append(_segment_regex(text, pattern, at) + ("" if ends else "/"))
            following += 1
        if following < len(segments):
            parts.append("(?>(?:[^/]+/)*?" + "".join(fixed) + ")")
        else:
            parts.append("(?:[^/]+/)*" + "".join(fixed))
        index = following
    return re.compile(r"\A(?:" + "".join(parts) + r")\Z", re.DOTALL)


def _glob_segments(pattern: str) -> Iterator[tuple[str, int]]:
    """The segments of ``pattern`` with their 1-based columns; '**' runs collapse into one."""
    start = 0
    previous = ""
    pieces = pattern.split("/")
    for index, piece in enumerate(pieces):
        column = start + 1
        start += len(piece) + 1
        trailing_slash = index == len(pieces) - 1 and piece == "" and index > 0
        if trailing_slash:
            piece = "**"
        elif piece in ("", "."):
            continue
        elif piece == "..":
            raise GlobError(
                "'..' would reach outside the repository",
                pattern,
                column,
                hint="write the path from the repository root",
            )
        if piece == "**" and previous == "**":
            continue
        previous = piece
        yield piece, column


def _segment_regex(segment: str, pattern: str, column: int) -> str:
    if segment == "*":
        return "[^/]+"  # a segment is never empty; any other segment has a character to match
    chunks: list[list[str]] = [[]]  # what lies between the '*'s, one regex per character
    index = 0
    while index < len(segment):
        char = segment[index]
        if char == "*":
            if segment[index + 1 : index + 2] == "*":
                raise GlobError(
                    "'**' must be a whole path segment",
                    pattern,
                    column + index,
                    hint="write 'src/**/*.py' for .py files at any depth under src",
                )
            chunks.append([])
            index += 1
        elif char == "?":
            chunks[-1].append("[^/]")
            index += 1
        elif char == "[":
            text, index = _class_regex(segment, index, pattern, column)
            chunks[-1].append(text)
        elif char == "\\":
            if index + 1 == len(segment):
                raise GlobError(
                    "a '\\' must be followed by the character it escapes",
                    pattern,
                    column + index,
                )
            chunks[-1].append(_literal(segment[index + 1]))
            index += 2
        else:
            chunks[-1].append(_literal(char))
            index += 1
    texts = ["".join(chunk) for chunk in chunks]
    if len(texts) == 1:
        return texts[0]
    first, *middle, final = texts
    # A fixed part between two '*'s is taken at its first place for good (an atomic group);
    # only the last '*' may give characters back.
    return first + "".join(f"(?>[^/]*?{part})" for part in middle) + "[^/]*" + final


def _literal(char: str) -> str:
    """``char`` as a regex literal."""
    return re.escape(char)


def _class_regex(segment: str, start: int, pattern: str, column: int) -> tuple[str, int]:
    """The regex of the ``[...]`` class opening at ``start``, and the index after it."""
    index = start + 1
    negated = segment[index : index + 1] in ("!", "^")
    if negated:
        index += 1
    items: list[str] = []
    first = True
    while True:
        if index >= len(segment):
            raise GlobError(
                "'[' opens a character class that is never closed",
                pattern,
                column + start,
                hint="close it with ']', or write '\\[' for a literal '['",
            )
        char = segment[index]
        if char == "]" and not first:
            index += 1
            break
        first = False
        low, index = _class_char(segment, index)
        if segment[index : index + 1] == "-" and segment[index + 1 : index + 2] not in ("", "]"):
            range_start = index - 1
            high, index = _class_char(segment, index + 1)
            if low > high:
                raise GlobError(
                    f"the range '{low}-{high}' is empty",
                    pattern,
                    column + range_start,
                    hint=f"write '{high}-{low}'",
                )
            # A class never matches '/': a range across it is split around it.
            if low < "/" < high:
                items.append(f"{_literal(low)}-{_literal('.')}{_literal('0')}-{_literal(high)}")
            elif low == "/" or high == "/":
                low, high = ("0", high) if low == "/" else (low, ".")
                if low <= high:
                    items.append(f"{_literal(low)}-{_literal(high)}")
            else:
                items.append(f"{_literal(low)}-{_literal(high)}")
        elif low != "/":
            items.append(_literal(low))
    body = "".join(items)
    if negated:
        return f"[^/{body}]", index
    return (f"[{body}]" if body else "(?!)"), index


def _class_char(segment: str, index: int) -> tuple[str, int]:
    if segment[index] == "\\" and index + 1 < len(segment):
        return segment[index + 1], index + 2
    return segment[index], index + 1


# --------------------------------------------------------------------------- context


@dataclass(frozen=True, kw_only=True)
class ExpressionContext:
    """What an expression can see about the run: git refs, variables and the changed files.

    ``changed_files`` is called at most once per context, and only when an expression calls
    ``changed()``; None means the changed files are unknown (a first commit with no base),
    in which case every ``changed()`` is true because every file is new.
    """

    branch: str | None = None
    tag: str | None = None
    event: str
    commit: str
    env: Mapping[str, str] = field(default_factory=dict)
    matrix: Mapping[str, str] = field(default_factory=dict)
    needs: NestedText = field(default_factory=dict)
    vars: Mapping[str, str] = field(default_factory=dict)
    changed_files: Callable[[], Sequence[str]] | None = None
    _changed_cache: list[tuple[str, ...]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    def lookup(self, name: str) -> str | None:
        """The value of a dotted name such as ``env.HOME``; None when it is not set."""
        return self.lookup_path(tuple(name.split(".")))

    def lookup_path(self, path: Sequence[str]) -> str | None:
        """The value of a name given as its segments; None when it is not set."""
        if not path:
            return None
        root, rest = path[0], path[1:]
        if root in PLAIN_NAMES:
            value: str | None = getattr(self, root)
            return value if not rest else None
        if root in DOTTED_ROOTS:
            return _resolve(getattr(self, root), rest)
        return None

    def changed_paths(self) -> tuple[str, ...] | None:
        """The changed files, computed on first use; None when they are unknown."""
        if self.changed_files is None:
            return None
        if not self._changed_cache:
            found = (normalize_path(path) for path in self.changed_files())
            self._changed_cache.append(tuple(path for path in found if path is not None))
        return self._changed_cache[0]


def _resolve(mapping: NestedText, segments: Sequence[str]) -> str | None:
    """Follow ``segments`` through nested mappings; keys may contain dots (job ``web.v2``)."""
    node: str | NestedText = mapping
    index = 0
    while index < len(segments):
        if not isinstance(node, Mapping):
            return None
        for end in range(index + 1, len(segments) + 1):
            key = ".".join(segments[index:end])
            if key in node:
                node = node[key]
                index = end
                break
        else:
            return None
    return node if isinstance(node, str) else None


# --------------------------------------------------------------------------- the tree


def truthy(value: Value) -> bool:
    """Whether a value counts as true: null, false and '' do not; any other text does."""
    return bool(value)


def _text(value: str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _equal(left: Value, right: Value) -> bool:
    if left is None or right is None:
        return left is right
    return _text(left) == _text(right)


class _EvaluationProblem(Exception):
    """Raised by a node; :meth:`Expression.evaluate` adds the source and re-raises it."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


class Node(ABC):
    """One part of a parsed expression."""

    column: int

    @abstractmethod
    def value(self, context: ExpressionContext) -> Value:
        """Evaluate this part against ``context``."""

    def children(self) -> tuple[Node, ...]:
        """The parts directly inside this one."""
        return ()


@dataclass(frozen=True)
class Constant(Node):
    """A string literal, ``true``, ``false`` or ``null``."""

    literal: Value
    column: int

    def value(self, context: ExpressionContext) -> Value:
        """The literal itself."""
        return self.literal


@dataclass(frozen=True)
class Name(Node):
    """A name such as ``branch`` or ``needs.build.outputs.version``."""

    path: tuple[str, ...]
    column: int

    @property
    def dotted(self) -> str:
        """The name as written, segments joined by dots."""
        return ".".join(self.path)

    def value(self, context: ExpressionContext) -> Value:
        """The name's value in ``context``, or null when it is not set."""
        return context.lookup_path(self.path)


@dataclass(frozen=True)
class Not(Node):
    """``not operand``."""

    operand: Node
    column: int

    def value(self, context: ExpressionContext) -> Value:
        """True when the operand is not truthy."""
        return not truthy(self.operand.value(context))

    def children(self) -> tuple[Node, ...]:
        """The negated operand."""
        return (self.operand,)


@dataclass(frozen=True)
class And(Node):
    """``a and b and …``, evaluated left to right, stopping at the first false operand."""

    operands: tuple[Node, ...]
    column: int

    def value(self, context: ExpressionContext) -> Value:
        """True when every operand is truthy."""
        return all(truthy(operand.value(context)) for operand in self.operands)

    def children(self) -> tuple[Node, ...]:
        """The operands, in order."""
        return self.operands


@dataclass(frozen=True)
class Or(Node):
    """``a or b or …``, evaluated left to right, stopping at the first true operand."""

    operands: tuple[Node, ...]
    column: int

    def value(self, context: ExpressionContext) -> Value:
        """True when any operand is truthy."""
        return any(truthy(operand.value(context)) for operand in self.operands)

    def children(self) -> tuple[Node, ...]:
        """The operands, in order."""
        return self.operands


@dataclass(frozen=True)
class Comparison(Node):
    """``left == right`` or ``left != right``."""

    operator: Literal["==", "!="]
    left: Node
    right: Node
    column: int

    def value(self, context: ExpressionContext) -> Value:
        """Compare as text (true is 'true'); null equals only null."""
        same = _equal(self.left.value(context), self.right.value(context))
        return same if self.operator == "==" else not same

    def children(self) -> tuple[Node, ...]:
        """Both sides."""
        return (self.left, self.right)


@dataclass(frozen=True)
class Membership(Node):
    """``subject in (…)`` or ``subject not in (…)`` against a list of literals."""

    subject: Node
    options: tuple[Value, ...]
    negated: bool
    column: int

    def value(self, context: ExpressionContext) -> Value:
        """Whether the subject equals one of the options (or none, when negated)."""
        subject = self.subject.value(context)
        found = any(_equal(subject, option) for option in self.options)
        return not found if self.negated else found

    def children(self) -> tuple[Node, ...]:
        """The subject."""
        return (self.subject,)


@dataclass(frozen=True)
class Changed(Node):
    """``changed('glob', …)``: true when any changed file matches any of the globs."""

    patterns: tuple[str, ...]
    column: int
    regexes: tuple[re.Pattern[str], ...] = field(repr=False, compare=False)

    def value(self, context: ExpressionContext) -> Value:
        """Match the changed files; true when they are unknown."""
        paths = context.changed_paths()
        if paths is None:
            return True
        return any(regex.match(path) for path in paths for regex in self.regexes)


@dataclass(frozen=True)
class TextTest(Node):
    """``startswith(a, b)``, ``endswith(a, b)`` or ``contains(a, b)``; false if either is null."""

    function: Literal["startswith", "endswith", "contains"]
    subject: Node
    argument: Node
    column: int

    def value(self, context: ExpressionContext) -> Value:
        """Test the subject's text against the argument's."""
        subject = self.subject.value(context)
        argument = self.argument.value(context)
        if subject is None or argument is None:
            return False
        text, part = _text(subject), _text(argument)
        if self.function == "startswith":
            return text.startswith(part)
        if self.function == "endswith":
            return text.endswith(part)
        return part in text

    def children(self) -> tuple[Node, ...]:
        """Both arguments."""
        return (self.subject, self.argument)


@dataclass(frozen=True)
class Matches(Node):
    """``matches(a, 'regex')``: the whole of ``a`` matches; false if either is null."""

    subject: Node
    pattern: Node
    column: int
    compiled: TextPattern | None = field(default=None, repr=False, compare=False)

    def value(self, context: ExpressionContext) -> Value:
        """Full-match the subject's text against the regular expression."""
        subject = self.subject.value(context)
        if subject is None:
            return False
        regex = self.compiled
        if regex is None:
            pattern = self.pattern.value(context)
            if pattern is None:
                return False
            try:
                regex = _dynamic_regex(_text(pattern))
            except _REGEX_FAILURES as error:
                raise _EvaluationProblem(
                    f"{_describe_node(self.pattern)} is {_shown(_text(pattern))}, "
                    f"which is not a valid regular expression: {_regex_problem(error)}",
                    self.pattern.column,
                ) from error
        return regex.fullmatch(_text(subject)) is not None

    def children(self) -> tuple[Node, ...]:
        """Both arguments."""
        return (self.subject, self.pattern)


@functools.lru_cache(maxsize=256)
def _dynamic_regex(pattern: str) -> TextPattern:
    return TextPattern(pattern)


_REGEX_FAILURES = (RegexSyntaxError,)
_LONGEST_SHOWN = 60


def _shown(text: str) -> str:
    """``text`` quoted for a message, shortened when it is long."""
    if len(text) <= _LONGEST_SHOWN:
        return repr(text)
    return repr(text[: _LONGEST_SHOWN - 1]) + "…"


def _regex_problem(error: Exception) -> str:
    return str(error)


def _describe_node(node: Node) -> str:
    return node.dotted if isinstance(node, Name) else "the pattern"


@dataclass(frozen=True)
class Expression:
    """A parsed ``if`` expression; build one with :func:`parse`."""

    source: str
    root: Node

    def evaluate(self, context: ExpressionContext) -> bool:
        """Whether the expression holds in ``context``."""
        try:
            return truthy(self.root.value(context))
        except _EvaluationProblem as problem:
            raise ExpressionError(problem.message, problem.column, self.source) from None

    def names(self) -> frozenset[str]:
        """The dotted names the expression refers to, such as ``env.HOME``."""
        return frozenset(node.dotted for node in self._nodes() if isinstance(node, Name))

    def uses_changed(self) -> bool:
        """Whether evaluating may need the changed files."""
        return any(isinstance(node, Changed) for node in self._nodes())

    def _nodes(self) -> Iterator[Node]:
        pending = [self.root]
        while pending:
            node = pending.pop()
            yield node
            pending.extend(node.children())

    def __str__(self) -> str:
        return self.source


# --------------------------------------------------------------------------- tokens


_TokenKind: TypeAlias = Literal["string", "name", "keyword", "operator", "end"]

_NAME_START = frozenset(ascii_letters + "_")
_SEGMENT_START = frozenset(ascii_letters + digits + "_")
_NAME_CHARS = frozenset(ascii_letters + digits + "_-")
_WHITESPACE = frozenset(" \t\r\n")
_ESCAPED = frozenset("'\"\\")
_NUMBER = re.compile(r"-?[0-9][0-9A-Za-z_.]*")


@dataclass(frozen=True)
class _Token:
    kind: _TokenKind
    text: str
    column: int
    value: str = ""


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    index = 0
    while index < len(source):
        char = source[index]
        column = index + 1
        if char in _WHITESPACE:
            index += 1
        elif char in "'\"":
            token, index = _string(source, index)
            tokens.append(token)
        elif char in _NAME_START:
            token, index = _name(source, index)
            tokens.append(token)
        elif source.startswith(("==", "!="), index):
            tokens.append(_Token("operator", source[index : index + 2], column))
            index += 2
        elif char in "()[],":
            tokens.append(_Token("operator", char, column))
            index += 1
        else:
            raise _unexpected_character(source, index)
    tokens.append(_Token("end", "", len(source) + 1))
    return tokens


def _string(source: str, start: int) -> tuple[_Token, int]:
    quote = source[start]
    chars: list[str] = []
    index = start + 1
    while index < len(source):
        char = source[index]
        if char == quote:
            text = source[start : index + 1]
            return _Token("string", text, start + 1, "".join(chars)), index + 1
        if char == "\\" and index + 1 < len(source) and source[index + 1] in _ESCAPED:
            chars.append(source[index + 1])
            index += 2
        else:
            # Any other backslash stays, so regexes such as 'v\d+' read as written.
            chars.append(char)
            index += 1
    raise ExpressionError(
        f"unterminated string: the {quote} at column {start + 1} is never closed",
        start + 1,
        source,
        hint=f"end the string with {quote}; write \\{quote} for a {quote} inside it",
    )


def _name(source: str, start: int) -> tuple[_Token, int]:
    index = start + 1
    while True:
        while index < len(source) and source[index] in _NAME_CHARS:
            index += 1
        if index < len(source) and source[index] == ".":
            if index + 1 < len(source) and source[index + 1] in _SEGMENT_START:
                index += 1
                continue
            raise ExpressionError(
                f"expected a name after the '.' of {source[start : index + 1]!r}",
                index + 2,
                source,
                hint="write a full dotted name, as in env.HOME",
            )
        break
    text = source[start:index]
    kind: _TokenKind = "keyword" if text in KEYWORDS else "name"
    return _Token(kind, text, start + 1, text), index


def _unexpected_character(source: str, index: int) -> ExpressionError:
    char = source[index]
    column = index + 1
    hints = {
        "=": ("'=' is not an operator", "write '==' to compare"),
        "!": ("'!' is not an operator", "write 'not' to negate, or '!=' to compare"),
        "&": (f"{_run(source, index, '&')!r} is not an operator", "write 'and'"),
        "|": (f"{_run(source, index, '|')!r} is not an operator", "write 'or'"),
        "<": ("only '==' and '!=' compare", "ordering comparisons are not supported"),
        ">": ("only '==' and '!=' compare", "ordering comparisons are not supported"),
    }
    if char in hints:
        message, hint = hints[char]
        return ExpressionError(message, column, source, hint=hint)
    number = _NUMBER.match(source, index)
    if number is not None:
        text = number.group()
        return ExpressionError(
            f"numbers are not values here: {text}",
            column,
            source,
            hint=f"values are text; quote it: '{text}'",
        )
    shown = repr(char) if char.isprintable() else f"{char!r} (U+{ord(char):04X})"
    return ExpressionError(f"unexpected character {shown}", column, source)


def _run(source: str, index: int, char: str) -> str:
    end = index
    while end < len(source) and source[end] == char:
        end += 1
    return source[index:end]


def _describe(token: _Token) -> str:
    if token.kind == "end":
        return "end of expression"
    if token.kind == "string":
        return f"the string {_shown(token.value)}"
    if token.kind == "name":
        return f"the name {_shown(token.text)}"
    return f"'{token.text}'"


# --------------------------------------------------------------------------- the parser


def parse(source: str) -> Expression:
    """Parse an ``if`` expression; raise :class:`ExpressionError` saying where it is wrong."""
    if len(source) > MAX_LENGTH:
        raise ExpressionError(
            f"the expression is {len(source)} characters long; the limit is {MAX_LENGTH}",
            MAX_LENGTH + 1,
            source,
            hint="split the condition, or move the logic into the job's script",
        )
    if not source.strip():
        raise ExpressionError(
            "the expression is empty",
            1,
            source,
            hint="write a condition such as branch == 'main', or remove the 'if'",
        )
    return Expression(source, _Parser(source, _tokenize(source)).parse())


class _Parser:
    """Recursive descent over the tokens, one method per precedence level."""

    def __init__(self, source: str, tokens: list[_Token]) -> None:
        self._source = source
        self._tokens = tokens
        self._index = 0
        self._depth = 0
        self._previous: _Token | None = None

    def parse(self) -> Node:
        node = self._or()
        token = self._peek()
        if token.kind == "end":
            return node
        if token.text == ")":
            raise self._error("unmatched ')'", token, hint="remove it, or add the missing '('")
        if token.kind == "name" and token.text.lower() in KEYWORDS:
            raise self._error(
                f"unknown word '{token.text}' (did you mean '{token.text.lower()}'?)",
                token,
                hint="keywords are lowercase",
            )
        raise self._error(
            f"expected 'and', 'or' or end of expression, found {_describe(token)}",
            token,
            hint="join conditions with 'and' or 'or'",
        )

    # -- precedence levels

    def _or(self) -> Node:
        first = self._and()
        operands = [first]
        while self._peek_keyword("or"):
            self._advance()
            operands.append(self._and())
        return first if len(operands) == 1 else Or(tuple(operands), first.column)

    def _and(self) -> Node:
        first = self._not()
        operands = [first]
        while self._peek_keyword("and"):
            self._advance()
            operands.append(self._not())
        return first if len(operands) == 1 else And(tuple(operands), first.column)

    def _not(self) -> Node:
        if not self._peek_keyword("not"):
            return self._comparison()
        token = self._advance()
        self._enter(token)
        operand = self._not()
        self._depth -= 1
        return Not(operand, token.column)

    def _comparison(self) -> Node:
        left = self._primary()
        token = self._peek()
        node: Node
        if token.kind == "operator" and token.text in ("==", "!="):
            self._advance()
            operator: Literal["==", "!="] = "==" if token.text == "==" else "!="
            node = Comparison(operator, left, self._primary(), token.column)
        elif self._peek_keyword("in") or self._at_not_in():
            negated = self._advance().text == "not"
            if negated:
                self._advance()
            node = Membership(left, self._options(), negated, token.column)
        else:
            return left
        following = self._peek()
        if following.text in ("==", "!=", "in") or self._at_not_in():
            raise self._error(
                f"comparisons cannot be chained: unexpected {_describe(following)}",
                following,
                hint="join the comparisons with 'and' or 'or'",
            )
        return node

    def _primary(self) -> Node:
        token = self._peek()
        if token.kind == "string":
            self._advance()
            return Constant(token.value, token.column)
        if token.kind == "keyword" and token.text in ("true", "false", "null"):
            self._advance()
            return Constant(_LITERALS[token.text], token.column)
        if token.kind == "operator" and token.text == "(":
            self._advance()
            self._enter(token)
            node = self._or()
            self._close(token, ")")
            self._depth -= 1
            return node
        if token.kind == "name":
            self._advance()
            if self._peek().text == "(" and self._peek().kind == "operator":
                return self._call(token)
            return self._name(token)
        after = f" after {_describe(self._previous)}" if self._previous is not None else ""
        hint = None
        if token.text == "not":
            hint = "put the negation in parentheses, as in (not tag)"
        elif token.kind == "end" and self._previous is not None:
            hint = f"complete the expression after {_describe(self._previous)}"
        raise self._error(f"expected a value{after}, found {_describe(token)}", token, hint=hint)

    # -- names, calls and lists

    def _name(self, token: _Token) -> Name:
        path = tuple(token.text.split("."))
        root = path[0]
        if root in PLAIN_NAMES:
            if len(path) > 1:
                raise self._error(
                    f"'{root}' is a plain value and has no fields",
                    token,
                    hint=f"write just {root}",
                )
        elif root in DOTTED_ROOTS:
            if len(path) == 1:
                raise self._error(
                    f"'{root}' needs a field after it",
                    token,
                    hint=f"write {_DOTTED_EXAMPLES[root]}",
                )
            if root != "needs" and len(path) > 2:
                raise self._error(
                    f"'{token.text}' has too many parts: {root} takes one name",
                    token,
                    hint=f"write {_DOTTED_EXAMPLES[root]}",
                )
        elif root in FUNCTIONS and len(path) == 1:
            raise self._error(
                f"'{root}' is a function and needs arguments",
                token,
                hint=f"call it, as in {_FUNCTION_EXAMPLES[root]}",
            )
        else:
            raise self._unknown_name(token, root, len(path) == 1)
        return Name(path, token.column)

    def _unknown_name(self, token: _Token, root: str, bare: bool) -> ExpressionError:
        suggestion = _closest(root, (*PLAIN_NAMES, *DOTTED_ROOTS))
        if root.lower() in KEYWORDS:
            suggestion = root.lower()
        elif root.lower() in ("none", "nil"):
            suggestion = "null"
        message = f"unknown name '{root}'"
        if suggestion is not None:
            message += f" (did you mean '{suggestion}'?)"
        known = "branch, tag, event, commit, env.NAME, matrix.NAME, needs.JOB.FIELD, vars.NAME"
        hint = f"names are {known}"
        if bare and suggestion is None:
            hint += f"; to mean the text {root}, quote it: '{root}'"
        return self._error(message, token, hint=hint)

    def _call(self, name: _Token) -> Node:
        function = name.text
        if function not in FUNCTIONS:
            raise self._unknown_function(name)
        opening = self._advance()
        self._enter(opening)
        arguments: list[Node] = []
        while not self._peek_operator(")"):
            arguments.append(self._or())
            if not self._peek_operator(","):
                break
            self._advance()
        self._close(opening, ")", of=f"{function}(", listing=True)
        self._depth -= 1
        return self._function(name, arguments)

    def _unknown_function(self, name: _Token) -> ExpressionError:
        if "." in name.text or name.text in (*PLAIN_NAMES, *DOTTED_ROOTS):
            return self._error(
                f"'{name.text}' is not a function",
                name,
                hint=f"functions are {', '.join(FUNCTIONS)}",
            )
        suggestion = _closest(name.text, FUNCTIONS)
        message = f"unknown function '{name.text}'"
        if suggestion is not None:
            message += f" (did you mean '{suggestion}'?)"
        return self._error(message, name, hint=f"functions are {', '.join(FUNCTIONS)}")

    def _function(self, name: _Token, arguments: list[Node]) -> Node:
        function = name.text
        if function == "changed":
            return self._changed(name, arguments)
        if len(arguments) != 2:
            where = arguments[2] if len(arguments) > 2 else None
            raise ExpressionError(
                f"{function}() takes 2 arguments, got {len(arguments)}",
                where.column if where is not None else name.column,
                self._source,
                hint=f"write {_FUNCTION_EXAMPLES[function]}",
            )
        subject, argument = arguments
        if function == "matches":
            return Matches(subject, argument, name.column, self._literal_regex(argument))
        test: Literal["startswith", "endswith", "contains"] = (
            "startswith"
            if function == "startswith"
            else "endswith"
            if function == "endswith"
            else "contains"
        )
        return TextTest(test, subject, argument, name.column)

    def _changed(self, name: _Token, arguments: list[Node]) -> Changed:
        if not arguments:
            raise ExpressionError(
                "changed() needs at least one glob",
                name.column,
                self._source,
                hint="write changed('src/**')",
            )
        patterns: list[str] = []
        regexes: list[re.Pattern[str]] = []
        for argument in arguments:
            if not (isinstance(argument, Constant) and isinstance(argument.literal, str)):
                raise ExpressionError(
                    "changed() takes globs written as quoted strings",
                    argument.column,
                    self._source,
                    hint="write changed('src/**', 'pyproject.toml')",
                )
            try:
                regexes.append(glob_to_regex(argument.literal))
            except GlobError as error:
                raise ExpressionError(
                    f"invalid glob {_shown(argument.literal)}: {error.message}",
                    argument.column,
                    self._source,
                    hint=error.hint,
                ) from None
            patterns.append(argument.literal)
        return Changed(tuple(patterns), name.column, tuple(regexes))

    def _literal_regex(self, pattern: Node) -> TextPattern | None:
        if not isinstance(pattern, Constant):
            return None
        if not isinstance(pattern.literal, str):
            raise ExpressionError(
                "matches() needs a regular expression written as a quoted string",
                pattern.column,
                self._source,
                hint="write matches(tag, 'v[0-9]+')",
            )
        try:
            return TextPattern(pattern.literal)
        except _REGEX_FAILURES as error:
            raise ExpressionError(
                f"invalid regular expression {_shown(pattern.literal)}: {_regex_problem(error)}",
                pattern.column,
                self._source,
                hint="the syntax is RE2's (as Python's re, without backreferences and lookaround)",
            ) from None

    def _options(self) -> tuple[Value, ...]:
        opening = self._peek()
        if not (opening.kind == "operator" and opening.text in ("(", "[")):
            raise self._error(
                f"expected a list after 'in', found {_describe(opening)}",
                opening,
                hint="write a list of values, as in ('main', 'next')",
            )
        self._advance()
        closer = ")" if opening.text == "(" else "]"
        options: list[Value] = []
        while not self._peek_operator(closer):
            token = self._peek()
            if token.kind == "string":
                options.append(token.value)
            elif token.kind == "keyword" and token.text in _LITERALS:
                options.append(_LITERALS[token.text])
            else:
                raise self._error(
                    f"a list after 'in' holds only quoted strings, true, false and null; "
                    f"found {_describe(token)}",
                    token,
                    hint="compare names with '==' and join them with 'or'",
                )
            self._advance()
            if not self._peek_operator(","):
                break
            self._advance()
        self._close(opening, closer, listing=True)
        return tuple(options)

    # -- helpers

    def _peek(self) -> _Token:
        return self._tokens[self._index]

    def _advance(self) -> _Token:
        token = self._tokens[self._index]
        if token.kind != "end":
            self._index += 1
        self._previous = token
        return token

    def _peek_keyword(self, word: str) -> bool:
        token = self._peek()
        return token.kind == "keyword" and token.text == word

    def _peek_operator(self, text: str) -> bool:
        token = self._peek()
        return token.kind == "operator" and token.text == text

    def _at_not_in(self) -> bool:
        following = self._tokens[min(self._index + 1, len(self._tokens) - 1)]
        return self._peek_keyword("not") and following.kind == "keyword" and following.text == "in"

    def _close(self, opening: _Token, closer: str, *, of: str = "", listing: bool = False) -> None:
        if self._peek_operator(closer):
            self._advance()
            return
        token = self._peek()
        expected = f"',' or '{closer}'" if listing else f"'{closer}'"
        what = f"the '{opening.text}' of {of}" if of else f"the '{opening.text}'"
        raise self._error(
            f"expected {expected} to close {what} at column {opening.column}, "
            f"found {_describe(token)}",
            token,
        )

    def _enter(self, token: _Token) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise self._error(
                f"the expression nests more than {MAX_DEPTH} levels deep",
                token,
                hint="simplify it, or split the condition",
            )

    def _error(self, message: str, token: _Token, *, hint: str | None = None) -> ExpressionError:
        return ExpressionError(message, token.column, self._source, hint=hint)


_LITERALS: dict[str, Value] = {"true": True, "false": False, "null": None}

_DOTTED_EXAMPLES = {
    "env": "env.HOME",
    "matrix": "matrix.python",
    "needs": "needs.build.outputs.version",
    "vars": "vars.REGION",
}

_FUNCTION_EXAMPLES = {
    "changed": "changed('src/**')",
    "startswith": "startswith(branch, 'release/')",
    "endswith": "endswith(tag, '-rc')",
    "contains": "contains(env.LABELS, 'deploy')",
    "matches": "matches(tag, 'v[0-9]+[.][0-9]+[.][0-9]+')",
}


def _closest(word: str, choices: Sequence[str]) -> str | None:
    by_lower = {choice.lower(): choice for choice in choices}
    if word.lower() in by_lower:
        return by_lower[word.lower()]
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.65)
    return by_lower[close[0]] if close else None


_SNIPPET_WIDTH = 72


def _snippet(source: str, column: int) -> tuple[str, int]:
    """A one-line view of ``source`` around ``column`` and the caret's offset within it."""
    flat = "".join(char if char.isprintable() else " " for char in source)
    offset = column - 1
    if len(flat) < _SNIPPET_WIDTH:
        return flat, offset
    start = max(0, min(offset - _SNIPPET_WIDTH // 2, len(flat) + 1 - _SNIPPET_WIDTH))
    end = start + _SNIPPET_WIDTH
    shown = flat[start:end]
    caret = offset - start
    if start > 0:
        shown = "…" + shown
        caret += 1
    if end < len(flat):
        shown += "…"
    return shown, caret
