"""Release provenance: the in-toto Statement v1 with a SLSA Provenance v1 predicate, and its check.

It builds the statement a release signs, reads one back with strict validation, and verifies a
signed release against what it should be; it reads blobs but never writes the store or records.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, BinaryIO, NoReturn, Protocol

from shipyard import __version__
from shipyard.core.blobs import CHUNK_SIZE, BlobCorrupted, BlobNotFound, Digest, InvalidDigest
from shipyard.core.errors import CheckFailed, ShipyardError, UserError
from shipyard.release import dsse

__all__ = [
    "BUILD_TYPE",
    "CHANGELOG",
    "CONFIG_DEPENDENCY",
    "GATE_RESULTS",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "BlobReader",
    "ExpectedRelease",
    "InvalidProvenanceInput",
    "Problem",
    "ProblemKind",
    "ProvenanceError",
    "ProvenanceInputs",
    "ReleaseVerificationFailed",
    "Statement",
    "StatementInvalid",
    "Subject",
    "VerificationReport",
    "read_statement",
    "sign_statement",
    "statement",
    "statement_bytes",
    "verify_release",
]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
"""The ``_type`` of an in-toto Statement v1."""

PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
"""The ``predicateType`` of a SLSA Provenance v1 predicate."""

PAYLOAD_TYPE = "application/vnd.in-toto+json"
"""The DSSE payload type of an in-toto statement."""

BUILD_TYPE = "https://shipyard.dev/build/pipeline/v1"
"""Shipyard's SLSA build type: a ``shipyard.yaml`` pipeline run on a commit, then gates."""

CONFIG_DEPENDENCY = "pipeline-config"
"""The name of the resolved dependency that records the pipeline configuration's digest."""

GATE_RESULTS = "gate-results"
"""The name of the byproduct that records the digest of the release gates' results."""

CHANGELOG = "changelog"
"""The name of the byproduct that records the digest of the release's changelog (UTF-8)."""

_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class ProvenanceError(ShipyardError):
    """A provenance statement cannot be built, read or verified."""


class InvalidProvenanceInput(ProvenanceError, UserError):
    """The inputs cannot make a statement: no subject, a duplicate name, a bad commit or time."""


class StatementInvalid(ProvenanceError, CheckFailed):
    """A payload is not a Shipyard in-toto statement; the message names the field and why."""


class ReleaseVerificationFailed(ProvenanceError, CheckFailed):
    """A signed release does not verify; the message lists every problem found."""

    def __init__(self, message: str, *, report: VerificationReport, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.report = report


@dataclass(frozen=True)
class Subject:
    """Something a release attests to: the bundle, an artifact or the SBOM, by name and digest."""

    name: str
    digest: Digest

    def to_json(self) -> dict[str, Any]:
        """The in-toto ResourceDescriptor of this subject."""
        return {"name": self.name, "digest": {"sha256": self.digest.hex}}


@dataclass(frozen=True)
class ProvenanceInputs:
    """What the provenance of one release records: source, configuration, run and gates."""

    repository: str
    ref: str
    commit: str
    version: str
    config_path: str
    config_digest: Digest
    builder_id: str
    run_id: str
    started_on: datetime
    finished_on: datetime
    gate_results_digest: Digest | None = None
    changelog_digest: Digest | None = None

    def __post_init__(self) -> None:
        for name in ("repository", "ref", "version", "config_path", "builder_id", "run_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise InvalidProvenanceInput(f"provenance {name} is empty or not text: {value!r}")
        if not _COMMIT.fullmatch(self.commit):
            raise InvalidProvenanceInput(
                f"provenance commit {self.commit!r} is not a full lowercase commit id",
                hint="pass the 40 (or 64) hex digits of 'git rev-parse HEAD'",
            )
        for name in ("started_on", "finished_on"):
            moment = getattr(self, name)
            if moment.tzinfo is None or moment.utcoffset() is None:
                raise InvalidProvenanceInput(
                    f"provenance {name} {moment.isoformat()} has no time zone",
                    hint="use datetime.now(UTC)",
                )
        if self.finished_on < self.started_on:
            raise InvalidProvenanceInput(
                f"provenance run finished ({_timestamp(self.finished_on)}) before it started "
                f"({_timestamp(self.started_on)})"
            )


def statement(subjects: Sequence[Subject], provenance: ProvenanceInputs) -> dict[str, Any]:
    """The in-toto Statement v1 of a release, with a SLSA Provenance v1 predicate."""
    ordered = _checked_subjects(subjects)
    source_uri = f"git+{provenance.repository}@{provenance.ref}"
    byproducts = []
    if provenance.gate_results_digest is not None:
        byproducts.append(
            {"name": GATE_RESULTS, "digest": {"sha256": provenance.gate_results_digest.hex}}
        )
    if provenance.changelog_digest is not None:
        byproducts.append(
            {"name": CHANGELOG, "digest": {"sha256": provenance.changelog_digest.hex}}
        )
    return {
        "_type": STATEMENT_TYPE,
        "subject": [subject.to_json() for subject in ordered],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "repository": provenance.repository,
                    "ref": provenance.ref,
                    "commit": provenance.commit,
                    "version": provenance.version,
                    "config": provenance.config_path,
                },
                "internalParameters": {"shipyardVersion": __version__},
                "resolvedDependencies": [
                    {"uri": source_uri, "digest": {"gitCommit": provenance.commit}},
                    {
                        "name": CONFIG_DEPENDENCY,
                        "uri": f"{source_uri}#{provenance.config_path}",
                        "digest": {"sha256": provenance.config_digest.hex},
                    },
                ],
            },
            "runDetails": {
                "builder": {"id": provenance.builder_id},
                "metadata": {
                    "invocationId": provenance.run_id,
                    "startedOn": _timestamp(provenance.started_on),
                    "finishedOn": _timestamp(provenance.finished_on),
                },
                "byproducts": byproducts,
            },
        },
    }


