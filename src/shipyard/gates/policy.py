"""The policy deploy check: Rego v1 files evaluated with regopy over one documented input.

Every message in a package's ``deny`` (``data.<package>.deny``, a set of strings) is a blocking
finding. regopy's native library prints parse errors to stdout, so it runs in a child process
whose output we keep, and a policy in Rego v0 syntax is refused before regopy can give it
another meaning. The input is built from the gate context only; nothing here reads the store.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from shipyard.core.blobs import BlobError, BlobStore
from shipyard.core.config.gates import DEFAULT_POLICY_PATHS, PolicyGateSettings
from shipyard.core.errors import UserError, excerpt
from shipyard.core.state import StateDir
from shipyard.gates.interface import (
    Finding,
    Gate,
    GateContext,
    GateError,
    GateKind,
    Severity,
    Verdict,
    count_of,
    register,
)

DENIED = "SHIPYARD-POLICY-DENY"
"""The finding id of a message in a policy's ``deny``."""

INPUT_VERSION = 1
"""The version of the input document's layout (``input.schema``); docs/policy.md describes it."""

EVALUATION_TIMEOUT_S = 60.0
"""How long the policies may take to evaluate before the check fails closed."""

_MAX_POLICY_BYTES = 1024 * 1024
_DOCS = "docs/policy.md"


@dataclass(frozen=True)
class PolicyProblem:
    """One thing wrong with a policy: the file and line (when known) and what."""

    file: str | None
    line: int | None
    message: str

    def __str__(self) -> str:
        if self.file is None:
            return self.message
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"file": self.file, "line": self.line, "message": self.message}


class PolicyError(GateError, UserError):
    """The policies cannot be read, parsed or evaluated; the message names file and line."""

    def __init__(self, problems: Sequence[PolicyProblem], *, hint: str | None = None) -> None:
        self.problems = tuple(problems)
        super().__init__(
            "; ".join(str(problem) for problem in self.problems),
            hint=hint
            or f"fix the policy (Rego v1 syntax, see {_DOCS}) and check it with "
            "'shipyard policy eval --release VERSION --env ENV'",
        )


@dataclass(frozen=True)
class PolicyFile:
    """One Rego file: its name as shown (relative to the project's folder), text and package."""

    name: str
    source: str
    package: str


@dataclass(frozen=True)
class Denial:
    """One ``deny`` message of one package, and the files that declare that package."""

    package: str
    message: str
    files: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"package": self.package, "message": self.message, "files": list(self.files)}


@register
class PolicyGate(Gate):
    """Fails when any policy denies the deployment, or when a policy cannot be evaluated."""

    name: ClassVar[str] = "policy"
    kind: ClassVar[GateKind] = "deploy"

    def __init__(self, settings: PolicyGateSettings) -> None:
        self.settings = settings

    @classmethod
    def for_context(cls, context: GateContext) -> PolicyGate:
        """The gate with ``gates.policy`` (``policies/`` when unconfigured)."""
        gates = context.config.gates
        settings = gates.policy if gates is not None else None
        return cls(settings if settings is not None else PolicyGateSettings())

    def judge(self, context: GateContext) -> Verdict:
        """Evaluate every policy over the deployment's input; each deny message blocks."""
        policies = load_policies(context.source_dir, self.settings.paths)
        denials = evaluate(policies, policy_input(context))
        findings = [_finding(denial) for denial in denials]
        packages = sorted({policy.package for policy in policies})
        summary = (
            f"{count_of(len(denials), 'deny message')} from "
            f"{count_of(len(policies), 'policy file')} ({', '.join(packages)})"
        )
        return Verdict.of(findings, summary)


def _finding(denial: Denial) -> Finding:
    return Finding(
        id=DENIED,
        severity=Severity.HIGH,
        location=", ".join(denial.files),
        message=denial.message,
        remediation=f"meet the policy data.{denial.package}.deny, or change the policy",
        blocking=True,
        details={"package": denial.package, "files": list(denial.files)},
    )


# --- reading the policies ----------------------------------------------------------------------


