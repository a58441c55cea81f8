"""The secrets gate over real git repositories: what it finds, what it skips, and what it says."""

from __future__ import annotations

from pathlib import Path

import pytest

from gates.gatesupport import NOW
from gates.secretsupport import ACME_RULE, look_alikes, planted
from shipyard.core.config import load_config_text
from shipyard.gates import GateContext, GateResult, Status, run_gates
from shipyard.gates.runner import GATE_ERROR
from shipyard.gates.secrets import read_baseline, scan_secrets, settings_of, write_baseline
from shipyard.gates.secrets.gate import HISTORY, NOT_SCANNED
from support import git


def commit_files(repo: Path, files: dict[str, str | bytes], message: str = "chore: files") -> None:
    for name, content in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def context(
    workspace: Path, state_root: Path, secrets_yaml: str = "{}", *, project_dir: Path | None = None
) -> GateContext:
    config = load_config_text(f"project: demo\ngates:\n  secrets:\n{_indent(secrets_yaml)}")
    return GateContext(
        workspace=workspace,
        config=config,
        state_root=state_root,
        now=NOW,
        project_dir=project_dir,
    )


def _indent(text: str) -> str:
    if text.startswith("{") or text in ("true", "false"):
        return f"    {text}\n" if text != "{}" else "    {}\n"
    return text


def judge(ctx: GateContext) -> GateResult:
    [result] = run_gates(ctx, ["secrets"])
    return result


def planted_files() -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = {}
    for item in planted():
        files[item.file] = str(files.get(item.file, "")) + item.text + "\n"
    return files


RULES = "    rules:\n" + ACME_RULE


def test_every_planted_form_is_found_and_named_by_its_rule(repo: Path, state_root: Path) -> None:
    commit_files(repo, planted_files())
    result = judge(context(repo, state_root, RULES))
    assert result.status is Status.FAIL
    found = {(f.details["path"], f.details["rule"]) for f in result.findings}
    for item in planted():
        rules = {
            tuple(f.details["rules"]) for f in result.findings if f.details.get("path") == item.file
        }
        assert any(item.rule in group for group in rules), (item.file, item.rule, found)
    assert len(planted()) >= 10
    assert all(f.blocking for f in result.findings)


def test_findings_show_a_redacted_prefix_and_a_hash_never_the_secret(
    repo: Path, state_root: Path
) -> None:
    commit_files(repo, planted_files())
    result = judge(context(repo, state_root, RULES))
    shown = repr([f.as_json() for f in result.findings]) + result.summary
    for item in planted():
        assert item.secret not in shown
        for line in item.secret.splitlines():
            if not line.startswith("-----"):  # a PEM header is not secret; its body is
                assert line not in shown
    aws = next(f for f in result.findings if f.location == "app/settings.py:1")
    assert aws.id == "secrets/aws-access-key"
    assert aws.message.startswith("AWS Access Key: AKIA… (sha256:")
    assert str(aws.details["fingerprint"]).startswith("sha256:")


def test_look_alikes_are_not_reported(repo: Path, state_root: Path) -> None:
    commit_files(repo, dict(look_alikes()))
    result = judge(context(repo, state_root, RULES))
    assert result.status is Status.PASS, [f.message for f in result.findings]
    assert "2 allowed inline" in result.summary


def test_only_tracked_files_are_scanned_in_a_working_tree(repo: Path, state_root: Path) -> None:
    [aws] = [p for p in planted() if p.rule == "AWS Access Key"][:1]
    (repo / "notes.py").write_text(aws.text + "\n")  # never added to git
    assert judge(context(repo, state_root)).status is Status.PASS


def test_a_release_copy_is_scanned_whole(tmp_path: Path, state_root: Path, repo: Path) -> None:
    copy = tmp_path / "bundle"
    copy.mkdir()
    (copy / "settings.py").write_text(planted()[0].text + "\n")
    result = judge(context(copy, state_root, project_dir=repo))
    assert [f.location for f in result.findings] == ["settings.py:1"]


def test_the_baseline_is_keyed_by_hash_so_moving_code_does_not_churn_it(
    repo: Path, state_root: Path
) -> None:
    commit_files(repo, planted_files())
    ctx = context(repo, state_root, RULES)
    settings = settings_of(ctx)
    baseline = repo / ".shipyard-secrets-baseline.json"
    change = read_baseline(baseline, "b").updated(scan_secrets(ctx, settings).hits)
    write_baseline(baseline, change.baseline)
    assert len(change.added) == len(planted())
    text = baseline.read_text()
    for item in planted():
        assert item.secret[:12] not in text
    assert judge(ctx).status is Status.PASS
    moved = {
        f"moved/{name}": "\n\n# moved\n" + str(content) for name, content in planted_files().items()
    }
    for name in planted_files():
        (repo / name).unlink()
    commit_files(repo, moved, "refactor: move everything")
    assert judge(ctx).status is Status.PASS
    again = read_baseline(baseline, "b").updated(scan_secrets(ctx, settings).hits)
    assert (again.added, again.removed) == ((), ())
    write_baseline(baseline, again.baseline)
    assert baseline.read_text() == text
    fresh = "gh" + "p_" + "Zk3s9Qm2Lx8Vb7Nc6Xz5Aq4Ws3Ed2Rf1Tg0Yq"
    commit_files(repo, {"later.py": f'TOKEN = "{fresh}"\n'})
    result = judge(ctx)
    assert result.status is Status.FAIL
    assert [f.location for f in result.findings] == ["later.py:1"]