def statement_bytes(subjects: Sequence[Subject], provenance: ProvenanceInputs) -> bytes:
    """The statement as canonical JSON: sorted keys, no spaces, UTF-8."""
    return _canonical(statement(subjects, provenance))


def sign_statement(
    subjects: Sequence[Subject], provenance: ProvenanceInputs, signer: dsse.Signer
) -> dsse.Envelope:
    """The release's statement in a DSSE envelope signed by ``signer``."""
    return dsse.sign(PAYLOAD_TYPE, statement_bytes(subjects, provenance), signer)


@dataclass(frozen=True)
class Statement:
    """A statement read back and validated: what a signed release claims."""

    subjects: tuple[Subject, ...]
    repository: str
    ref: str
    commit: str
    version: str
    config_path: str
    config_digest: Digest
    builder_id: str
    run_id: str
    started_on: datetime
    finished_on: datetime
    gate_results_digest: Digest | None
    changelog_digest: Digest | None
    document: Mapping[str, Any] = field(repr=False, compare=False)

    def subject_digests(self) -> dict[str, Digest]:
        """The subjects by name."""
        return {subject.name: subject.digest for subject in self.subjects}


def read_statement(payload: bytes) -> Statement:
    """Parse and validate a statement; ``StatementInvalid`` names the field that is wrong."""
    try:
        document = json.loads(
            payload.decode("utf-8"),
            object_pairs_hook=_unique_keys,
            parse_constant=_no_constant,
        )
    except UnicodeDecodeError as exc:
        raise StatementInvalid(f"the statement is not UTF-8 text: {exc.reason}") from exc
    except ValueError as exc:
        raise StatementInvalid(f"the statement is not valid JSON: {exc}") from exc
    root = _Node(document, "statement")
    root.expect("_type", STATEMENT_TYPE)
    root.expect("predicateType", PREDICATE_TYPE)
    subjects = _read_subjects(root.get("subject"))
    predicate = root.get("predicate")
    definition = predicate.get("buildDefinition")
    definition.expect("buildType", BUILD_TYPE)
    external = definition.get("externalParameters")
    commit = _read_commit(definition.get("resolvedDependencies"))
    external_commit = external.get("commit").text()
    if external_commit != commit:
        raise external.get("commit").error(
            f"is {external_commit!r} but the resolved source commit is {commit!r}"
        )
    run = predicate.get("runDetails")
    metadata = run.get("metadata")
    started_on = metadata.get("startedOn").moment()
    finished_on = metadata.get("finishedOn").moment()
    return Statement(
        subjects=subjects,
        repository=external.get("repository").text(),
        ref=external.get("ref").text(),
        commit=commit,
        version=external.get("version").text(),
        config_path=external.get("config").text(),
        config_digest=_read_config_digest(definition.get("resolvedDependencies")),
        builder_id=run.get("builder").get("id").text(),
        run_id=metadata.get("invocationId").text(),
        started_on=started_on,
        finished_on=finished_on,
        gate_results_digest=_read_byproduct(run.optional("byproducts"), GATE_RESULTS),
        changelog_digest=_read_byproduct(run.optional("byproducts"), CHANGELOG),
        document=MappingProxyType(document),
    )


# --- verification --------------------------------------------------------------------------


