"""Workarounds for caproto 1.3.0 server bugs, applied once when the IOC starts.

The server-side fixes (the fan-out that a stalled client froze, *deque mutated during
iteration*, the disconnect that awaited its own task, request limits) are not patches but
subclasses of caproto's server: :mod:`picodaq_ioc.ioc.ca_server`.

1. Refused puts are logged by caproto as a full traceback of an anonymous request. We
   log one line naming the PV, the value and the reason instead (``picodaq_ioc.ioc.puts``)
   and shorten caproto's record to one line.
2. caproto converts a client's number to an enum or integer PV with a plain numpy cast
   *before* any check: NaN/inf become 0 (``Acquire = nan`` was accepted as "Stop"),
   ``-3475`` to an enum becomes the unsigned 16-bit 62061, ``1e10`` to a 32-bit integer
   becomes -2147483648. :func:`check_client_value` looks at the value as the client sent it
   and refuses non-finite numbers, enum indices outside ``0..N-1`` (naming the allowed
   strings) and integers outside the PV's type range; strings that are no enum string or
   no integer get a message saying so (caproto's own error has no text).

:func:`apply` is idempotent; :func:`is_applied` tells whether the patch is active.
"""

from __future__ import annotations

import logging
import math

import caproto._data as _cadata
import caproto.server.server as _server
import numpy as np
from caproto import ChannelType
from caproto._data import SkipWrite
from caproto._dbr import native_type

from .controller import PutRefused

log = logging.getLogger("picodaq_ioc.ioc.puts")

#: Optional callback ``on_refused(pvname, reason)`` (the IOC shows it in StatusMessage_RBV).
on_refused = None

_ORIGINAL_VERIFY = _server.PvpropertyData.verify_value
_ORIGINAL_WRITE_FROM_DBR = _cadata.ChannelData.write_from_dbr

#: range of the integer PV types (the wire value must fit before caproto casts it)
_INT_RANGE = {ChannelType.LONG: (-(2**31), 2**31 - 1), ChannelType.INT: (-(2**15), 2**15 - 1)}
_NUMERIC_WIRE = (ChannelType.DOUBLE, ChannelType.FLOAT, ChannelType.LONG, ChannelType.INT,
                 ChannelType.CHAR, ChannelType.ENUM)


def _short(value) -> str:
    if hasattr(value, "item") and getattr(value, "size", 2) == 1:
        value = value.item()  # numpy scalar -> plain Python for the log
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


async def _verify_value_logged(self, value):
    """``PvpropertyData.verify_value`` that logs every refusal with the PV name."""
    try:
        return await _ORIGINAL_VERIFY(self, value)
    except SkipWrite:
        raise
    except Exception as ex:
        if isinstance(value, float) and not math.isfinite(value):
            reason = f"{ex} (value is not finite)"
        else:
            reason = str(ex) or type(ex).__name__
        _report(self.pvname, value, reason)
        raise


def _text(value) -> str:
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).split(b"\0", 1)[0].decode("latin-1")
    return str(value)


def _number(value) -> str:
    v = float(value)
    return str(int(v)) if v.is_integer() else repr(v)


