"""config.json -> typed, validated settings (see ``load``).

* ``jsonc``: TWCManager's "JSON with comments" -> a dict; the bounded file read.
* ``schema``: the key names each section may hold; unknown keys, unused modules.
* ``fields``: typed reads of single keys, each bad value reported by key path.
* ``load``: values -> the model (``rs485`` for ``interface.RS485``; the energy sources through
  ``sources/registry.py``), ``load_config``.
* ``defaults``: what an absent key means, one table; ``limits``: the bounds values must keep.
* ``model``: the frozen settings; ``problems``: ``Problem`` and ``ConfigError``.
"""

from twcmaster.config.jsonc import (
    CONFIG_MAX_BYTES,
    MAX_NESTING_DEPTH,
    DuplicateKeysError,
    FileRejectedError,
    loads_without_duplicates,
    nesting_too_deep_at,
    parse_config_text,
    read_regular_file,
)
from twcmaster.config.load import config_from_dict, default_config_path, load_config
from twcmaster.config.model import AppConfig, LoadedConfig, RS485Config, WiringConfig
from twcmaster.config.problems import ConfigError, Problem, describe_value

__all__ = [
    "CONFIG_MAX_BYTES",
    "MAX_NESTING_DEPTH",
    "AppConfig",
    "ConfigError",
    "DuplicateKeysError",
    "FileRejectedError",
    "LoadedConfig",
    "Problem",
    "RS485Config",
    "WiringConfig",
    "config_from_dict",
    "default_config_path",
    "describe_value",
    "load_config",
    "loads_without_duplicates",
    "nesting_too_deep_at",
    "parse_config_text",
    "read_regular_file",
]
