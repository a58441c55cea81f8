"""Release provenance: the statement's shape, reading it back, and every verification failure."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.signer import SSlibKey

from release.signing_support import (
    COMMIT,
    CONFIG,
    CONTENTS,
    GATE_RESULTS,
    OTHER_COMMIT,
    VERSION,
    SignedRelease,
    make_keyring,
    provenance_inputs,
    signed_release,
)
from shipyard.core.blobs import BlobNotFound, Digest
from shipyard.core.errors import CheckFailed
from shipyard.release import dsse
from shipyard.release.keys import Keyring, SigningKey, load_public_key_file
from shipyard.release.provenance import (
    BUILD_TYPE,
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    ExpectedRelease,
    InvalidProvenanceInput,
    ProblemKind,
    ReleaseVerificationFailed,
    StatementInvalid,
    Subject,
    read_statement,
    sign_statement,
    statement,
    statement_bytes,
    verify_release,
)

SUBJECTS = tuple(Subject(name, Digest.of(content)) for name, content in CONTENTS.items())


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    """A keyring with one active key."""
    ring = make_keyring(tmp_path)
    ring.generate()
    return ring


@pytest.fixture
def release(tmp_path: Path, keyring: Keyring) -> SignedRelease:
    """A release whose blobs are stored and whose statement is signed by ``keyring``."""
    return signed_release(tmp_path, keyring)


def envelope_with_payload(envelope_json: bytes, payload: bytes) -> bytes:
    """The same envelope and signatures around another payload."""
    document = json.loads(envelope_json)
    document["payload"] = base64.b64encode(payload).decode()
    return json.dumps(document).encode()


def payload_of(envelope_json: bytes) -> dict[str, Any]:
    """The statement inside an envelope, parsed."""
    return json.loads(dsse.Envelope.from_json(envelope_json).payload)  # type: ignore[no-any-return]


# --- the statement -------------------------------------------------------------------------


def test_statement_is_an_in_toto_statement_with_slsa_provenance() -> None:
    document = statement(SUBJECTS, provenance_inputs())

    assert document["_type"] == STATEMENT_TYPE == "https://in-toto.io/Statement/v1"
    assert document["predicateType"] == PREDICATE_TYPE == "https://slsa.dev/provenance/v1"
    assert document["subject"] == [
        {"name": name, "digest": {"sha256": Digest.of(content).hex}}
        for name, content in sorted(CONTENTS.items())
    ]
    definition = document["predicate"]["buildDefinition"]
    assert definition["buildType"] == BUILD_TYPE
    assert definition["externalParameters"] == {
        "repository": "https://git.example.com/acme/demo-service",
        "ref": "refs/heads/main",
        "commit": COMMIT,
        "version": VERSION,
        "config": "shipyard.yaml",
    }
    assert definition["resolvedDependencies"] == [
        {
            "uri": "git+https://git.example.com/acme/demo-service@refs/heads/main",
            "digest": {"gitCommit": COMMIT},
        },
        {
            "name": "pipeline-config",
            "uri": "git+https://git.example.com/acme/demo-service@refs/heads/main#shipyard.yaml",
            "digest": {"sha256": Digest.of(CONFIG).hex},
        },
    ]
    assert "shipyardVersion" in definition["internalParameters"]
    assert document["predicate"]["runDetails"] == {
        "builder": {"id": "https://shipyard.dev/builder/local/v1"},
        "metadata": {
            "invocationId": "run-0042",
            "startedOn": "2024-05-01T12:00:00Z",
            "finishedOn": "2024-05-01T12:03:30Z",
        },
        "byproducts": [{"name": "gate-results", "digest": {"sha256": Digest.of(GATE_RESULTS).hex}}],
    }


def test_without_gate_results_there_is_no_byproduct() -> None:
    document = statement(SUBJECTS, provenance_inputs(gate_results_digest=None))

    assert document["predicate"]["runDetails"]["byproducts"] == []
    assert read_statement(statement_bytes(SUBJECTS, provenance_inputs(gate_results_digest=None)))


def test_statement_bytes_are_canonical_json() -> None:
    shuffled = tuple(reversed(SUBJECTS))

    data = statement_bytes(shuffled, provenance_inputs())

    assert data == statement_bytes(SUBJECTS, provenance_inputs())
    assert data == json.dumps(
        statement(SUBJECTS, provenance_inputs()), sort_keys=True, separators=(",", ":")
    ).encode("utf-8")
    assert b" " not in data.replace(b"demo-service\npipeline", b"")


def test_statement_bytes_keep_non_ascii_names_as_utf8() -> None:
    subjects = (Subject("dist/naïve-1.0.tar.gz", Digest.of(b"x")),)

    data = statement_bytes(subjects, provenance_inputs())

    assert "naïve".encode() in data
    assert read_statement(data).subjects == subjects


def test_a_statement_reads_back_as_it_was_made() -> None:
    inputs = provenance_inputs()

    read = read_statement(statement_bytes(SUBJECTS, inputs))

    assert read.subject_digests() == {subject.name: subject.digest for subject in SUBJECTS}
    assert (read.repository, read.ref, read.commit, read.version) == (
        inputs.repository,
        inputs.ref,
        inputs.commit,
        inputs.version,
    )
    assert (read.config_path, read.config_digest) == ("shipyard.yaml", Digest.of(CONFIG))
    assert (read.builder_id, read.run_id) == (inputs.builder_id, inputs.run_id)
    assert (read.started_on, read.finished_on) == (inputs.started_on, inputs.finished_on)
    assert read.gate_results_digest == Digest.of(GATE_RESULTS)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"commit": "abc123"}, "not a full lowercase commit id"),
        ({"commit": COMMIT.upper()}, "not a full lowercase commit id"),
        ({"run_id": ""}, "run_id is empty"),
        ({"started_on": datetime(2024, 5, 1, 12)}, "has no time zone"),
        ({"finished_on": datetime(2024, 5, 1, 11, tzinfo=UTC)}, "finished .* before it started"),
    ],
)
def test_bad_provenance_inputs_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidProvenanceInput, match=message):
        provenance_inputs(**changes)


def test_subjects_must_be_present_and_uniquely_named() -> None:
    with pytest.raises(InvalidProvenanceInput, match="at least one subject"):
        statement([], provenance_inputs())
    with pytest.raises(InvalidProvenanceInput, match="two subjects are named 'a'"):
        statement(
            [Subject("a", Digest.of(b"1")), Subject("a", Digest.of(b"2"))], provenance_inputs()
        )


def edited(**changes: Any) -> bytes:
    """A valid statement with top-level or dotted-path fields replaced (None removes)."""
    document = statement(SUBJECTS, provenance_inputs())
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\xff", "not UTF-8"),
        (b"{", "not valid JSON"),
        (b"[]", "statement is a list, not an object"),
        (b'{"_type": 1, "_type": 2}', "appears twice"),
        (b'{"x": NaN}', "NaN is not a JSON number"),
        (edited(_type="https://in-toto.io/Statement/v0.1"), "expected 'https://in-toto.io"),
        (edited(predicateType="https://slsa.dev/provenance/v0.2"), "predicateType"),
        (edited(subject=None), "statement has no 'subject'"),
        (edited(subject=[]), "statement.subject is empty"),
        (edited(subject=[{"name": "a", "digest": {"sha1": "ab"}}]), r"subject\[0\]\.digest has no"),
        (
            edited(subject=[{"name": "a", "digest": {"sha256": "AB" * 32}}]),
            r"subject\[0\]\.digest\.sha256 is not 64 lowercase hex",
        ),
        (
            edited(subject=[SUBJECTS[0].to_json(), SUBJECTS[0].to_json()]),
            r"subject\[1\]\.name repeats",
        ),
        (edited(predicate__buildDefinition__buildType="https://example.com/other"), "buildType"),
        (
            edited(predicate__buildDefinition__externalParameters__commit=OTHER_COMMIT),
            "externalParameters.commit is .* but the resolved source commit",
        ),
        (
            edited(predicate__buildDefinition__resolvedDependencies=[]),
            "no entry with a gitCommit digest",
        ),
        (
            edited(predicate__buildDefinition__resolvedDependencies__0__digest__gitCommit="xyz"),
            r"resolvedDependencies\[0\]\.digest\.gitCommit is 'xyz'",
        ),
        (edited(predicate__runDetails__metadata__startedOn="yesterday"), "not an RFC 3339 time"),
        (
            edited(predicate__runDetails__metadata__startedOn="2024-05-01T12:00:00"),
            "without a time zone",
        ),
        (edited(predicate__runDetails__builder=None), "runDetails has no 'builder'"),
    ],
)
def test_a_statement_that_is_not_shipyards_says_where_it_is_wrong(
    payload: bytes, message: str
) -> None:
    with pytest.raises(StatementInvalid, match=message):
        read_statement(payload)


# --- verification: success -----------------------------------------------------------------


def test_a_release_as_signed_verifies(release: SignedRelease, keyring: Keyring) -> None:
    report = verify_release(
        release.envelope_json, release.expected, keyring.public_keys(), release.store
    )

    assert report.ok, report.describe()
    assert report.keyids == (keyring.active().keyid,)
    assert report.statement is not None
    assert report.statement.commit == COMMIT
    assert "verified" in report.describe()
    report.raise_if_failed()


def test_a_release_verifies_with_an_exported_public_key(
    release: SignedRelease, keyring: Keyring, tmp_path: Path
) -> None:
    exported = tmp_path / "release.pub"
    exported.write_text(keyring.public_key(keyring.active().keyid).pem())
    key = load_public_key_file(exported)

    report = verify_release(
        release.envelope_json, release.expected, {key.keyid: key}, release.store
    )

    assert report.ok, report.describe()


def test_a_release_signed_before_a_rotation_still_verifies(
    release: SignedRelease, keyring: Keyring
) -> None:
    keyring.rotate()

    report = verify_release(
        release.envelope_json, release.expected, keyring.public_keys(), release.store
    )

    assert report.ok, report.describe()


def test_securesystemslib_verifies_a_release_envelope(
    release: SignedRelease, keyring: Keyring
) -> None:
    public = keyring.public_key(keyring.active().keyid)
    theirs = SslibEnvelope.from_dict(json.loads(release.envelope_json))

    theirs.verify([SSlibKey.from_crypto(public.key, keyid=public.keyid)], 1)

    assert theirs.payload_type == PAYLOAD_TYPE
    assert json.loads(theirs.payload)["_type"] == STATEMENT_TYPE


# --- verification: every kind of failure ---------------------------------------------------


def verify(release: SignedRelease, keyring: Keyring, **changes: Any) -> Any:
    """Verify ``release`` with the keyring's keys, replacing any argument in ``changes``."""
    arguments: dict[str, Any] = {
        "envelope_json": release.envelope_json,
        "expected": release.expected,
        "keys": keyring.public_keys(),
        "blob_reader": release.store,
    }
    arguments.update(changes)
    return verify_release(**arguments)


