"""Secrets for jobs and services: read from the environment or ``.shipyard/secrets``, masked.

A secret's value leaves this module only through ``SecretValue.reveal()`` (for a job's
environment); it must never appear in an error message, a ``repr``, a log or the database.

The secrets file is UTF-8 text, owner-only (mode 600), one secret per line::

    # comments and blank lines are ignored; "export " before a name is allowed
    PYPI_TOKEN=pypi-AgEIcHlwaS5vcmc...          unquoted: the rest of the line, trimmed
    DEPLOY_PASSWORD='literal: no escapes, # is kept'
    SIGNING_KEY="-----BEGIN KEY-----\\nMIIE...\\n-----END KEY-----"
    TLS_KEY<<EOF
    -----BEGIN PRIVATE KEY-----
    MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC...
    -----END PRIVATE KEY-----
    EOF

Double quotes understand ``\\n``, ``\\r``, ``\\t``, ``\\\\`` and ``\\"``; after a quoted value
only a ``# comment`` may follow. ``NAME<<DELIMITER`` takes the following lines verbatim, joined
by newlines (no final newline), up to a line holding only ``DELIMITER``. A name may appear
once. In the environment, an empty variable counts as not set.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import stat
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote, quote_plus

from shipyard.core.errors import UserError
from shipyard.core.state import StateDir

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "SECRETS_FILE_NAME",
    "Masker",
    "SecretError",
    "SecretStore",
    "SecretValue",
    "StreamMasker",
    "load_secrets",
    "masker_for",
    "read_secrets_file",
    "secrets_file",
]

MASK = "***"
"""What every form of a secret is replaced with."""

MIN_SECRET_LENGTH = 6
"""Shorter values are refused: masking them would blank out ordinary words and numbers."""

SECRETS_FILE_NAME = "secrets"
"""The secrets file's name inside the state directory."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DELIMITER = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"'}
_BASE64_WRAP_WIDTHS = (64, 76)  # openssl / PEM, and the base64 command / MIME
_PERCENT_ESCAPE = re.compile(r"%[0-9A-F]{2}")
_HEAD = 3  # characters of a form that find where a held-back tail may start
_ENCODED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-"
# A line break between two characters of base64 or hex: wrapped output, taken out to find it.
# (The break comes first in the pattern: a search then jumps from one line end to the next.)
_ENCODED_CHAR = f"[{re.escape(_ENCODED)}]"
_JOIN = re.compile(
    rf"\n(?<={_ENCODED_CHAR}\n)(?={_ENCODED_CHAR})|\r\n(?<={_ENCODED_CHAR}\r\n)(?={_ENCODED_CHAR})"
)
_OPEN_BREAK = re.compile(rf"(?<={_ENCODED_CHAR})(?:\r?\n|\r)\Z")
_URL_SAFE = str.maketrans("+/", "-_")


class SecretError(UserError):
    """A secret is missing, too short to mask, badly named, or the secrets file is unusable."""


@dataclass(frozen=True, repr=False)
class SecretValue:
    """A secret's value, which never shows itself in ``repr``, ``str`` or a pickle."""

    _value: str

    def reveal(self) -> str:
        """The clear value: only for injecting it into a job's environment."""
        return self._value

    def __repr__(self) -> str:
        return f"SecretValue({MASK!r})"

    __str__ = __repr__

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("a SecretValue cannot be pickled or serialized")

    def __copy__(self) -> SecretValue:
        return self

    def __deepcopy__(self, memo: object) -> SecretValue:
        return self


def secrets_file(state: StateDir) -> Path:
    """The secrets file of a state directory: ``.shipyard/secrets``."""
    return state.root / SECRETS_FILE_NAME


