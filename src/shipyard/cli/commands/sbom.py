"""``shipyard sbom``: the CycloneDX 1.6 SBOM of the working tree, or the one a release carries."""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli.context import Context
from shipyard.cli.options import FileOption, JsonOption
from shipyard.cli.output import Output
from shipyard.core.blobs import BlobStore
from shipyard.core.config import find_config, load
from shipyard.core.errors import ArgumentError, GitError, NotFoundError, StateDirError
from shipyard.core.git import Git
from shipyard.gates.records import release_sbom
from shipyard.gates.sbom import build_sbom, sbom_summary
from shipyard.release import publish


def sbom(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="FILE", help="Write the SBOM to FILE (default: stdout)."
        ),
    ] = None,
    release: Annotated[
        str | None,
        typer.Option(
            "--release", metavar="VERSION", help="The SBOM stored with this release instead."
        ),
    ] = None,
    file: FileOption = None,
    json_: JsonOption = False,
) -> None:
    """Write the CycloneDX 1.6 JSON SBOM of the working tree (or of a recorded release)."""
    to_stdout = output is None or str(output) == "-"
    out = Output(json_mode=json_ or to_stdout)
    ctx = Context()
    path = file if file is not None else find_config(Path.cwd(), stop=ctx.state.repo_root)
    loaded = load(path)
    project_dir = path.resolve().parent
    if release is not None:
        # A release a crash left half-published is finished or failed before it is read.
        for note in publish.reconcile_in(
            ctx.state, ctx.store, loaded.model.project, actor=ctx.actor
        ):
            out.warn(note)
        document = _stored(ctx, loaded.model.project, release)
    else:
        built = build_sbom(
            project_dir,
            loaded.model,
            commit=_head(project_dir),
            source_dir=project_dir,
        )
        document = built.document
        if built.license_problem and built.unlicensed:
            out.warn(f"{len(built.unlicensed)} components have no license: {built.license_problem}")
    if to_stdout:
        sys.stdout.buffer.write(document)
        sys.stdout.flush()
        return
    assert output is not None
    try:
        output.write_bytes(document)
    except OSError as exc:
        raise ArgumentError(f"cannot write the SBOM to {output}: {exc.strerror or exc}") from None
    summary = sbom_summary(document)
    digest = f"sha256:{hashlib.sha256(document).hexdigest()}"
    if json_:
        out.json({"file": str(output), "digest": digest, "release": release, **summary})
        return
    components, edges = summary["components"], summary["edges"]
    out.success(
        f"wrote {output}: CycloneDX {summary['spec_version']}, {components} "
        f"component{'s' if components != 1 else ''}, {edges} dependency "
        f"edge{'s' if edges != 1 else ''} ({digest})"
    )


def _stored(ctx: Context, project: str, version: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="shipyard-sbom-") as tmp:
        found = release_sbom(ctx.store, BlobStore.for_state(ctx.state), project, version, Path(tmp))
        if found is None:
            raise NotFoundError(
                f"release {version} of {project} has no stored SBOM: it was cut before "
                "releases carried one",
                hint="run 'shipyard sbom' on a checkout of its tag for a new one",
            )
        return found.read_bytes()


def _head(folder: Path) -> str | None:
    try:
        return Git(folder).head_commit()
    except (GitError, StateDirError):
        return None
