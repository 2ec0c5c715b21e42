"""PicoScope hardware backend on pico-python (``pip install 'picodaq-ioc[hw]'``).

pico-python and the Pico SDK C library are loaded only when :meth:`PicoScopeBackend.open`
runs, so importing this package never needs either.  See ``docs/hardware.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .backend import PicoScopeBackend
from .drivers import DRIVERS, DriverSpec, get_driver
from .loader import LIBRARY_PATH_ENV


def make_picoscope_backend(config: Any = None, **overrides: Any) -> PicoScopeBackend:
    """Build (not open) a :class:`PicoScopeBackend` from a configuration.

    Parameters
    ----------
    config : the validated ``Config``, its ``device`` section, a mapping with the
        ``device`` keys (``model``, ``variant``, ``serial``, ``resolution_bits``) or None.
    **overrides : keyword arguments of :class:`PicoScopeBackend` that win over ``config``.
    """
    device: Any = config
    if config is not None and hasattr(config, "device"):
        device = config.device
    elif isinstance(config, Mapping) and isinstance(config.get("device"), Mapping):
        device = config["device"]

    def get(key: str, default: Any = None) -> Any:
        if device is None:
            return default
        if isinstance(device, Mapping):
            return device.get(key, default)
        return getattr(device, key, default)

    kwargs: dict[str, Any] = dict(model=str(get("model", "2000a")), serial=get("serial"),
                                  variant=get("variant"), resolution_bits=get("resolution_bits"))
    kwargs.update(overrides)
    return PicoScopeBackend(**kwargs)


__all__ = ["DRIVERS", "LIBRARY_PATH_ENV", "DriverSpec", "PicoScopeBackend", "get_driver",
           "make_picoscope_backend"]
