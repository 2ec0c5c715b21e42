"""Map pico-python / Pico SDK failures to the backend exceptions.

pico-python raises plain ``OSError('Error calling <fn>: PICO_XXX (<description>)')``
(``ps2000``: ``OSError('Error calling <fn>')`` with no code).  We parse the
``PICO_\\w+`` token and choose one of our exceptions; every message says which
driver call failed, what was asked, and the driver code.
"""

from __future__ import annotations

import re

from ..errors import Busy, DeviceDisconnected, DeviceNotFound, InvalidConfig, ScopeError

_CODE = re.compile(r"\bPICO_[A-Z0-9_]+\b")

DISCONNECT_CODES = frozenset({
    "PICO_NOT_RESPONDING", "PICO_INVALID_HANDLE", "PICO_KERNEL_DRIVER_TOO_OLD",
    "PICO_CYUSB_REQUEST_FAILED", "PICO_MEMORY_FAIL", "PICO_FW_FAIL", "PICO_CONFIG_FAIL",
    "PICO_FPGA_FAIL", "PICO_PLL_LOCK_FAILED", "PICO_INTERNAL_ERROR", "PICO_I2C_NOT_RESPONDING",
})
BUSY_CODES = frozenset({"PICO_DRIVER_FUNCTION", "PICO_BUSY", "PICO_OPEN_OPERATION_IN_PROGRESS"})
NOT_FOUND_CODES = frozenset({"PICO_NOT_FOUND", "PICO_MAX_UNITS_OPENED"})
POWER_CODES = frozenset({
    "PICO_POWER_SUPPLY_NOT_CONNECTED", "PICO_USB3_0_DEVICE_NON_USB3_0_PORT", "PICO_POWER_SUPPLY_CONNECTED", "PICO_POWER_SUPPLY_UNDERVOLTAGE",
    "PICO_POWER_SUPPLY_REQUEST_INVALID", "PICO_CHANNEL_DISABLED_DUE_TO_USB_POWERED",
})
_POWER_HINT = ("the unit is not properly powered: connect its external power supply (or plug it into a "
               "USB 3.0 port)")

# Driver codes that say which setting is wrong (for InvalidConfig.field when the caller
# did not name one).
CODE_FIELDS = {
    "PICO_INVALID_VOLTAGE_RANGE": "range",
    "PICO_INVALID_ANALOGUE_OFFSET": "offset",
    "PICO_INVALID_COUPLING": "coupling",
    "PICO_INVALID_CHANNEL": "channel",
    "PICO_INVALID_TIMEBASE": "timebase.sample_interval",
    "PICO_TOO_MANY_SAMPLES": "timebase.samples",
    "PICO_TOO_MANY_SEGMENTS": "timebase.segments",
    "PICO_INVALID_TRIGGER_CHANNEL": "trigger.source",
    "PICO_INVALID_CONDITION_CHANNEL": "trigger.source",
    "PICO_SIGGEN_OUTPUT_OVER_VOLTAGE": "siggen.amplitude",
    "PICO_SIG_GEN_PARAM": "siggen",
    "PICO_SIGGEN_FREQUENCY_OUT_OF_RANGE": "siggen.frequency",
    "PICO_INVALID_NUMBER_CHANNELS_FOR_RESOLUTION": "device.resolution_bits",
    "PICO_INVALID_DEVICE_RESOLUTION": "device.resolution_bits",
    "PICO_RESOLUTION_NOT_SUPPORTED_BY_VARIENT": "device.resolution_bits",
    "PICO_AUTO_TRIGGER_TIME_TOO_SHORT": "trigger.auto_trigger_s",
    "PICO_TRIGGER_DELAY_OUT_OF_RANGE": "trigger.delay",
    "PICO_SIG_GEN_WAVETYPE_NOT_SUPPORTED": "siggen.waveform",
    "PICO_SIGGEN_OFFSET_VOLTAGE": "siggen.offset",
    "PICO_SIGGEN_PK_TO_PK": "siggen.amplitude",
}


def pico_code(exc: BaseException | str) -> str | None:
    """The ``PICO_XXX`` token in an exception message, ``None`` if there is none."""
    m = _CODE.search(str(exc))
    return m.group(0) if m else None


def code_name(status: int) -> str:
    """``PICO_XXX`` name of a numeric status (pico-python's table), ``PICO_0xNN`` if unknown."""
    try:
        from picoscope.error_codes import ERROR_CODES
    except ImportError:  # pragma: no cover - only without pico-python
        ERROR_CODES = []
    for entry in ERROR_CODES:
        if entry[0] == status:
            return str(entry[1])
    return f"PICO_0x{status:X}"


def map_error(exc: BaseException, *, driver: str, action: str, asked: str | None = None,
              field: str | None = None, config: bool = False, opening: bool = False) -> ScopeError:
    """Translate an exception raised by pico-python (or by our direct calls) into ours.

    Parameters
    ----------
    exc : the original exception.
    driver : ``"ps2000a"`` etc., named in the message.
    action : what we were doing ("SetChannel", "IsReady", ...).
    asked : the requested value(s) in words, for InvalidConfig messages.
    field : config field to blame for an InvalidConfig.
    config : True while applying settings: unknown driver codes become InvalidConfig.
    opening : True while opening the unit: power problems become DeviceNotFound.
    """
    if isinstance(exc, ScopeError):
        return exc
    code = pico_code(exc)
    what = f"{driver} {action}" + (f" ({asked})" if asked else "")
    if code in DISCONNECT_CODES:
        return DeviceDisconnected(f"PicoScope stopped responding during {what}: {code}")
    if code in BUSY_CODES:
        return Busy(f"PicoScope driver busy during {what}: {code}")
    if code in NOT_FOUND_CODES:
        return DeviceNotFound(f"no PicoScope found by the {driver} driver ({code})")
    if code in POWER_CODES:
        cls = DeviceNotFound if opening else DeviceDisconnected
        return cls(f"{what} failed with {code}: {_POWER_HINT}")
    if isinstance(exc, (ValueError, KeyError)) and code is None:
        return InvalidConfig(f"{what} rejected: {exc}", field=field, driver_code=None)
    if isinstance(exc, OSError):
        if code is None:
            # ps2000's old API reports failure without a reason
            if config:
                return InvalidConfig(f"{what} rejected by the driver (no reason given by {driver})",
                                     field=field)
            return DeviceDisconnected(f"{what} failed (the {driver} driver gives no reason; "
                                      "the unit is probably disconnected)")
        if config or code in CODE_FIELDS:
            return InvalidConfig(f"{what} rejected by the driver: {code}", field=field or CODE_FIELDS.get(code),
                                 driver_code=code)
        return ScopeError(f"{what} failed: {code}")
    return ScopeError(f"{what} failed: {type(exc).__name__}: {exc}")


def status_error(status: int, *, driver: str, action: str, **kw) -> ScopeError:
    """``map_error`` for a numeric status returned by a direct ``ps.lib`` call."""
    return map_error(OSError(f"Error calling {action}: {code_name(status)}"), driver=driver, action=action, **kw)
