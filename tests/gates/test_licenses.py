"""The licenses gate: SPDX semantics, and licenses read from a real virtual environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gates.gatesupport import NOW
from shipyard.core.config import load_config_text
from shipyard.gates import Finding, GateContext, GateResult, Status, run_gates
from shipyard.gates.licenses.gate import DENIED, NOT_ALLOWED, UNKNOWN, VERSION_DIFFERS
from shipyard.gates.licenses.spdx import InvalidLicense, Judgement, Policy, parse
from shipyard.gates.runner import GATE_ERROR

POLICY = Policy.of(
    ["MIT", "BSD-3-Clause", "Apache-2.0", "GPL-2.0-only WITH Classpath-exception-2.0"],
    ["AGPL-3.0-only", "GPL-3.0-only"],
)


@pytest.mark.parametrize(
    ("expression", "judgement"),
    [
        ("MIT", Judgement.ALLOWED),
        ("MIT OR AGPL-3.0-only", Judgement.ALLOWED),  # the licensee chooses MIT
        ("AGPL-3.0-only OR MIT", Judgement.ALLOWED),
        ("MIT AND AGPL-3.0-only", Judgement.DENIED),  # both apply: AGPL is denied
        ("MIT AND ISC", Judgement.NOT_ALLOWED),
        ("ISC OR AGPL-3.0-only", Judgement.NOT_ALLOWED),  # no branch is allowed
        ("Apache-2.0 AND (MIT OR GPL-3.0-only)", Judgement.ALLOWED),
        ("Apache-2.0 AND (ISC OR GPL-3.0-only)", Judgement.NOT_ALLOWED),
        ("GPL-2.0-only WITH Classpath-exception-2.0", Judgement.ALLOWED),  # listed exactly
        ("GPL-2.0-only", Judgement.NOT_ALLOWED),  # the exception's entry does not allow it
        ("GPL-3.0-only WITH GCC-exception-3.1", Judgement.DENIED),  # the bare entry denies
        ("MIT WITH Classpath-exception-2.0", Judgement.ALLOWED),  # an exception only adds
        ("mit or apache-2.0", Judgement.ALLOWED),
        ("LicenseRef-Acme-Proprietary", Judgement.NOT_ALLOWED),
    ],
)
def test_or_passes_on_one_branch_and_and_needs_every_part(
    expression: str, judgement: Judgement
) -> None:
    assert POLICY.judge(parse(expression)).judgement is judgement


def test_without_an_allow_list_everything_not_denied_passes() -> None:
    policy = Policy.of([], ["AGPL-3.0-only"])
    assert policy.judge(parse("ISC")).judgement is Judgement.ALLOWED
    decision = policy.judge(parse("ISC AND AGPL-3.0-only"))
    assert (decision.judgement, decision.culprits) == (Judgement.DENIED, ("AGPL-3.0-only",))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("MIT OR", "OR requires two or more licenses"),
        ("(MIT", "not a valid SPDX expression"),
        ("Apache 2.0", "did you mean 'Apache-2.0'?"),
        ("MIT WITH GPL-3.0-only", "cannot be used as an exception"),
        ("Classpath-exception-2.0", "exception"),
        ("MIT/Apache-2.0", "not a valid SPDX expression"),
        ("   ", "empty"),
    ],
)
def test_invalid_expressions_say_why(text: str, problem: str) -> None:
    with pytest.raises(InvalidLicense) as caught:
        parse(text)
    assert problem in caught.value.message


# --- a real virtual environment ------------------------------------------------------------

PACKAGES = {
    "mitpkg": ("1.0", ["License-Expression: MIT"]),
    "dualpkg": ("2.0", ["License: MIT OR AGPL-3.0-only"]),
    "bothpkg": ("1.0", ["License-Expression: MIT AND AGPL-3.0-only"]),
    "javaish": ("3.1", ["License-Expression: GPL-2.0-only WITH Classpath-exception-2.0"]),
    "classified": ("1.2", ["Classifier: License :: OSI Approved :: MIT License"]),
    "vague": ("1.0", ["Classifier: License :: OSI Approved :: BSD License"]),
    "spelled": ("0.9", ["License: Apache License, Version 2.0"]),
    "weird": ("1.0", ["License: Some Custom License v2"]),
    "bare": ("1.0", []),
    "older": ("1.0", ["License-Expression: BSD-3-Clause"]),
}


def _metadata(name: str, version: str, lines: list[str]) -> str:
    return "\n".join(["Metadata-Version: 2.4", f"Name: {name}", f"Version: {version}", *lines])


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real virtual environment with small packages installed as dist-info folders."""
    root = tmp_path_factory.mktemp("licenses") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    for name, (version, lines) in PACKAGES.items():
        info = Path(purelib) / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(_metadata(name, version, lines) + "\n\n")
    return root


