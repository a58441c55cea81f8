"""The secrets gate: fails when a secret is in the project's files (or, optionally, its history).

A finding names the file, the line, the rule and a redacted prefix with the secret's hash;
secrets allowed inline or recorded in the baseline only count in the summary. A file that
could not be scanned is a warning, never a silent pass.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from shipyard.core.config.gates import SecretGateSettings
from shipyard.gates.interface import (
    Finding,
    Gate,
    GateContext,
    GateKind,
    Severity,
    Verdict,
    register,
)
from shipyard.gates.secrets import (
    SecretHit,
    SecretScan,
    Skipped,
    baseline_path,
    read_baseline,
    scan_secrets,
    settings_of,
)

NOT_SCANNED = "SHIPYARD-SECRETS-NOT-SCANNED"
"""The finding id of a file (or a commit's change) that was too large or unreadable."""

HISTORY = "SHIPYARD-SECRETS-HISTORY"
"""The finding id of history that could not be scanned (not a repository, a shallow clone)."""


def finding_id(rule: str) -> str:
    """The finding id of a rule: ``secrets/aws-access-key``, ``secrets/<project rule id>``."""
    return "secrets/" + re.sub(r"[^a-z0-9._-]+", "-", rule.lower()).strip("-")


@register
class SecretGate(Gate):
    """Fails when a secret is found that is neither allowed inline nor in the baseline."""

    name: ClassVar[str] = "secrets"
    kind: ClassVar[GateKind] = "release"

    def __init__(self, settings: SecretGateSettings) -> None:
        self.settings = settings

    @classmethod
    def for_context(cls, context: GateContext) -> SecretGate:
        """The gate with ``gates.secrets`` (defaults when unconfigured)."""
        return cls(settings_of(context))

    def judge(self, context: GateContext) -> Verdict:
        """Scan the workspace (and history), then judge what the baseline does not cover."""
        baseline = read_baseline(baseline_path(context, self.settings), self.settings.baseline)
        scan = scan_secrets(context, self.settings)
        findings: list[Finding] = []
        allowed = accepted = 0
        for hit in scan.hits:
            if hit.allowed:
                allowed += 1
            elif hit.fingerprint in baseline:
                accepted += 1
            else:
                findings.append(secret_finding(hit))
        findings.extend(_not_scanned(item) for item in scan.skipped)
        if scan.history_problem:
            findings.append(_history(scan.history_problem))
        return _verdict(findings, scan, allowed, accepted)


def secret_finding(hit: SecretHit) -> Finding:
    """The finding of one secret: where, which rule, and a redacted form; never the value."""
    others = list(hit.rules[1:])
    message = f"{hit.rule}: {hit.redacted}"
    if hit.commit:
        message += f", added in commit {hit.commit[:12]} (no longer in the files)"
    if others:
        message += f"; also matched by {', '.join(others)}"
    remediation = "remove it and rotate the credential"
    if hit.commit:
        remediation += " (it stays in the git history)"
    remediation += (
        "; if it is not a secret, mark the line '# shipyard: allow-secret' or accept it with "
        "'shipyard secrets baseline'"
    )
    details: dict[str, Any] = {
        "rule": hit.rule,
        "rules": list(hit.rules),
        "path": hit.path,
        "line": hit.line,
        "fingerprint": f"sha256:{hit.fingerprint}",
        "prefix": hit.prefix,
        "length": hit.length,
    }
    if hit.commit:
        details["commit"] = hit.commit
    return Finding(
        id=finding_id(hit.rule),
        severity=Severity.HIGH,
        location=hit.location,
        message=message,
        remediation=remediation,
        blocking=True,
        details=details,
    )


def _not_scanned(item: Skipped) -> Finding:
    where = f" in commit {item.commit[:12]}" if item.commit else ""
    return Finding(
        id=NOT_SCANNED,
        severity=Severity.LOW,
        location=item.path,
        message=f"{item.path}{where}: {item.reason}",
        remediation="raise gates.secrets.max_file_size, or exclude the file with "
        "gates.secrets.exclude if it cannot hold a secret",
        details={"path": item.path, "commit": item.commit},
    )


def _history(problem: str) -> Finding:
    return Finding(
        id=HISTORY,
        severity=Severity.LOW,
        location=".",
        message=problem,
        remediation="scan a full clone (git fetch --unshallow), or set gates.secrets.history: "
        "false",
    )


def _verdict(findings: list[Finding], scan: SecretScan, allowed: int, accepted: int) -> Verdict:
    secrets = sum(1 for f in findings if f.blocking)
    parts = [f"{scan.files} file{'s' if scan.files != 1 else ''}"]
    if scan.commits is not None:
        parts[0] += f" and {scan.commits} commit{'s' if scan.commits != 1 else ''}"
    parts.append(f"{secrets} secret{'s' if secrets != 1 else ''}")
    if allowed:
        parts.append(f"{allowed} allowed inline")
    if accepted:
        parts.append(f"{accepted} in the baseline")
    if scan.binary_files:
        parts.append(f"{scan.binary_files} binary scanned for strings")
    if scan.skipped:
        parts.append(f"{len(scan.skipped)} not scanned")
    return Verdict.of(findings, ", ".join(parts))
