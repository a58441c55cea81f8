"""Safe YAML reading that remembers the line and column of every key and value.

PyYAML's composer (libyaml when present) builds a node tree; this module turns the nodes into
plain dicts, lists, strings, numbers, booleans and None itself, refusing whatever is unsafe or
surprising. It must never build Python objects from tags, and it knows nothing of the schema.
"""

from __future__ import annotations

import codecs
import json
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError

from shipyard.core.config.problems import (
    ConfigInvalid,
    ConfigProblem,
    KeyPath,
    describe_value,
    format_path,
)
from shipyard.core.errors import ConfigError

try:
    from yaml import CSafeLoader as _ParserBase
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _ParserBase  # type: ignore[assignment]

MAX_CONFIG_BYTES = 1024 * 1024
"""The largest configuration file read, in bytes; larger files are refused unread."""

MAX_VALUES = 100_000
"""The most values a document may expand to, counting every repetition through an alias."""

MAX_DEPTH = 100
"""The deepest nesting of mappings and lists accepted."""

_YAML_TAG = "tag:yaml.org,2002:"
_STR = _YAML_TAG + "str"
_INT = _YAML_TAG + "int"
_FLOAT = _YAML_TAG + "float"
_BOOL = _YAML_TAG + "bool"
_NULL = _YAML_TAG + "null"
_MAP = _YAML_TAG + "map"
_SEQ = _YAML_TAG + "seq"
_MERGE = _YAML_TAG + "merge"
_SCALAR_TAGS = frozenset({_STR, _INT, _FLOAT, _BOOL, _NULL})

# Plain scalars are read by the YAML 1.2 core schema, not PyYAML's YAML 1.1 default: only
# true/false are booleans (`on`, `no`, `yes` stay strings), `1:30` is not the number 90, and
# dates stay strings for the models to parse.
_CORE_SCHEMA: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (_NULL, r"(?:~|null|Null|NULL|)\Z", ("~", "n", "N", "")),
    (_BOOL, r"(?:true|True|TRUE|false|False|FALSE)\Z", tuple("tTfF")),
    (_INT, r"(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)\Z", tuple("-+0123456789")),
    (
        _FLOAT,
        r"(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z",
        tuple("-+.0123456789"),
    ),
    (_MERGE, r"<<\Z", ("<",)),
)
_CORE_PATTERNS = tuple((tag, re.compile(pattern)) for tag, pattern, _ in _CORE_SCHEMA)
_SAFE_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/@+-]*")

_SYNTAX_HINTS: tuple[tuple[str, str], ...] = (
    ("tab", "indent with spaces; YAML does not allow tabs for indentation"),
    (
        "mapping values are not allowed",
        "check the indentation of this line, or put quotes around a value that contains ': '",
    ),
    ("undefined alias", "define the anchor (&name) before the alias (*name) that uses it"),
    ("duplicate anchor", "give each anchor (&name) its own name"),
    ("could not find expected ':'", "write 'key: value', or close the quotes opened earlier"),
    ("expected ',' or ']'", "close the list with ']' or separate its items with ','"),
    ("expected ',' or '}'", "close the mapping with '}' or separate its entries with ','"),
    ("end of stream", "close the quotes or brackets opened earlier"),
    ("expected <block end>", "check that the keys of one mapping are indented alike"),
    ("maximum nesting depth", "flatten the nesting; no configuration needs this many levels"),
)


class _CoreSchemaLoader(_ParserBase):
    """PyYAML's safe composer with YAML 1.2 core-schema scalar resolution."""

    yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012 - PyYAML's own class registry


for _tag, _pattern, _first in _CORE_SCHEMA:
    _CoreSchemaLoader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


@dataclass(frozen=True)
class Position:
    """A place in a file: 1-based line and column."""

    line: int
    column: int


@dataclass(frozen=True)
class KeyLocation:
    """Where a key and its value start; for list items and the top level both are the value."""

    key: Position
    value: Position