class SecretStore:
    """Looks secrets up by name: the environment first, then the secrets file."""

    def __init__(self, *, environ: Mapping[str, str], secrets_file: Path) -> None:
        self._environ = environ
        self._path = secrets_file
        self._file: dict[str, SecretValue] | None = None

    @property
    def secrets_file(self) -> Path:
        """The secrets file consulted for names missing from the environment."""
        return self._path

    def get(self, name: str) -> SecretValue:
        """The secret called ``name``; SecretError if it is missing or too short to mask."""
        if not _NAME.fullmatch(name):
            raise SecretError(
                f"{name!r} is not a valid secret name",
                hint="use letters, digits and _, not starting with a digit (like PYPI_TOKEN)",
            )
        from_env = self._environ.get(name, "")
        if from_env:
            return _long_enough(name, SecretValue(from_env), "the environment")
        found = self._from_file().get(name)
        if found is None:
            raise SecretError(
                f"secret {name} is not set: export {name}=… or add it to {self._path}",
                hint=f"the file holds NAME=value lines and must be private: chmod 600 {self._path}",
            )
        return _long_enough(name, found, str(self._path))

    def load(self, names: Sequence[str]) -> dict[str, SecretValue]:
        """Every named secret, by name; the first missing or unusable one raises SecretError."""
        return {name: self.get(name) for name in names}

    def _from_file(self) -> dict[str, SecretValue]:
        if self._file is None:
            self._file = read_secrets_file(self._path)
        return self._file


def load_secrets(
    names: Sequence[str], *, environ: Mapping[str, str], secrets_file: Path
) -> dict[str, SecretValue]:
    """Each named secret from ``environ``, else from ``secrets_file``; SecretError otherwise."""
    return SecretStore(environ=environ, secrets_file=secrets_file).load(names)


def masker_for(names: Sequence[str], *, environ: Mapping[str, str], secrets_file: Path) -> Masker:
    """A Masker of the named secrets and of every secret the secrets file holds.

    It hides what a process wrote on its way out, often on an error path, so it never raises:
    a value that cannot be read (or is too short to be a secret) was never handed out.
    """
    values = [environ.get(name, "") for name in names]
    # An unusable file gave nothing to anybody: starting an instance with it fails, named.
    with contextlib.suppress(SecretError):
        values += [value.reveal() for value in read_secrets_file(secrets_file).values()]
    return Masker(value for value in values if len(value) >= MIN_SECRET_LENGTH)


