"""Finding secrets in text: detect-secrets' detectors in-process, plus the project's own rules.

A hit keeps a secret only as long as it takes to hash it: what leaves this module is the rule,
the place, a short redacted prefix and the sha256 of the secret, never the value. Lines marked
``shipyard: allow-secret`` (or detect-secrets' ``pragma: allowlist secret``) are reported as
allowed; digests next to ``sha256``/``integrity`` and the like are not secrets and are dropped.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.core.config.gates import SecretRule

GENERIC_RULES = ("Base64 High Entropy String", "Hex High Entropy String", "Secret Keyword")
"""detect-secrets rules that match by shape or keyword alone; a more specific rule wins."""

PRIVATE_KEY = "Private Key"

DISABLED_DETECTORS = ("IPPublicDetector",)
"""detect-secrets detectors that find things that are not secrets (public IP addresses)."""

_FILTERS = (
    "detect_secrets.filters.heuristic.is_sequential_string",
    "detect_secrets.filters.heuristic.is_potential_uuid",
    "detect_secrets.filters.heuristic.is_likely_id_string",
    "detect_secrets.filters.heuristic.is_templated_secret",
    "detect_secrets.filters.heuristic.is_prefixed_with_dollar_sign",
    "detect_secrets.filters.heuristic.is_indirect_reference",
    "detect_secrets.filters.heuristic.is_lock_file",
    "detect_secrets.filters.heuristic.is_not_alphanumeric_string",
)
"""detect-secrets' default filters, less two: Shipyard reads the allow pragmas itself, and a
path that merely contains "swagger" (anywhere, even in a parent folder) is no reason to skip."""

_ALLOW_SAME_LINE = re.compile(
    r"shipyard:\s*allow-secret(?!-next-line)\b|pragma:\s*allowlist[\s-]+secret", re.IGNORECASE
)
_ALLOW_NEXT_LINE = re.compile(
    r"shipyard:\s*allow-secret-next-line\b|pragma:\s*allowlist[\s-]+nextline[\s-]+secret",
    re.IGNORECASE,
)
_DIGEST_BEFORE = re.compile(
    r"(?:sha(?:1|224|256|384|512)|md5|blake2[bs]?|integrity|checksum|digest|hash(?:es)?)"
    r"[\"'\s:=\-\[{(]{0,6}$",
    re.IGNORECASE,
)
_PEM_END = re.compile(r"-----END[ A-Z0-9]*-----")
_LOCK = threading.Lock()
_MAX_PEM_LINES = 200

# detect-secrets logs candidate values when it filters them (at INFO); keep its logger quiet so
# that no secret can reach a log, whatever the root logger is set to.
logging.getLogger("detect-secrets").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class SecretHit:
    """One secret found: where, by which rules, and its fingerprint; never the secret itself."""

    path: str
    line: int | None
    location: str
    rules: tuple[str, ...]
    fingerprint: str
    prefix: str
    length: int
    allowed: bool = False
    commit: str | None = None

    @property
    def rule(self) -> str:
        """The most specific rule that matched."""
        return self.rules[0]

    @property
    def redacted(self) -> str:
        """How the secret is shown: a short prefix, an ellipsis and a short hash."""
        return f"{self.prefix}… (sha256:{self.fingerprint[:12]}, {self.length} characters)"


@dataclass(frozen=True)
class TextSource:
    """Lines to scan, with the path they are reported at and each line's number (or offset)."""

    path: str
    lines: Sequence[str]
    numbers: Sequence[int]
    location_format: str = "{path}:{number}"
    commit: str | None = None
    detectors_by_name: bool = True

    def location(self, index: int) -> str:
        """Where the line at ``index`` is, for findings."""
        return self.location_format.format(path=self.path, number=self.numbers[index])


@dataclass
class _Project:
    rule: SecretRule
    pattern: re.Pattern[str] = field(init=False)
    keywords: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.pattern = re.compile(self.rule.regex)
        self.keywords = tuple(keyword.lower() for keyword in self.rule.keywords)