def load_policies(
    source_dir: Path, paths: Sequence[str] = DEFAULT_POLICY_PATHS
) -> list[PolicyFile]:
    """Read the ``.rego`` files under ``paths`` (files or folders, relative to ``source_dir``).

    Raises ``PolicyError`` naming each missing path, unreadable file, file without a package
    and rule written in Rego v0 syntax.
    """
    problems: list[PolicyProblem] = []
    found: dict[Path, tuple[Path, str]] = {}
    for path in paths:
        target = source_dir / path
        if target.is_file():
            found.setdefault(target.resolve(), (target, _shown(target, source_dir)))
        elif target.is_dir():
            files = sorted(
                file
                for file in target.rglob("*.rego")
                if file.is_file() and not _hidden(file.relative_to(target))
            )
            if not files:
                problems.append(PolicyProblem(path, None, "holds no .rego file"))
            for file in files:
                found.setdefault(file.resolve(), (file, _shown(file, source_dir)))
        else:
            problems.append(PolicyProblem(path, None, "no such file or folder"))
    if problems:
        raise PolicyError(
            problems, hint=f"gates.policy.paths names the Rego files to evaluate; see {_DOCS}"
        )
    policies: list[PolicyFile] = []
    for file, name in found.values():
        policy = _read(file, name, problems)
        if policy is not None:
            policies.append(policy)
    if any(problem.message.endswith(_V0_MESSAGE) for problem in problems):
        raise PolicyError(problems, hint=_V0_HINT)
    if problems:
        raise PolicyError(problems)
    return policies


def _shown(path: Path, source_dir: Path) -> str:
    try:
        return path.relative_to(source_dir).as_posix()
    except ValueError:
        return path.as_posix()


def _hidden(relative: Path) -> bool:
    """Whether a file is hidden or in a hidden folder (.git, an editor's backups)."""
    return any(part.startswith(".") for part in relative.parts)


def _read(path: Path, name: str, problems: list[PolicyProblem]) -> PolicyFile | None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        problems.append(PolicyProblem(name, None, f"cannot be read: {exc.strerror or exc}"))
        return None
    if len(data) > _MAX_POLICY_BYTES:
        problems.append(PolicyProblem(name, None, "is larger than 1 MiB"))
        return None
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problems.append(PolicyProblem(name, line, "is not UTF-8 text"))
        return None
    tokens = list(_tokens(source))
    bad = _v0_rule_bodies(tokens)
    lines = source.splitlines()
    for token in bad:
        head = excerpt(lines[token.line - 1].strip(), 60)
        problems.append(PolicyProblem(name, token.line, f"{head} {_V0_MESSAGE}"))
    package = _package(tokens)
    if package is None:
        problems.append(
            PolicyProblem(name, 1, "does not start with a package declaration (package NAME)")
        )
        return None
    return PolicyFile(name=name, source=source, package=package) if not bad else None


_V0_MESSAGE = "is Rego v0 syntax (a rule body without 'if'); Shipyard reads Rego v1 only"
_V0_HINT = (
    "in Rego v1 every rule body follows 'if', and a rule that collects messages says "
    "'contains': write 'deny contains msg if { ... }' for 'deny[msg] { ... }' and "
    f"'allow if {{ ... }}' for 'allow {{ ... }}'; see {_DOCS}"
)


@dataclass(frozen=True)
class _Token:
    kind: str  # "name", "number", "string", or the punctuation itself
    text: str
    line: int


_TOKEN = re.compile(
    r"""(?P<space>[ \t\r\f]+)
      | (?P<newline>\n)
      | (?P<comment>\#[^\n]*)
      | (?P<string>"(?:[^"\\\n]|\\.)*")
      | (?P<raw>`[^`]*`)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<number>[0-9][0-9.eE+-]*)
      | (?P<punct>:=|==|!=|<=|>=|[{}()\[\].,;:=|&+\-*/%<>!])
    """,
    re.VERBOSE,
)


