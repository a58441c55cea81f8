"""Write a starter ``shipyard.yaml`` for a repository by looking at what is in it.

Detects the project's name, whether it is a Python project, and how to install and test it,
and renders a configuration that ``load_config`` accepts. It only reads files: it must not run
anything, install anything, or write the configuration itself (the CLI does that).
"""

from __future__ import annotations

import configparser
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.core.config.types import PROJECT_NAME_PATTERN
from shipyard.core.config.yamlsafe import yaml_string

_MOST_TEST_FILES = 200
_MOST_TEST_FILES_READ = 50
_BYTES_READ_PER_FILE = 64 * 1024
_PYTEST_STYLE = re.compile(r"^\s*(?:import pytest\b|from pytest\b|from _pytest\b)|@pytest\.", re.M)
_UNITTEST_STYLE = re.compile(r"^\s*(?:import unittest\b|from unittest\b)|\bTestCase\b", re.M)
_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")

_PLUGIN_OPTIONS = (
    ("--cov", "pytest-cov"),
    ("--no-cov", "pytest-cov"),
    ("-n", "pytest-xdist"),
    ("--numprocesses", "pytest-xdist"),
    ("--maxprocesses", "pytest-xdist"),
    ("--dist", "pytest-xdist"),
    ("--timeout", "pytest-timeout"),
    ("--reruns", "pytest-rerunfailures"),
    ("--benchmark", "pytest-benchmark"),
    ("--randomly", "pytest-randomly"),
    ("--asyncio-mode", "pytest-asyncio"),
    ("--html", "pytest-html"),
    ("--ds", "pytest-django"),
    ("--mypy", "pytest-mypy"),
)
"""Command-line options of well-known pytest plugins (each also as ``OPTION=…``/``OPTION-…``)."""

_PLUGIN_SETTINGS = {
    "timeout": "pytest-timeout",
    "asyncio_mode": "pytest-asyncio",
    "django_settings_module": "pytest-django",
    "env": "pytest-env",
}
"""Configuration keys that only a plugin understands (pytest warns about, then ignores, them)."""


@dataclass(frozen=True)
class DetectedCommand:
    """A command the starter chose for the project, and why."""

    run: str
    reason: str