def test_a_secret_only_in_history_is_found_when_history_is_on(repo: Path, state_root: Path) -> None:
    github = next(p for p in planted() if p.rule == "GitHub Token")
    commit_files(repo, {"ci.sh": github.text + "\n"}, "feat: ci")
    commit_files(repo, {"ci.sh": "export GITHUB_TOKEN=$TOKEN\n"}, "fix: read it from the env")
    assert judge(context(repo, state_root)).status is Status.PASS
    result = judge(context(repo, state_root, "{history: true}"))
    assert result.status is Status.FAIL
    [finding] = result.findings
    assert finding.location == "ci.sh:1"
    assert "added in commit" in finding.message
    assert github.secret not in repr(finding.as_json())
    assert "commits" in result.summary


def test_history_outside_a_repository_is_reported_not_passed(
    tmp_path: Path, state_root: Path
) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "a.txt").write_text("nothing here\n")
    result = judge(context(folder, state_root, "{history: true}"))
    assert result.status is Status.WARN
    assert [f.id for f in result.findings] == [HISTORY]


def test_a_binary_file_is_scanned_for_its_strings(repo: Path, state_root: Path) -> None:
    aws = planted()[0]
    blob = b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(range(256)) + aws.text.encode() + b"\x00\xff" * 50
    commit_files(repo, {"assets/logo.png": blob, "assets/empty.bin": bytes(range(256)) * 4})
    result = judge(context(repo, state_root))
    assert result.status is Status.FAIL
    [finding] = result.findings
    assert finding.location.startswith("assets/logo.png (byte ")
    assert "2 binary scanned for strings" in result.summary


def test_a_huge_file_is_reported_as_not_scanned_and_the_gate_warns(
    repo: Path, state_root: Path
) -> None:
    commit_files(repo, {"data/dump.sql": "x" * 2048 + "\n"})
    result = judge(context(repo, state_root, "{max_file_size: 1KiB}"))
    assert result.status is Status.WARN
    [finding] = result.findings
    assert finding.id == NOT_SCANNED
    assert "larger than max_file_size" in finding.message


def test_exclude_patterns_skip_files_and_folders(repo: Path, state_root: Path) -> None:
    commit_files(repo, planted_files())
    result = judge(
        context(repo, state_root, "{exclude: ['app/', 'deploy/*', '*.pem', 'config/*', .npmrc]}")
    )
    assert result.status is Status.PASS, [f.location for f in result.findings]


def test_a_damaged_baseline_fails_the_gate_with_its_name(repo: Path, state_root: Path) -> None:
    commit_files(repo, {".shipyard-secrets-baseline.json": "{not json"})
    result = judge(context(repo, state_root))
    assert result.status is Status.FAIL
    [finding] = result.findings
    assert finding.id == GATE_ERROR
    assert ".shipyard-secrets-baseline.json:1 is not valid JSON" in finding.message


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ("      - {id: x, regex: '('}\n", "is not a regular expression"),
        ("      - {id: x, regex: 'a*'}\n", "matches an empty string"),
        ("      - {id: X Y, regex: 'a+'}\n", "is not a rule id"),
        ("      - {id: x, regex: 'a+', entropy: 9}\n", "gates.secrets.rules[0].entropy"),
    ],
)
def test_bad_rules_are_configuration_errors(rule: str, problem: str) -> None:
    from shipyard.core.config import ConfigInvalid

    with pytest.raises(ConfigInvalid) as caught:
        load_config_text(f"project: demo\ngates:\n  secrets:\n    rules:\n{rule}")
    assert problem in str(caught.value)


def test_a_secret_named_in_shipyard_yaml_is_a_name_not_a_secret(
    repo: Path, state_root: Path
) -> None:
    config = (
        "project: demo\n"
        "notifications:\n"
        "  - {url: 'https://hooks.example.com/x', on: [deployment.rolled_back], secret: HOOK_KEY}\n"
        "  - url: https://hooks.example.com/y\n"
        "    on: [deployment.rolled_back]\n"
        "    secret: OTHER_HOOK_KEY\n"
    )
    leaked = "password: 'tr0ub4dor&3-horse-battery'\n"
    commit_files(repo, {"shipyard.yaml": config, "settings.yaml": leaked})
    result = judge(context(repo, state_root))
    assert [(f.location or "").split(":")[0] for f in result.findings] == ["settings.yaml"]
    # The same words elsewhere than shipyard.yaml stay a finding: only Shipyard's own file
    # names its secrets this way.
    commit_files(repo, {"other.yaml": "secret: HOOK_KEY_VALUE_42\n"})
    assert "other.yaml" in {
        (f.location or "").split(":")[0] for f in judge(context(repo, state_root)).findings
    }
