"""Dependency readers: what each file format pins, what it leaves unpinned, and bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipyard.gates.deps import (
    MalformedDependencyFile,
    find_dependency_files,
    read_dependencies,
    scan_dependencies,
)


def pins(workspace: Path) -> list[tuple[str, str | None, str]]:
    return [(d.name, d.version, d.location) for d in read_dependencies(workspace).dependencies]


def test_requirements_pins_hashes_markers_and_includes(workspace: Path) -> None:
    (workspace / "requirements.txt").write_text(
        "# production\n"
        "-r requirements-base.txt\n"
        "--index-url https://pypi.example/simple\n"
        "requests==2.19.0 \\\n"
        "    --hash=sha256:aaaa \\\n"
        "    --hash=sha256:bbbb\n"
        'pywin32==306 ; sys_platform == "win32"  # kept: the target may differ\n'
        "Django===4.2.1\n"
        "-e .\n"
    )
    (workspace / "requirements-base.txt").write_text("urllib3==1.26.5\n")
    assert pins(workspace) == [
        ("urllib3", "1.26.5", "requirements-base.txt:1"),
        ("requests", "2.19.0", "requirements.txt:4"),
        ("pywin32", "306", "requirements.txt:7"),
        ("Django", "4.2.1", "requirements.txt:8"),
    ]
    markers = {d.name: d.marker for d in read_dependencies(workspace).dependencies}
    assert markers["pywin32"] == 'sys_platform == "win32"'
    assert markers["requests"] is None


def test_requirements_that_pin_nothing_are_reported_not_guessed(workspace: Path) -> None:
    (workspace / "requirements.txt").write_text(
        "flask>=2,<3\nclick\nnumpy==1.*\nlocal @ https://example.com/local-1.0.tar.gz\n"
    )
    found = read_dependencies(workspace).dependencies
    assert [(d.name, d.version) for d in found] == [
        ("flask", None),
        ("click", None),
        ("numpy", None),
        ("local", None),
    ]
    assert found[0].unpinned_reason == "'<3,>=2' is a range"
    assert found[1].unpinned_reason == "no version is given"
    assert "URL" in (found[3].unpinned_reason or "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("requests==2.0\nthis is not ! a requirement\n", "requirements.txt:2: 'this is not ! a"),
        ("--frobnicate\n", "requirements.txt:1: unknown option '--frobnicate'"),
        ("-r missing.txt\n", "requirements.txt: includes missing.txt, which does not exist"),
        ("-r requirements.txt\n", "includes itself"),
    ],
)
def test_bad_requirements_files_are_named_with_the_line(
    workspace: Path, text: str, message: str
) -> None:
    (workspace / "requirements.txt").write_text(text)
    with pytest.raises(MalformedDependencyFile) as caught:
        read_dependencies(workspace)
    assert message in caught.value.message


def test_uv_lock_pins_registry_packages_and_skips_the_project(workspace: Path) -> None:
    (workspace / "pyproject.toml").write_text(
        '[project]\nname = "app"\ndependencies = ["jinja2"]\n'
    )
    (workspace / "uv.lock").write_text(
        "version = 1\n\n"
        '[[package]]\nname = "app"\nversion = "0.1.0"\nsource = { editable = "." }\n\n'
        '[[package]]\nname = "jinja2"\nversion = "2.10"\n'
        'source = { registry = "https://pypi.org/simple" }\n\n'
        '[[package]]\nname = "forked"\nversion = "1.0"\n'
        'source = { git = "https://example.com/forked?rev=abc" }\n'
    )
    found = read_dependencies(workspace)
    assert found.files == ("uv.lock",)  # pyproject.toml is covered by its lockfile
    assert [(d.name, d.version, d.location) for d in found.dependencies] == [
        ("jinja2", "2.10", "uv.lock:8"),
        ("forked", None, "uv.lock:13"),
    ]
    assert found.dependencies[1].unpinned_reason == "installed from git"


UV_LOCK_WITH_MARKERS = """\
version = 1
requires-python = ">=3.9"

[[package]]
name = "app"
version = "0.1.0"
source = { editable = "." }
dependencies = [
    { name = "click" },
    { name = "pywin32", marker = "sys_platform == 'win32'" },
    { name = "tomli", marker = "python_full_version < '3.11'" },
]

[package.optional-dependencies]
socks = [{ name = "pysocks" }]

