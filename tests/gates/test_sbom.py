"""The SBOM: CycloneDX 1.6 that validates, carries what the lockfiles say, and reads back."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import OutputFormat, SchemaVersion
from cyclonedx.validation import make_schemabased_validator

from gates.gatesupport import NOW, osv, write_records
from shipyard.core.config import load_config_text
from shipyard.gates import GateContext, GateResult, Status, run_gates
from shipyard.gates.advisories import import_advisories
from shipyard.gates.deps import MalformedDependencyFile, PackageRef, scan_dependencies
from shipyard.gates.sbom import build_sbom
from shipyard.gates.sbom.gate import INVALID, NO_LICENSE, UNPINNED

SHA = "a" * 64

UV_LOCK = f"""version = 1

[[package]]
name = "demo"
version = "0.1.0"
source = {{ editable = "." }}
dependencies = [{{ name = "requests" }}]

[[package]]
name = "requests"
version = "2.19.0"
source = {{ registry = "https://pypi.org/simple" }}
dependencies = [{{ name = "urllib3" }}]
sdist = {{ url = "https://x/requests-2.19.0.tar.gz", hash = "sha256:{SHA}" }}

[[package]]
name = "urllib3"
version = "1.26.5"
source = {{ registry = "https://pypi.org/simple" }}
wheels = [{{ url = "https://x/urllib3.whl", hash = "sha256:{"b" * 64}" }}]
"""

PACKAGE_LOCK = {
    "name": "web",
    "lockfileVersion": 3,
    "packages": {
        "": {"name": "web", "dependencies": {"@types/node": "^20", "left-pad": "^1"}},
        "node_modules/@types/node": {
            "version": "20.1.0",
            "license": "MIT",
            "integrity": "sha512-" + base64.b64encode(hashlib.sha512(b"node").digest()).decode(),
        },
        "node_modules/left-pad": {
            "version": "1.3.0",
            "license": "WTFPL",
            "dependencies": {"@types/node": "*"},
        },
    },
}


@pytest.fixture
def project(workspace: Path) -> Path:
    """A project with a uv.lock, a package-lock.json and an unpinned requirement."""
    (workspace / "uv.lock").write_text(UV_LOCK)
    (workspace / "pyproject.toml").write_text('[project]\nname = "demo"\n')
    web = workspace / "web"
    web.mkdir()
    (web / "package-lock.json").write_text(json.dumps(PACKAGE_LOCK, indent=2))
    (workspace / "requirements-dev.txt").write_text("pytest>=8\n")
    return workspace


def config(gates: str = "  sbom: true\n") -> Any:
    return load_config_text(f"project: demo\ngates:\n{gates}")


def document(project: Path, **kw: Any) -> dict[str, Any]:
    sbom = build_sbom(project, config(), version="1.2.0", commit="c" * 40, **kw)
    value = json.loads(sbom.document)
    assert isinstance(value, dict)
    return value


def test_the_sbom_validates_against_the_cyclonedx_1_6_schema(project: Path) -> None:
    sbom = build_sbom(project, config(), version="1.2.0", commit="c" * 40, timestamp=NOW)
    validator = make_schemabased_validator(OutputFormat.JSON, SchemaVersion.V1_6)
    assert validator.validate_str(sbom.document.decode()) is None
    assert json.loads(sbom.document)["specVersion"] == "1.6"


def test_components_carry_purl_version_license_and_hashes(project: Path) -> None:
    components = {c["bom-ref"]: c for c in document(project)["components"]}
    requests = components["pkg:pypi/requests@2.19.0"]
    assert (requests["name"], requests["version"]) == ("requests", "2.19.0")
    assert requests["hashes"] == [{"alg": "SHA-256", "content": SHA}]
    assert {"name": "shipyard:location", "value": "uv.lock:9"} in requests["properties"]
    node = components["pkg:npm/%40types/node@20.1.0"]
    assert (node["group"], node["name"]) == ("@types", "node")
    assert node["licenses"] == [{"license": {"id": "MIT"}}]
    assert node["hashes"][0]["alg"] == "SHA-512"
    pytest_ = components["pkg:pypi/pytest"]
    assert "version" not in pytest_
    assert {"name": "shipyard:unpinned", "value": "'>=8' is a range"} in pytest_["properties"]


def test_the_dependency_graph_follows_the_lockfiles(project: Path) -> None:
    graph = {d["ref"]: set(d.get("dependsOn", [])) for d in document(project)["dependencies"]}
    assert graph["pkg:pypi/requests@2.19.0"] == {"pkg:pypi/urllib3@1.26.5"}
    assert graph["pkg:npm/left-pad@1.3.0"] == {"pkg:npm/%40types/node@20.1.0"}
    # the project depends on what nothing else needs
    assert graph["demo@1.2.0"] == {
        "pkg:pypi/requests@2.19.0",
        "pkg:npm/left-pad@1.3.0",
        "pkg:pypi/pytest",
    }


def test_the_metadata_names_shipyard_the_project_and_the_commit(project: Path) -> None:
    metadata = document(project)["metadata"]
    assert metadata["component"]["name"] == "demo"
    assert metadata["component"]["version"] == "1.2.0"
    assert {"name": "shipyard:commit", "value": "c" * 40} in metadata["component"]["properties"]
    assert metadata["tools"]["components"][0]["name"] == "shipyard"


def test_an_sbom_reads_back_as_the_same_dependencies(project: Path, tmp_path: Path) -> None:
    stored = tmp_path / "demo-1.2.0.cdx.json"
    stored.write_bytes(build_sbom(project, config(), version="1.2.0").document)
    read = {d.name: d for d in scan_dependencies(project, stored).dependencies}
    requests = read["requests"]
    assert (requests.ecosystem, requests.version, requests.location) == (
        "PyPI",
        "2.19.0",
        "uv.lock:9",
    )
    assert requests.hashes == (f"sha256:{SHA}",)
    assert requests.requires == (PackageRef("urllib3", "1.26.5"),)
    assert read["@types/node"].license == "MIT"
    assert read["pytest"].version is None


def test_the_gate_warns_about_unpinned_and_unlicensed_components(
    project: Path, state_root: Path
) -> None:
    result = judge(GateContext(workspace=project, config=config(), state_root=state_root))
    assert result.status is Status.WARN
    assert {f.id for f in result.findings} == {UNPINNED, NO_LICENSE}
    assert "CycloneDX 1.6: 5 components from 3 files" in result.summary
    strict = config("  sbom: {unpinned: fail}\n")
    failed = judge(GateContext(workspace=project, config=strict, state_root=state_root))
    assert failed.status is Status.FAIL


def test_a_stored_sbom_that_is_not_cyclonedx_fails_the_gate(
    project: Path, state_root: Path, tmp_path: Path
) -> None:
    stored = tmp_path / "demo-1.0.0.cdx.json"
    stored.write_text('{"bomFormat": "CycloneDX", "specVersion": "1.6", "components": 3}')
    result = judge(
        GateContext(workspace=project, config=config(), state_root=state_root, sbom=stored)
    )
    assert result.status is Status.FAIL
    [finding] = result.findings
    assert finding.id == INVALID
    assert "components" in finding.message


def test_a_malformed_sbom_is_a_clear_dependency_error(project: Path, tmp_path: Path) -> None:
    stored = tmp_path / "broken.cdx.json"
    stored.write_text("{not json")
    with pytest.raises(MalformedDependencyFile) as caught:
        scan_dependencies(project, stored)
    assert "broken.cdx.json:1: the SBOM is not valid JSON" in caught.value.message


def test_the_vulnerabilities_gate_reads_a_stored_sbom(
    project: Path, state_root: Path, tmp_path: Path
) -> None:
    stored = tmp_path / "demo-1.2.0.cdx.json"
    stored.write_bytes(build_sbom(project, config(), version="1.2.0").document)
    for name in ("uv.lock", "pyproject.toml", "requirements-dev.txt"):
        (project / name).unlink()  # only the SBOM still knows about requests
    records = [osv("GHSA-req", "requests", events=[{"introduced": "0"}, {"fixed": "2.20.0"}])]
    import_advisories(write_records(tmp_path / "osv", records), state_root, now=NOW)
    gates = config("  vulnerabilities: {}\n")
    result = judge(
        GateContext(workspace=project, config=gates, state_root=state_root, now=NOW, sbom=stored),
        "vulnerabilities",
    )
    assert result.status is Status.FAIL
    found = [f for f in result.findings if f.id == "GHSA-req"]
    assert [f.location for f in found] == ["uv.lock:9"]
    assert "the stored SBOM (demo-1.2.0.cdx.json)" in result.summary or "1 file" in result.summary


def judge(context: GateContext, gate: str = "sbom") -> GateResult:
    [result] = run_gates(context, [gate])
    return result


def test_a_stored_sbom_with_a_component_twice_or_a_bad_field_fails_the_gate(
    project: Path, state_root: Path, tmp_path: Path
) -> None:
    built = json.loads(build_sbom(project, config(), version="1.2.0").document)
    stored = tmp_path / "demo-1.2.0.cdx.json"
    twice = {**built, "components": [*built["components"], dict(built["components"][0])]}
    stored.write_text(json.dumps(twice))
    context = GateContext(workspace=project, config=config(), state_root=state_root, sbom=stored)
    [finding] = judge(context).findings
    assert finding.id == INVALID
    assert "components: " in finding.message and "non-unique" in finding.message
    built["components"][1]["version"] = 5
    stored.write_text(json.dumps(built))
    [finding] = judge(context).findings
    assert "components/1/version: 5 is not of type" in finding.message