def read_secrets_file(path: Path) -> dict[str, SecretValue]:
    """Every secret in a secrets file (empty if it does not exist); SecretError if unusable."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SecretError(f"cannot read the secrets file {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise SecretError(f"the secrets file {path} is not a regular file")
    if os.name == "posix" and info.st_mode & 0o077:
        raise SecretError(
            f"the secrets file {path} is open to other users "
            f"(mode {stat.S_IMODE(info.st_mode):03o}); Shipyard refuses to use it",
            hint=f"make it private: chmod 600 {path}",
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SecretError(f"cannot read the secrets file {path}: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SecretError(f"{path}, line {line}: the secrets file is not UTF-8 text") from None
    return {name: SecretValue(value) for name, value in _parse(text, path).items()}


def _long_enough(name: str, value: SecretValue, source: str) -> SecretValue:
    if len(value.reveal()) < MIN_SECRET_LENGTH:
        raise SecretError(
            f"secret {name} (from {source}) is shorter than {MIN_SECRET_LENGTH} characters, "
            "too short to mask safely in logs",
            hint="secrets are credentials; pass short settings as plain env: values instead",
        )
    return value


def _parse(text: str, path: Path) -> dict[str, str]:
    """Parse the secrets file format described in the module docstring."""
    lines = [line.removesuffix("\r") for line in text.removeprefix("\ufeff").split("\n")]
    values: dict[str, str] = {}
    defined_on: dict[str, int] = {}
    number = 0
    while number < len(lines):
        start = number + 1
        body = lines[number].strip()
        number += 1
        if not body or body.startswith("#"):
            continue
        if re.match(r"export\s", body):
            body = body[len("export") :].lstrip()
        equals, heredoc = body.find("="), body.find("<<")
        if heredoc != -1 and (equals == -1 or heredoc < equals):
            name, delimiter = body[:heredoc].strip(), body[heredoc + 2 :].strip()
            _check_name(name, path, start)
            if not _DELIMITER.fullmatch(delimiter):
                _fail(path, start, f"expected {name}<<DELIMITER, like {name}<<EOF")
            block: list[str] = []
            while number < len(lines) and lines[number].strip() != delimiter:
                block.append(lines[number])
                number += 1
            if number == len(lines):
                _fail(path, start, f"the block of {name} has no closing line {delimiter!r}")
            number += 1
            value = "\n".join(block)
        elif equals != -1:
            name = body[:equals].strip()
            _check_name(name, path, start)
            value = _value(body[equals + 1 :].strip(), path, start)
        else:
            _fail(path, start, "expected NAME=value or NAME<<EOF")
        if name in defined_on:
            _fail(path, start, f"{name} is defined again (first on line {defined_on[name]})")
        defined_on[name] = start
        values[name] = value
    return values


def _check_name(name: str, path: Path, line: int) -> None:
    # The text before '=' may be a pasted value, so a bad name is never echoed.
    if not _NAME.fullmatch(name):
        _fail(
            path,
            line,
            "the name is not a valid secret name "
            "(letters, digits and _, not starting with a digit)",
        )


def _value(raw: str, path: Path, line: int) -> str:
    if not raw or raw[0] not in "\"'":
        return raw
    quote_char = raw[0]
    chars: list[str] = []
    position = 1
    while position < len(raw):
        char = raw[position]
        if char == quote_char:
            break
        if char == "\\" and quote_char == '"':
            escaped = raw[position + 1 : position + 2]
            if escaped not in _ESCAPES:
                _fail(
                    path,
                    line,
                    f"unknown escape sequence at column {position + 1} in double quotes "
                    '(known: \\n \\r \\t \\\\ \\"); use single quotes for a literal value',
                )
            chars.append(_ESCAPES[escaped])
            position += 2
            continue
        chars.append(char)
        position += 1
    else:
        kind = "double" if quote_char == '"' else "single"
        _fail(path, line, f"the {kind} quote is never closed")
    rest = raw[position + 1 :].strip()
    if rest and not rest.startswith("#"):
        _fail(path, line, "unexpected text after the closing quote")
    return "".join(chars)


def _fail(path: Path, line: int, problem: str) -> NoReturn:
    raise SecretError(
        f"{path}, line {line}: {problem}",
        hint="each line is NAME=value, NAME='value', NAME=\"value\" or starts a NAME<<EOF block",
    )


class Masker:
    """Replaces every form of a set of secret values in text with ``***``."""

    __slots__ = ("_count", "_literal", "_longest", "_wrapped")

    def __init__(self, values: Iterable[str | SecretValue]) -> None:
        forms: dict[str, bool] = {}
        for item in values:
            value = item.reveal() if isinstance(item, SecretValue) else item
            if len(value) < MIN_SECRET_LENGTH:
                raise SecretError(
                    f"a secret shorter than {MIN_SECRET_LENGTH} characters "
                    "is too short to mask safely"
                )
            for form, wraps in _forms_of(value).items():
                forms[form] = forms.get(form, False) or wraps
        self._count = len(forms)
        # Every form as written; the encoded ones also with line breaks taken out (wrapped).
        self._literal = _FormSet(forms) if forms else None
        wrapped = [form for form, wraps in forms.items() if wraps]
        self._wrapped = _FormSet(wrapped) if wrapped else None
        self._longest = max(
            (len(form) + (2 * (len(form) - 1) if wraps else 0) for form, wraps in forms.items()),
            default=0,
        )

    def __repr__(self) -> str:
        return f"<Masker of {self._count} forms>"

    @property
    def longest(self) -> int:
        """The most characters one occurrence may span, line breaks included (0: none to hide)."""
        return self._longest

    def mask(self, text: str) -> str:
        """``text`` with every occurrence of every form replaced; overlapping ones become one."""
        masked, _, _ = self._advance(text, 0, final=True)
        return masked

    def stream(self) -> StreamMasker:
        """A new StreamMasker for one stream of output read in pieces."""
        return StreamMasker(self)

    def _advance(self, text: str, open_end: int, *, final: bool) -> tuple[str, str, int]:
        """Mask what can be decided in ``text``: (safe output, held-back text, open end).

        ``open_end`` is where a run of masked characters that was already replaced ends
        (relative to ``text``; <= 0 when none is open). An occurrence that starts before it
        extends the run without another ``***``. Held back is the longest tail that may be the
        start of an occurrence; no occurrence can begin before it and end in text not yet read.
        """
        if self._literal is None:
            return text, "", 0
        limit = len(text) if final else self._hold_from(text)
        found = self._literal.runs(text, limit)
        if self._wrapped is not None:
            found = sorted([*found, *self._wrapped_runs(text, limit)])
        pieces: list[str] = []
        end = open_end
        for start, stop in found:
            if start < end:  # overlaps the run before: one run
                end = max(end, stop)
                continue
            pieces.append(text[max(0, end) : start])
            pieces.append(MASK)
            end = stop
        if max(0, end) < limit:
            pieces.append(text[max(0, end) : limit])
        return "".join(pieces), text[limit:], end - limit

    def _wrapped_runs(self, text: str, limit: int) -> list[tuple[int, int]]:
        """Runs of encoded forms broken across lines, found in ``text`` with those breaks out."""
        assert self._wrapped is not None
        joined = _JOIN.sub("", text)
        if len(joined) == len(text) or self._wrapped.pattern.search(joined) is None:
            return []  # without a break, the forms as written found them all
        where = _Positions(text)
        runs = self._wrapped.runs(joined, where.joined(limit))
        return [(where.original(start), where.original(stop - 1) + 1) for start, stop in runs]

    def _hold_from(self, text: str) -> int:
        """Where the longest tail of ``text`` that may begin an occurrence starts."""
        assert self._literal is not None
        size = len(text)
        window = max(0, size - self._longest + 1)
        hold = self._literal.hold_from(text, window)
        if self._wrapped is None:
            return hold
        segment = text[window:]
        # What may go on with a wrapped form: the trailing run of encoded characters and breaks.
        run = len(segment.rstrip(_ENCODED + "\r\n"))
        tail = segment[run:]
        if hold <= window + run or ("\n" not in tail and "\r" not in tail):
            return hold  # held from before it, or no break: the forms as written decide
        # A line break at the very end, after an encoded character, may go on with a form.
        dangling = _OPEN_BREAK.search(tail, max(0, len(tail) - 3))
        body = tail[: dangling.start()] if dangling else tail
        joined = _JOIN.sub("", body)
        start = self._wrapped.hold_from(joined, 0)
        if start < len(joined):
            hold = min(hold, window + run + _Positions(body).original(start))
        return hold


class _FormSet:
    """Literal forms searched together, and what it takes to tell where one may begin."""

    __slots__ = ("_by_head", "_heads", "_short_heads", "pattern")

    def __init__(self, forms: Iterable[str]) -> None:
        ordered = sorted(forms, key=lambda form: (-len(form), form))
        # Alternatives are tried in order, so at any position the longest form wins.
        self.pattern = re.compile("|".join(re.escape(form) for form in ordered))
        by_head: dict[str, list[str]] = {}
        for form in ordered:
            by_head.setdefault(form[:_HEAD], []).append(form)
        self._by_head = {head: tuple(group) for head, group in by_head.items()}
        heads = "|".join(re.escape(head) for head in by_head)
        self._heads = re.compile(f"(?=(?:{heads}))")
        self._short_heads = frozenset(form[:size] for form in ordered for size in range(1, _HEAD))

    def runs(self, text: str, limit: int) -> list[tuple[int, int]]:
        """Runs of overlapping occurrences that start before ``limit``, in order."""
        runs: list[tuple[int, int]] = []
        cursor = 0
        while True:
            match = self.pattern.search(text, cursor)
            if match is None or match.start() >= limit:
                return runs
            end = self._run_end(text, match.start() + 1, match.end(), limit)
            runs.append((match.start(), end))
            cursor = end

    def _run_end(self, text: str, start: int, end: int, limit: int) -> int:
        """The end of a run reaching ``end``, grown by occurrences that overlap it."""
        position = start
        while position < min(end, limit):
            match = self.pattern.match(text, position)
            if match is not None:
                end = max(end, match.end())
            position += 1
        return end

    def hold_from(self, text: str, window: int) -> int:
        """Where the longest tail of ``text`` from ``window`` on that is a proper prefix of a
        form starts (``len(text)`` when there is none)."""
        size = len(text)
        for match in self._heads.finditer(text, window):
            position = match.start()
            tail = text[position:]
            candidates = self._by_head[text[position : position + _HEAD]]
            if any(len(form) > len(tail) and form.startswith(tail) for form in candidates):
                return position
        for position in range(max(window, size - _HEAD + 1), size):
            if text[position:] in self._short_heads:
                return position
        return size


class _Positions:
    """Maps positions in text whose line breaks between encoded characters were taken out
    (see ``_JOIN``) back to positions in the text as written."""

    __slots__ = ("_at", "_ends", "_removed")

    def __init__(self, text: str) -> None:
        self._at: list[int] = []  # where each break sits in the joined text
        self._ends: list[int] = []  # where each break ends in the text as written
        self._removed: list[int] = [0]  # characters taken out before each break, and in all
        for match in _JOIN.finditer(text):
            self._at.append(match.start() - self._removed[-1])
            self._ends.append(match.end())
            self._removed.append(self._removed[-1] + match.end() - match.start())

    def original(self, position: int) -> int:
        """Where the joined text's character at ``position`` is in the text as written."""
        return position + self._removed[bisect_right(self._at, position)]

    def joined(self, position: int) -> int:
        """How many characters of the joined text come before ``position`` as written."""
        return position - self._removed[bisect_right(self._ends, position)]


