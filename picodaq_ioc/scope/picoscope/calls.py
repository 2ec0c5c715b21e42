"""Driver calls we make ourselves through ``ps.lib`` where pico-python is wrong or missing.

Every function here runs on the backend's driver thread and raises only our
exceptions.  The C prototypes followed are those of the Pico SDK headers
(psXXXXApi.h); the integer types matter because the driver writes through the
pointers it is given.

* ``max_value``: ``psXXXXMaximumValue(int16 handle, int16 *value)`` - the true full-scale
  code (32512 on 8-bit 2000A/3000A/5000A); pico-python scales with 32764.
* ``read_bulk`` on PS2000A: pico-python has no ``_lowLevelSetDataBufferBulk`` and passes
  ``int16 *`` for the ``uint32_t *noOfSamples`` of ``ps2000aGetValuesBulk``.
* ``clear_bulk_buffers``: pico-python clears PS4000/PS6000 bulk buffers with the
  non-bulk function, leaving the driver with pointers into freed numpy memory.
* ``trigger_offsets``: ``GetTriggerTimeOffset64`` / ``GetValuesTriggerTimeOffsetBulk64``
  with a *signed* int64 (pico-python reads it unsigned, or as two uint32 halves, so a
  negative offset comes out as ~1.8e7 s).
"""

from __future__ import annotations

from ctypes import POINTER, byref, c_int16, c_int32, c_int64, c_uint32, c_void_p
from typing import Any

import numpy as np

from ..errors import DeviceDisconnected, ScopeError
from .drivers import TIME_UNITS_S, DriverSpec
from .status import DISCONNECT_CODES, code_name, status_error

PICO_OK = 0


def _check(status: int, spec: DriverSpec, action: str, **kw: Any) -> None:
    if status != PICO_OK:
        raise status_error(int(status), driver=spec.lib, action=action, **kw)


def _fn(ps: Any, spec: DriverSpec, suffix: str) -> Any | None:
    """The C function ``spec.lib + suffix`` or ``None`` if the library does not export it."""
    try:
        return getattr(ps.lib, spec.fn(suffix))
    except AttributeError:
        return None


def max_value(ps: Any, spec: DriverSpec) -> int | None:
    """Full-scale ADC code from ``psXXXXMaximumValue``, ``None`` where the driver has none."""
    if not spec.has_max_value_fn:
        return None
    fn = _fn(ps, spec, "MaximumValue")
    if fn is None:
        return None
    value = c_int16(0)
    _check(fn(c_int16(ps.handle), byref(value)), spec, "MaximumValue")
    return int(value.value) if value.value > 0 else None


def is_ready(ps: Any, spec: DriverSpec) -> bool:
    """One ``IsReady`` poll (``ps2000_ready``: >0 ready, 0 not yet, <0 unit gone)."""
    if spec.old_api:
        r = ps.lib.ps2000_ready(c_int16(ps.handle))
        if r < 0:
            raise DeviceDisconnected(f"ps2000_ready returned {r}: the unit is not responding")
        return r > 0
    ready = c_int16(0)
    _check(getattr(ps.lib, spec.fn("IsReady"))(c_int16(ps.handle), byref(ready)), spec, "IsReady")
    return bool(ready.value)


def ping(ps: Any, spec: DriverSpec) -> bool:
    """``PingUnit`` where the driver has it, else a cheap ``GetUnitInfo``; False if the unit is gone."""
    fn = None if spec.old_api else _fn(ps, spec, "PingUnit")
    try:
        if fn is not None:
            return fn(c_int16(ps.handle)) == PICO_OK
        return bool(ps.getUnitInfo("VariantInfo"))
    except Exception:
        return False


def run_block(ps: Any, spec: DriverSpec, n_pre: int, n_post: int, timebase: int) -> float:
    """Arm (``RunBlock``); returns the driver's time-indisposed estimate in seconds."""
    ms = ps._lowLevelRunBlock(int(n_pre), int(n_post), int(timebase), 0, 0, None, None)
    return max(0.0, float(ms or 0) * 1e-3)


def read_block(ps: Any, spec: DriverSpec, chnums: list[int], out: np.ndarray) -> int:
    """Read segment 0 of every channel in ``chnums`` into ``out[i]`` with ONE ``GetValues``.

    Returns the overflow bitmask (bit ``chnum`` set = that channel over-ranged).
    """
    n = int(out.shape[-1])
    try:
        for i, ch in enumerate(chnums):
            ps._lowLevelSetDataBuffer(ch, out[i], 0, 0)
        n_returned, overflow = ps._lowLevelGetValues(n, 0, 1, 0, 0)
    finally:
        for ch in chnums:
            try:
                ps._lowLevelClearDataBuffer(ch, 0)
            except Exception:
                pass
    if int(n_returned) < n:
        out[:, int(n_returned):] = 0
        raise ScopeError(f"{spec.lib} GetValues returned {n_returned} of {n} samples")
    return int(overflow)