def _tokens(source: str) -> Iterator[_Token]:
    """Rego's tokens, enough to find rule heads and bodies (comments and strings skipped)."""
    line = 1
    position = 0
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None:  # something regopy will name; not ours to judge
            position += 1
            continue
        kind = match.lastgroup or ""
        text = match.group(0)
        if kind in ("string", "raw"):
            yield _Token("string", text, line)
        elif kind == "name" or kind == "number":
            yield _Token(kind, text, line)
        elif kind == "punct":
            yield _Token(text, text, line)
        line += text.count("\n")
        position = match.end()


# A '{' at the top level after one of these opens a value (an object, a set, a comprehension).
_VALUE_BEFORE = frozenset(
    {":=", "=", "==", "!=", "<=", ">=", "<", ">", ",", ":", "|", "&", "+", "-", "*", "/", "%"}
    | {"(", "[", "{", ";"}
)
# A '{' after one of these words is still fine: 'if' opens a body in Rego v1.
_WORDS_BEFORE_A_VALUE = frozenset({"if", "contains", "in", "not", "with", "as", "some"})


def _v0_rule_bodies(tokens: Sequence[_Token]) -> list[_Token]:
    """The top-level ``{`` that open a rule body without ``if``: ``deny[msg] {``, ``allow {``,
    ``f(x) = y {``, ``else {``. In Rego v1 every rule body follows ``if``."""
    found: list[_Token] = []
    depth = 0
    previous: _Token | None = None
    for token in tokens:
        if token.kind == "{" and depth == 0 and previous is not None:
            words_ok = previous.kind == "name" and previous.text in _WORDS_BEFORE_A_VALUE
            if previous.kind not in _VALUE_BEFORE and not words_ok and previous.kind != "}":
                found.append(token)
        if token.kind in ("{", "(", "["):
            depth += 1
        elif token.kind in ("}", ")", "]"):
            depth = max(0, depth - 1)
        previous = token
    return found


def _package(tokens: Sequence[_Token]) -> str | None:
    """The package path of a file (``a.b``) when it starts with ``package``."""
    if not tokens or tokens[0].kind != "name" or tokens[0].text != "package":
        return None
    parts: list[str] = []
    rest = iter(tokens[1:])
    for token in rest:
        if not parts and token.kind == "name":
            parts.append(token.text)
        elif parts and token.kind == "." and (name := next(rest, None)) is not None:
            if name.kind != "name":
                return None
            parts.append(name.text)
        elif parts and token.kind == "[" and (key := next(rest, None)) is not None:
            if key.kind != "string" or next(rest, None) is None:
                return None
            parts.append(f"[{key.text}]")
        else:
            break
    if not parts:
        return None
    return ".".join(parts).replace(".[", "[")


# --- the input document ----------------------------------------------------------------------


def policy_input(context: GateContext) -> dict[str, Any]:
    """The one input document every policy reads (docs/policy.md describes each field).

    It holds the release to deploy (its record, gate results and SBOM summary), the target
    environment, the release running there now, the deployment, the actor, the approvals and
    the time. Raises ``GateError`` when the context is not a deployment's.
    """
    record = context.release_record
    if record is None or context.environment is None:
        raise GateError(
            "the policy check judges a deployment: it needs the release and the environment",
            hint="run it through a deployment, or try it with "
            "'shipyard policy eval --release VERSION --env ENV'",
        )
    blobs = BlobStore(StateDir(context.state_root, None, None).blobs)
    version = str(record.get("version"))
    return {
        "schema": INPUT_VERSION,
        "release": _release(record),
        "gates": {
            str(result.get("gate")): _gate(result)
            for result in _gate_results(record, blobs, version)
        },
        "sbom": _sbom(record, blobs, version),
        "environment": context.environment,
        "running": _release(context.running) if context.running is not None else None,
        "deployment": _plain(context.deployment) if context.deployment is not None else None,
        "actor": context.actor,
        "approvals": [_plain(approval) for approval in context.approvals],
        "time": rfc3339(context.now),
    }


