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

DEFAULT_VARIANTS = {"ps2000": "2204A", "ps2000a": "2206B", "ps3000a": "3204A", "ps4000": "4224",
                    "ps4000a": "4824", "ps5000a": "5242D", "ps6000": "6402D"}


def make_unit(lib: str, variant: str | None = None, serial: str = "FK000/0001", **kw) -> FakeUnit:
    """A fake unit of driver ``lib`` ("ps2000a" ...); the channel count follows the model
    number (second digit), as on the real units."""
    variant = variant or DEFAULT_VARIANTS[lib]
    kw.setdefault("n_channels", int(variant[1]))
    return FakeUnit(lib, variant, serial, **kw)


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


FAMILY_OF = {"ps2000": "2000", "ps2000a": "2000a", "ps3000a": "3000a", "ps4000": "4000",
             "ps4000a": "4000a", "ps5000a": "5000a", "ps6000": "6000"}


@contextlib.contextmanager
def fake_backend(lib: str, *, units: list[FakeUnit] | None = None, backend_kw: dict | None = None,
                 **unit_kw) -> Iterator[tuple]:
    """``(backend, sdk, unit)``: a not-yet-opened PicoScopeBackend for ``lib`` on a fake bus
    holding ``units`` (default: one ``make_unit(lib, **unit_kw)``); closed at the end."""
    from picodaq_ioc.scope.picoscope import PicoScopeBackend

    unit = make_unit(lib, **unit_kw) if units is None else (units[0] if units else None)
    sdk = FakeSDK([unit] if units is None else units)
    with installed(sdk):
        kw = {"model": FAMILY_OF[lib], "poll_interval_s": 2e-4}
        kw.update(backend_kw or {})
        backend = PicoScopeBackend(**kw)
        try:
            yield backend, sdk, unit
        finally:
            backend.close()


__all__ = [
    "FAMILY_OF", "fake_backend",
    "DEFAULT_VARIANTS", "make_unit", "Call", "FakeChannel", "FakeLibrary", "FakeSDK", "FakeUnit", "installed",
    "PICO_BUSY", "PICO_DRIVER_FUNCTION", "PICO_INVALID_HANDLE", "PICO_INVALID_VOLTAGE_RANGE",
    "PICO_NOT_FOUND", "PICO_NOT_RESPONDING", "PICO_OK", "PICO_POWER_SUPPLY_NOT_CONNECTED",
]