def _set_bulk_buffer(ps: Any, spec: DriverSpec, ch: int, buf: np.ndarray | None, seg: int) -> None:
    h = c_int16(ps.handle)
    ptr = c_void_p() if buf is None else buf.ctypes.data_as(POINTER(c_int16))
    n = 0 if buf is None else int(buf.shape[-1])
    if spec.family == "4000":
        status = ps.lib.ps4000SetDataBufferBulk(h, c_int32(ch), ptr, c_uint32(n), spec.segment_ctype(seg))
    elif spec.family == "6000":
        status = ps.lib.ps6000SetDataBufferBulk(h, c_int32(ch), ptr, c_uint32(n), c_uint32(seg), c_int32(0))
    else:  # 2000a, 3000a, 4000a, 5000a: SetDataBuffer(handle, ch, buffer, int32 len, uint32 seg, mode)
        status = getattr(ps.lib, spec.fn("SetDataBuffer"))(h, c_int32(ch), ptr, c_int32(n), c_uint32(seg),
                                                             c_int32(0))
    _check(status, spec, "SetDataBuffer (bulk)")


def read_bulk(ps: Any, spec: DriverSpec, chnums: list[int], out: np.ndarray) -> np.ndarray:
    """Rapid-block read of all segments into ``out[seg, i, :]``; returns int16 overflow masks [seg]."""
    n_seg, _, n = out.shape
    overflow = np.zeros(n_seg, dtype=np.int16)
    registered: list[tuple[int, int]] = []
    try:
        for s in range(n_seg):
            for i, ch in enumerate(chnums):
                _set_bulk_buffer(ps, spec, ch, out[s, i], s)
                registered.append((ch, s))
        n_samples = c_uint32(n)
        h = c_int16(ps.handle)
        ovf = overflow.ctypes.data_as(POINTER(c_int16))
        if spec.family == "4000":
            # ps4000GetValuesBulk(handle, uint32 *noOfSamples, uint16 from, uint16 to, int16 *overflow)
            status = ps.lib.ps4000GetValuesBulk(h, byref(n_samples), spec.segment_ctype(0),
                                                spec.segment_ctype(n_seg - 1), ovf)
        else:
            # psXXXXGetValuesBulk(handle, uint32 *noOfSamples, uint32 from, uint32 to,
            #                     uint32 downSampleRatio, enum mode, int16 *overflow)
            status = getattr(ps.lib, spec.fn("GetValuesBulk"))(h, byref(n_samples), c_uint32(0),
                                                               c_uint32(n_seg - 1), c_uint32(1), c_int32(0), ovf)
        _check(status, spec, "GetValuesBulk", asked=f"{n} samples x {n_seg} segments")
    finally:
        # never leave the driver holding pointers into our arrays
        for ch, s in registered:
            try:
                _set_bulk_buffer(ps, spec, ch, None, s)
            except Exception:
                pass
    if n_samples.value < n:
        raise ScopeError(f"{spec.lib} GetValuesBulk returned {n_samples.value} of {n} samples")
    return overflow


def trigger_offsets(ps: Any, spec: DriverSpec, n_seg: int) -> np.ndarray:
    """Sub-sample trigger time offsets (s) per segment; NaN where the driver cannot tell."""
    out = np.full(n_seg, np.nan)
    if not spec.trigger_offset:
        return out
    h = c_int16(ps.handle)
    if n_seg == 1:
        fn = _fn(ps, spec, "GetTriggerTimeOffset64")
        if fn is None:
            return out
        t, units = c_int64(0), c_int32(0)
        status = fn(h, byref(t), byref(units), spec.segment_ctype(0))
        times, unit_codes = np.array([t.value]), np.array([units.value])
    else:
        fn = _fn(ps, spec, "GetValuesTriggerTimeOffsetBulk64")
        if fn is None:
            return out
        times = np.zeros(n_seg, dtype=np.int64)
        unit_codes = np.zeros(n_seg, dtype=np.int32)
        status = fn(h, times.ctypes.data_as(POINTER(c_int64)), unit_codes.ctypes.data_as(POINTER(c_int32)),
                    spec.segment_ctype(0), spec.segment_ctype(n_seg - 1))
    if status != PICO_OK:
        if code_name(int(status)) in DISCONNECT_CODES:
            _check(status, spec, "GetTriggerTimeOffset64")
        return out  # not available in this mode: NaN, documented
    scale = np.array([TIME_UNITS_S.get(int(u), np.nan) for u in unit_codes])
    return times.astype(np.float64) * scale


__all__ = [
    "is_ready", "max_value", "ping", "read_block", "read_bulk", "run_block", "trigger_offsets",
]
