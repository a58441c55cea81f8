"""Operating deployed services: the configuration's short forms, stopping environments and
everything of a state directory, warm versions stopped on time."""

from __future__ import annotations

import pytest

from shipyard.cd.settings import settings_for
from shipyard.core.config.loader import load_config_text
from shipyard.core.errors import ConfigError

SERVICE = """project: webapp
service:
  command: python3 -m app --port {{port}}
  health: {health}
environments:
  staging: {{}}
"""


def test_a_health_path_written_alone_is_the_http_path() -> None:
    config = load_config_text(SERVICE.format(health="/ready"))
    settings = settings_for(config, "staging")
    assert settings.health_path == "/ready"
    assert settings.health_timeout_s == 30.0  # the other health settings keep their defaults


def test_a_health_string_that_is_no_path_names_the_key() -> None:
    with pytest.raises(ConfigError) as raised:
        load_config_text(SERVICE.format(health="healthz"))
    text = str(raised.value)
    assert "service.health" in text
    assert "must be a URL path" in text