@dataclass(frozen=True)
class DetectedProject:
    """What the starter learned about a repository."""

    name: str
    name_source: str
    python: bool
    python_markers: tuple[str, ...]
    install: DetectedCommand | None
    test: DetectedCommand | None
    notes: tuple[str, ...] = ()

    def describe(self) -> list[str]:
        """What was found, one finding a line, for people."""
        if self.python:
            python = f"yes ({', '.join(self.python_markers)})"
        else:
            python = "no (no pyproject.toml, setup.py, setup.cfg or requirements*.txt)"
        return [
            _one_line(line)
            for line in (
                f"project name: {self.name} ({self.name_source})",
                f"Python project: {python}",
                f"install command: {_command_text(self.install)}",
                f"test command: {_command_text(self.test)}",
                *(f"note: {note}" for note in self.notes),
            )
        ]

    def as_json(self) -> dict[str, Any]:
        """What was found, as plain JSON-ready values."""
        return {
            "project": self.name,
            "project_source": self.name_source,
            "python": self.python,
            "python_markers": list(self.python_markers),
            "install": _command_json(self.install),
            "test": _command_json(self.test),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class StarterConfig:
    """The text of a starter ``shipyard.yaml`` and what it is based on."""

    yaml: str
    detected: DetectedProject

    def describe(self) -> list[str]:
        """What the starter found, one finding a line, for people."""
        return self.detected.describe()

    def as_json(self) -> dict[str, Any]:
        """What the starter found, as plain JSON-ready values."""
        return self.detected.as_json()


def starter_config(repo_root: Path) -> StarterConfig:
    """Inspect ``repo_root`` and return a configuration that works for it."""
    detected = detect_project(repo_root)
    return StarterConfig(yaml=render_starter(detected), detected=detected)


def normalise_project_name(raw: str) -> str:
    """Turn any name into an allowed project name: runs of other characters become '-'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("._-")[:64].rstrip("._-")
    return name if PROJECT_NAME_PATTERN.fullmatch(name) else "project"


def detect_project(repo_root: Path) -> DetectedProject:
    """Find the project's name, whether it is Python, and its install and test commands."""
    facts = _Facts(repo_root)
    name, source = facts.project_name()
    markers = facts.python_markers()
    if not markers:
        return DetectedProject(name, source, False, (), None, None, tuple(facts.notes))
    test, test_needs_pytest = facts.test_command()
    install = facts.install_command(needs_pytest=test_needs_pytest)
    return DetectedProject(name, source, True, markers, install, test, tuple(facts.notes))


def render_starter(detected: DetectedProject) -> str:
    """Render the starter configuration: the project, and what was detected as comments."""
    lines = [
        f"# shipyard.yaml for {detected.name}, written by 'shipyard init'.",
        "# Every key is described in docs/configuration.md.",
        "#",
        "# What 'shipyard init' found in this repository:",
        *(f"#   {finding}" for finding in detected.describe()),
        "",
        f"project: {yaml_string(detected.name)}",
        *_pipeline_lines(detected),
        "",
    ]
    return "\n".join(lines)


def _pipeline_lines(detected: DetectedProject) -> list[str]:
    """A pipeline that installs the project into a fresh virtual environment and tests it."""
    if detected.test is None:
        return [
            "",
            "# No test command was found. Add a pipeline when there is one, for example:",
            "# pipeline:",
            "#   jobs:",
            "#     test: {run: make test}",
        ]
    steps = ["python3 -m venv .venv"]
    if detected.install is not None:
        steps.append(_in_venv(detected.install.run))
    steps.append(_in_venv(detected.test.run))
    return [
        "",
        "# Each job runs in a clean checkout of the commit; this one builds its own venv.",
        "pipeline:",
        "  jobs:",
        "    test:",
        "      run:",
        *(f"        - {yaml_string(step)}" for step in steps),
    ]


def _in_venv(command: str) -> str:
    """The same command, run with the job's virtual environment instead of whatever is on PATH."""
    for program, module in (("pip ", "pip"), ("pytest", "pytest")):
        if command == program.strip() or command.startswith(program):
            rest = command[len(program.strip()) :]
            return f".venv/bin/python -m {module}{rest}"
    if command.startswith(("python -m ", "python3 -m ")):
        return ".venv/bin/python -m " + command.split(" -m ", 1)[1]
    return command


def _command_text(command: DetectedCommand | None) -> str:
    return f"{command.run} ({command.reason})" if command else "none found"


def _command_json(command: DetectedCommand | None) -> dict[str, str] | None:
    return {"run": command.run, "reason": command.reason} if command else None


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


class _Facts:
    """The files of one repository that the starter reads, each read at most once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.notes: list[str] = []
        self.pyproject = self._toml("pyproject.toml")
        self.setup_cfg = self._ini("setup.cfg")
        self.tox_ini = self._ini("tox.ini")
        self.pytest_ini = self._ini("pytest.ini")
        self.requirements = sorted(
            path.name for path in root.glob("requirements*.txt") if path.is_file()
        )

    def _toml(self, name: str) -> dict[str, Any]:
        path = self.root / name
        if not path.is_file():
            return {}
        try:
            with path.open("rb") as stream:
                return tomllib.load(stream)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            self.notes.append(f"{name} could not be read ({exc}); it was ignored")
            return {}
        except RecursionError:
            self.notes.append(f"{name} could not be read (it nests too deeply); it was ignored")
            return {}

    def _ini(self, name: str) -> configparser.ConfigParser | None:
        path = self.root / name
        if not path.is_file():
            return None
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(path.read_text(encoding="utf-8"), source=name)
        except (OSError, UnicodeDecodeError, configparser.Error) as exc:
            self.notes.append(f"{name} could not be read ({type(exc).__name__}); it was ignored")
            return None
        return parser

    def project_name(self) -> tuple[str, str]:
        """The normalised project name and where it came from."""
        candidates: list[tuple[Any, str]] = [
            (_table(self.pyproject, "project").get("name"), "pyproject.toml [project].name"),
            (
                _table(_table(self.pyproject, "tool"), "poetry").get("name"),
                "pyproject.toml [tool.poetry].name",
            ),
        ]
        if self.setup_cfg is not None:
            candidates.append((self.setup_cfg.get("metadata", "name", fallback=None), "setup.cfg"))
        for raw, source in candidates:
            if isinstance(raw, str) and raw.strip():
                return self._named(raw.strip(), f"from {source}")
        return self._named(self.root.resolve().name, "from the folder's name")

    def _named(self, raw: str, source: str) -> tuple[str, str]:
        name = normalise_project_name(raw)
        if name != raw:
            source += f", written as {raw!r}"
        return name, source

    def python_markers(self) -> tuple[str, ...]:
        """The files that make this a Python project."""
        names = [
            n for n in ("pyproject.toml", "setup.py", "setup.cfg") if (self.root / n).is_file()
        ]
        return (*names, *self.requirements)

    def installable(self) -> str | None:
        """Why ``pip install -e .`` works here, or None if it does not."""
        if any(key in self.pyproject for key in ("project", "build-system")):
            return "pyproject.toml declares the project"
        if "poetry" in _table(self.pyproject, "tool"):
            return "pyproject.toml declares a Poetry project"
        if (self.root / "setup.py").is_file():
            return "setup.py declares the project"
        return None

    def pytest_configured(self) -> str | None:
        """Where pytest is configured, if anywhere."""
        tool = _table(self.pyproject, "tool")
        if "pytest" in tool:
            section = "ini_options" if "ini_options" in _table(tool, "pytest") else ""
            return f"pyproject.toml has [tool.pytest{'.' + section if section else ''}]"
        if (self.root / "pytest.ini").is_file():
            return "pytest.ini configures pytest"
        if self.tox_ini is not None and self.tox_ini.has_section("pytest"):
            return "tox.ini has a [pytest] section"
        if self.setup_cfg is not None and self.setup_cfg.has_section("tool:pytest"):
            return "setup.cfg has a [tool:pytest] section"
        for conftest in ("conftest.py", "tests/conftest.py", "test/conftest.py"):
            if (self.root / conftest).is_file():
                return f"{conftest} is a pytest plugin file"
        return None

    def pytest_sources(self) -> dict[str, str]:
        """Where pytest is declared as a dependency: install source → description."""
        found: dict[str, str] = {}
        project = _table(self.pyproject, "project")
        if _lists_pytest(project.get("dependencies")):
            found["."] = "pyproject.toml lists pytest in its dependencies"
        for extra, requirements in sorted(_table(project, "optional-dependencies").items()):
            if _lists_pytest(requirements):
                found.setdefault(f".[{extra}]", f"the '{extra}' extra lists pytest")
        groups = _table(self.pyproject, "dependency-groups")
        poetry = _table(_table(self.pyproject, "tool"), "poetry")
        poetry_groups = [_table(group, "dependencies") for group in _tables(poetry, "group")]
        if any(_lists_pytest(group) for group in groups.values()) or any(
            "pytest" in group for group in [_table(poetry, "dev-dependencies"), *poetry_groups]
        ):
            found.setdefault("group", "pyproject.toml lists pytest in a dependency group")
        if self.setup_cfg is not None:
            options = (
                dict(self.setup_cfg.items("options"))
                if self.setup_cfg.has_section("options")
                else {}
            )
            if _lists_pytest(options.get("install_requires", "").splitlines()):
                found.setdefault(".", "setup.cfg lists pytest in install_requires")
            if self.setup_cfg.has_section("options.extras_require"):
                for extra, text in sorted(self.setup_cfg.items("options.extras_require")):
                    if _lists_pytest(text.splitlines()):
                        found.setdefault(f".[{extra}]", f"the '{extra}' extra lists pytest")
        for name in self.requirements:
            if _lists_pytest(_requirement_lines(self.root / name)):
                found.setdefault(f"-r {name}", f"{name} lists pytest")
        return found

    def test_files(self) -> list[Path]:
        """Test modules in tests/, test/ and the top folder, up to a sane number."""
        files: list[Path] = []
        for folder in ("tests", "test"):
            if (self.root / folder).is_dir():
                for pattern in ("test_*.py", "*_test.py"):
                    files.extend(sorted((self.root / folder).rglob(pattern)))
        files.extend(sorted(self.root.glob("test_*.py")))
        return [path for path in dict.fromkeys(files) if path.is_file()][:_MOST_TEST_FILES]

    def test_command(self) -> tuple[DetectedCommand | None, bool]:
        """The test command, and whether it needs pytest installed."""
        configured = self.pytest_configured()
        declared = self.pytest_sources()
        if configured or declared:
            reason = configured or next(iter(declared.values()))
            return DetectedCommand("pytest", reason), True
        files = self.test_files()
        if not files:
            self.notes.append("no test_*.py files were found, so no test command was chosen")
            return None, False
        texts = [_head(path) for path in files[:_MOST_TEST_FILES_READ]]
        if all(_UNITTEST_STYLE.search(t) and not _PYTEST_STYLE.search(t) for t in texts):
            folders = {path.parent.relative_to(self.root).parts[:1] for path in files}
            command = "python -m unittest discover"
            if len(folders) == 1 and (folder := next(iter(folders))):
                command += f" -s {folder[0]}"
            return DetectedCommand(command, "the test files use unittest"), False
        where = files[0].relative_to(self.root).parts[0]
        where = f"{where}/" if where in ("tests", "test") else "the top folder"
        return DetectedCommand("pytest", f"{where} holds test_*.py files"), True

    def install_command(self, *, needs_pytest: bool) -> DetectedCommand | None:
        """How to install the project (and pytest, with the plugins its configuration needs,
        when the tests need it)."""
        sources = self.pytest_sources() if needs_pytest else {}
        installable = self.installable()
        run: str | None = None
        reason = ""
        has_pytest = False
        installed: set[str] = set()
        if installable is not None:
            extra = next((s for s in sources if s.startswith(".[")), None)
            has_pytest = "." in sources or extra is not None
            target = extra if extra is not None and "." not in sources else "."
            run = f'pip install -e "{target}"' if target != "." else "pip install -e ."
            reason = installable
            installed = self._project_names(target[2:-1] if target != "." else None)
        elif "requirements.txt" in self.requirements:
            run = "pip install -r requirements.txt"
            reason = "requirements.txt lists the dependencies"
            has_pytest = "-r requirements.txt" in sources
            installed = _names(_requirement_lines(self.root / "requirements.txt"))
            if needs_pytest and not has_pytest:
                other = next((s for s in sources if s.startswith("-r ")), None)
                if other is not None:
                    run += f" {other}"
                    has_pytest = True
                    installed |= _names(_requirement_lines(self.root / other[3:]))
        if needs_pytest and not has_pytest:
            run = f"{run} pytest" if run else "pip install pytest"
            reason = f"{reason}; pytest is added for the tests" if reason else "to run the tests"
        if needs_pytest:
            missing = [
                (plugin, why)
                for plugin, why in self.pytest_plugins().items()
                if _canonical(_requirement_name(plugin)) not in installed
            ]
            if missing:
                run = f"{run} " + " ".join(shlex.quote(plugin) for plugin, _ in missing)
                reason += "; test plugins the pytest configuration needs: " + ", ".join(
                    f"{plugin} ({why})" for plugin, why in missing
                )
        return DetectedCommand(run, reason) if run else None

    def pytest_plugins(self) -> dict[str, str]:
        """The plugins pytest's configuration needs (requirement → why), in the order found.

        Read from the file pytest itself would use: ``addopts`` options that only a plugin
        defines (``--cov``, ``-n``, ``--timeout``…), settings only a plugin reads, and
        ``required_plugins``."""
        found = self._pytest_settings()
        if found is None:
            return {}
        where, settings = found
        plugins: dict[str, str] = {}
        addopts = settings.get("addopts", "")
        for token in _tokens(addopts):
            for option, plugin in _PLUGIN_OPTIONS:
                if _is_option(token, option):
                    plugins.setdefault(plugin, f"{option} in {where}'s addopts")
        for key, plugin in _PLUGIN_SETTINGS.items():
            if any(name.lower() == key for name in settings):
                plugins.setdefault(plugin, f"{key} in {where}")
        for requirement in _tokens(settings.get("required_plugins", "")):
            plugins.setdefault(requirement, f"required_plugins in {where}")
        return plugins

    def _pytest_settings(self) -> tuple[str, dict[str, Any]] | None:
        """The pytest settings of the first file pytest would read, and that file's name."""
        if self.pytest_ini is not None and self.pytest_ini.has_section("pytest"):
            return "pytest.ini", dict(self.pytest_ini.items("pytest"))
        ini_options = _table(_table(_table(self.pyproject, "tool"), "pytest"), "ini_options")
        if ini_options:
            return "pyproject.toml", ini_options
        if self.tox_ini is not None and self.tox_ini.has_section("pytest"):
            return "tox.ini", dict(self.tox_ini.items("pytest"))
        if self.setup_cfg is not None and self.setup_cfg.has_section("tool:pytest"):
            return "setup.cfg", dict(self.setup_cfg.items("tool:pytest"))
        return None

    def _project_names(self, extra: str | None) -> set[str]:
        """What ``pip install -e .`` (or ``.[extra]``) installs, by canonical name."""
        project = _table(self.pyproject, "project")
        requirements: list[Any] = list(project.get("dependencies") or [])
        if extra is not None:
            requirements += _table(project, "optional-dependencies").get(extra) or []
        if self.setup_cfg is not None and self.setup_cfg.has_section("options"):
            requirements += self.setup_cfg.get("options", "install_requires", fallback="").split(
                "\n"
            )
        if (
            extra is not None
            and self.setup_cfg is not None
            and self.setup_cfg.has_section("options.extras_require")
        ):
            requirements += self.setup_cfg.get(
                "options.extras_require", extra, fallback=""
            ).splitlines()
        return _names(requirements)


def _tokens(value: Any) -> list[str]:
    """A setting's words: a TOML list as is, an ini string split as a shell would."""
    if isinstance(value, list):
        return [str(item) for item in value]
    if not isinstance(value, str):
        return []
    try:
        return shlex.split(value)
    except ValueError:
        return value.split()


def _is_option(token: str, option: str) -> bool:
    """Whether a command-line word is ``option`` (``--cov``, ``--cov=x``, ``--cov-report``,
    and for the short ``-n`` also ``-n4``, ``-nauto``)."""
    if token == option or token.startswith((f"{option}=", f"{option}-")):
        return True
    return len(option) == 2 and token.startswith(option) and token[2:].isalnum()


def _requirement_name(requirement: str) -> str:
    match = _REQUIREMENT_NAME.match(requirement)
    return match.group(1) if match else requirement


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[Any]) -> set[str]:
    """The canonical names of some requirement strings."""
    return {
        _canonical(_requirement_name(item))
        for item in requirements
        if isinstance(item, str) and item.strip()
    }


def _table(data: Any, key: str) -> dict[str, Any]:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


def _tables(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [value for value in _table(data, key).values() if isinstance(value, dict)]


def _lists_pytest(requirements: Any) -> bool:
    if isinstance(requirements, dict):
        return "pytest" in requirements
    if not isinstance(requirements, list):
        return False
    for requirement in requirements:
        if not isinstance(requirement, str):
            continue
        match = _REQUIREMENT_NAME.match(requirement)
        if match and re.sub(r"[-_.]+", "-", match.group(1)).lower() == "pytest":
            return True
    return False


def _requirement_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [line.split("#", 1)[0] for line in text.splitlines() if not line.startswith("-")]


def _head(path: Path) -> str:
    try:
        with path.open("rb") as stream:
            return stream.read(_BYTES_READ_PER_FILE).decode("utf-8", errors="replace")
    except OSError:
        return ""