def rfc3339(moment: datetime) -> str:
    """A moment as RFC 3339 in UTC, ``2026-06-01T12:00:00+00:00``.

    The offset is written as ``+00:00``, not ``Z``: regopy's ``time.parse_rfc3339_ns`` reads
    only the former.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def _release(record: Mapping[str, Any]) -> dict[str, Any]:
    signer = record.get("signer")
    key_id = record.get("key_id") or (signer if isinstance(signer, str) else None)
    return {
        "project": record.get("project"),
        "version": record.get("version"),
        "tag": record.get("tag") or None,
        "commit": record.get("commit"),
        "status": record.get("status"),
        "bundle": record.get("bundle"),
        "artifacts": dict(record.get("artifacts") or {}),
        "sbom": record.get("sbom"),
        "statement": record.get("envelope"),
        "signer": {"key_id": key_id} if key_id else None,
        "released_by": record.get("actor"),
        "author": record.get("author"),
        "created_at": _moment(record.get("created_at")),
        "published_at": _moment(record.get("published_at")),
        "changelog": record.get("changelog"),
    }


def _moment(value: Any) -> str | None:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, str) and value:
        try:
            return rfc3339(datetime.fromisoformat(value))
        except ValueError:
            return value
    return None


def _gate_results(
    record: Mapping[str, Any], blobs: BlobStore, version: str
) -> list[Mapping[str, Any]]:
    """The release gates' results: given in the record, or read from its signed blob."""
    value = record.get("gate_results")
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = _blob_json(blobs, value, f"the gate results of release {version}")
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise GateError(f"the gate results of release {version} are not a list of results")
    return value


def _gate(result: Mapping[str, Any]) -> dict[str, Any]:
    findings = [_gate_finding(item) for item in result.get("findings") or []]
    counts = dict.fromkeys((s.value for s in Severity), 0)
    for finding in findings:
        if not finding["suppressed"] and finding["severity"] in counts:
            counts[finding["severity"]] += 1
    return {
        "status": result.get("status"),
        "summary": result.get("summary"),
        "overridden": result.get("overridden_by") is not None,
        "overridden_by": result.get("overridden_by"),
        "override_reason": result.get("override_reason"),
        "counts": counts,
        "findings": findings,
    }


def _gate_finding(finding: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": finding.get("id"),
        "severity": finding.get("severity"),
        "location": finding.get("location"),
        "message": finding.get("message"),
        "blocking": bool(finding.get("blocking")),
        "suppressed": finding.get("suppression") is not None,
        "suppression": finding.get("suppression"),
        "details": _plain(finding.get("details") or {}),
    }


def _sbom(record: Mapping[str, Any], blobs: BlobStore, version: str) -> dict[str, Any] | None:
    digest = record.get("sbom")
    if not isinstance(digest, str) or not digest:
        return None
    document = _blob_json(blobs, digest, f"the SBOM of release {version}")
    if not isinstance(document, Mapping):
        raise GateError(f"the SBOM of release {version} ({digest}) is not a JSON object")
    components: list[dict[str, Any]] = []
    licenses: dict[str, int] = {}
    for component in document.get("components") or []:
        if not isinstance(component, Mapping):
            continue
        names = _licenses_of(component)
        for name in names:
            licenses[name] = licenses.get(name, 0) + 1
        components.append(
            {
                "name": component.get("name"),
                "version": component.get("version"),
                "purl": component.get("purl"),
                "licenses": names,
            }
        )
    return {
        "component_count": len(components),
        "licenses": dict(sorted(licenses.items())),
        "unlicensed": sum(1 for c in components if not c["licenses"]),
        "components": components,
    }


def _licenses_of(component: Mapping[str, Any]) -> list[str]:
    names: list[str] = []
    for entry in component.get("licenses") or []:
        if not isinstance(entry, Mapping):
            continue
        if isinstance(entry.get("expression"), str):
            names.append(entry["expression"])
        license_ = entry.get("license")
        if isinstance(license_, Mapping):
            name = license_.get("id") or license_.get("name")
            if isinstance(name, str):
                names.append(name)
    return sorted(set(names))


def _blob_json(blobs: BlobStore, digest: str, what: str) -> Any:
    try:
        data = blobs.read_bytes(digest)
    except BlobError as error:
        raise GateError(f"{what} ({digest}) cannot be read: {error.message}") from None
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GateError(f"{what} ({digest}) is not JSON: {error}") from None