@dataclass(frozen=True, eq=False)
class YamlDocument:
    """A parsed YAML file: its plain data and the location of every key path in it."""

    source: str
    data: dict[str, Any]
    locations: Mapping[KeyPath, KeyLocation]

    def locate(self, path: KeyPath) -> KeyLocation:
        """Return the location of ``path``, or of its nearest ancestor that the file has."""
        while path not in self.locations and path:
            path = path[:-1]
        return self.locations.get(path, KeyLocation(Position(1, 1), Position(1, 1)))


def read_yaml_file(path: Path, source_name: str | None = None) -> YamlDocument:
    """Read and parse a YAML file, refusing files that are too large, binary or unreadable."""
    name = source_name if source_name is not None else str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{name}: the file does not exist", hint="check the path") from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read the file: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{name}: is a folder, not a file", hint="give the path of the file")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{name}: is not a regular file", hint="give the path of a YAML file")
    if info.st_size > MAX_CONFIG_BYTES:
        _fail(name, None, None, _too_large(info.st_size), _TOO_LARGE_HINT)
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read the file: {exc.strerror or exc}") from None
    return parse_yaml(raw, name)


def parse_yaml(content: str | bytes, source_name: str) -> YamlDocument:
    """Parse one YAML document whose top level is a mapping; raise ConfigInvalid otherwise."""
    if isinstance(content, bytes):
        text = _decode(content, source_name)
    else:
        if len(content) > MAX_CONFIG_BYTES:
            _fail(source_name, None, None, "the text is larger than 1 MiB", _TOO_LARGE_HINT)
        try:
            size = len(content.encode("utf-8"))
        except UnicodeEncodeError as exc:
            line, column = _line_column(content, exc.start)
            _fail(source_name, line, column, "the text holds an invalid character", None)
        if size > MAX_CONFIG_BYTES:
            _fail(source_name, None, None, "the text is larger than 1 MiB", _TOO_LARGE_HINT)
        nul = content.find("\0")
        if nul >= 0:
            line, column = _line_column(content, nul)
            _fail(source_name, line, column, _NUL_MESSAGE, _BINARY_HINT)
        text = content.removeprefix("\ufeff")
    root = _compose(text, source_name)
    if root is None or (isinstance(root, ScalarNode) and root.tag == _NULL and not root.value):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            what = "the file is empty"
        elif all(line.startswith("#") for line in lines):
            what = "the file holds only comments"
        else:
            what = "the file holds no configuration"
        _fail(
            source_name,
            1,
            1,
            f"{what}; expected a mapping of keys to values",
            "start with the project's name, e.g. 'project: my-service'",
        )
    if not isinstance(root, MappingNode):
        if isinstance(root, SequenceNode):
            kind = "a list"
        elif root.tag not in _SCALAR_TAGS:
            kind = f"a value tagged '{_tag_name(root.tag)}'"
        else:
            kind = describe_value(_Converter(source_name).scalar_or_none(root))
        start = _position(root)
        _fail(
            source_name,
            start.line,
            start.column,
            f"the top level must be a mapping of keys to values, not {kind}",
            "start with the project's name, e.g. 'project: my-service'",
        )
    converter = _Converter(source_name)
    try:
        data = converter.convert(root)
    except _Fatal as fatal:
        raise ConfigInvalid([*converter.problems, fatal.problem]) from None
    if converter.problems:
        raise ConfigInvalid(converter.problems)
    return YamlDocument(source=source_name, data=data, locations=converter.locations)


def yaml_string(text: str) -> str:
    """Write ``text`` as a YAML scalar that reads back as the same string."""
    if _SAFE_PLAIN.fullmatch(text) and not any(p.match(text) for _, p in _CORE_PATTERNS):
        return text
    return json.dumps(text, ensure_ascii=False)


_TOO_LARGE_HINT = (
    f"a configuration is at most {MAX_CONFIG_BYTES // 1024} KiB; is this the right file?"
)
_NUL_MESSAGE = "the file contains a NUL byte, so it is binary data, not YAML text"
_BINARY_HINT = "a configuration is UTF-8 text; check that this is the right file"