[[package]]
name = "click"
version = "8.1.7"
source = { registry = "https://pypi.org/simple" }
dependencies = [
    { name = "colorama", marker = "platform_system == 'Windows'" },
    { name = "typing-extensions", marker = "python_full_version < '3.10'" },
]

[[package]]
name = "colorama"
version = "0.4.6"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "pysocks"
version = "1.7.1"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "pywin32"
version = "306"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "typing-extensions" }]

[[package]]
name = "tomli"
version = "2.0.1"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "Typing_Extensions", marker = "implementation_name == 'pypy'" }]

[[package]]
name = "typing-extensions"
version = "4.12.2"
source = { registry = "https://pypi.org/simple" }
"""


def test_uv_lock_markers_come_from_the_paths_that_reach_each_package(workspace: Path) -> None:
    (workspace / "uv.lock").write_text(UV_LOCK_WITH_MARKERS)
    markers = {d.name: d.marker for d in read_dependencies(workspace).dependencies}
    assert markers == {
        "click": None,
        "colorama": "(platform_system == 'Windows')",
        "pysocks": None,  # an extra may be asked for: counted
        "pywin32": "(sys_platform == 'win32')",
        "tomli": "(python_full_version < '3.11')",
        # three paths: through click, through pywin32, and through tomli (two markers)
        "typing-extensions": (
            "((implementation_name == 'pypy') and (python_full_version < '3.11')) or "
            "((python_full_version < '3.10')) or ((sys_platform == 'win32'))"
        ),
    }


def test_a_uv_lock_path_without_markers_makes_a_package_unconditional(workspace: Path) -> None:
    lock = UV_LOCK_WITH_MARKERS.replace(
        '    { name = "click" },\n', '    { name = "click" },\n    { name = "colorama" },\n'
    )
    (workspace / "uv.lock").write_text(lock)
    markers = {d.name: d.marker for d in read_dependencies(workspace).dependencies}
    assert markers["colorama"] is None


def test_poetry_lock_markers_for_the_package_or_per_group(workspace: Path) -> None:
    (workspace / "poetry.lock").write_text(
        '[[package]]\nname = "colorama"\nversion = "0.4.6"\ngroups = ["main"]\n'
        'markers = "sys_platform == \\"win32\\""\n\n'
        '[[package]]\nname = "tomli"\nversion = "2.0.1"\ngroups = ["main", "dev"]\n'
        'markers = {main = "python_version < \\"3.11\\"", dev = "python_version < \\"3.9\\""}\n\n'
        '[[package]]\nname = "exceptiongroup"\nversion = "1.2.0"\ngroups = ["main", "dev"]\n'
        'markers = {dev = "python_version < \\"3.11\\""}\n\n'
        '[[package]]\nname = "click"\nversion = "8.1.7"\ngroups = ["main"]\n\n'
        '[metadata]\nlock-version = "2.1"\n'
    )
    markers = {d.name: d.marker for d in read_dependencies(workspace).dependencies}
    assert markers == {
        "colorama": '(sys_platform == "win32")',
        "tomli": '((python_version < "3.11")) or ((python_version < "3.9"))',
        "exceptiongroup": None,  # 'main' installs it everywhere
        "click": None,
    }


def test_poetry_lock(workspace: Path) -> None:
    (workspace / "poetry.lock").write_text(
        '[[package]]\nname = "pyyaml"\nversion = "5.3"\ndescription = ""\n\n'
        '[[package]]\nname = "mylib"\nversion = "0.1"\n\n[package.source]\ntype = "directory"\n'
        'url = "../mylib"\n\n[metadata]\nlock-version = "2.0"\n'
    )
    assert pins(workspace) == [("pyyaml", "5.3", "poetry.lock:1"), ("mylib", None, "poetry.lock:6")]


def test_pylock_toml(workspace: Path) -> None:
    (workspace / "pylock.toml").write_text(
        'lock-version = "1.0"\ncreated-by = "test"\n\n'
        '[[packages]]\nname = "idna"\nversion = "2.8"\n'
        '[[packages.wheels]]\nurl = "https://example.com/idna-2.8-py3-none-any.whl"\n\n'
        '[[packages]]\nname = "tool"\n[packages.vcs]\ntype = "git"\n'
        'url = "https://example.com/tool"\ncommit-id = "abc"\n\n'
        '[[packages]]\nname = "pywin32"\nversion = "306"\nmarker = "sys_platform == \'win32\'"\n'
    )
    assert pins(workspace) == [
        ("idna", "2.8", "pylock.toml:4"),
        ("tool", None, "pylock.toml:10"),
        ("pywin32", "306", "pylock.toml:17"),
    ]
    markers = {d.name: d.marker for d in read_dependencies(workspace).dependencies}
    assert markers == {"idna": None, "tool": None, "pywin32": "(sys_platform == 'win32')"}


def test_pyproject_without_a_lockfile_reports_its_ranges(workspace: Path) -> None:
    (workspace / "pyproject.toml").write_text(
        '[project]\nname = "app"\ndependencies = [\n  "requests==2.19.0",\n  "flask>=2",\n]\n'
        '[project.optional-dependencies]\ndev = ["pytest"]\n'
        '[dependency-groups]\nlint = ["ruff==0.5.0", {include-group = "dev"}]\n'
    )
    found = read_dependencies(workspace).dependencies
    assert [(d.name, d.version, d.line) for d in found] == [
        ("requests", "2.19.0", 4),
        ("flask", None, 5),
        ("pytest", None, 8),
        ("ruff", "0.5.0", 10),
    ]
    assert "no lockfile" in (found[1].unpinned_reason or "")


def test_package_lock_v3_with_nested_scoped_aliased_and_linked_packages(workspace: Path) -> None:
    lock = {
        "name": "web",
        "lockfileVersion": 3,
        "packages": {
            "": {"name": "web", "version": "1.0.0"},
            "node_modules/lodash": {"version": "4.17.20"},
            "node_modules/@scope/pkg": {"version": "1.2.3"},
            "node_modules/a/node_modules/lodash": {"version": "3.10.1"},
            "node_modules/old-lodash": {"name": "lodash", "version": "2.4.2"},
            "node_modules/local": {"resolved": "packages/local", "link": True},
            "node_modules/gitdep": {"version": "git+https://example.com/g.git#abc"},
        },
    }
    (workspace / "package-lock.json").write_text(json.dumps(lock, indent=2))
    found = read_dependencies(workspace).dependencies
    assert [(d.ecosystem, d.name, d.version) for d in found] == [
        ("npm", "lodash", "4.17.20"),
        ("npm", "@scope/pkg", "1.2.3"),
        ("npm", "lodash", "3.10.1"),
        ("npm", "lodash", "2.4.2"),
        ("npm", "gitdep", None),
    ]
    assert found[0].line == 9


def test_package_lock_v1_nests_dependencies(workspace: Path) -> None:
    lock = {
        "lockfileVersion": 1,
        "dependencies": {
            "express": {
                "version": "4.16.0",
                "dependencies": {"qs": {"version": "6.5.1"}},
            }
        },
    }
    (workspace / "package-lock.json").write_text(json.dumps(lock, indent=2))
    assert [(d.name, d.version) for d in read_dependencies(workspace).dependencies] == [
        ("express", "4.16.0"),
        ("qs", "6.5.1"),
    ]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("uv.lock", "[[package]\nname = 1\n", "uv.lock: not valid TOML"),
        ("poetry.lock", '[[package]]\nversion = "1.0"\n', "poetry.lock:1: a package has no 'name'"),
        ("pylock.toml", '[[packages]]\nname = "x"\n', "not a PEP 751 lockfile"),
        (
            "package-lock.json",
            '{\n  "packages": {\n    "x": \n}',
            "package-lock.json:4: not valid JSON",
        ),
        ("package-lock.json", "[1, 2]", "expected a JSON object"),
        ("package-lock.json", '{"name": "x"}', "not an npm lockfile"),
        ("requirements.txt", b"\xff\xfe junk", "requirements.txt: not UTF-8 text"),
    ],
)
def test_malformed_lockfiles_are_named(
    workspace: Path, name: str, text: str | bytes, message: str
) -> None:
    target = workspace / name
    if isinstance(text, bytes):
        target.write_bytes(text)
    else:
        target.write_text(text)
    with pytest.raises(MalformedDependencyFile) as caught:
        read_dependencies(workspace)
    assert message in caught.value.message


def test_discovery_skips_hidden_folders_node_modules_and_virtualenvs(workspace: Path) -> None:
    for folder in ("svc", ".git", "node_modules/x", "venv", "tooling"):
        (workspace / folder).mkdir(parents=True)
    (workspace / "tooling" / "pyvenv.cfg").write_text("home = /usr\n")
    for folder in ("svc", ".git", "node_modules/x", "venv", "tooling", "."):
        (workspace / folder / "requirements.txt").write_text("six==1.0\n")
    (workspace / "requirements").mkdir()
    (workspace / "requirements" / "prod.txt").write_text("six==1.0\n")
    found = [p.relative_to(workspace).as_posix() for p in find_dependency_files(workspace)]
    assert found == ["requirements.txt", "requirements/prod.txt", "svc/requirements.txt"]


@pytest.mark.parametrize(
    "line",
    [
        "-r ../../etc/passwd",
        "--requirement=../secret.txt",
        "--requirement ../secret.txt",
        "-r{outside}/secret.txt",
        "-c ../secret.txt",
        "--constraint={outside}/secret.txt",
    ],
)
def test_includes_outside_the_repository_are_refused_with_file_and_line(
    tmp_path: Path, workspace: Path, line: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("leaked==1.0\n")
    (tmp_path / "secret.txt").write_text("leaked==1.0\n")
    (workspace / "requirements.txt").write_text(f"six==1.0\n{line.format(outside=outside)}\n")
    with pytest.raises(MalformedDependencyFile) as caught:
        read_dependencies(workspace)
    assert caught.value.message.startswith("requirements.txt:2: ")
    assert "outside the repository" in caught.value.message
    assert "leaked" not in caught.value.message


def test_a_symlink_that_escapes_the_repository_is_refused(tmp_path: Path, workspace: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("leaked==1.0\n")
    (workspace / "base.txt").symlink_to(secret)
    (workspace / "requirements.txt").write_text("-r base.txt\n")
    with pytest.raises(MalformedDependencyFile, match=r"requirements.txt:1: .*outside"):
        read_dependencies(workspace)
    (workspace / "requirements.txt").unlink()
    (workspace / "requirements-dev.txt").symlink_to(secret)
    with pytest.raises(MalformedDependencyFile) as caught:
        read_dependencies(workspace)
    assert "requirements-dev.txt" in caught.value.message
    assert "outside the repository" in caught.value.message
    (workspace / "requirements-dev.txt").unlink()
    (workspace / "package-lock.json").symlink_to(secret)
    with pytest.raises(MalformedDependencyFile, match=r"package-lock\.json.*outside"):
        read_dependencies(workspace)


def test_a_project_folder_may_include_files_elsewhere_in_its_repository(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    (repository / ".git").mkdir(parents=True)
    (repository / "shared").mkdir()
    (repository / "shared" / "base.txt").write_text("six==1.0\n")
    project = repository / "services" / "api"
    project.mkdir(parents=True)
    (project / "requirements.txt").write_text(
        "-r ../../shared/base.txt\n-c ../../shared/base.txt\n"
    )
    assert [d.name for d in read_dependencies(project).dependencies] == ["six"]
    (project / "requirements.txt").write_text("-r ../../../elsewhere.txt\n")
    (tmp_path / "elsewhere.txt").write_text("leaked==1.0\n")
    with pytest.raises(MalformedDependencyFile, match="outside the repository"):
        read_dependencies(project)


DEEP = 200_000


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("package-lock.json", "[" * DEEP + "]" * DEEP, "package-lock.json: not an npm lockfile"),
        (
            "package-lock.json",
            '{"lockfileVersion": 3, "packages": ' + '{"a": ' * 600 + "1" + "}" * 601,
            "package-lock.json: not an npm lockfile",
        ),
        ("uv.lock", "a = " + "[" * DEEP + "]" * DEEP, "uv.lock: not a lockfile"),
        ("poetry.lock", "a = " + "{b = " * DEEP + "}" * DEEP, "poetry.lock: not a lockfile"),
    ],
)
def test_a_file_nested_absurdly_deep_is_a_clear_error(
    workspace: Path, name: str, text: str, message: str
) -> None:
    (workspace / name).write_text(text)
    with pytest.raises(MalformedDependencyFile) as caught:
        read_dependencies(workspace)
    assert caught.value.message.startswith(message)
    assert "more than 500 levels deep" in caught.value.message


def test_a_stored_sbom_nested_absurdly_deep_is_a_clear_error(tmp_path: Path) -> None:
    stored = tmp_path / "deep.cdx.json"
    stored.write_text("[" * DEEP + "]" * DEEP)
    with pytest.raises(MalformedDependencyFile, match=r"deep\.cdx\.json: not a CycloneDX JSON"):
        scan_dependencies(tmp_path, stored)