class SecretScanner:
    """Scans text sources with detect-secrets and the project's rules; use as a context."""

    def __init__(self, rules: Sequence[SecretRule] = ()) -> None:
        self.rules = [_Project(rule) for rule in rules]
        self._folder: Path | None = None
        self._plugins: dict[str, Any] = {}
        self._written = 0

    @contextmanager
    def session(self) -> Iterator[SecretScanner]:
        """Hold detect-secrets' global settings for this scanner while it scans."""
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
        from detect_secrets.settings import get_plugins, transient_settings

        classes: list[type[Any]] = list(get_mapping_from_secret_type_to_class().values())
        plugins = [
            {"name": plugin.__name__}
            for plugin in classes
            if plugin.__name__ not in DISABLED_DETECTORS
        ]
        config = {"plugins_used": plugins, "filters_used": [{"path": p} for p in _FILTERS]}
        with (
            _LOCK,
            tempfile.TemporaryDirectory(prefix="shipyard-secrets-") as folder,
            transient_settings(config),
        ):
            self._folder = Path(folder)
            self._plugins = {str(plugin.secret_type): plugin for plugin in get_plugins()}
            try:
                yield self
            finally:
                self._folder = None
                self._plugins = {}

    def scan_file(self, path: Path, display: str, lines: Sequence[str]) -> list[SecretHit]:
        """Scan a readable text file at ``path`` (already read into ``lines``)."""
        source = TextSource(display, lines, range(1, len(lines) + 1))
        return self._scan(path, source)

    def scan_source(self, source: TextSource) -> list[SecretHit]:
        """Scan lines that are not a file as such (history, a binary file's strings)."""
        assert self._folder is not None, "use the scanner inside session()"
        name = source.path if source.detectors_by_name else f"{source.path}.strings"
        self._written += 1
        folder = self._folder / str(self._written)
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(source.lines) + "\n", encoding="utf-8", errors="replace")
        try:
            return self._scan(target, source)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _scan(self, file: Path, source: TextSource) -> list[SecretHit]:
        from detect_secrets.core.scan import scan_file

        found: dict[int, list[_Candidate]] = {}
        lines = source.lines
        for potential in scan_file(str(file)):
            index = potential.line_number - 1
            if not 0 <= index < len(lines) or potential.secret_value is None:
                continue
            # detect-secrets reads YAML through a parser whose line numbers may be a line off.
            nearby = lines[max(0, index - 2) : index + 3]
            if potential.type == "Secret Keyword" and _names_a_secret(
                source.path, nearby, potential.secret_value
            ):
                continue
            value = self._identity(potential.type, potential.secret_value, lines, index)
            if value is not None:
                _add(found.setdefault(index, []), potential.type, value)
        for project in self.rules:
            for index, line in enumerate(lines):
                lowered = line.lower()
                if project.keywords and not any(k in lowered for k in project.keywords):
                    continue
                for match in project.pattern.finditer(line):
                    value = match.group("secret") if "secret" in match.re.groupindex else None
                    value = value if value is not None else match.group(0)
                    if value and _entropy_enough(value, project.rule.entropy):
                        _add(found.setdefault(index, []), project.rule.id, value)
        hits = []
        for index, candidates in sorted(found.items()):
            for candidate in candidates:
                ordered = sorted(dict.fromkeys(candidate.rules), key=_specificity)
                hits.append(
                    SecretHit(
                        path=source.path,
                        line=source.numbers[index],
                        location=source.location(index),
                        rules=tuple(ordered),
                        fingerprint=hashlib.sha256(candidate.value.encode()).hexdigest(),
                        prefix=_prefix(candidate.value, ordered[0]),
                        length=len(candidate.value),
                        allowed=_allowed(lines, index),
                        commit=source.commit,
                    )
                )
        return hits

    def _identity(self, rule: str, value: str, lines: Sequence[str], index: int) -> str | None:
        """The text that identifies the secret: the whole token or key, not a capture of it."""
        line = lines[index]
        if rule == PRIVATE_KEY:
            block = []
            for text in lines[index : index + _MAX_PEM_LINES]:
                block.append(text.strip())
                if _PEM_END.search(text):
                    break
            return "\n".join(block)
        if rule in GENERIC_RULES[:2] and _looks_like_digest(line, value):
            return None
        plugin = self._plugins.get(rule)
        if len(value) < 12 and plugin is not None:
            for pattern in getattr(plugin, "denylist", ()):
                for match in pattern.finditer(line):
                    if value in match.group(0):
                        return str(match.group(0))
        return value


_CONFIG_FILES = ("shipyard.yaml", "shipyard.yml")
_SECRET_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,127}")
_NAMED_BY = re.compile(
    r"(?:^|[\s{,])(?:secret|secrets)\s*:\s*(?:\[)?\s*[\"']?(?P<name>[A-Z][A-Z0-9_]*)"
)


def _names_a_secret(path: str, lines: Sequence[str], value: str) -> bool:
    """Whether a keyword hit is Shipyard's own configuration naming a secret (``secret:
    WEBHOOK_KEY``): the value is the name of an environment variable, never the secret."""
    if path.rsplit("/", 1)[-1] not in _CONFIG_FILES or not _SECRET_NAME.fullmatch(value):
        return False
    return any(match.group("name") == value for line in lines for match in _NAMED_BY.finditer(line))


@dataclass
class _Candidate:
    rules: list[str]
    value: str


def _add(candidates: list[_Candidate], rule: str, value: str) -> None:
    """Record a match; matches of one secret (one inside the other) on a line become one."""
    for candidate in candidates:
        if value in candidate.value:
            candidate.rules.append(rule)
            return
        if candidate.value in value:
            candidate.rules.append(rule)
            candidate.value = value
            return
    candidates.append(_Candidate([rule], value))


def printable_runs(data: bytes, minimum: int = 8) -> list[tuple[int, str]]:
    """The runs of printable ASCII in binary data, with their byte offsets (like ``strings``)."""
    return [
        (match.start(), match.group().decode("ascii"))
        for match in re.finditer(rb"[\x20-\x7e\t]{%d,}" % minimum, data)
    ]


def shannon_entropy(text: str) -> float:
    """Bits of entropy per character of ``text``."""
    if not text:
        return 0.0
    counts = Counter(text)
    total = len(text)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def _entropy_enough(value: str, floor: float | None) -> bool:
    return floor is None or shannon_entropy(value) >= floor


def _looks_like_digest(line: str, value: str) -> bool:
    position = line.find(value)
    return (
        position >= 0 and _DIGEST_BEFORE.search(line[max(0, position - 40) : position]) is not None
    )


def _allowed(lines: Sequence[str], index: int) -> bool:
    if _ALLOW_SAME_LINE.search(lines[index]):
        return True
    return index > 0 and _ALLOW_NEXT_LINE.search(lines[index - 1]) is not None


def _specificity(rule: str) -> tuple[int, str]:
    return (GENERIC_RULES.index(rule) + 1 if rule in GENERIC_RULES else 0, rule)


def _prefix(value: str, rule: str) -> str:
    if rule == PRIVATE_KEY:
        return value.splitlines()[0] if value else ""
    return value[: min(4, len(value) // 5)]
