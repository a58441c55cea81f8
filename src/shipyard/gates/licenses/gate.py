"""The licenses gate: every dependency's license against ``gates.licenses.allow`` and ``deny``.

An unknown or unparsable license is a finding (it fails unless ``unknown: warn``), so nothing
ships under a license nobody read. The gate judges; where licenses come from is ``sources``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from packaging.version import InvalidVersion, Version

from shipyard.core.config.gates import LicenseGateSettings
from shipyard.gates.deps import (
    Dependency,
    no_dependency_files,
    scan_dependencies,
)
from shipyard.gates.interface import (
    Finding,
    Gate,
    GateContext,
    GateKind,
    Severity,
    Verdict,
    count_of,
    register,
)
from shipyard.gates.licenses import DependencyLicense, collect_licenses
from shipyard.gates.licenses.spdx import Judgement, Policy

DENIED = "SHIPYARD-LICENSE-DENIED"
"""The finding id of a dependency whose license the team denies."""

NOT_ALLOWED = "SHIPYARD-LICENSE-NOT-ALLOWED"
"""The finding id of a dependency whose license is not on the allow list."""

UNKNOWN = "SHIPYARD-LICENSE-UNKNOWN"
"""The finding id of a dependency whose license is missing or not valid SPDX."""

VERSION_DIFFERS = "SHIPYARD-LICENSE-VERSION"
"""The finding id of a package installed at another version than the lockfile pins."""


@register
class LicenseGate(Gate):
    """Fails when a dependency's license is denied, not allowed, unknown or unparsable."""

    name: ClassVar[str] = "licenses"
    kind: ClassVar[GateKind] = "release"

    def __init__(self, settings: LicenseGateSettings) -> None:
        self.settings = settings

    @classmethod
    def for_context(cls, context: GateContext) -> LicenseGate:
        """The gate with ``gates.licenses`` (defaults when unconfigured)."""
        gates = context.config.gates
        settings = gates.licenses if gates is not None else None
        return cls(settings if settings is not None else LicenseGateSettings())

    def judge(self, context: GateContext) -> Verdict:
        """Read every dependency's license and judge it against the lists."""
        policy = Policy.of(self.settings.allow, self.settings.deny)
        scan = scan_dependencies(context.workspace, context.sbom, source_dir=context.source_dir)
        report = collect_licenses(
            scan.dependencies,
            self.settings,
            context.source_dir,
            recorded_in="the release's SBOM" if context.sbom is not None else None,
        )
        findings: list[Finding] = []
        counts = {"allowed": 0, "denied": 0, "not allowed": 0, "unknown": 0}
        for item in report.licenses:
            mismatch = _version_differs(item)
            if mismatch is not None:
                findings.append(mismatch)
            expression = item.declared.expression
            if expression is None:
                counts["unknown"] += 1
                findings.append(self._unknown(item, report.problem))
                continue
            decision = policy.judge(expression)
            if decision.judgement is Judgement.ALLOWED:
                counts["allowed"] += 1
                continue
            denied = decision.judgement is Judgement.DENIED
            counts["denied" if denied else "not allowed"] += 1
            findings.append(_refused(item, decision.culprits, denied=denied))
        if not scan.files:
            findings.append(no_dependency_files("license"))
        return _verdict(findings, scan.files, counts)

    def _unknown(self, item: DependencyLicense, problem: str | None) -> Finding:
        dependency = item.dependency
        fail = self.settings.unknown == "fail"
        why = item.declared.problem or "no license was found"
        remediation = (
            f"check the package's license and record it: "
            f"gates.licenses.overrides: {{{dependency.name}: SPDX-ID}}"
        )
        if problem and item.declared.source == "metadata" and "python" in problem:
            remediation = (
                "set gates.licenses.python to the project's interpreter or virtual environment, "
                "with the dependencies installed"
            )
        return Finding(
            id=UNKNOWN,
            severity=Severity.HIGH if fail else Severity.MEDIUM,
            location=dependency.location,
            message=f"{_package(dependency)}: the license is unknown: {why}",
            remediation=remediation,
            blocking=fail,
            details=_details(item),
        )


def _refused(item: DependencyLicense, culprits: Sequence[str], *, denied: bool) -> Finding:
    dependency = item.dependency
    assert item.declared.expression is not None
    expression = item.declared.expression.text
    names = ", ".join(culprits)
    if denied:
        why = f"{names} {'is' if len(culprits) == 1 else 'are'} denied by gates.licenses.deny"
    else:
        why = f"{names} {'is' if len(culprits) == 1 else 'are'} not in gates.licenses.allow"
    if len(item.declared.expression.license_ids()) > 1 and " OR " in expression:
        why = f"no branch of the OR is allowed: {why}"
    return Finding(
        id=DENIED if denied else NOT_ALLOWED,
        severity=Severity.HIGH,
        location=dependency.location,
        message=f"{_package(dependency)} is licensed {expression}: {why}",
        remediation=f"replace {dependency.name}, or, after a legal review, add the license to "
        "gates.licenses.allow",
        blocking=True,
        details=_details(item),
    )


def _version_differs(item: DependencyLicense) -> Finding | None:
    pinned, installed = item.dependency.version, item.installed_version
    if pinned is None or installed is None or _same_version(pinned, installed):
        return None
    return Finding(
        id=VERSION_DIFFERS,
        severity=Severity.LOW,
        location=item.dependency.location,
        message=f"{item.dependency.name}: {pinned} is pinned but {installed} is installed in the "
        "configured interpreter; its license was read from the installed version",
        remediation="install the locked versions into the interpreter named by "
        "gates.licenses.python",
        details=_details(item),
    )


def _same_version(first: str, second: str) -> bool:
    try:
        return Version(first) == Version(second)
    except InvalidVersion:
        return first == second


def _package(dependency: Dependency) -> str:
    return f"{dependency.name} {dependency.version}" if dependency.version else dependency.name


def _details(item: DependencyLicense) -> dict[str, Any]:
    declared = item.declared
    return {
        "package": item.dependency.name,
        "ecosystem": item.dependency.ecosystem,
        "version": item.dependency.version,
        "license": declared.expression.text if declared.expression else None,
        "declared": declared.raw,
        "source": declared.source,
        "installed_version": item.installed_version,
    }


def _verdict(findings: list[Finding], files: Sequence[str], counts: dict[str, int]) -> Verdict:
    total = sum(counts.values())
    if not files:
        summary = "no dependency files found; nothing was checked"
    else:
        parts = [f"{count_of(total, 'package')} in {count_of(len(files), 'file')}"]
        parts += [f"{count} {what}" for what, count in counts.items() if count]
        summary = ", ".join(parts)
    return Verdict.of(findings, summary)
