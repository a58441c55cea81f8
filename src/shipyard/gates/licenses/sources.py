"""Where a dependency's license comes from: an override, its lockfile, or installed metadata.

Python metadata is read by running the configured interpreter (``gates.licenses.python``) in
a subprocess, never from Shipyard's own environment. A declared license is turned into SPDX
from ``License-Expression``, then ``License``, then the trove classifiers; what cannot be read
stays unknown, with the reason.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from shipyard.core.errors import UserError
from shipyard.gates.interface import GateError
from shipyard.gates.licenses.spdx import InvalidLicense, LicenseExpression, parse

INTERPRETER_TIMEOUT = 120.0
"""Seconds the configured interpreter may take to list its installed packages."""

_DUMP = """
import importlib.metadata as m, json, sys
out = []
for d in m.distributions():
    md = d.metadata
    out.append({
        "name": md.get("Name"),
        "version": md.get("Version"),
        "license_expression": md.get("License-Expression"),
        "license": md.get("License"),
        "classifiers": [c for c in (md.get_all("Classifier") or []) if c.startswith("License ::")],
    })
json.dump(out, sys.stdout)
"""

# Trove classifiers that name exactly one SPDX license. Classifiers such as "BSD License" or
# "Apache Software License" name no version, so they are not guessed.
_CLASSIFIERS = {
    "MIT License": "MIT",
    "MIT No Attribution License (MIT-0)": "MIT-0",
    "ISC License (ISCL)": "ISC",
    "Apache Software License 2.0": "Apache-2.0",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "Mozilla Public License 1.1 (MPL 1.1)": "MPL-1.1",
    "GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    "GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    "GNU Lesser General Public License v2 (LGPLv2)": "LGPL-2.0-only",
    "GNU Lesser General Public License v2 or later (LGPLv2+)": "LGPL-2.0-or-later",
    "GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "GNU Lesser General Public License v3 or later (LGPLv3+)": "LGPL-3.0-or-later",
    "GNU Affero General Public License v3": "AGPL-3.0-only",
    "GNU Affero General Public License v3 or later (AGPLv3+)": "AGPL-3.0-or-later",
    "Python Software Foundation License": "PSF-2.0",
    "The Unlicense (Unlicense)": "Unlicense",
    "Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
    "Eclipse Public License 2.0 (EPL-2.0)": "EPL-2.0",
    "European Union Public Licence 1.2 (EUPL 1.2)": "EUPL-1.2",
    "zlib/libpng License": "Zlib",
    "Universal Permissive License (UPL)": "UPL-1.0",
    "CC0 1.0 Universal (CC0 1.0) Public Domain Dedication": "CC0-1.0",
}

# Names people write in the free-text License field for licenses that have one SPDX id.
_COMMON_NAMES = {
    "mit license": "MIT",
    "the mit license": "MIT",
    "mit licence": "MIT",
    "expat": "MIT",
    "apache 2": "Apache-2.0",
    "apache 2.0": "Apache-2.0",
    "apache license 2.0": "Apache-2.0",
    "apache license version 2.0": "Apache-2.0",
    "apache software license 2.0": "Apache-2.0",
    "asl 2.0": "Apache-2.0",
    "bsd 3-clause": "BSD-3-Clause",
    "3-clause bsd": "BSD-3-Clause",
    "new bsd": "BSD-3-Clause",
    "new bsd license": "BSD-3-Clause",
    "modified bsd": "BSD-3-Clause",
    "bsd 2-clause": "BSD-2-Clause",
    "2-clause bsd": "BSD-2-Clause",
    "simplified bsd": "BSD-2-Clause",
    "isc license": "ISC",
    "psf": "PSF-2.0",
    "psf license": "PSF-2.0",
    "python software foundation license": "PSF-2.0",
    "mpl 2.0": "MPL-2.0",
    "mozilla public license 2.0": "MPL-2.0",
    "the unlicense": "Unlicense",
}


class LicenseSourceError(GateError, UserError):
    """Installed metadata cannot be read: the interpreter is missing, broken or not Python."""


class InterpreterNotFound(LicenseSourceError):
    """``gates.licenses.python`` names a path that does not exist."""


@dataclass(frozen=True)
class InstalledPackage:
    """One distribution installed in the configured interpreter, with its license metadata."""

    name: str
    version: str
    license_expression: str | None
    license: str | None
    classifiers: tuple[str, ...]


@dataclass(frozen=True)
class DeclaredLicense:
    """A package's license as found: the SPDX expression, or the reason there is none."""

    expression: LicenseExpression | None
    source: str
    raw: str | None = None
    problem: str | None = None


