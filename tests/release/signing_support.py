"""Helpers for the signing and provenance tests: keyrings in temporary folders, signed releases.

Everything is real: keys on disk, blobs in a real ``BlobStore``, envelopes signed by real keys.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shipyard.core.blobs import BlobStore, Digest
from shipyard.release.keys import Keyring
from shipyard.release.provenance import (
    ExpectedRelease,
    ProvenanceInputs,
    Subject,
    sign_statement,
)

COMMIT = "3f786850e387550fdab836ed7e6dc881de23001b"
OTHER_COMMIT = "89e6c98d92887913cadf06b2adb97f26cde4849b"
VERSION = "1.4.0"
STARTED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
FINISHED = datetime(2024, 5, 1, 12, 3, 30, tzinfo=UTC)
CONFIG = b"project: demo-service\npipeline:\n  jobs:\n    test: {run: pytest -q}\n"
GATE_RESULTS = b'{"vulnerabilities": "passed"}'

CONTENTS = {
    "bundle.tar.gz": b"the bundle: git archive of the commit plus artifacts",
    "dist/demo-1.4.0-py3-none-any.whl": b"a wheel built by the pipeline",
    "sbom.cdx.json": b'{"bomFormat": "CycloneDX"}',
}


def make_keyring(base: Path, name: str = "state") -> Keyring:
    """A keyring whose state folder and private folder are both under ``base``."""
    return Keyring(
        root=base / name / "keys",
        private_dir=base / f"{name}-config" / "shipyard" / "keys",
    )


def provenance_inputs(**changes: Any) -> ProvenanceInputs:
    """Provenance of a typical release, with ``changes`` applied."""
    inputs = ProvenanceInputs(
        repository="https://git.example.com/acme/demo-service",
        ref="refs/heads/main",
        commit=COMMIT,
        version=VERSION,
        config_path="shipyard.yaml",
        config_digest=Digest.of(CONFIG),
        builder_id="https://shipyard.dev/builder/local/v1",
        run_id="run-0042",
        started_on=STARTED,
        finished_on=FINISHED,
        gate_results_digest=Digest.of(GATE_RESULTS),
    )
    return replace(inputs, **changes)


@dataclass(frozen=True)
class SignedRelease:
    """A release as the release command leaves it: blobs stored, statement signed."""

    store: BlobStore
    subjects: tuple[Subject, ...]
    envelope_json: bytes
    expected: ExpectedRelease

    def blob_path(self, name: str) -> Path:
        """The file of a subject's blob, laid out as ``BlobStore`` documents it."""
        digest = self.digest(name)
        return self.store.root / "sha256" / digest.hex[:2] / digest.hex

    def digest(self, name: str) -> Digest:
        """The digest of the subject called ``name``."""
        return next(subject.digest for subject in self.subjects if subject.name == name)


def signed_release(base: Path, keyring: Keyring) -> SignedRelease:
    """Store the bundle, an artifact and the SBOM as blobs and sign their statement."""
    store = BlobStore(base / "blobs")
    subjects = tuple(
        Subject(name, store.put_bytes(content).digest) for name, content in CONTENTS.items()
    )
    envelope = sign_statement(subjects, provenance_inputs(), keyring.signer())
    expected = ExpectedRelease.of(VERSION, COMMIT, subjects, Digest.of(GATE_RESULTS))
    return SignedRelease(store, subjects, envelope.to_json(), expected)