REQUIREMENTS = "".join(
    f"{name}=={'1.1' if name == 'older' else version}\n" for name, (version, _) in PACKAGES.items()
)


def context(workspace: Path, state_root: Path, licenses_yaml: str) -> GateContext:
    config = load_config_text(f"project: demo\ngates:\n  licenses: {licenses_yaml}\n")
    return GateContext(workspace=workspace, config=config, state_root=state_root, now=NOW)


def judge(workspace: Path, state_root: Path, licenses_yaml: str) -> GateResult:
    [result] = run_gates(context(workspace, state_root, licenses_yaml), ["licenses"])
    return result


def by_package(result: GateResult) -> dict[str, list[Finding]]:
    found: dict[str, list[Finding]] = {}
    for finding in result.findings:
        found.setdefault(str(finding.details.get("package")), []).append(finding)
    return found


ALLOW = (
    "{allow: [MIT, BSD-3-Clause, Apache-2.0, 'GPL-2.0-only WITH Classpath-exception-2.0'], "
    "deny: [AGPL-3.0-only]"
)


def test_licenses_come_from_the_configured_environment(
    workspace: Path, state_root: Path, venv: Path
) -> None:
    (workspace / "requirements.txt").write_text(REQUIREMENTS)
    result = judge(workspace, state_root, ALLOW + ", python: " + str(venv / "bin" / "python") + "}")
    assert result.status is Status.FAIL
    found = by_package(result)
    for passing in ("mitpkg", "dualpkg", "javaish", "classified", "spelled"):
        assert passing not in found, found[passing][0].message
    [both] = found["bothpkg"]
    assert both.id == DENIED
    assert "AGPL-3.0-only is denied" in both.message
    assert both.location == "requirements.txt:3"
    [vague] = found["vague"]
    assert (vague.id, vague.blocking) == (UNKNOWN, True)
    assert "BSD License" in vague.message and "no single SPDX license" in vague.message
    [weird] = found["weird"]
    assert weird.id == UNKNOWN
    assert "'Some Custom License v2'" in weird.message
    [bare] = found["bare"]
    assert "declares no license" in bare.message
    [older] = found["older"]
    assert older.id == VERSION_DIFFERS and not older.blocking
    assert "1.1 is pinned but 1.0 is installed" in older.message
    assert "3 denied" not in result.summary and "1 denied" in result.summary


def test_a_venv_folder_and_overrides_settle_what_metadata_does_not(
    workspace: Path, state_root: Path, venv: Path
) -> None:
    (workspace / "requirements.txt").write_text("bare==1.0\nweird==1.0\nmitpkg==1.0\n")
    result = judge(
        workspace,
        state_root,
        f"{{allow: [MIT, ISC], python: {venv}, overrides: {{bare: ISC, weird: MIT}}}}",
    )
    assert result.status is Status.PASS, [f.message for f in result.findings]
    assert "3 allowed" in result.summary


def test_a_package_not_installed_is_unknown_and_warn_makes_it_a_warning(
    workspace: Path, state_root: Path, venv: Path
) -> None:
    (workspace / "requirements.txt").write_text("ghost==1.0\n")
    result = judge(workspace, state_root, f"{{python: {venv}, unknown: warn}}")
    assert result.status is Status.WARN
    [ghost] = result.findings
    assert "not installed in" in ghost.message and not ghost.blocking


