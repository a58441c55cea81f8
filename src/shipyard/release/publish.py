"""Writing a release in crash-safe order, and reconciling what a crash left behind.

The order is: blobs (bundle, SBOM, signed statement), a pending record, the annotated tag,
then published. Whatever step a crash interrupts, ``reconcile`` finishes or fails the release on the
next command: no tag without a release, no release without its blobs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from shipyard.core.blobs import BlobStore, Digest
from shipyard.core.errors import GitError
from shipyard.core.faults import crash_point
from shipyard.core.git import Git
from shipyard.core.state import StateDir
from shipyard.core.store import Store
from shipyard.release import bundle, records
from shipyard.release.keys import SigningKey
from shipyard.release.provenance import ProvenanceInputs, Subject, sign_statement

BUILDER_ID = "https://shipyard.dev/builders/local/v1"


@dataclass(frozen=True)
class Candidate:
    """Everything that makes one release, gathered and checked before anything is written."""

    project: str
    version: str
    tag: str
    commit: str
    repository: str
    ref: str
    run_id: int | None
    run_started: datetime
    run_finished: datetime
    gate_run_id: int | None
    gate_results: bytes
    artifacts: Mapping[str, str]
    changelog: str
    bundle_files: Mapping[str, bytes]
    config_path: str
    config_digest: str
    sbom: bytes | None = None

    @property
    def bundle_name(self) -> str:
        """The bundle's name in the signed statement."""
        return bundle_name(self.project, self.version)


def bundle_name(project: str, version: str) -> str:
    """How a release's bundle is named in its signed statement: ``demo-1.2.0.tar.gz``."""
    return f"{project}-{version}.tar.gz"


def sbom_name(project: str, version: str) -> str:
    """How a release's SBOM is named in its signed statement: ``demo-1.2.0.cdx.json``."""
    return f"{project}-{version}.cdx.json"


def build_bundle(candidate: Candidate, git: Git, folder: Path) -> Path:
    """Write the candidate's bundle into ``folder`` (to judge it, then to publish it)."""
    return bundle.build(
        git,
        candidate.commit,
        folder / candidate.bundle_name,
        prefix=f"{candidate.project}-{candidate.version}/",
        replace=candidate.bundle_files,
    )


def publish(
    candidate: Candidate,
    bundle_path: Path,
    *,
    store: Store,
    blobs: BlobStore,
    git: Git,
    signer: SigningKey,
    actor: str,
    tag: bool = True,
) -> records.ReleaseRecord:
    """Store blobs, record pending, tag, publish: each step only after the one before."""
    stored = blobs.put_file(bundle_path)
    gates = blobs.put_bytes(candidate.gate_results)
    subjects = [Subject(candidate.bundle_name, stored.digest)]
    subjects += [
        Subject(name, Digest.parse(digest)) for name, digest in sorted(candidate.artifacts.items())
    ]
    sbom = blobs.put_bytes(candidate.sbom) if candidate.sbom is not None else None
    if sbom is not None:
        subjects.append(Subject(sbom_name(candidate.project, candidate.version), sbom.digest))
    inputs = ProvenanceInputs(
        repository=candidate.repository,
        ref=candidate.ref,
        commit=candidate.commit,
        version=candidate.version,
        config_path=candidate.config_path,
        config_digest=Digest.parse(f"sha256:{candidate.config_digest}"),
        builder_id=BUILDER_ID,
        run_id=str(candidate.run_id or 0),
        started_on=candidate.run_started,
        finished_on=candidate.run_finished,
        gate_results_digest=gates.digest,
        changelog_digest=Digest.of(candidate.changelog.encode("utf-8")),
    )
    envelope = blobs.put_bytes(sign_statement(subjects, inputs, signer).to_json())
    crash_point("release:after-blobs")
    record = records.create_pending(
        store,
        project=candidate.project,
        version=candidate.version,
        tag=candidate.tag if tag else "",
        commit=candidate.commit,
        run_id=candidate.run_id,
        gate_run_id=candidate.gate_run_id,
        bundle=str(stored.digest),
        artifacts=candidate.artifacts,
        sbom=str(sbom.digest) if sbom is not None else None,
        envelope=str(envelope.digest),
        key_id=signer.keyid,
        changelog=candidate.changelog,
        config_digest=candidate.config_digest,
        config_path=candidate.config_path,
        gate_results=str(gates.digest),
        actor=actor,
    )
    crash_point("release:after-pending")
    if tag:
        _tag(git, record)
        records.tag_recorded(store, record, actor=actor)
    crash_point("release:after-tag")
    return records.publish(store, record, actor=actor)


def reconcile(*, store: Store, blobs: BlobStore, git: Git, project: str, actor: str) -> list[str]:
    """Finish or fail every pending release of ``project``; returns what was done."""
    done: list[str] = []
    for record in records.all_of(store, project, status=records.PENDING):
        missing = [
            d
            for d in (record.bundle, record.envelope, record.sbom, *record.artifacts.values())
            if d and not blobs.exists(d)
        ]
        if missing:
            records.fail(
                store,
                record,
                actor=actor,
                message=f"interrupted, and {len(missing)} of its blobs are missing",
            )
            if record.tag and git.tag_commit(record.tag) == record.commit:
                git.delete_tag(record.tag)
            done.append(f"{record.version}: failed (its blobs are missing)")
            continue
        if not record.tag:  # released with --no-tag: nothing to finish but the record
            records.publish(store, record, actor=actor)
            done.append(f"{record.version}: published (an interrupted release was finished)")
            continue
        tagged = git.tag_commit(record.tag)
        if tagged is not None and tagged != record.commit:
            records.fail(
                store,
                record,
                actor=actor,
                message=f"tag {record.tag} points at {tagged[:12]}, not the release",
            )
            done.append(f"{record.version}: failed (tag {record.tag} is somebody else's)")
            continue
        if tagged is None:
            _tag(git, record)
            records.tag_recorded(store, record, actor=actor)
        records.publish(store, record, actor=actor)
        done.append(f"{record.version}: published (an interrupted release was finished)")
    return done


def reconcile_in(state: StateDir, store: Store, project: str, *, actor: str) -> list[str]:
    """``reconcile`` in a state directory's repository: for every command that reads releases."""
    where = state.repo_root or state.git_common_dir
    if where is None:  # no repository to hold tags: nothing can be finished here
        return []
    blobs = BlobStore.for_state(state)
    return reconcile(store=store, blobs=blobs, git=Git(where), project=project, actor=actor)


def _tag(git: Git, record: records.ReleaseRecord) -> None:
    message = f"{record.project} {record.version}\n\n{record.changelog}".strip() + "\n"
    try:
        git.create_tag(record.tag, record.commit, message)
    except GitError:
        if git.tag_commit(record.tag) != record.commit:
            raise


def gate_results_bytes(results: list[dict[str, object]]) -> bytes:
    """The canonical bytes of a release's gate results (their digest is signed)."""
    return json.dumps(results, sort_keys=True, separators=(",", ":")).encode()
