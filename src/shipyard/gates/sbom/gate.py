"""The SBOM gate: the candidate's bill of materials can be made, is valid CycloneDX, and is whole.

It builds the SBOM from the workspace (or reads the stored one of a release), validates it
against the schema, and reports what it cannot describe exactly: dependencies without a single
version (``unpinned: fail`` blocks on them) and components without a license.
"""

from __future__ import annotations

from typing import ClassVar

from shipyard.core.config.gates import SbomGateSettings
from shipyard.gates.deps import Dependency
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
from shipyard.gates.sbom import build_sbom, sbom_summary, validate_sbom

INVALID = "SHIPYARD-SBOM-INVALID"
"""The finding id of an SBOM that does not validate against the CycloneDX 1.6 schema."""

UNPINNED = "SHIPYARD-SBOM-UNPINNED"
"""The finding id of a component without a single version."""

NO_LICENSE = "SHIPYARD-SBOM-NO-LICENSE"
"""The finding id of components the SBOM lists without a license."""

EMPTY = "SHIPYARD-SBOM-EMPTY"
"""The finding id of an SBOM that lists no component."""


@register
class SbomGate(Gate):
    """Fails when the SBOM cannot be made or is invalid; warns when it is incomplete."""

    name: ClassVar[str] = "sbom"
    kind: ClassVar[GateKind] = "release"

    def __init__(self, settings: SbomGateSettings) -> None:
        self.settings = settings

    @classmethod
    def for_context(cls, context: GateContext) -> SbomGate:
        """The gate with ``gates.sbom`` (defaults when unconfigured)."""
        gates = context.config.gates
        settings = gates.sbom if gates is not None else None
        return cls(settings if settings is not None else SbomGateSettings())

    def judge(self, context: GateContext) -> Verdict:
        """Build (or read) the SBOM, validate it, and report what it leaves open."""
        if context.sbom is not None:
            return self._stored(context)
        sbom = build_sbom(
            context.workspace,
            context.config,
            version=context.release,
            commit=context.commit,
            source_dir=context.source_dir,
            timestamp=context.now,
        )
        findings = _invalid(validate_sbom(sbom.document))
        fail = self.settings.unpinned == "fail"
        findings += [_unpinned(dependency, fail) for dependency in sbom.unpinned]
        if sbom.unlicensed:
            findings.append(_no_license(sbom.unlicensed, sbom.license_problem))
        if not sbom.components:
            findings.append(_empty())
        summary = (
            f"CycloneDX 1.6: {count_of(sbom.components, 'component')} from "
            f"{count_of(len(sbom.files), 'file')}, {count_of(sbom.edges, 'dependency edge')}"
        )
        return Verdict.of(findings, summary)

    def _stored(self, context: GateContext) -> Verdict:
        assert context.sbom is not None
        try:
            document = context.sbom.read_bytes()
        except OSError as exc:
            raise GateError(f"the stored SBOM cannot be read: {exc.strerror or exc}") from None
        problems = validate_sbom(document)
        findings = _invalid(problems)
        if problems:
            return Verdict.of(findings, "the stored SBOM is not valid CycloneDX 1.6")
        summary = sbom_summary(document)
        return Verdict.of(
            findings,
            f"the stored SBOM (CycloneDX {summary['spec_version']}): "
            f"{count_of(summary['components'], 'component')}, "
            f"{count_of(summary['edges'], 'dependency edge')}",
        )


def _invalid(problems: list[str]) -> list[Finding]:
    if not problems:
        return []
    return [
        Finding(
            id=INVALID,
            severity=Severity.HIGH,
            location="sbom",
            message=f"the SBOM does not validate against the CycloneDX 1.6 schema: "
            f"{'; '.join(problems[:5])}"
            + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""),
            remediation="this is a bug in Shipyard; report it with the dependency files",
            blocking=True,
            details={"problems": problems[:50]},
        )
    ]


def _unpinned(dependency: Dependency, fail: bool) -> Finding:
    return Finding(
        id=UNPINNED,
        severity=Severity.MEDIUM if fail else Severity.LOW,
        location=dependency.location,
        message=f"{dependency.requirement or dependency.name} has no single version in the SBOM: "
        f"{dependency.unpinned_reason or 'no version is pinned'}",
        remediation="pin an exact version (==) or commit a lockfile",
        blocking=fail,
        details={"package": dependency.name, "ecosystem": dependency.ecosystem},
    )


def _no_license(dependencies: tuple[Dependency, ...], problem: str | None) -> Finding:
    names = sorted({d.name for d in dependencies})
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return Finding(
        id=NO_LICENSE,
        severity=Severity.INFO,
        location=".",
        message=f"{len(names)} component{'s' if len(names) != 1 else ''} without a license: "
        f"{shown}" + (f" ({problem})" if problem else ""),
        remediation="set gates.licenses.python to the project's environment, or record the "
        "licenses in gates.licenses.overrides",
        details={"packages": names},
    )


def _empty() -> Finding:
    return Finding(
        id=EMPTY,
        severity=Severity.INFO,
        location=".",
        message="the SBOM lists no component: no dependency file was found",
        remediation="commit a lockfile or requirements file",
    )
