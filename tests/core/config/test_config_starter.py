"""The starter configuration detects a real project's name and commands, and always loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.core.config import StarterConfig, load_config, starter_config
from shipyard.core.config.starter import normalise_project_name


def make_project(root: Path, files: dict[str, str]) -> Path:
    """Create a project folder holding ``files`` (path → text)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def starter_that_loads(root: Path) -> StarterConfig:
    """Build the starter for ``root`` and prove load_config accepts what it wrote."""
    starter = starter_config(root)
    path = root / "shipyard.yaml"
    path.write_text(starter.yaml, encoding="utf-8")
    assert load_config(path).project == starter.detected.name
    return starter


PYTEST_TEST = "import pytest\n\n\ndef test_adds():\n    assert 1 + 1 == 2\n"
PLAIN_TEST = "def test_adds():\n    assert 1 + 1 == 2\n"
UNITTEST_TEST = (
    "import unittest\n\n\nclass AddTest(unittest.TestCase):\n"
    "    def test_adds(self):\n        self.assertEqual(1 + 1, 2)\n"
)


def test_pyproject_with_pytest(tmp_path: Path) -> None:
    root = make_project(
        tmp_path / "checkout",
        {
            "pyproject.toml": (
                '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
                '[project]\nname = "Demo App"\nversion = "1.0"\ndependencies = ["httpx"]\n\n'
                '[project.optional-dependencies]\ntest = ["pytest>=8", "coverage"]\n\n'
                '[tool.pytest.ini_options]\naddopts = "-q"\n'
            ),
            "src/demo_app/__init__.py": "",
            "tests/test_app.py": PYTEST_TEST,
        },
    )
    starter = starter_that_loads(root)
    detected = starter.detected
    assert detected.name == "Demo-App"
    assert detected.name_source == "from pyproject.toml [project].name, written as 'Demo App'"
    assert detected.python
    assert detected.python_markers == ("pyproject.toml",)
    assert detected.install is not None
    assert detected.install.run == 'pip install -e ".[test]"'
    assert detected.test is not None
    assert detected.test.run == "pytest"
    assert detected.test.reason == "pyproject.toml has [tool.pytest.ini_options]"
    assert "project: Demo-App\n" in starter.yaml
    assert "#   test command: pytest (pyproject.toml has [tool.pytest.ini_options])" in starter.yaml


def test_pytest_in_the_main_dependencies(tmp_path: Path) -> None:
    root = make_project(
        tmp_path / "lib",
        {
            "pyproject.toml": '[project]\nname = "lib"\ndependencies = ["PyTest==8.2"]\n',
            "pytest.ini": "[pytest]\n",
        },
    )
    detected = starter_that_loads(root).detected
    assert detected.install is not None
    assert detected.install.run == "pip install -e ."
    assert detected.test is not None
    assert detected.test.run == "pytest"


def test_requirements_only(tmp_path: Path) -> None:
    root = make_project(
        tmp_path / "flask-site",
        {"requirements.txt": "flask==3.0\n", "app.py": "", "tests/test_app.py": PLAIN_TEST},
    )
    detected = starter_that_loads(root).detected
    assert detected.name == "flask-site"
    assert detected.name_source == "from the folder's name"
    assert detected.python_markers == ("requirements.txt",)
    assert detected.install is not None
    assert detected.install.run == "pip install -r requirements.txt pytest"
    assert detected.test is not None
    assert (detected.test.run, detected.test.reason) == ("pytest", "tests/ holds test_*.py files")


def test_requirements_with_a_dev_file_listing_pytest(tmp_path: Path) -> None:
    root = make_project(
        tmp_path / "svc",
        {
            "requirements.txt": "flask\n",
            "requirements-dev.txt": "-r requirements.txt\npytest>=8  # tests\n",
            "test/test_svc.py": PLAIN_TEST,
        },
    )
    detected = starter_that_loads(root).detected
    assert detected.python_markers == ("requirements-dev.txt", "requirements.txt")
    assert detected.install is not None
    assert detected.install.run == "pip install -r requirements.txt -r requirements-dev.txt"
    assert detected.test is not None
    assert detected.test.reason == "requirements-dev.txt lists pytest"


def test_unittest_project(tmp_path: Path) -> None:
    root = make_project(
        tmp_path / "legacy",
        {
            "setup.py": "from setuptools import setup\nsetup()\n",
            "setup.cfg": "[metadata]\nname = legacy_tool\n\n[options]\npackages = find:\n",
            "tests/__init__.py": "",
            "tests/test_core.py": UNITTEST_TEST,
        },
    )
    detected = starter_that_loads(root).detected
    assert detected.name == "legacy_tool"
    assert detected.name_source == "from setup.cfg"
    assert detected.python_markers == ("setup.py", "setup.cfg")
    assert detected.install is not None
    assert detected.install.run == "pip install -e ."
    assert detected.test is not None
    assert detected.test.run == "python -m unittest discover -s tests"
    assert detected.test.reason == "the test files use unittest"


def test_unittest_files_in_the_top_folder(tmp_path: Path) -> None:
    root = make_project(
        tmp_path / "script",
        {"requirements.txt": "requests\n", "test_script.py": UNITTEST_TEST},
    )
    detected = starter_that_loads(root).detected
    assert detected.test is not None
    assert detected.test.run == "python -m unittest discover"
    assert detected.install is not None
    assert detected.install.run == "pip install -r requirements.txt"