def _plain(value: Any) -> Any:
    """``value`` as plain JSON data: moments as RFC 3339, anything else unknown as text."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return str(value)


# --- evaluating ------------------------------------------------------------------------------

# The child process: regopy's native library writes its messages to fd 1, so the child points
# fd 1 at stderr (which we keep) and writes its answer to a copy of the real stdout. It imports
# only regopy, so it starts in a fraction of the time that importing Shipyard would take.
_CHILD = r"""
import json, os, sys
answer_fd = os.dup(1)
os.dup2(2, 1)
request = json.load(sys.stdin)
answer = {"results": {}, "error": None}
try:
    import regopy
    from regopy.rego_shared import rego_node_value
except ImportError as error:
    answer["error"] = {"kind": "missing", "text": str(error)}
else:
    def errors(node):
        found = []
        if node.kind == regopy.NodeKind.Error:
            item = {}
            for index in range(len(node)):
                child = node.at(index)
                if child.kind == regopy.NodeKind.ErrorMessage:
                    item["message"] = rego_node_value(child._impl)
                elif child.kind == regopy.NodeKind.ErrorCode:
                    item["code"] = rego_node_value(child._impl)
            found.append(item)
        elif node.kind == regopy.NodeKind.ErrorSeq:
            for index in range(len(node)):
                found += errors(node.at(index))
        return found

    rego = regopy.Interpreter()
    rego.strict_built_in_errors = True
    compile_errors = []
    for name, source in request["modules"]:
        try:
            rego.add_module(name, source)
        except regopy.RegoError as error:
            compile_errors.append(str(error))
    if compile_errors:
        answer["error"] = {"kind": "compile", "texts": compile_errors}
    else:
        try:
            # Not ASCII-escaped: regopy keeps a string's escapes as written, so "é" in the
            # input must be written as a policy's literal "é" is, or the two never compare equal.
            rego.set_input_term(json.dumps(request["input"], ensure_ascii=False))
            for query in request["queries"]:
                output = rego.query(query)
                if not output.ok():
                    answer["error"] = {
                        "kind": "eval", "query": query, "errors": errors(output.node())
                    }
                    break
                text = str(output)
                answer["results"][query] = None if text == "undefined" else json.loads(text)
        except regopy.RegoError as error:
            answer["error"] = {"kind": "compile", "texts": [str(error)]}
sys.stdout.flush()
with os.fdopen(answer_fd, "w") as out:
    json.dump(answer, out)