def test_shipyards_own_environment_is_never_read_by_accident(
    workspace: Path, state_root: Path
) -> None:
    # pytest is installed where Shipyard runs, with a license in its metadata: it stays unknown.
    (workspace / "requirements.txt").write_text("pytest==8.0.0\n")
    result = judge(workspace, state_root, "{allow: [MIT]}")
    [finding] = result.findings
    assert finding.id == UNKNOWN
    assert "gates.licenses.python is not set" in finding.message
    assert "gates.licenses.python" in (finding.remediation or "")


def test_npm_licenses_come_from_the_lockfile(workspace: Path, state_root: Path) -> None:
    (workspace / "package-lock.json").write_text(
        '{"lockfileVersion": 3, "packages": {'
        '"node_modules/a": {"version": "1.0.0", "license": "MIT"},'
        '"node_modules/b": {"version": "1.0.0", "license": "(MIT OR GPL-3.0-only)"},'
        '"node_modules/c": {"version": "1.0.0", "license": "GPL-3.0-only"},'
        '"node_modules/d": {"version": "1.0.0"}}}'
    )
    result = judge(workspace, state_root, "{allow: [MIT], deny: [GPL-3.0-only]}")
    found = by_package(result)
    assert set(found) == {"c", "d"}
    assert found["c"][0].id == DENIED
    assert found["d"][0].id == UNKNOWN
    assert "records no license" in found["d"][0].message


def test_a_license_outside_the_allow_list_is_named(workspace: Path, state_root: Path) -> None:
    (workspace / "package-lock.json").write_text(
        '{"lockfileVersion": 3, "packages": {"node_modules/a": {"version": "1.0.0",'
        ' "license": "ISC OR MPL-2.0"}}}'
    )
    [finding] = judge(workspace, state_root, "{allow: [MIT]}").findings
    assert finding.id == NOT_ALLOWED
    assert "no branch of the OR is allowed: ISC, MPL-2.0 are not in gates.licenses.allow" in (
        finding.message
    )


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        (
            "{python: /nowhere/bin/python}",
            "gates.licenses.python: /nowhere/bin/python does not exist",
        ),
        ("{python: missing-venv}", "does not exist"),
        ("{allow: [MIT OR ISC]}", "gates.licenses.allow[0]: 'MIT OR ISC' is an expression"),
        ("{allow: [Apache2]}", "did you mean 'Apache-2.0'?"),
        ("{deny: ['GPL-2.0-only WITH MIT']}", "gates.licenses.deny[0]"),
    ],
)
def test_bad_settings_fail_the_gate_with_a_clear_message(
    workspace: Path, state_root: Path, settings: str, problem: str
) -> None:
    (workspace / "requirements.txt").write_text("mitpkg==1.0\n")
    result = judge(workspace, state_root, settings)
    assert result.status is Status.FAIL
    [finding] = result.findings
    assert finding.id == GATE_ERROR
    assert problem in finding.message


def test_an_interpreter_that_is_not_python_is_a_clear_failure(
    workspace: Path, state_root: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'not python' >&2\nexit 3\n")
    fake.chmod(0o755)
    (workspace / "requirements.txt").write_text("mitpkg==1.0\n")
    [finding] = judge(workspace, state_root, f"{{python: {fake}}}").findings
    assert finding.id == GATE_ERROR
    assert "failed to list its packages (exit 3): not python" in finding.message


def test_the_same_license_in_allow_and_deny_is_a_configuration_error() -> None:
    from shipyard.core.config import ConfigInvalid

    with pytest.raises(ConfigInvalid) as caught:
        load_config_text("project: demo\ngates:\n  licenses: {allow: [MIT], deny: [mit]}\n")
    assert "both allowed (allow[0]) and denied" in str(caught.value)