class StreamMasker:
    """Masks a stream read in pieces, holding back only what may begin a secret."""

    __slots__ = ("_held", "_masker", "_open_end")

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._held = ""
        self._open_end = 0

    @property
    def held(self) -> int:
        """How many characters are held back, waiting for the next piece (< longest form)."""
        return len(self._held)

    def feed(self, text: str) -> str:
        """The masked text that is safe to emit now, given one more piece of the stream."""
        if not text:
            return ""
        output, self._held, self._open_end = self._masker._advance(
            self._held + text, self._open_end, final=False
        )
        return output

    def flush(self) -> str:
        """The rest of the stream, masked, at its end; the masker can then start afresh."""
        output, _, _ = self._masker._advance(self._held, self._open_end, final=True)
        self._held, self._open_end = "", 0
        return output


def _forms_of(value: str) -> dict[str, bool]:
    """Every form of ``value`` output may contain (at least MIN_SECRET_LENGTH long), each with
    whether it may be wrapped: broken into lines anywhere, as base64 and hex dumps are."""
    texts = _text_forms(value)
    raw = value.encode("utf-8")
    encoded = _base64_forms(raw) | {raw.hex(), raw.hex().upper()}
    for line in value.splitlines():
        # Short lines of a multi-line value (a PEM's last line, a blank) are not masked alone.
        for candidate in {line, line.strip()}:
            if len(candidate) >= MIN_SECRET_LENGTH:
                texts |= _text_forms(candidate)
                encoded |= {
                    candidate.encode("utf-8").hex(),
                    candidate.encode("utf-8").hex().upper(),
                }
    forms = dict.fromkeys(texts | _base64_lines(raw), False)
    forms.update(dict.fromkeys(encoded, True))
    return {form: wraps for form, wraps in forms.items() if len(form) >= MIN_SECRET_LENGTH}