def test_a_modified_blob_is_caught_and_named(release: SignedRelease, keyring: Keyring) -> None:
    path = release.blob_path("dist/demo-1.4.0-py3-none-any.whl")
    path.chmod(0o644)
    path.write_bytes(b"a wheel with a backdoor")

    report = verify(release, keyring)

    assert [problem.kind for problem in report.problems] == [ProblemKind.BLOB_MODIFIED]
    assert report.problems[0].name == "dist/demo-1.4.0-py3-none-any.whl"
    assert "dist/demo-1.4.0-py3-none-any.whl" in report.describe()


class UncheckedBlobs:
    """A blob source that serves whatever bytes it holds, without checking digests."""

    def __init__(self, blobs: dict[Digest, bytes]) -> None:
        self.blobs = blobs

    def open(self, digest: Digest, /) -> BinaryIO:
        """The bytes held for ``digest``."""
        if digest not in self.blobs:
            raise BlobNotFound(f"no blob {digest}", digest=digest)
        return io.BytesIO(self.blobs[digest])


def test_blobs_are_hashed_again_even_if_the_store_does_not_check(
    release: SignedRelease, keyring: Keyring
) -> None:
    served = {subject.digest: CONTENTS[subject.name] for subject in release.subjects}
    served[release.digest("sbom.cdx.json")] = b'{"bomFormat": "edited"}'

    report = verify(release, keyring, blob_reader=UncheckedBlobs(served))

    assert [(p.kind, p.name) for p in report.problems] == [
        (ProblemKind.BLOB_MODIFIED, "sbom.cdx.json")
    ]
    assert "hashes to sha256:" in report.problems[0].message


