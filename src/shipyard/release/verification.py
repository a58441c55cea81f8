"""Verifying a recorded release: signature, every digest (bundle, artifacts, SBOM, gate results,
changelog), its commit, and that it was published.

Trusts, by default, only the key that signed the release (as recorded), so a retired key
cannot vouch for a release it did not sign; ``--key`` names another public key file.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from shipyard.core.blobs import BlobCorrupted, BlobError, BlobNotFound, BlobStore, Digest
from shipyard.core.git import Git
from shipyard.release import dsse
from shipyard.release.keys import Keyring, load_public_key_file
from shipyard.release.provenance import (
    ExpectedRelease,
    Problem,
    ProblemKind,
    VerificationReport,
    verify_release,
)
from shipyard.release.publish import bundle_name, sbom_name
from shipyard.release.records import PUBLISHED, ReleaseRecord

GATE_RESULTS_NAME = "gate results"
"""How problems name a release's gate results (the blob and the record's digest of it)."""


def verify(
    record: ReleaseRecord,
    *,
    blobs: BlobStore,
    keyring: Keyring,
    git: Git | None,
    key_file: Path | None = None,
) -> VerificationReport:
    """Check a release against its record; every problem is in the report."""
    if key_file is not None:
        key = load_public_key_file(key_file)
        keys: dict[str, dsse.Verifier] = {key.keyid: key}
    elif record.key_id:
        keys = {record.key_id: keyring.public_key(record.key_id)}
    else:
        keys = {}
    subjects = {bundle_name(record.project, record.version): Digest.parse(record.bundle)}
    subjects.update({name: Digest.parse(d) for name, d in record.artifacts.items()})
    if record.sbom:
        subjects[sbom_name(record.project, record.version)] = Digest.parse(record.sbom)
    expected = ExpectedRelease(
        version=record.version,
        commit=record.commit,
        subjects=subjects,
        gate_results_digest=Digest.parse(record.gate_results) if record.gate_results else None,
        changelog_digest=Digest.of(record.changelog.encode("utf-8")),
    )
    extra = _status_problems(record)
    try:
        envelope = blobs.read_bytes(record.envelope) if record.envelope else b""
    except BlobError as error:
        envelope = b""
        extra.append(
            Problem(
                ProblemKind.BLOB_MODIFIED, f"the signed statement: {error.message}", "statement"
            )
        )
    report = verify_release(envelope, expected, keys, blobs)
    extra += _gate_results_problems(record, report, blobs)
    if git is not None and git.find_commit(record.commit) is None:
        extra.append(
            Problem(
                ProblemKind.COMMIT_MISMATCH,
                f"commit {record.commit[:12]} is not in this repository",
            )
        )
    return replace(report, problems=(*extra, *report.problems)) if extra else report


def _status_problems(record: ReleaseRecord) -> list[Problem]:
    if record.status == PUBLISHED:
        return []
    why = (
        f"it failed: {record.message}"
        if record.message
        else f"it is {record.status}: it was interrupted before it was published"
    )
    return [
        Problem(
            ProblemKind.RELEASE_NOT_PUBLISHED,
            f"{record.project} {record.version} is not a published release ({why})",
        )
    ]


def _gate_results_problems(
    record: ReleaseRecord, report: VerificationReport, blobs: BlobStore
) -> list[Problem]:
    signed = report.statement.gate_results_digest if report.statement else None
    if not record.gate_results:
        if signed is None:
            return []
        return [
            Problem(
                ProblemKind.GATE_RESULTS_MISMATCH,
                f"the release records no gate results, but the signed statement records {signed}",
                GATE_RESULTS_NAME,
            )
        ]
    try:
        blobs.read_bytes(record.gate_results)
    except BlobNotFound:
        kind, why = ProblemKind.BLOB_MISSING, "is not in the blob store"
    except BlobCorrupted as error:
        kind, why = ProblemKind.BLOB_MODIFIED, f"was modified: {error.message}"
    except BlobError as error:
        kind, why = ProblemKind.BLOB_MISSING, f"cannot be read: {error.message}"
    else:
        return []
    return [
        Problem(
            kind, f"the blob of the gate results ({record.gate_results}) {why}", GATE_RESULTS_NAME
        )
    ]
