"""Gate results as a SARIF 2.1.0 log, for code-scanning tools such as GitHub's.

One run of the tool ``shipyard``: a rule per finding id (an advisory, or one of Shipyard's own
checks), a result per finding located at its file and line, ignored findings as external
suppressions with their reason. It only converts; it never decides a verdict.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from shipyard import __version__
from shipyard.gates.interface import Finding, GateResult, Severity

SARIF_VERSION = "2.1.0"
"""The SARIF version written."""

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
"""The schema URI the log names."""

_FILE_LINE = re.compile(r"(?P<path>[^\s:]+):(?P<line>[0-9]+)")
_FILE = re.compile(r"[^\s:]+")
_SECURITY_SEVERITY = {
    Severity.CRITICAL: 9.5,
    Severity.HIGH: 8.0,
    Severity.MEDIUM: 5.5,
    Severity.LOW: 2.0,
    Severity.INFO: 0.0,
}


def to_sarif(
    results: Sequence[GateResult], *, config_file: str = "shipyard.yaml"
) -> dict[str, Any]:
    """A SARIF log of every finding of ``results``."""
    rules: list[dict[str, Any]] = []
    rule_index: dict[str, int] = {}
    sarif_results: list[dict[str, Any]] = []
    for result in results:
        for finding in result.findings:
            if finding.id not in rule_index:
                rule_index[finding.id] = len(rules)
                rules.append(_rule(finding, result.gate))
            sarif_results.append(_result(finding, result.gate, rule_index[finding.id], config_file))
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "shipyard",
                        "version": __version__,
                        "rules": rules,
                    }
                },
                "invocations": [
                    {
                        "executionSuccessful": True,
                        "properties": {
                            "gates": {r.gate: r.status.value for r in results},
                        },
                    }
                ],
                "results": sarif_results,
            }
        ],
    }


def _level(finding: Finding) -> str:
    if finding.blocking:
        return "error"
    if finding.severity is Severity.INFO:
        return "note"
    return "warning"


def _security_severity(finding: Finding) -> str:
    score = finding.details.get("score")
    value = float(score) if isinstance(score, int | float) else _SECURITY_SEVERITY[finding.severity]
    return f"{value:.1f}"


def _rule(finding: Finding, gate: str) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "id": finding.id,
        "shortDescription": {"text": _first_sentence(finding.message)},
        "defaultConfiguration": {"level": _level(finding)},
        "properties": {
            "gate": gate,
            "tags": ["security", gate],
            "security-severity": _security_severity(finding),
        },
    }
    if finding.remediation:
        rule["help"] = {"text": finding.remediation}
    references = finding.details.get("references")
    if isinstance(references, list) and references and isinstance(references[0], str):
        rule["helpUri"] = references[0]
    return rule


def _result(finding: Finding, gate: str, index: int, config_file: str) -> dict[str, Any]:
    text = finding.message
    if finding.remediation:
        text += f". Fix: {finding.remediation}"
    result: dict[str, Any] = {
        "ruleId": finding.id,
        "ruleIndex": index,
        "level": _level(finding),
        "message": {"text": text},
        "locations": [_location(finding.location, config_file)],
        "partialFingerprints": {"shipyard/v1": _fingerprint(finding, gate)},
        "properties": {
            "gate": gate,
            "severity": finding.severity.value,
            **{k: v for k, v in finding.details.items() if k in _RESULT_PROPERTIES},
        },
    }
    if finding.suppression is not None:
        result["suppressions"] = [{"kind": "external", "justification": finding.suppression}]
    return result


_RESULT_PROPERTIES = ("package", "version", "ecosystem", "aliases", "fixed_versions", "upgrade")


def _location(location: str, config_file: str) -> dict[str, Any]:
    match = _FILE_LINE.fullmatch(location)
    if match:
        return {
            "physicalLocation": {
                "artifactLocation": {"uri": match.group("path")},
                "region": {"startLine": int(match.group("line"))},
            }
        }
    if _FILE.fullmatch(location) and location != ".":
        return {"physicalLocation": {"artifactLocation": {"uri": location}}}
    return {
        "physicalLocation": {"artifactLocation": {"uri": config_file}},
        "message": {"text": location},
    }


def _fingerprint(finding: Finding, gate: str) -> str:
    package = finding.details.get("package", "")
    key = f"{gate}\0{finding.id}\0{finding.location}\0{package}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _first_sentence(text: str) -> str:
    return text if len(text) <= 200 else text[:199] + "…"