def test_a_missing_blob_is_caught_and_named(release: SignedRelease, keyring: Keyring) -> None:
    release.store.delete(release.digest("bundle.tar.gz"))

    report = verify(release, keyring)

    assert [(p.kind, p.name) for p in report.problems] == [
        (ProblemKind.BLOB_MISSING, "bundle.tar.gz")
    ]


def test_a_swapped_artifact_is_caught_and_named(release: SignedRelease, keyring: Keyring) -> None:
    impostor = release.store.put_bytes(b"another wheel").digest
    swapped = dict(release.expected.subjects)
    swapped["dist/demo-1.4.0-py3-none-any.whl"] = impostor
    expected = ExpectedRelease(VERSION, COMMIT, swapped, release.expected.gate_results_digest)

    report = verify(release, keyring, expected=expected)

    assert [(p.kind, p.name) for p in report.problems] == [
        (ProblemKind.SUBJECT_MISMATCH, "dist/demo-1.4.0-py3-none-any.whl")
    ]
    assert str(impostor) in report.problems[0].message


def test_an_added_artifact_is_caught_and_named(release: SignedRelease, keyring: Keyring) -> None:
    extra = release.store.put_bytes(b"an extra file").digest
    expected = ExpectedRelease(
        VERSION,
        COMMIT,
        {**release.expected.subjects, "dist/extra.whl": extra},
        release.expected.gate_results_digest,
    )

    report = verify(release, keyring, expected=expected)

    assert [(p.kind, p.name) for p in report.problems] == [
        (ProblemKind.SUBJECT_MISSING, "dist/extra.whl")
    ]