class BlobReader(Protocol):
    """Where a release's blobs are read from (``BlobStore`` is one)."""

    def open(self, digest: Digest, /) -> BinaryIO:
        """A reader of the blob with ``digest``; ``BlobNotFound`` if it is not stored."""
        ...


@dataclass(frozen=True)
class ExpectedRelease:
    """What a release should be, from its record: version, commit, subjects by name, byproducts.

    A byproduct digest left ``None`` is not checked.
    """

    version: str
    commit: str
    subjects: Mapping[str, Digest]
    gate_results_digest: Digest | None = None
    changelog_digest: Digest | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "subjects", MappingProxyType(dict(self.subjects)))

    @classmethod
    def of(
        cls,
        version: str,
        commit: str,
        subjects: Sequence[Subject],
        gate_results_digest: Digest | None = None,
        changelog_digest: Digest | None = None,
    ) -> ExpectedRelease:
        """An expectation from a list of subjects."""
        return cls(
            version,
            commit,
            {subject.name: subject.digest for subject in subjects},
            gate_results_digest,
            changelog_digest,
        )


class ProblemKind(StrEnum):
    """What is wrong with a signed release."""

    ENVELOPE_MALFORMED = "envelope-malformed"
    NO_SIGNATURE = "no-signature"
    UNKNOWN_KEY = "unknown-key"
    BAD_SIGNATURE = "bad-signature"
    WRONG_PAYLOAD_TYPE = "wrong-payload-type"
    STATEMENT_INVALID = "statement-invalid"
    SUBJECT_MISSING = "subject-missing"
    SUBJECT_UNEXPECTED = "subject-unexpected"
    SUBJECT_MISMATCH = "subject-mismatch"
    BLOB_MISSING = "blob-missing"
    BLOB_MODIFIED = "blob-modified"
    COMMIT_MISMATCH = "commit-mismatch"
    VERSION_MISMATCH = "version-mismatch"
    GATE_RESULTS_MISMATCH = "gate-results-mismatch"
    CHANGELOG_MISMATCH = "changelog-mismatch"
    RELEASE_NOT_PUBLISHED = "release-not-published"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a signed release, and what it concerns (a subject, a key id)."""

    kind: ProblemKind
    message: str
    name: str | None = None

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.message}"


@dataclass(frozen=True)
class VerificationReport:
    """Every problem found in a signed release; none means it verified. Notes never fail it."""

    problems: tuple[Problem, ...]
    statement: Statement | None
    keyids: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the release verified: signed by a trusted key, every check passed."""
        return not self.problems

    def kinds(self) -> set[ProblemKind]:
        """The kinds of problem found."""
        return {problem.kind for problem in self.problems}

    def describe(self) -> str:
        """The problems one per line, or a line saying what verified."""
        if self.ok:
            signers = ", ".join(self.keyids)
            count = len(self.statement.subjects) if self.statement else 0
            subjects = f"{count} subject{'' if count == 1 else 's'}"
            return f"verified: signed by key {signers}; {subjects} match their blobs"
        return "\n".join(str(problem) for problem in self.problems)

    def raise_if_failed(self) -> None:
        """Raise ``ReleaseVerificationFailed`` listing every problem, unless all verified."""
        if self.problems:
            count = len(self.problems)
            raise ReleaseVerificationFailed(
                f"the release does not verify ({count} problem{'s' if count > 1 else ''}):\n"
                + "\n".join(f"  - {problem}" for problem in self.problems),
                report=self,
                hint="do not deploy it; rebuild the release, or find out who changed it",
            )


def verify_release(
    envelope_json: bytes | str,
    expected: ExpectedRelease,
    keys: Mapping[str, dsse.Verifier],
    blob_reader: BlobReader,
) -> VerificationReport:
    """Check a release's signed statement: signature, statement, subjects, blobs and commit."""
    try:
        envelope = dsse.Envelope.from_json(envelope_json)
    except dsse.MalformedEnvelope as exc:
        problem = Problem(ProblemKind.ENVELOPE_MALFORMED, exc.message)
        return VerificationReport((problem,), None, ())
    problems: list[Problem] = []
    keyids: tuple[str, ...] = ()
    try:
        keyids = dsse.verify(envelope, keys).keyids
    except dsse.SignatureInvalid as exc:
        problems.append(Problem(_signature_kind(exc), exc.message, ", ".join(exc.keyids) or None))
    if envelope.payload_type != PAYLOAD_TYPE:
        problems.append(
            Problem(
                ProblemKind.WRONG_PAYLOAD_TYPE,
                f"the envelope's payload type is {envelope.payload_type!r}, not {PAYLOAD_TYPE!r}",
            )
        )
    try:
        claimed = read_statement(envelope.payload)
    except StatementInvalid as exc:
        problems.append(Problem(ProblemKind.STATEMENT_INVALID, exc.message))
        return VerificationReport(tuple(problems), None, keyids)
    problems.extend(_subject_problems(claimed, expected))
    problems.extend(_blob_problems(claimed, blob_reader))
    problems.extend(_release_problems(claimed, expected))
    notes = []
    if expected.changelog_digest is not None and claimed.changelog_digest is None:
        notes.append(
            "the changelog is not covered by the signature: the release was signed before "
            "Shipyard signed changelogs, so a change to it cannot be detected"
        )
    return VerificationReport(tuple(problems), claimed, keyids, tuple(notes))