def _text_forms(value: str) -> set[str]:
    """The value as is, and as URL, JSON, Python and shell quoting would write it."""
    forms = {value, quote(value), quote(value, safe=""), quote_plus(value)}
    forms |= {_PERCENT_ESCAPE.sub(lambda m: m.group(0).lower(), form) for form in set(forms)}
    every_byte = "".join(f"%{byte:02X}" for byte in value.encode("utf-8"))
    forms |= {every_byte, every_byte.lower()}
    for ensure_ascii in (True, False):
        escaped = json.dumps(value, ensure_ascii=ensure_ascii)[1:-1]
        forms |= {escaped, escaped.replace("/", "\\/")}
    forms.add(repr(value)[1:-1])
    forms.add(value.replace("'", "'\\''"))  # inside '...' in sh: close, escaped quote, reopen
    forms.add(value.replace("'", "'\"'\"'"))  # the same, as shlex.quote writes it
    return forms


def _base64_forms(raw: bytes) -> set[str]:
    """Base64 of the value, and the parts of it that are fixed wherever it sits in a blob.

    In a longer blob the value starts at byte offset 0, 1 or 2 of a 3-byte group; for each,
    the characters made of the value's bits alone form a stable core. These forms may be
    wrapped (the ``base64`` command, PEM): line breaks may fall anywhere in them.
    """
    standard = base64.b64encode(raw).decode("ascii")
    forms = {standard, standard.rstrip("=")}
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw).decode("ascii")
        first = -(-8 * offset // 6)  # the first character made of the value's bits only
        last = 8 * (offset + len(raw)) // 6
        forms.add(encoded[first:last])
    return forms | {form.translate(_URL_SAFE) for form in forms}


def _base64_lines(raw: bytes) -> set[str]:
    """Each line of wrapped base64 of a blob that starts with the value, masked on its own."""
    standard = base64.b64encode(raw).decode("ascii")
    core = standard[: 8 * len(raw) // 6]
    lines: set[str] = set()
    for width in _BASE64_WRAP_WIDTHS:
        for blob in (standard, core):
            lines.update(blob[i : i + width] for i in range(0, len(blob), width))
    return lines | {line.translate(_URL_SAFE) for line in lines}