def test_a_removed_artifact_is_caught_and_named(release: SignedRelease, keyring: Keyring) -> None:
    fewer = {k: v for k, v in release.expected.subjects.items() if k != "sbom.cdx.json"}
    expected = ExpectedRelease(VERSION, COMMIT, fewer, release.expected.gate_results_digest)

    report = verify(release, keyring, expected=expected)

    assert [(p.kind, p.name) for p in report.problems] == [
        (ProblemKind.SUBJECT_UNEXPECTED, "sbom.cdx.json")
    ]


def test_an_edited_payload_is_a_bad_signature(release: SignedRelease, keyring: Keyring) -> None:
    document = payload_of(release.envelope_json)
    document["predicate"]["runDetails"]["builder"]["id"] = "https://evil.example.com"
    tampered = envelope_with_payload(
        release.envelope_json, json.dumps(document, sort_keys=True).encode()
    )

    report = verify(release, keyring, envelope_json=tampered)

    assert [(p.kind, p.name) for p in report.problems] == [
        (ProblemKind.BAD_SIGNATURE, keyring.active().keyid)
    ]


def test_an_edited_payload_also_reports_what_the_edit_changed(
    release: SignedRelease, keyring: Keyring
) -> None:
    document = payload_of(release.envelope_json)
    definition = document["predicate"]["buildDefinition"]
    definition["externalParameters"]["commit"] = OTHER_COMMIT
    definition["resolvedDependencies"][0]["digest"]["gitCommit"] = OTHER_COMMIT
    tampered = envelope_with_payload(release.envelope_json, json.dumps(document).encode())

    report = verify(release, keyring, envelope_json=tampered)

    assert report.kinds() == {ProblemKind.BAD_SIGNATURE, ProblemKind.COMMIT_MISMATCH}


def test_a_wrong_commit_is_caught(release: SignedRelease, keyring: Keyring) -> None:
    expected = ExpectedRelease(
        VERSION, OTHER_COMMIT, release.expected.subjects, release.expected.gate_results_digest
    )

    report = verify(release, keyring, expected=expected)

    assert [p.kind for p in report.problems] == [ProblemKind.COMMIT_MISMATCH]
    assert COMMIT in report.problems[0].message
    assert OTHER_COMMIT in report.problems[0].message


def test_a_wrong_version_is_caught(release: SignedRelease, keyring: Keyring) -> None:
    expected = ExpectedRelease(
        "9.9.9", COMMIT, release.expected.subjects, release.expected.gate_results_digest
    )

    report = verify(release, keyring, expected=expected)

    assert [p.kind for p in report.problems] == [ProblemKind.VERSION_MISMATCH]


def test_other_gate_results_are_caught(release: SignedRelease, keyring: Keyring) -> None:
    expected = ExpectedRelease(VERSION, COMMIT, release.expected.subjects, Digest.of(b"other"))

    report = verify(release, keyring, expected=expected)

    assert [p.kind for p in report.problems] == [ProblemKind.GATE_RESULTS_MISMATCH]