def _signature_kind(exc: dsse.SignatureInvalid) -> ProblemKind:
    if isinstance(exc, dsse.NoSignatures):
        return ProblemKind.NO_SIGNATURE
    if isinstance(exc, dsse.UnknownKey):
        return ProblemKind.UNKNOWN_KEY
    if isinstance(exc, dsse.MalformedEnvelope):
        return ProblemKind.ENVELOPE_MALFORMED
    if isinstance(exc, dsse.WrongPayloadType):
        return ProblemKind.WRONG_PAYLOAD_TYPE
    return ProblemKind.BAD_SIGNATURE


def _subject_problems(claimed: Statement, expected: ExpectedRelease) -> list[Problem]:
    problems = []
    signed = claimed.subject_digests()
    for name, digest in sorted(expected.subjects.items()):
        if name not in signed:
            problems.append(
                Problem(
                    ProblemKind.SUBJECT_MISSING,
                    f"{name} ({digest}) is part of the release but not of the signed statement",
                    name,
                )
            )
        elif signed[name] != digest:
            problems.append(
                Problem(
                    ProblemKind.SUBJECT_MISMATCH,
                    f"{name} is {digest} in the release but {signed[name]} in the signed "
                    "statement: it was swapped",
                    name,
                )
            )
    for name, digest in sorted(signed.items()):
        if name not in expected.subjects:
            problems.append(
                Problem(
                    ProblemKind.SUBJECT_UNEXPECTED,
                    f"{name} ({digest}) is in the signed statement but not part of the release",
                    name,
                )
            )
    return problems


def _blob_problems(claimed: Statement, blob_reader: BlobReader) -> list[Problem]:
    problems = []
    for subject in claimed.subjects:
        try:
            actual = _hash_blob(blob_reader, subject.digest)
        except BlobNotFound:
            problems.append(
                Problem(
                    ProblemKind.BLOB_MISSING,
                    f"the blob of {subject.name} ({subject.digest}) is not in the blob store",
                    subject.name,
                )
            )
            continue
        except BlobCorrupted as exc:
            problems.append(
                Problem(
                    ProblemKind.BLOB_MODIFIED,
                    f"the blob of {subject.name} ({subject.digest}) was modified: {exc.message}",
                    subject.name,
                )
            )
            continue
        if actual != subject.digest.hex:
            problems.append(
                Problem(
                    ProblemKind.BLOB_MODIFIED,
                    f"the blob of {subject.name} was modified: it hashes to sha256:{actual}, "
                    f"not {subject.digest}",
                    subject.name,
                )
            )
    return problems


def _hash_blob(blob_reader: BlobReader, digest: Digest) -> str:
    hasher = hashlib.sha256()
    with blob_reader.open(digest) as reader:
        while chunk := reader.read(CHUNK_SIZE):
            hasher.update(chunk)
    return hasher.hexdigest()


def _release_problems(claimed: Statement, expected: ExpectedRelease) -> list[Problem]:
    problems = []
    if claimed.commit != expected.commit.lower():
        problems.append(
            Problem(
                ProblemKind.COMMIT_MISMATCH,
                f"the signed statement names commit {claimed.commit}, "
                f"but the release is of commit {expected.commit}",
            )
        )
    if claimed.version != expected.version:
        problems.append(
            Problem(
                ProblemKind.VERSION_MISMATCH,
                f"the signed statement is for version {claimed.version}, "
                f"but the release is version {expected.version}",
            )
        )
    wanted = expected.gate_results_digest
    if wanted is not None and claimed.gate_results_digest != wanted:
        found = claimed.gate_results_digest or "no gate results"
        problems.append(
            Problem(
                ProblemKind.GATE_RESULTS_MISMATCH,
                f"the signed statement records {found}, but the release's gate results are "
                f"{wanted}",
                "gate results",
            )
        )
    changelog = expected.changelog_digest
    if changelog is not None and claimed.changelog_digest not in (None, changelog):
        problems.append(
            Problem(
                ProblemKind.CHANGELOG_MISMATCH,
                f"the release's changelog hashes to {changelog}, but the signed statement "
                f"records {claimed.changelog_digest}: the changelog was edited",
                "changelog",
            )
        )
    return problems


