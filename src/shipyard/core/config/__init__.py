"""Loading and validating ``shipyard.yaml``: the public API of the configuration package.

Import from here, not from the modules inside; each section of the file is a model in its own
module. Nothing here reads the environment, the store or git.
"""

from __future__ import annotations

from shipyard.core.config.loader import (
    CONFIG_FILE_NAME,
    LoadedConfig,
    find_config,
    load,
    load_config,
    load_config_text,
    load_text,
    validate_document,
)
from shipyard.core.config.model import ShipyardConfig
from shipyard.core.config.problems import (
    ConfigInvalid,
    ConfigProblem,
    KeyPath,
    closest_match,
    config_value_error,
    describe_value,
    did_you_mean,
    format_path,
)
from shipyard.core.config.schema import allowed_keys, key_paths
from shipyard.core.config.starter import (
    DetectedCommand,
    DetectedProject,
    StarterConfig,
    starter_config,
)
from shipyard.core.config.types import (
    Duration,
    Percentage,
    ProjectName,
    StrictModel,
    format_duration,
    format_percentage,
    parse_duration,
    parse_percentage,
)
from shipyard.core.config.yamlsafe import (
    MAX_CONFIG_BYTES,
    KeyLocation,
    Position,
    YamlDocument,
    parse_yaml,
    read_yaml_file,
)

__all__ = [
    "CONFIG_FILE_NAME",
    "MAX_CONFIG_BYTES",
    "ConfigInvalid",
    "ConfigProblem",
    "DetectedCommand",
    "DetectedProject",
    "Duration",
    "KeyLocation",
    "KeyPath",
    "LoadedConfig",
    "Percentage",
    "Position",
    "ProjectName",
    "ShipyardConfig",
    "StarterConfig",
    "StrictModel",
    "YamlDocument",
    "allowed_keys",
    "closest_match",
    "config_value_error",
    "describe_value",
    "did_you_mean",
    "find_config",
    "format_duration",
    "format_path",
    "format_percentage",
    "key_paths",
    "load",
    "load_config",
    "load_config_text",
    "load_text",
    "parse_duration",
    "parse_percentage",
    "parse_yaml",
    "read_yaml_file",
    "starter_config",
    "validate_document",
]