def interpreter_path(configured: str, base: Path) -> Path:
    """The interpreter a setting names: a file, or a virtual environment's folder."""
    path = Path(configured).expanduser()
    if not path.is_absolute():
        path = base / path
    if path.is_dir():
        for candidate in (path / "bin" / "python", path / "Scripts" / "python.exe"):
            if candidate.exists():
                return candidate
        raise InterpreterNotFound(
            f"gates.licenses.python: {path} is a folder without bin/python",
            hint="name the interpreter itself, or a virtual environment made by 'python -m venv'",
        )
    if not path.exists():
        raise InterpreterNotFound(
            f"gates.licenses.python: {path} does not exist",
            hint="create the environment with the project's dependencies "
            "(python -m venv .venv && .venv/bin/pip install -r requirements.txt), "
            "or fix the path",
        )
    return path


def installed_packages(interpreter: Path) -> dict[str, InstalledPackage]:
    """Every distribution the interpreter sees, by canonical name (the first one wins)."""
    try:
        result = subprocess.run(
            [str(interpreter), "-I", "-c", _DUMP],
            capture_output=True,
            timeout=INTERPRETER_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise LicenseSourceError(
            f"gates.licenses.python: {interpreter} did not list its packages within "
            f"{INTERPRETER_TIMEOUT:.0f}s"
        ) from None
    except OSError as exc:
        raise LicenseSourceError(
            f"gates.licenses.python: {interpreter} cannot be run: {exc.strerror or exc}",
            hint="name a Python 3.8+ interpreter, such as .venv/bin/python",
        ) from None
    if result.returncode != 0:
        tail = result.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise LicenseSourceError(
            f"gates.licenses.python: {interpreter} failed to list its packages "
            f"(exit {result.returncode}): {tail[0]}",
            hint="name a Python 3.8+ interpreter, such as .venv/bin/python",
        )
    try:
        listed = json.loads(result.stdout.decode("utf-8", "replace"))
    except json.JSONDecodeError:
        raise LicenseSourceError(
            f"gates.licenses.python: {interpreter} did not answer with a package list",
            hint="name a Python interpreter, not a wrapper that prints something else",
        ) from None
    return _packages(listed)


def _packages(listed: Any) -> dict[str, InstalledPackage]:
    packages: dict[str, InstalledPackage] = {}
    for item in listed if isinstance(listed, list) else ():
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            continue
        key = canonicalize_name(item["name"])
        if key in packages:
            continue
        classifiers = item.get("classifiers")
        packages[key] = InstalledPackage(
            name=item["name"],
            version=str(item.get("version") or ""),
            license_expression=_text(item.get("license_expression")),
            license=_text(item.get("license")),
            classifiers=tuple(str(c) for c in classifiers) if isinstance(classifiers, list) else (),
        )
    return packages


def declared_license(package: InstalledPackage) -> DeclaredLicense:
    """The SPDX license a package's metadata declares, or why none could be read."""
    if package.license_expression:
        return _parsed(package.license_expression, "License-Expression")
    text = package.license
    parsed: DeclaredLicense | None = None
    if text and _is_identifier(text):
        parsed = _parsed(text, "License")
        if parsed.expression is not None:
            return parsed
        common = _COMMON_NAMES.get(_normalized(text))
        if common is not None:
            return DeclaredLicense(parse(common), "License", raw=text)
    from_classifiers = _from_classifiers(package.classifiers)
    if from_classifiers is not None:
        return from_classifiers
    if parsed is not None:
        return parsed
    if text:
        return DeclaredLicense(
            None,
            "License",
            problem="its License field holds the full text of a license, not an SPDX id",
        )
    if package.classifiers:
        return DeclaredLicense(
            None,
            "classifier",
            raw="; ".join(package.classifiers),
            problem="its license classifiers ("
            + "; ".join(c.rsplit(" :: ", 1)[-1] for c in package.classifiers)
            + ") name no single SPDX license",
        )
    return DeclaredLicense(
        None,
        "metadata",
        problem="its metadata declares no license (no License-Expression, License or "
        "license classifier)",
    )


def from_text(text: str, source: str) -> DeclaredLicense:
    """A license written in a lockfile, an SBOM or an override, parsed strictly."""
    return _parsed(text, source)


def _parsed(text: str, source: str) -> DeclaredLicense:
    try:
        return DeclaredLicense(parse(text), source, raw=text)
    except InvalidLicense as exc:
        return DeclaredLicense(None, source, raw=text, problem=f"{source}: {exc.message}")


def _from_classifiers(classifiers: Sequence[str]) -> DeclaredLicense | None:
    ids = []
    for classifier in classifiers:
        name = classifier.rsplit(" :: ", 1)[-1]
        spdx_id = _CLASSIFIERS.get(name)
        if spdx_id is None:
            return None  # one classifier we cannot name makes the whole answer a guess
        ids.append(spdx_id)
    if not ids:
        return None
    expression = " OR ".join(dict.fromkeys(ids))
    return DeclaredLicense(parse(expression), "classifier", raw="; ".join(classifiers))


def _is_identifier(text: str) -> bool:
    return "\n" not in text.strip() and len(text.strip()) <= 200


def _normalized(text: str) -> str:
    return re.sub(r"[\s,]+", " ", text.strip().lower()).replace(" version ", " ")


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    stripped = value.strip()
    return stripped if stripped and stripped.upper() != "UNKNOWN" else None