"""


def evaluate(
    policies: Sequence[PolicyFile],
    document: Mapping[str, Any],
    *,
    timeout_s: float = EVALUATION_TIMEOUT_S,
) -> list[Denial]:
    """Every ``deny`` message of every package over ``document``, in package order.

    Raises ``PolicyError`` with file and line for a policy regopy cannot parse, and for a
    ``deny`` that is not a set of strings; ``GateError`` when evaluation fails or takes longer
    than ``timeout_s``. Nothing regopy prints reaches this process's stdout or stderr.
    """
    files: dict[str, list[str]] = {}
    for policy in policies:
        files.setdefault(policy.package, []).append(policy.name)
    queries = {f"data.{package}.deny": package for package in sorted(files)}
    answer = _run_child(
        {
            "modules": [[policy.name, policy.source] for policy in policies],
            "input": _plain(document),
            "queries": list(queries),
        },
        timeout_s,
    )
    error = answer.get("error")
    if error:
        _raise_for(error, {policy.name: policy for policy in policies}, files)
    denials: list[Denial] = []
    for query, package in queries.items():
        value = _value((answer.get("results") or {}).get(query))
        if value is None:
            continue  # no deny rule in this package (a library of helpers)
        if not isinstance(value, list):
            raise PolicyError(
                [
                    PolicyProblem(
                        ", ".join(files[package]),
                        None,
                        f"{query} is {_kind(value)}, not a set of messages",
                    )
                ],
                hint="write the rule as 'deny contains msg if { ... }' (Rego v1); "
                "'deny[msg] if' makes an object",
            )
        for item in value:
            message = item if isinstance(item, str) else json.dumps(item, sort_keys=True)
            denials.append(Denial(package, message, tuple(files[package])))
    return denials


def _run_child(request: Mapping[str, Any], timeout_s: float) -> dict[str, Any]:
    try:
        child = subprocess.run(
            # -P: the current folder (a project's own json.py, say) is not on the child's path.
            [sys.executable, "-P", "-c", _CHILD],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise GateError(
            f"the policies took longer than {timeout_s:g} s to evaluate",
            hint="look for a rule that iterates over far more than the input holds",
        ) from None
    except OSError as exc:
        raise GateError(f"cannot start the policy evaluator: {exc.strerror or exc}") from None
    try:
        answer = json.loads(child.stdout)
    except json.JSONDecodeError:
        answer = None
    if child.returncode != 0 or not isinstance(answer, dict):
        last = (child.stderr.strip().splitlines() or ["no message"])[-1]
        raise GateError(
            f"the policy evaluator (regopy) stopped with exit status {child.returncode}: {last}",
            hint="this is a bug in Shipyard or regopy; run again with --debug and report it",
        )
    answer["native_output"] = child.stderr
    if isinstance(answer.get("error"), dict) and answer["error"].get("kind") == "missing":
        raise GateError(
            f"regopy cannot be imported: {answer['error'].get('text')}",
            hint="install Shipyard with its dependencies (pip install regopy)",
        )
    return answer


def _value(result: Any) -> Any:
    """The value of a query's answer (``{"expressions": [value]}``); None when undefined."""
    if result is None:
        return None
    if isinstance(result, list):
        result = result[0] if result else None
    if not isinstance(result, Mapping):
        return None
    expressions = result.get("expressions") or []
    return expressions[0] if expressions else None


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


# (error 6:a.rego|64|2 (errormsg 27:Invalid assignment operator) ...): names and messages are
# length-prefixed, and the location is a byte offset and a length in that module's source.
_ERROR_AT = re.compile(r"\(error (\d+):")
_MESSAGE_AT = re.compile(r"\(errormsg (\d+):")
_LOCATION = re.compile(r"\|(\d+)\|(\d+)")


def _raise_for(
    error: Mapping[str, Any], policies: Mapping[str, PolicyFile], files: Mapping[str, list[str]]
) -> None:
    if error.get("kind") == "compile":
        problems = [
            problem
            for text in error.get("texts") or []
            for problem in _compile_problems(str(text), policies)
        ]
        raise PolicyError(problems or [PolicyProblem(None, None, "regopy cannot compile them")])
    query = str(error.get("query"))
    package = query.removeprefix("data.").removesuffix(".deny")
    where = ", ".join(files.get(package, [])) or None
    messages = [
        f"{item.get('message', 'an error')}" + (f" ({item['code']})" if item.get("code") else "")
        for item in error.get("errors") or []
    ] or ["an error without a message"]
    raise PolicyError(
        [PolicyProblem(where, None, f"evaluating {query} failed: {m}") for m in messages],
        hint="a built-in function that fails (such as a division by zero) or two values for "
        "one complete rule stop the check; fix the policy so it cannot",
    )


def _compile_problems(text: str, policies: Mapping[str, PolicyFile]) -> list[PolicyProblem]:
    """The problems in one of regopy's error sequences, each with its file and line."""
    problems: list[PolicyProblem] = []
    position = 0
    while (start := _ERROR_AT.search(text, position)) is not None:
        size = int(start.group(1))
        name = text[start.end() : start.end() + size]
        after = start.end() + size
        location = _LOCATION.match(text, after)
        message_at = _MESSAGE_AT.search(text, after)
        message = "cannot be parsed"
        if message_at is not None:
            length = int(message_at.group(1))
            message = text[message_at.end() : message_at.end() + length]
        policy = policies.get(name)
        line = None
        if location is not None and policy is not None:
            offset = int(location.group(1))
            line = policy.source.encode("utf-8")[:offset].count(b"\n") + 1
        problems.append(PolicyProblem(name if policy is not None else None, line, message))
        position = message_at.end() if message_at is not None else after
    return problems