# --- reading helpers -----------------------------------------------------------------------


class _Node:
    """A value inside the statement with its path, for errors that say exactly where."""

    def __init__(self, value: object, path: str) -> None:
        self.value = value
        self.path = path

    def error(self, why: str) -> StatementInvalid:
        return StatementInvalid(
            f"{self.path} {why}",
            hint="this is not a statement Shipyard signed, or it was edited",
        )

    def _mapping(self) -> dict[str, Any]:
        if not isinstance(self.value, dict):
            raise self.error(f"is {_kind(self.value)}, not an object")
        return self.value

    def get(self, key: str) -> _Node:
        mapping = self._mapping()
        if key not in mapping:
            raise self.error(f"has no {key!r}")
        return _Node(mapping[key], f"{self.path}.{key}")

    def optional(self, key: str) -> _Node | None:
        mapping = self._mapping()
        return _Node(mapping[key], f"{self.path}.{key}") if key in mapping else None

    def expect(self, key: str, wanted: str) -> None:
        found = self.get(key).text()
        if found != wanted:
            raise self.error(f"has {key} {found!r}, expected {wanted!r}")

    def text(self) -> str:
        if not isinstance(self.value, str) or not self.value:
            raise self.error(f"is {_kind(self.value)}, not a non-empty string")
        return self.value

    def items(self) -> list[_Node]:
        if not isinstance(self.value, list):
            raise self.error(f"is {_kind(self.value)}, not a list")
        return [_Node(item, f"{self.path}[{index}]") for index, item in enumerate(self.value)]

    def digest(self) -> Digest:
        node = self.get("sha256")
        try:
            return Digest(node.text())
        except InvalidDigest:
            raise node.error("is not 64 lowercase hex digits") from None

    def moment(self) -> datetime:
        text = self.text()
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise self.error(f"is {text!r}, not an RFC 3339 time") from None
        if moment.tzinfo is None:
            raise self.error(f"is {text!r}, a time without a time zone")
        return moment


def _read_subjects(node: _Node) -> tuple[Subject, ...]:
    entries = node.items()
    if not entries:
        raise node.error("is empty: a release statement names at least one subject")
    subjects: dict[str, Subject] = {}
    for entry in entries:
        name = entry.get("name").text()
        if name in subjects:
            raise entry.get("name").error(f"repeats the subject name {name!r}")
        subjects[name] = Subject(name, entry.get("digest").digest())
    return tuple(subjects.values())


def _read_commit(node: _Node) -> str:
    for entry in node.items():
        digest = entry.optional("digest")
        if digest is None or not isinstance(digest.value, dict) or "gitCommit" not in digest.value:
            continue
        commit_node = digest.get("gitCommit")
        commit = commit_node.text()
        if not _COMMIT.fullmatch(commit):
            raise commit_node.error(f"is {commit!r}, not a full lowercase commit id")
        return commit
    raise node.error("has no entry with a gitCommit digest: the source commit is not recorded")


def _read_config_digest(node: _Node) -> Digest:
    for entry in node.items():
        name = entry.optional("name")
        if name is not None and name.value == CONFIG_DEPENDENCY:
            return entry.get("digest").digest()
    raise node.error(
        f"has no {CONFIG_DEPENDENCY!r} entry: the pipeline configuration is not recorded"
    )


def _read_byproduct(node: _Node | None, wanted: str) -> Digest | None:
    if node is None:
        return None
    for entry in node.items():
        name = entry.optional("name")
        if name is not None and name.value == wanted:
            return entry.get("digest").digest()
    return None


def _checked_subjects(subjects: Sequence[Subject]) -> list[Subject]:
    if not subjects:
        raise InvalidProvenanceInput(
            "a release statement needs at least one subject",
            hint="pass the bundle, each artifact and the SBOM",
        )
    seen: set[str] = set()
    for subject in subjects:
        if not isinstance(subject.name, str) or not subject.name.strip():
            raise InvalidProvenanceInput(f"a subject has an empty name: {subject!r}")
        if subject.name in seen:
            raise InvalidProvenanceInput(
                f"two subjects are named {subject.name!r}",
                hint="subject names must be unique within a release",
            )
        seen.add(subject.name)
    return sorted(subjects, key=lambda subject: subject.name)


def _canonical(document: Mapping[str, Any]) -> bytes:
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {key!r} appears twice in one object")
        result[key] = value
    return result


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)