def _too_large(size: int) -> str:
    return f"the file is {size / (1024 * 1024):.1f} MiB, larger than the 1 MiB allowed"


def _fail(
    source: str, line: int | None, column: int | None, message: str, hint: str | None
) -> NoReturn:
    raise ConfigInvalid([ConfigProblem(source, line, column, "", message, hint)])


def _decode(raw: bytes, source: str) -> str:
    if len(raw) > MAX_CONFIG_BYTES:
        _fail(source, None, None, _too_large(len(raw)), _TOO_LARGE_HINT)
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "UTF-32"),
        (codecs.BOM_UTF32_BE, "UTF-32"),
        (codecs.BOM_UTF16_LE, "UTF-16"),
        (codecs.BOM_UTF16_BE, "UTF-16"),
    ):
        if raw.startswith(bom):
            _fail(source, 1, 1, f"the file is {encoding} text", "save it as UTF-8")
    nul = raw.find(b"\0")
    if nul >= 0:
        line, column = _byte_line_column(raw, nul)
        _fail(source, line, column, _NUL_MESSAGE, _BINARY_HINT)
    raw = raw.removeprefix(codecs.BOM_UTF8)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _byte_line_column(raw, exc.start)
        _fail(
            source,
            line,
            column,
            f"the file is not UTF-8 text: byte 0x{raw[exc.start]:02x} cannot be decoded",
            "save the file as UTF-8, and check that this is the right file",
        )


def _byte_line_column(raw: bytes, offset: int) -> tuple[int, int]:
    line_start = raw.rfind(b"\n", 0, offset) + 1
    prefix = raw[line_start:offset].decode("utf-8", errors="replace")
    return raw.count(b"\n", 0, offset) + 1, len(prefix) + 1


def _line_column(text: str, index: int) -> tuple[int, int]:
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


def _compose(text: str, source: str) -> Node | None:
    loader: _CoreSchemaLoader | None = None
    try:
        loader = _CoreSchemaLoader(text)
        root = loader.get_node() if loader.check_node() else None
        if root is not None and loader.check_node():
            _second_document(loader, root, text, source)
        return root
    except yaml.MarkedYAMLError as exc:
        _syntax_error(exc, text, source)
    except ReaderError as exc:
        line, column = _line_column(text, min(exc.position, len(text)))
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        _fail(
            source,
            line,
            column,
            f"the file contains the control character #x{code:04x}, which YAML does not allow",
            "remove it; a configuration is plain text",
        )
    except RecursionError:
        _fail(source, None, None, f"values are nested more than {MAX_DEPTH} levels deep", None)
    except yaml.YAMLError as exc:  # pragma: no cover - every PyYAML error above has a subclass
        _fail(source, None, None, f"the file is not valid YAML: {exc}", None)
    finally:
        if loader is not None:
            loader.dispose()


def _second_document(loader: _CoreSchemaLoader, first: Node, text: str, source: str) -> NoReturn:
    event = loader.peek_event()
    first_end = first.end_mark.line if first.end_mark is not None else 0
    line = event.start_mark.line if event is not None and event.start_mark else first_end
    # libyaml reports the second document's first value, PyYAML its '---': find the '---'.
    lines = text.splitlines()
    for candidate in range(min(line, len(lines) - 1), first_end - 1, -1):
        if lines[candidate].startswith("---"):
            line = candidate
            break
    _fail(
        source,
        line + 1,
        1,
        "a second YAML document starts here; the file must hold exactly one",
        "remove the '---' line and everything after it, or merge the two documents",
    )


def _syntax_error(exc: yaml.MarkedYAMLError, text: str, source: str) -> NoReturn:
    mark = exc.problem_mark or exc.context_mark
    problem = (exc.problem or "invalid YAML").strip()
    message = f"YAML syntax error: {problem}"
    if exc.context and exc.context_mark is not None:
        message += f" ({exc.context} that starts on line {exc.context_mark.line + 1})"
    if mark is not None and _character_at(text, mark.line, mark.column) == "\t":
        problem += " (tab)"
    hint = next((text for needle, text in _SYNTAX_HINTS if needle in problem), None)
    _fail(
        source,
        mark.line + 1 if mark is not None else None,
        mark.column + 1 if mark is not None else None,
        message,
        hint or "check the indentation and the quotes around this line",
    )


