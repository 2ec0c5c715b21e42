"""Per-family facts about the Pico SDK C drivers and pico-python's wrappers of them.

Model data (ranges, timebases, max ADC codes, offset limits) live in
:mod:`picodaq_ioc.scope.models`; this table only says *how to talk to* each
driver: which pico-python class wraps it, which shared library it loads, which
C functions we call ourselves and with which integer type for segment indices.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass


@dataclass(frozen=True)
class DriverSpec:
    family: str  # model-table key, e.g. "2000a"
    lib: str  # driver name and C-function prefix, e.g. "ps2000a"
    module: str  # pico-python module
    cls: str  # pico-python class
    linux_soname: str  # what pico-python asks dlopen for on Linux
    old_api: bool = False  # ps2000: snake_case functions, non-zero = success, no PICO_STATUS
    has_max_value_fn: bool = True  # psXXXXMaximumValue(handle, int16*)
    segment_ctype: type = ctypes.c_uint32  # segment-index type of the bulk / offset functions
    own_bulk: bool = False  # pico-python's rapid-block read is broken: use ours
    bulk_buffer_fn: str | None = None  # per-segment buffer function when not SetDataBuffer
    trigger_offset: bool = True  # GetTriggerTimeOffset64 / GetValuesTriggerTimeOffsetBulk64
    threshold_directions: tuple[str, ...] = ("Above", "Below", "Rising", "Falling", "RiseOrFall")
    # full-scale code from the C header where the driver has no MaximumValue() and the header
    # disagrees with the shared model table (which follows pico-python's scaling there)
    header_max_value: int | None = None

    @property
    def sdk_package(self) -> str:
        """Name of the Pico SDK package (apt/rpm) that installs the library."""
        return f"lib{self.lib}"

    @property
    def library_file(self) -> str:
        return self.linux_soname

    def fn(self, suffix: str) -> str:
        """C name of a function, e.g. ``fn("IsReady") -> "ps2000aIsReady"``."""
        return f"{self.lib}{suffix}"


DRIVERS: dict[str, DriverSpec] = {
    "2000": DriverSpec("2000", "ps2000", "ps2000", "PS2000", "libps2000.so", old_api=True,
                       has_max_value_fn=False, trigger_offset=False,
                       threshold_directions=("Rising", "Falling")),
    "2000a": DriverSpec("2000a", "ps2000a", "ps2000a", "PS2000a", "libps2000a.so", own_bulk=True),
    "3000a": DriverSpec("3000a", "ps3000a", "ps3000a", "PS3000a", "libps3000a.so"),
    "4000": DriverSpec("4000", "ps4000", "ps4000", "PS4000", "libps4000.so.2", has_max_value_fn=False,
                       segment_ctype=ctypes.c_uint16, bulk_buffer_fn="SetDataBufferBulk"),
    "4000a": DriverSpec("4000a", "ps4000a", "ps4000a", "PS4000a", "libps4000a.so.2"),
    "5000a": DriverSpec("5000a", "ps5000a", "ps5000a", "PS5000a", "libps5000a.so"),
    "6000": DriverSpec("6000", "ps6000", "ps6000", "PS6000", "libps6000.so.2", has_max_value_fn=False,
                       bulk_buffer_fn="SetDataBufferBulk", header_max_value=32512),  # PS6000_MAX_VALUE
}

# Time units of GetTriggerTimeOffset64 (PSXXXX_TIME_UNITS: FS, PS, NS, US, MS, S).
TIME_UNITS_S: dict[int, float] = {0: 1e-15, 1: 1e-12, 2: 1e-9, 3: 1e-6, 4: 1e-3, 5: 1.0}

# ps2000_set_trigger source that switches the trigger off (PS2000_NONE).
PS2000_TRIGGER_NONE = 5


def get_driver(family: str) -> DriverSpec:
    from ..errors import InvalidConfig

    try:
        return DRIVERS[str(family).lower()]
    except KeyError:
        raise InvalidConfig(f"no PicoScope driver for model family {family!r}", field="device.model",
                            allowed=", ".join(DRIVERS)) from None


def channels_of_variant(variant: str | None, family_channels: tuple[str, ...]) -> tuple[str, ...]:
    """Channels of a unit from its model number: the second digit is the channel count
    (2206B -> 2, 2406B -> 4, 4824 -> 8, 5242D -> 2); unknown -> the family's channels."""
    if not variant or len(variant) < 2 or not variant[1].isdigit():
        return family_channels
    n = int(variant[1])
    if n in (2, 4, 8) and n <= len(family_channels):
        return family_channels[:n]
    return family_channels
