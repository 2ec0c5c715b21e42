"""Fake Pico SDK C libraries for running pico-python and our backend without hardware.

Usage in a test::

    from fake_picosdk import FakeSDK, FakeUnit, installed

    sdk = FakeSDK([FakeUnit("ps2000a", "2206B", "AB123/0001", n_channels=2)])
    with installed(sdk):
        ...  # ctypes.cdll.LoadLibrary("libps2000a.so") now returns sdk's fake library

``installed`` patches ``ctypes.cdll.LoadLibrary`` (what pico-python calls on Linux);
names that are not ``libps*.so[.2]`` go to the real loader.  ``FakeSDK(missing=True)``
makes every Pico library fail to load with the message the real loader gives.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
from collections.abc import Iterator

from .device import FakeChannel, FakeUnit
from .library import (
    PICO_BUSY,
    PICO_DRIVER_FUNCTION,
    PICO_INVALID_HANDLE,
    PICO_INVALID_VOLTAGE_RANGE,
    PICO_NOT_FOUND,
    PICO_NOT_RESPONDING,
    PICO_OK,
    PICO_POWER_SUPPLY_NOT_CONNECTED,
    Call,
    FakeLibrary,
    FakeSDK,
)

_PICO_LIB = re.compile(r"^lib(ps\d{4}a?)\.so(\.\d+)?$")


@contextlib.contextmanager
def installed(sdk: FakeSDK) -> Iterator[FakeSDK]:
    """Route ``ctypes.cdll.LoadLibrary`` of Pico libraries to ``sdk`` while the block runs."""
    real = ctypes.cdll.LoadLibrary

    def load_library(name: str):
        m = _PICO_LIB.match(os.path.basename(str(name)))
        if m is None:
            return real(name)
        sdk.loaded.append(str(name))
        if sdk.missing:
            raise OSError(f"{name}: cannot open shared object file: No such file or directory")
        return FakeLibrary(sdk, m.group(1))

    ctypes.cdll.LoadLibrary = load_library  # instance attribute shadows the method
    try:
        yield sdk
    finally:
        del ctypes.cdll.LoadLibrary


__all__ = [
    "Call", "FakeChannel", "FakeLibrary", "FakeSDK", "FakeUnit", "installed",
    "PICO_BUSY", "PICO_DRIVER_FUNCTION", "PICO_INVALID_HANDLE", "PICO_INVALID_VOLTAGE_RANGE",
    "PICO_NOT_FOUND", "PICO_NOT_RESPONDING", "PICO_OK", "PICO_POWER_SUPPLY_NOT_CONNECTED",
]