def check_client_value(chan, data, data_type) -> str | None:
    """Why a client's ``data`` (CA type ``data_type``) must be refused by the enum or integer
    PV ``chan`` before caproto casts it, or None. Other PV types: None (caproto's limits and
    the putters check those)."""
    target = getattr(chan, "data_type", None)
    if target != ChannelType.ENUM and target not in _INT_RANGE:
        return None
    wire = native_type(ChannelType(data_type))
    if isinstance(data, (str, bytes, bytearray)):
        data = [data]
    if wire == ChannelType.STRING:
        for item in list(data)[:1]:
            text = _text(item)
            if target == ChannelType.ENUM:
                strings = tuple(getattr(chan, "enum_strings", ()) or ())
                if text not in strings:
                    return f"{text!r} is not one of {', '.join(strings)}"
            else:
                try:
                    int(text)
                except ValueError:
                    return f"{text!r} is not an integer"
        return None
    if wire not in _NUMERIC_WIRE:
        return None
    try:
        values = np.asarray(data, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return None  # caproto refuses it itself
    for v in values[:1]:  # scalar PVs use the first element
        v = float(v)
        if target == ChannelType.ENUM:
            strings = tuple(getattr(chan, "enum_strings", ()) or ())
            allowed = (f"index out of range 0..{len(strings) - 1} "
                       f"(allowed: {', '.join(f'{i}={s}' for i, s in enumerate(strings))})")
            if not math.isfinite(v):
                return f"{v!r} is not a finite number, enum {allowed}"
            if not (v.is_integer() and 0 <= v < len(strings)):
                return f"{_number(v)} is not an enum index: {allowed}"
        elif not math.isfinite(v):
            return f"{v!r} is not a finite number"
        else:
            lo, hi = _INT_RANGE[target]
            if not lo <= v <= hi:
                c_lo, c_hi = getattr(chan, "lower_ctrl_limit", 0), getattr(chan, "upper_ctrl_limit", 0)
                if c_lo < c_hi:  # the PV's own limits (caproto would check them after the cast)
                    return f"{_number(v)} is outside the limits {_number(c_lo)}..{_number(c_hi)}"
                bits = 32 if target == ChannelType.LONG else 16
                return f"{_number(v)} is outside the {bits}-bit integer range {lo}..{hi}"
    return None


def _short_name(chan) -> str:
    """PV name without the IOC's prefix (the names the putters' messages use)."""
    name = str(getattr(chan, "pvname", "") or "")
    group = getattr(chan, "group", None)
    while getattr(group, "parent", None) is not None:
        group = group.parent
    prefix = getattr(group, "prefix", "") or ""
    return name[len(prefix):] if prefix and name.startswith(prefix) else name


def _report(pvname: str, value, reason: str) -> None:
    log.warning("put refused: %s = %s: %s", pvname, _short(value), reason)
    if on_refused is not None:
        try:
            on_refused(pvname, reason)
        except Exception:  # reporting must never change the put's outcome
            log.exception("on_refused callback failed")


async def _write_from_dbr_checked(self, data, data_type, metadata, *, flags=0):
    """``ChannelData.write_from_dbr`` that refuses what caproto's cast would distort."""
    reason = check_client_value(self, data, data_type)
    if reason is not None:
        short = _short_name(self)
        message = f"{short}: {reason}" if short else reason
        value = data[0] if isinstance(data, (list, tuple, np.ndarray)) and len(data) == 1 else data
        _report(self.pvname, value, message)
        raise PutRefused(message)
    return await _ORIGINAL_WRITE_FROM_DBR(self, data, data_type, metadata, flags=flags)


class _OneLineWriteErrors(logging.Filter):
    """Drop the traceback of caproto's 'Invalid write request' (already logged by us)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and str(record.msg).startswith("Invalid write request"):
            ex = record.exc_info[1]
            record.msg = "write request refused (%s): " + type(ex).__name__ + ": " + str(ex).replace("%", "%%")
            record.args = (record.args[1],) if isinstance(record.args, tuple) and len(record.args) > 1 else ()
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.INFO
            record.levelname = "INFO"
        elif str(record.msg).startswith("Failed to send beacon"):
            # caproto logs a traceback for every beacon nobody receives (no caRepeater on the
            # beacon port, the normal case on a loopback-only host). Say it once, briefly.
            if self._beacon_reported:
                return False
            self._beacon_reported = True
            target = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = ("beacons to %s are not received (no CA repeater listening there); "
                          "harmless: clients find the IOC by search. Start caRepeater to receive them. "
                          "Further beacon errors are not logged.")
            record.args = (target,)
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.INFO
            record.levelname = "INFO"
        return True

    _beacon_reported = False


_FILTER = _OneLineWriteErrors()


def apply() -> None:
    """Install the workarounds (idempotent)."""
    _server.PvpropertyData.verify_value = _verify_value_logged
    _cadata.ChannelData.write_from_dbr = _write_from_dbr_checked
    for name in ("caproto.ctx", "caproto.circ", "caproto"):
        lg = logging.getLogger(name)
        if _FILTER not in lg.filters:
            lg.addFilter(_FILTER)


def revert() -> None:
    """Restore caproto's original methods (tests use this to show the bug)."""
    _server.PvpropertyData.verify_value = _ORIGINAL_VERIFY
    _cadata.ChannelData.write_from_dbr = _ORIGINAL_WRITE_FROM_DBR


def is_applied() -> bool:
    return _cadata.ChannelData.write_from_dbr is _write_from_dbr_checked
