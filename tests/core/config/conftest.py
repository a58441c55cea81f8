"""Fixtures for the configuration tests: write a file, and catch the problems it causes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import BaseModel

from shipyard.core.config import (
    ConfigInvalid,
    ShipyardConfig,
    load_config_text,
    parse_yaml,
    validate_document,
)

Rejecter = Callable[..., ConfigInvalid]


@pytest.fixture
def reject() -> Rejecter:
    """Return a function that loads text, expects ConfigInvalid, and returns it."""

    def _reject(text: str | bytes, model: type[BaseModel] = ShipyardConfig) -> ConfigInvalid:
        with pytest.raises(ConfigInvalid) as caught:
            if model is ShipyardConfig and isinstance(text, str):
                load_config_text(text)
            else:
                validate_document(parse_yaml(text, "shipyard.yaml"), model)
        return caught.value

    return _reject


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str | bytes], Path]:
    """Return a function that writes ``shipyard.yaml`` in a fresh folder and returns its path."""

    def _write(content: str | bytes) -> Path:
        path = tmp_path / "shipyard.yaml"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return _write
