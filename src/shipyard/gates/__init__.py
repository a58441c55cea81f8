"""Release gates and deploy checks: judge a candidate or a deployment, record every verdict.

The gate interface and registry, the concurrent runner, the stored records and overrides,
SARIF output, and the gates themselves: known vulnerabilities, secrets, licenses and the SBOM
(release gates), policy as code and metric gates (deploy checks).
This pillar imports ``core`` only; the CLI and the release flow wire it to the user.
"""

from __future__ import annotations

from shipyard.gates import metrics as _metrics  # registers the gate
from shipyard.gates import policy as _policy  # registers the gate
from shipyard.gates import vulnerabilities as _vulnerabilities  # registers the gate
from shipyard.gates.interface import (
    GATES,
    AdvisorySourceError,
    DependencyError,
    Finding,
    Gate,
    GateContext,
    GateError,
    GateFailed,
    GateKind,
    GateResult,
    Severity,
    Status,
    UnknownGate,
    Verdict,
    configured_gates,
    gate_named,
    register,
)
from shipyard.gates.licenses import gate as _licenses  # registers the gate
from shipyard.gates.records import (
    GateRun,
    gate_runs_of,
    get_gate_run,
    override_gate,
    record_gate_run,
)
from shipyard.gates.runner import GateRequest, judge, run_gates
from shipyard.gates.sarif import to_sarif
from shipyard.gates.sbom import gate as _sbom  # registers the gate
from shipyard.gates.secrets import gate as _secrets  # registers the gate

VulnerabilityGate = _vulnerabilities.VulnerabilityGate
LicenseGate = _licenses.LicenseGate
SecretGate = _secrets.SecretGate
SbomGate = _sbom.SbomGate
PolicyGate = _policy.PolicyGate
MetricsGate = _metrics.MetricsGate

__all__ = [
    "GATES",
    "AdvisorySourceError",
    "DependencyError",
    "Finding",
    "Gate",
    "GateContext",
    "GateError",
    "GateFailed",
    "GateKind",
    "GateRequest",
    "GateResult",
    "GateRun",
    "LicenseGate",
    "MetricsGate",
    "PolicyGate",
    "SbomGate",
    "SecretGate",
    "Severity",
    "Status",
    "UnknownGate",
    "Verdict",
    "VulnerabilityGate",
    "configured_gates",
    "gate_named",
    "gate_runs_of",
    "get_gate_run",
    "judge",
    "override_gate",
    "record_gate_run",
    "register",
    "run_gates",
    "to_sarif",
]