def _character_at(text: str, line: int, column: int) -> str:
    lines = text.splitlines()
    return lines[line][column : column + 1] if 0 <= line < len(lines) else ""


def _position(node: Node) -> Position:
    mark = node.start_mark
    return Position(mark.line + 1, mark.column + 1) if mark is not None else Position(1, 1)


def _tag_name(tag: str) -> str:
    return "!!" + tag.removeprefix(_YAML_TAG) if tag.startswith(_YAML_TAG) else tag


class _Fatal(Exception):
    """A problem after which converting further makes no sense (alias bomb, recursion)."""

    def __init__(self, problem: ConfigProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


_Entry = tuple[str, Node, Node]


class _Converter:
    """Turns a node tree into plain values, collecting problems and recording locations."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[ConfigProblem] = []
        self.locations: dict[KeyPath, KeyLocation] = {}
        self._count = 0
        self._aliased = False
        self._seen: set[int] = set()
        self._open: set[int] = set()

    def convert(self, root: MappingNode) -> dict[str, Any]:
        value = self._value(root, (), None, 0)
        return value if isinstance(value, dict) else {}

    def scalar_or_none(self, node: Node) -> Any:
        if isinstance(node, ScalarNode) and node.tag in _SCALAR_TAGS:
            return self._scalar(node, ())
        return None

    def _problem(self, node: Node, path: KeyPath, message: str, hint: str | None) -> None:
        where = _position(node)
        self.problems.append(
            ConfigProblem(self.source, where.line, where.column, format_path(path), message, hint)
        )

    def _fatal(self, node: Node, path: KeyPath, message: str, hint: str | None) -> NoReturn:
        where = _position(node)
        raise _Fatal(
            ConfigProblem(self.source, where.line, where.column, format_path(path), message, hint)
        )

    def _tick(self, node: Node, path: KeyPath) -> None:
        self._count += 1
        if self._count <= MAX_VALUES:
            return
        if self._aliased:
            self._fatal(
                node,
                path,
                f"the aliases in this document expand to more than {MAX_VALUES:,} values",
                "this is an alias bomb ('billion laughs'): anchors (&name) holding aliases "
                "(*name) of other anchors; write the values out instead",
            )
        self._fatal(
            node,
            path,
            f"the document holds more than {MAX_VALUES:,} values",
            "a configuration this large is almost certainly a mistake",
        )

    def _value(self, node: Node, path: KeyPath, key: Position | None, depth: int) -> Any:
        self._tick(node, path)
        where = _position(node)
        self.locations[path] = KeyLocation(key or where, where)
        if isinstance(node, ScalarNode):
            if node.tag not in _SCALAR_TAGS:
                return self._unsupported_tag(node, path)
            return self._scalar(node, path)
        if id(node) in self._open:
            self._fatal(
                node,
                path,
                "an alias (*name) refers to the list or mapping that contains it",
                "a value cannot contain itself; write the inner value out",
            )
        if depth >= MAX_DEPTH:
            self._fatal(node, path, f"values are nested more than {MAX_DEPTH} levels deep", None)
        if id(node) in self._seen:
            self._aliased = True
        self._seen.add(id(node))
        self._open.add(id(node))
        try:
            if isinstance(node, SequenceNode) and node.tag == _SEQ:
                return [
                    self._value(item, (*path, index), None, depth + 1)
                    for index, item in enumerate(node.value)
                ]
            if isinstance(node, MappingNode) and node.tag == _MAP:
                return {
                    key: self._value(value, (*path, key), _position(key_node), depth + 1)
                    for key, key_node, value in self._entries(node, path, depth)
                }
            return self._unsupported_tag(node, path)
        finally:
            self._open.discard(id(node))

    def _entries(self, node: MappingNode, path: KeyPath, depth: int) -> list[_Entry]:
        """The mapping's entries, explicit keys first, then keys merged in with ``<<``."""
        explicit: dict[str, Node] = {}
        entries: list[_Entry] = []
        merged: list[list[_Entry]] = []
        for key_node, value_node in node.value:
            self._tick(key_node, path)
            if isinstance(key_node, ScalarNode) and key_node.tag == _MERGE:
                merged.extend(self._merge_sources(key_node, value_node, path, depth))
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            first = explicit.get(key)
            if first is not None:
                self._problem(
                    key_node,
                    (*path, key),
                    f"duplicate key '{key}': it is already defined on line {_position(first).line}",
                    "keep only one of the two; YAML would silently drop one of the values",
                )
                continue
            explicit[key] = key_node
            entries.append((key, key_node, value_node))
        for source in merged:
            for key, key_node, value_node in source:
                if key not in explicit:
                    explicit[key] = key_node
                    entries.append((key, key_node, value_node))
        return entries

    def _merge_sources(
        self, key_node: Node, value_node: Node, path: KeyPath, depth: int
    ) -> list[list[_Entry]]:
        if isinstance(value_node, SequenceNode) and value_node.tag == _SEQ:
            sources = list(value_node.value)
        else:
            sources = [value_node]
        result: list[list[_Entry]] = []
        for source in sources:
            if not isinstance(source, MappingNode) or source.tag != _MAP:
                self._problem(
                    source,
                    path,
                    "'<<' must be followed by a mapping or an alias of one",
                    "write '<<: *name' where '&name' marks a mapping",
                )
                continue
            if id(source) in self._open or depth >= MAX_DEPTH:
                self._fatal(key_node, path, "'<<' merges a mapping into itself", None)
            if id(source) in self._seen:
                self._aliased = True
            self._seen.add(id(source))
            self._open.add(id(source))
            try:
                result.append(self._entries(source, path, depth + 1))
            finally:
                self._open.discard(id(source))
        return result

    def _key(self, node: Node, path: KeyPath) -> str | None:
        if isinstance(node, ScalarNode) and node.tag == _STR:
            value: str = node.value
            return value
        if not isinstance(node, ScalarNode):
            self._problem(node, path, "a key must be a name, not a list or a mapping", None)
        elif node.tag not in _SCALAR_TAGS:
            self._unsupported_tag(node, path)
        elif node.tag == _NULL:
            self._problem(node, path, "a key is empty", "write a name before the ':'")
        else:
            self._problem(
                node,
                path,
                f"the key {node.value} is {describe_value(self._scalar(node, path))}; "
                "keys must be strings",
                f'put the key in quotes: "{node.value}":',
            )
        return None

    def _scalar(self, node: ScalarNode, path: KeyPath) -> Any:
        text: str = node.value
        try:
            if node.tag == _STR:
                return text
            if node.tag == _NULL:
                if text not in ("", "~", "null", "Null", "NULL"):
                    raise ValueError(text)
                return None
            if node.tag == _BOOL:
                if text.lower() not in ("true", "false"):
                    raise ValueError(text)
                return text.lower() == "true"
            if node.tag == _INT:
                return _parse_int(text)
            return _parse_float(text)
        except ValueError:
            self._problem(
                node,
                path,
                f"{text!r} is not a valid {_tag_name(node.tag)}",
                "remove the tag, or correct the value",
            )
            return None

    def _unsupported_tag(self, node: Node, path: KeyPath) -> None:
        self._problem(
            node,
            path,
            f"the YAML tag '{_tag_name(node.tag)}' is not supported",
            "remove the tag; a configuration holds only strings, numbers, booleans, null, "
            "lists and mappings",
        )


def _parse_int(text: str) -> int:
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    if digits.startswith("0o"):
        return sign * int(digits[2:], 8)
    if digits.startswith("0x"):
        return sign * int(digits[2:], 16)
    return sign * int(digits, 10)


def _parse_float(text: str) -> float:
    lowered = text.lower()
    if lowered in (".inf", "+.inf"):
        return float("inf")
    if lowered == "-.inf":
        return float("-inf")
    if lowered == ".nan":
        return float("nan")
    return float(text)