def test_a_signature_by_another_key_is_caught(
    release: SignedRelease, keyring: Keyring, tmp_path: Path
) -> None:
    other = make_keyring(tmp_path, "other")
    stranger = other.generate()
    envelope = sign_statement(release.subjects, provenance_inputs(), other.signer())

    report = verify(release, keyring, envelope_json=envelope.to_json())

    assert [(p.kind, p.name) for p in report.problems] == [
        (ProblemKind.UNKNOWN_KEY, stranger.keyid)
    ]
    assert stranger.keyid in report.describe()


def test_another_key_posing_as_ours_is_caught(release: SignedRelease, keyring: Keyring) -> None:
    ours = keyring.active().keyid

    class Impostor:
        """Signs with a stranger's key but claims our key id."""

        keyid = ours
        key = SigningKey.of(Ed25519PrivateKey.generate())

        def sign(self, data: bytes) -> bytes:
            """The stranger's signature."""
            return self.key.sign(data)

    envelope = sign_statement(release.subjects, provenance_inputs(), Impostor())

    report = verify(release, keyring, envelope_json=envelope.to_json())

    assert [(p.kind, p.name) for p in report.problems] == [(ProblemKind.BAD_SIGNATURE, ours)]


def test_an_unsigned_release_is_caught(release: SignedRelease, keyring: Keyring) -> None:
    document = json.loads(release.envelope_json)
    document["signatures"] = []

    report = verify(release, keyring, envelope_json=json.dumps(document))

    assert [p.kind for p in report.problems] == [ProblemKind.NO_SIGNATURE]


def test_no_trusted_key_is_an_unknown_key(release: SignedRelease, keyring: Keyring) -> None:
    report = verify(release, keyring, keys={})

    assert [p.kind for p in report.problems] == [ProblemKind.UNKNOWN_KEY]


def test_a_malformed_envelope_is_caught(release: SignedRelease, keyring: Keyring) -> None:
    report = verify(release, keyring, envelope_json=b'{"payload": "!!"}')

    assert [p.kind for p in report.problems] == [ProblemKind.ENVELOPE_MALFORMED]
    assert report.statement is None


def test_a_signed_payload_that_is_not_a_statement_is_caught(
    release: SignedRelease, keyring: Keyring
) -> None:
    envelope = dsse.sign("text/plain", b"hello", keyring.signer())

    report = verify(release, keyring, envelope_json=envelope.to_json())

    assert report.kinds() == {ProblemKind.WRONG_PAYLOAD_TYPE, ProblemKind.STATEMENT_INVALID}


def test_every_problem_is_reported_not_only_the_first(
    release: SignedRelease, keyring: Keyring, tmp_path: Path
) -> None:
    release.blob_path("bundle.tar.gz").chmod(0o644)
    release.blob_path("bundle.tar.gz").write_bytes(b"edited bundle")
    swapped = {
        **release.expected.subjects,
        "sbom.cdx.json": Digest.of(b"another sbom"),
        "dist/extra.whl": Digest.of(b"extra"),
    }
    expected = ExpectedRelease(VERSION, OTHER_COMMIT, swapped)
    other = make_keyring(tmp_path, "other")
    other.generate()
    document = payload_of(release.envelope_json)
    resigned = dsse.sign(PAYLOAD_TYPE, json.dumps(document).encode(), other.signer())

    report = verify(release, keyring, envelope_json=resigned.to_json(), expected=expected)

    assert report.kinds() == {
        ProblemKind.UNKNOWN_KEY,
        ProblemKind.BLOB_MODIFIED,
        ProblemKind.SUBJECT_MISMATCH,
        ProblemKind.SUBJECT_MISSING,
        ProblemKind.COMMIT_MISMATCH,
    }
    with pytest.raises(ReleaseVerificationFailed) as caught:
        report.raise_if_failed()
    assert isinstance(caught.value, CheckFailed)
    message = str(caught.value)
    assert "5 problems" in message
    for name in ("bundle.tar.gz", "sbom.cdx.json", "dist/extra.whl", OTHER_COMMIT):
        assert name in message


def test_expected_release_is_immutable() -> None:
    subjects = {"a": Digest.of(b"a")}
    expected = ExpectedRelease(VERSION, COMMIT, subjects)
    subjects["b"] = Digest.of(b"b")

    assert list(expected.subjects) == ["a"]
    with pytest.raises(TypeError):
        expected.subjects["c"] = Digest.of(b"c")  # type: ignore[index]
