"""Configuration: the validated model, file loading (native + picoDAQ legacy), conversion."""

from .convert import scope_settings
from .loader import ConfigError, load_config
from .schema import Config

__all__ = ["Config", "ConfigError", "load_config", "scope_settings"]