def test_non_python_project(tmp_path: Path) -> None:
    root = make_project(
        tmp_path / "My Web Site!",
        {"package.json": '{"name": "site"}\n', "index.html": "<p>hi</p>\n"},
    )
    starter = starter_that_loads(root)
    detected = starter.detected
    assert detected.name == "My-Web-Site"
    assert not detected.python
    assert detected.install is None
    assert detected.test is None
    assert "#   Python project: no" in starter.yaml
    assert "#   test command: none found" in starter.yaml


def test_python_project_without_tests(tmp_path: Path) -> None:
    root = make_project(tmp_path / "bare", {"pyproject.toml": '[project]\nname = "bare"\n'})
    starter = starter_that_loads(root)
    assert starter.detected.test is None
    assert "no test_*.py files were found" in starter.yaml


def test_a_broken_pyproject_is_noted_and_ignored(tmp_path: Path) -> None:
    root = make_project(tmp_path / "broken", {"pyproject.toml": "[project\nname = 'x'\n"})
    starter = starter_that_loads(root)
    assert starter.detected.name == "broken"
    assert starter.detected.notes[0].startswith("pyproject.toml could not be read")


def test_a_numeric_name_is_quoted(tmp_path: Path) -> None:
    starter = starter_that_loads(make_project(tmp_path / "2024", {"README.md": "x\n"}))
    assert 'project: "2024"\n' in starter.yaml


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("demo", "demo"),
        ("Demo App", "Demo-App"),
        ("  ..hidden--", "hidden"),
        ("über/straße", "ber-stra-e"),
        ("!!!", "project"),
        ("a" * 80, "a" * 64),
    ],
)
def test_normalise_project_name(raw: str, normal: str) -> None:
    assert normalise_project_name(raw) == normal


def test_findings_for_people_and_for_json(tmp_path: Path) -> None:
    root = make_project(
        tmp_path / "app", {"requirements.txt": "pytest\n", "tests/test_app.py": PLAIN_TEST}
    )
    starter = starter_config(root)
    assert starter.describe() == [
        "project name: app (from the folder's name)",
        "Python project: yes (requirements.txt)",
        "install command: pip install -r requirements.txt "
        "(requirements.txt lists the dependencies)",
        "test command: pytest (requirements.txt lists pytest)",
    ]
    assert starter.as_json() == {
        "project": "app",
        "project_source": "from the folder's name",
        "python": True,
        "python_markers": ["requirements.txt"],
        "install": {
            "run": "pip install -r requirements.txt",
            "reason": "requirements.txt lists the dependencies",
        },
        "test": {"run": "pytest", "reason": "requirements.txt lists pytest"},
        "notes": [],
    }
    assert all(f"#   {line}\n" in starter.yaml for line in starter.describe())


def test_plugins_the_pytest_configuration_needs_are_installed(tmp_path: Path) -> None:
    root = make_project(
        tmp_path / "plugged",
        {
            "pyproject.toml": (
                '[project]\nname = "plugged"\nversion = "1.0"\n\n'
                '[project.optional-dependencies]\ntest = ["pytest>=8", "pytest-xdist"]\n\n'
                "[tool.pytest.ini_options]\n"
                'addopts = ["--cov=plugged", "--cov-report", "term", "-n", "auto"]\n'
                "timeout = 30\n"
            ),
            "tests/test_app.py": PYTEST_TEST,
        },
    )
    detected = starter_that_loads(root).detected
    assert detected.install is not None
    # pytest-xdist comes with the 'test' extra; the others are added.
    assert detected.install.run == 'pip install -e ".[test]" pytest-cov pytest-timeout'
    assert "pytest-cov (--cov in pyproject.toml's addopts)" in detected.install.reason
    assert "pytest-timeout (timeout in pyproject.toml)" in detected.install.reason


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("pytest.ini", "[pytest]\naddopts = -q --cov=app -n 2 --timeout=60\n"),
        ("setup.cfg", "[tool:pytest]\naddopts =\n    --cov app\n    -n2\n    --timeout 60\n"),
        ("tox.ini", "[tox]\nenvlist = py3\n\n[pytest]\naddopts = --cov -nauto --timeout=9\n"),
    ],
)
def test_plugins_are_read_from_every_kind_of_pytest_configuration(
    tmp_path: Path, name: str, text: str
) -> None:
    root = make_project(
        tmp_path / "app",
        {"requirements.txt": "requests==2.32.3\n", name: text, "tests/test_app.py": PYTEST_TEST},
    )
    detected = starter_that_loads(root).detected
    assert detected.install is not None
    assert detected.install.run == (
        "pip install -r requirements.txt pytest pytest-cov pytest-xdist pytest-timeout"
    )


def test_required_plugins_are_installed_and_listed_ones_are_not_repeated(tmp_path: Path) -> None:
    root = make_project(
        tmp_path / "app",
        {
            "requirements.txt": "pytest\npytest-cov\n",
            "pytest.ini": "[pytest]\naddopts = --cov\nrequired_plugins = pytest-django>=4\n",
            "tests/test_app.py": PYTEST_TEST,
        },
    )
    detected = starter_that_loads(root).detected
    assert detected.install is not None
    assert detected.install.run == "pip install -r requirements.txt 'pytest-django>=4'"


def test_an_absurdly_nested_pyproject_is_noted_and_ignored(tmp_path: Path) -> None:
    deep = "a = " + "[" * 200_000 + "]" * 200_000 + "\n"
    root = make_project(tmp_path / "deep", {"pyproject.toml": deep})
    starter = starter_that_loads(root)
    assert starter.detected.notes[0].startswith("pyproject.toml could not be read")
