"""Find, read and validate ``shipyard.yaml``, reporting every problem with its line.

The one way the rest of Shipyard gets a ``ShipyardConfig``: from a path, from text, or by
searching upwards from a folder. It must not build runtime objects from the configuration,
and it raises only ``ConfigError`` (or its subclass ``ConfigInvalid``) for a user's mistake.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from shipyard.core.config.model import ShipyardConfig
from shipyard.core.config.problems import ConfigInvalid, ConfigProblem, KeyPath, format_path
from shipyard.core.config.yamlsafe import YamlDocument, parse_yaml, read_yaml_file
from shipyard.core.errors import ConfigError

CONFIG_FILE_NAME = "shipyard.yaml"
"""The name of a project's configuration file."""

_NEAR_MISSES = ("shipyard.yml", "Shipyard.yaml", "shipyard.YAML", ".shipyard.yaml")
_CREATE_HINT = "run 'shipyard init' to write one, or pass --file PATH"

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration with the document it came from, for positioned later checks."""

    model: ShipyardConfig
    document: YamlDocument
    digest: str

    def problem(
        self, at: KeyPath, message: str, *, hint: str | None = None, column_offset: int = 0
    ) -> ConfigProblem:
        """A problem located at a key path's value (plus an offset into a one-line value)."""
        where = self.document.locate(at).value
        return ConfigProblem(
            file=self.document.source,
            line=where.line,
            column=where.column + column_offset,
            path=format_path(at),
            message=message,
            hint=hint,
        )


def load(path: Path) -> LoadedConfig:
    """Read and validate the configuration file at ``path``, keeping its positions."""
    if not path.exists() and not path.is_symlink():
        raise ConfigError(f"{path}: the file does not exist", hint=_CREATE_HINT)
    document = read_yaml_file(path)
    model = validate_document(document, ShipyardConfig)
    return LoadedConfig(model, document, hashlib.sha256(path.read_bytes()).hexdigest())


def load_text(content: str | bytes, source_name: str = CONFIG_FILE_NAME) -> LoadedConfig:
    """Validate configuration given as text (or bytes); ``source_name`` is named in messages."""
    document = parse_yaml(content, source_name)
    model = validate_document(document, ShipyardConfig)
    raw = content.encode("utf-8") if isinstance(content, str) else content
    return LoadedConfig(model, document, hashlib.sha256(raw).hexdigest())


def load_config(path: Path) -> ShipyardConfig:
    """Read and validate the configuration file at ``path``."""
    return load(path).model


def load_config_text(text: str, source_name: str = CONFIG_FILE_NAME) -> ShipyardConfig:
    """Validate configuration given as text; ``source_name`` is the file named in messages."""
    return load_text(text, source_name).model


def validate_document(document: YamlDocument, model: type[ModelT]) -> ModelT:
    """Validate a parsed document against ``model``; every problem is reported at its line."""
    try:
        return model.model_validate(document.data)
    except ValidationError as exc:
        # Imported here: explaining errors is only needed when there are some.
        from shipyard.core.config.explain import explain_validation_error

        raise ConfigInvalid(explain_validation_error(exc, document, model)) from None


def find_config(start: Path, stop: Path | None = None) -> Path:
    """Find ``shipyard.yaml`` in ``start`` or the nearest folder above it, up to ``stop``."""
    here = start.resolve()
    if here.is_file():
        here = here.parent
    limit = stop.resolve() if stop is not None else None
    searched: list[Path] = []
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_FILE_NAME
        if candidate.is_file():
            return candidate
        searched.append(folder)
        if folder == limit:
            break
    for folder in searched:
        for name in _NEAR_MISSES:
            if (folder / name).is_file():
                raise ConfigError(
                    f"no {CONFIG_FILE_NAME} found, but there is {folder / name}",
                    hint=f"rename it to {CONFIG_FILE_NAME}, or pass --file {folder / name}",
                )
    where = f"{here} or any folder above it"
    if limit is not None and limit in searched:
        where += f" up to {limit}"
    raise ConfigError(f"no {CONFIG_FILE_NAME} found in {where}", hint=_CREATE_HINT)
