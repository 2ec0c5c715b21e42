"""A fake of the Pico SDK C libraries at the ctypes boundary.

``FakeLibrary`` stands in for the object ``ctypes.cdll.LoadLibrary("libps2000a.so")``
returns.  Attribute access ``lib.ps2000aSetChannel`` gives a callable that takes
the same ctypes arguments the real C function takes, writes its outputs through
the ``byref`` pointers and into the registered data buffers (raw addresses, as
the C library does), records the call, and returns a ``PICO_STATUS`` code
(``ps2000``: the old API's non-zero-is-success convention).  Functions the real
library of a family does not export raise ``AttributeError`` like a missing
symbol does.
"""

from __future__ import annotations

import ctypes
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .device import FakeUnit

PICO_OK = 0x00
PICO_NOT_FOUND = 0x03
PICO_NOT_RESPONDING = 0x07
PICO_INVALID_CHANNEL = 0x0B
PICO_INVALID_HANDLE = 0x0C
PICO_INVALID_PARAMETER = 0x0D
PICO_INVALID_TIMEBASE = 0x0E
PICO_INVALID_VOLTAGE_RANGE = 0x0F
PICO_INVALID_COUPLING = 0x10
PICO_DATA_NOT_AVAILABLE = 0x18
PICO_TOO_MANY_SAMPLES = 0x1D
PICO_TOO_MANY_SEGMENTS = 0x1E
PICO_BUSY = 0x27
PICO_DRIVER_FUNCTION = 0x43
PICO_INVALID_ANALOGUE_OFFSET = 0x50
PICO_POWER_SUPPLY_NOT_CONNECTED = 0x11A

NO_OVERSAMPLE = {"ps4000a", "ps5000a"}  # GetTimebase2 / RunBlock without the oversample argument
RESOLUTION_BITS = {0: 8, 1: 12, 2: 14, 3: 15, 4: 16}

# Functions each family's library exports (suffix after the prefix).
_COMMON = {
    "OpenUnit", "CloseUnit", "GetUnitInfo", "SetChannel", "GetTimebase2", "SetSimpleTrigger",
    "MemorySegments", "SetNoOfCaptures", "RunBlock", "IsReady", "Stop", "SetDataBuffer",
    "GetValues", "GetValuesBulk", "GetTriggerTimeOffset64", "GetValuesTriggerTimeOffsetBulk64",
    "SetSigGenBuiltIn", "FlashLed", "PingUnit",
}
EXPORTS: dict[str, set[str]] = {
    "ps2000a": _COMMON | {"MaximumValue", "GetMaxSegments", "GetTriggerTimeOffset"},
    "ps3000a": _COMMON | {"MaximumValue", "GetMaxSegments", "SetBandwidthFilter", "ChangePowerSource"},
    "ps4000": (_COMMON - {"PingUnit"}) | {"SetDataBufferBulk"},
    "ps4000a": _COMMON | {"MaximumValue", "SetDeviceResolution", "GetDeviceResolution",
                          "ChangePowerSource"},
    "ps5000a": _COMMON | {"MaximumValue", "SetDeviceResolution", "GetDeviceResolution",
                          "SetBandwidthFilter", "ChangePowerSource"},
    "ps6000": _COMMON | {"SetDataBufferBulk"},
}
PS2000_EXPORTS = {
    "open_unit", "close_unit", "get_unit_info", "set_channel", "set_trigger", "run_block", "ready",
    "stop", "get_timebase", "get_values", "set_sig_gen_built_in", "flash_led",
}


class _Status(Exception):
    def __init__(self, code: int):
        self.code = code


@dataclass
class Call:
    """One recorded call: full C name, the raw ctypes arguments and their plain values."""

    name: str
    args: tuple
    values: tuple
    status: int | None = None
    thread: int = 0  # threading.get_ident() of the caller


def _val(x: Any) -> Any:
    """Plain Python value of a by-value ctypes argument."""
    if isinstance(x, ctypes._SimpleCData):
        return x.value
    return x


def _plain(x: Any) -> Any:
    if isinstance(x, ctypes._SimpleCData):
        return x.value
    if type(x).__name__ == "CArgObject":
        return ("byref", type(x._obj).__name__)
    if isinstance(x, ctypes._Pointer):
        return ("ptr", ctypes.cast(x, ctypes.c_void_p).value)
    if isinstance(x, ctypes.Array):
        return ("array", x.value if hasattr(x, "value") else None)
    return x


def _out(ref: Any, value: Any) -> None:
    """Write an output parameter through a byref()/pointer argument (NULL is ignored)."""
    if ref is None:
        return
    if type(ref).__name__ == "CArgObject":
        ref._obj.value = value
    elif isinstance(ref, ctypes._Pointer):
        ref.contents.value = value
    elif isinstance(ref, ctypes.c_void_p):
        if ref.value is not None:
            raise TypeError("fake lib: untyped output pointer")


def _addr(p: Any) -> int | None:
    if p is None:
        return None
    if isinstance(p, ctypes.c_void_p):
        return p.value
    if isinstance(p, ctypes._Pointer):
        return ctypes.cast(p, ctypes.c_void_p).value
    if type(p).__name__ == "CArgObject":
        return ctypes.addressof(p._obj)
    if isinstance(p, int):
        return p
    raise TypeError(f"fake lib: cannot take the address of {type(p).__name__}")


def _write(addr: int, n: int, data: np.ndarray, dtype=np.int16) -> None:
    ctype = {np.dtype(np.int16): ctypes.c_int16, np.dtype(np.int64): ctypes.c_int64,
             np.dtype(np.int32): ctypes.c_int32}[np.dtype(dtype)]
    view = np.ctypeslib.as_array(ctypes.cast(addr, ctypes.POINTER(ctype)), shape=(n,))
    m = min(n, len(data))
    view[:m] = np.asarray(data[:m], dtype=dtype)


def _ref_size(ref: Any) -> int:
    return ctypes.sizeof(ref._obj) if type(ref).__name__ == "CArgObject" else ctypes.sizeof(ref.contents)


class FakeLibrary:
    """The fake ``libpsXXXX.so`` of one family; all instances share one ``FakeSDK`` bus."""

    def __init__(self, sdk: Any, family: str):
        self._sdk = sdk
        self._family = family
        self._exports = PS2000_EXPORTS if family == "ps2000" else EXPORTS[family]

    def __repr__(self) -> str:
        return f"<FakeLibrary lib{self._family}>"

    def __getattr__(self, name: str) -> Callable[..., int]:
        fam = self._family
        if fam == "ps2000":
            prefix = "ps2000_"
        else:
            prefix = fam
        if not name.startswith(prefix):
            raise AttributeError(f"fake lib{fam}.so: undefined symbol: {name}")
        suffix = name[len(prefix):]
        if suffix not in self._exports:
            raise AttributeError(f"fake lib{fam}.so: undefined symbol: {name}")
        impl = getattr(self._sdk, ("_p2_" if fam == "ps2000" else "_f_") + suffix)

        def c_function(*args: Any) -> int:
            call = Call(name, args, tuple(_plain(a) for a in args), thread=threading.get_ident())
            self._sdk.calls.append(call)
            fault = self._sdk._take_fault(name)
            if fault is not None:
                call.status = fault
                return fault
            try:
                status = impl(fam, *args)
            except _Status as s:
                status = s.code
            call.status = status
            return status

        c_function.__name__ = name
        return c_function


class FakeSDK:
    """The fake USB bus + driver: attached ``FakeUnit`` s, recorded calls, injected faults."""

    def __init__(self, units: list[FakeUnit] | tuple = (), missing: bool = False):
        self.units: list[FakeUnit] = list(units)
        self.missing = missing  # True: loading any libps*.so fails like a missing SDK
        self.calls: list[Call] = []
        self._faults: list[list] = []  # [name-suffix, status, times, after]
        self._next_handle = 16384
        self.loaded: list[str] = []
        self.not_found_handle = 0  # what OpenUnit writes to *handle when no unit is found (-1 also seen)

    # ----------------------------------------------------------------- test API
    def inject(self, function: str, status: int, times: int = 1, after: int = 0) -> None:
        """Make the next ``times`` calls whose C name ends with ``function`` return ``status``,
        after letting ``after`` matching calls through."""
        self._faults.append([function, status, times, after])

    def unplug(self, unit: FakeUnit | None = None) -> None:
        u = unit or self.units[0]
        u.unplugged = True

    def replug(self, unit: FakeUnit | None = None) -> None:
        u = unit or self.units[0]
        u.unplugged = False
        u.open = False
        u.handle = 0

    def calls_to(self, suffix: str) -> list[Call]:
        return [c for c in self.calls if c.name.endswith(suffix)]

    def names(self) -> list[str]:
        return [c.name for c in self.calls]

    def _take_fault(self, name: str) -> int | None:
        for f in self._faults:
            if name.endswith(f[0]) and f[2] > 0:
                if f[3] > 0:
                    f[3] -= 1
                    return None
                f[2] -= 1
                return f[1]
        return None

    # ----------------------------------------------------------------- helpers
    def _unit(self, family: str, handle: Any) -> FakeUnit:
        h = _val(handle)
        for u in self.units:
            if u.family == family and u.open and u.handle == h:
                if u.unplugged:
                    raise _Status(PICO_NOT_RESPONDING)
                return u
        for u in self.units:
            if u.family == family and u.unplugged and u.handle == h:
                raise _Status(PICO_NOT_RESPONDING)
        raise _Status(PICO_INVALID_HANDLE)

    def _find(self, family: str, serial: Any) -> FakeUnit | None:
        want = None
        if serial is not None:
            raw = serial.value if hasattr(serial, "value") else serial
            want = raw.decode() if isinstance(raw, bytes) else str(raw)
        for u in self.units:
            if u.family != family or u.open or u.unplugged:
                continue
            if want is None or u.serial == want:
                return u
        return None

    def _open(self, u: FakeUnit) -> int:
        self._next_handle += 1
        u.handle = self._next_handle
        u.open = True
        u.running = False
        u.buffers.clear()
        u.n_segments = 1
        u.n_captures = 1
        u.captured = None
        u.trigger = None
        u.siggen = None
        for i in range(u.n_channels):
            u.channels[i] = type(u.channels[i])(enabled=(i == 0))
        return u.handle

    # ================================================================ PICO_STATUS API
    def _f_OpenUnit(self, fam, handle_ref, serial, *rest):
        u = self._find(fam, serial)
        if u is None:
            _out(handle_ref, self.not_found_handle)
            return PICO_NOT_FOUND
        if rest:
            u.resolution_bits = RESOLUTION_BITS[_val(rest[0])]
        _out(handle_ref, self._open(u))
        return u.open_status  # e.g. PICO_POWER_SUPPLY_NOT_CONNECTED: opened, but on USB power

    def _f_CloseUnit(self, fam, h):
        u = self._unit(fam, h)
        u.open = False
        u.running = False
        return PICO_OK

    def _f_GetUnitInfo(self, fam, h, s_ref, length, req_ref, info):
        u = self._unit(fam, h)
        text = {0: "1.0.0.fake", 3: u.variant, 4: u.serial}.get(_val(info), "fake")
        data = text.encode()
        _out(req_ref, len(data) + 1)
        if len(data) + 1 <= _val(length):
            s_ref._obj.value = data
        return PICO_OK

    def _f_FlashLed(self, fam, h, times):
        self._unit(fam, h)
        return PICO_OK

    def _f_PingUnit(self, fam, h):
        self._unit(fam, h)
        return PICO_OK

    def _f_MaximumValue(self, fam, h, ref):
        u = self._unit(fam, h)
        _out(ref, u.max_adc)
        return PICO_OK

    def _f_GetMaxSegments(self, fam, h, ref):
        self._unit(fam, h)
        _out(ref, 10000)
        return PICO_OK

    def _f_SetDeviceResolution(self, fam, h, res):
        u = self._unit(fam, h)
        r = _val(res)
        if r not in RESOLUTION_BITS:
            return PICO_INVALID_PARAMETER
        u.resolution_bits = RESOLUTION_BITS[r]
        return PICO_OK

    def _f_GetDeviceResolution(self, fam, h, ref):
        u = self._unit(fam, h)
        _out(ref, {v: k for k, v in RESOLUTION_BITS.items()}[u.resolution_bits])
        return PICO_OK

    def _f_ChangePowerSource(self, fam, h, state):
        self._unit(fam, h)
        return PICO_OK

    def _f_SetChannel(self, fam, h, ch, enabled, coupling, rng, offset, *bw):
        u = self._unit(fam, h)
        c = _val(ch)
        if not 0 <= c < u.n_channels:
            return PICO_INVALID_CHANNEL
        if _val(coupling) not in ((0, 1, 2) if fam in ("ps4000", "ps4000a", "ps6000") else (0, 1)):
            return PICO_INVALID_COUPLING
        r = _val(rng)
        try:
            rv = u.range_v(r)
        except IndexError:
            return PICO_INVALID_VOLTAGE_RANGE
        if _val(enabled) and r < u.min_range_index():
            return PICO_INVALID_VOLTAGE_RANGE
        off = float(_val(offset))
        limit = 0.25 if rv <= 0.2 + 1e-9 else (2.5 if rv <= 2.0 + 1e-9 else 20.0)
        if abs(off) > limit + 1e-6:
            return PICO_INVALID_ANALOGUE_OFFSET
        chan = u.channels[c]
        chan.enabled = bool(_val(enabled))
        chan.coupling = _val(coupling)
        chan.range_index = r
        chan.offset_v = off
        if bw:
            chan.bandwidth = _val(bw[0])
        u.running = False
        return PICO_OK

    def _f_SetBandwidthFilter(self, fam, h, ch, bw):
        u = self._unit(fam, h)
        u.channels[_val(ch)].bandwidth = _val(bw)
        return PICO_OK

    def _f_GetTimebase2(self, fam, h, tb, n, interval_ref, *rest):
        u = self._unit(fam, h)
        if fam in NO_OVERSAMPLE:
            max_ref, _seg = rest
        else:
            _oversample, max_ref, _seg = rest
        dt = u.dt(_val(tb))
        if dt is None:
            return PICO_INVALID_TIMEBASE
        _out(interval_ref, dt * 1e9)
        _out(max_ref, u.max_samples())
        if _val(n) > u.max_samples():
            return PICO_TOO_MANY_SAMPLES
        return PICO_OK

    def _f_SetSimpleTrigger(self, fam, h, enabled, src, threshold, direction, delay, auto):
        u = self._unit(fam, h)
        u.trigger = (_val(enabled), _val(src), _val(threshold), _val(direction), _val(delay), _val(auto))
        return PICO_OK

    def _f_MemorySegments(self, fam, h, n, max_ref):
        u = self._unit(fam, h)
        k = _val(n)
        if not 1 <= k <= 10000:
            return PICO_TOO_MANY_SEGMENTS
        u.n_segments = k
        _out(max_ref, u.max_samples())
        return PICO_OK

    def _f_SetNoOfCaptures(self, fam, h, n):
        u = self._unit(fam, h)
        k = _val(n)
        if not 1 <= k <= u.n_segments:
            return PICO_TOO_MANY_SEGMENTS
        u.n_captures = k
        return PICO_OK

    def _f_RunBlock(self, fam, h, pre, post, tb, *rest):
        u = self._unit(fam, h)
        if fam in NO_OVERSAMPLE:
            ti_ref, seg, _cb, _p = rest
        else:
            _oversample, ti_ref, seg, _cb, _p = rest
        dt = u.dt(_val(tb))
        if dt is None:
            return PICO_INVALID_TIMEBASE
        n = _val(pre) + _val(post)
        if n > u.max_samples() or n < 1:
            return PICO_TOO_MANY_SAMPLES
        u.n_pre, u.n_post, u.timebase = _val(pre), _val(post), _val(tb)
        _out(ti_ref, int(math.ceil(n * dt * u.n_captures * 1e3)))
        u.start_run()
        return PICO_OK

    def _f_IsReady(self, fam, h, ready_ref):
        u = self._unit(fam, h)
        if not u.running:
            _out(ready_ref, 0 if u.captured is None else 1)
            return PICO_OK
        _out(ready_ref, 1 if self._poll(u) else 0)
        return PICO_OK

    @staticmethod
    def _poll(u: FakeUnit) -> bool:
        """One readiness poll of a running capture: True once it has completed."""
        if u.never_ready:
            return False
        u.polls_left -= 1
        if u.polls_left < 0:
            u.running = False
            return True
        return False

    def _f_Stop(self, fam, h):
        u = self._unit(fam, h)
        if u.running:
            u.running = False
            u.captured = None
        return PICO_OK

    def _f_SetDataBuffer(self, fam, h, ch, ptr, n, *rest):
        seg = _val(rest[0]) if (rest and fam != "ps4000") else 0
        return self._set_buffer(self._unit(fam, h), _val(ch), seg, ptr, n)

    def _f_SetDataBufferBulk(self, fam, h, ch, ptr, n, seg, *rest):
        return self._set_buffer(self._unit(fam, h), _val(ch), _val(seg), ptr, n)

    @staticmethod
    def _set_buffer(u: FakeUnit, ch: int, seg: int, ptr, n) -> int:
        """Register (or, for a NULL pointer, remove) the buffer of channel ``ch``, segment ``seg``."""
        key = (ch, seg)
        addr = _addr(ptr)
        if addr is None:
            u.buffers.pop(key, None)
        else:
            u.buffers[key] = (addr, _val(n))
        return PICO_OK

    def _ready_data(self, u: FakeUnit) -> None:
        if u.captured is None or u.running:
            raise _Status(PICO_DATA_NOT_AVAILABLE)

    def _f_GetValues(self, fam, h, start, n_ref, ratio, mode, seg, overflow_ref):
        u = self._unit(fam, h)
        self._ready_data(u)
        s = _val(seg)
        if s >= u.n_captures:
            return PICO_INVALID_PARAMETER
        first, n = _val(start), n_ref._obj.value
        n = min(n, u.n_samples - first)
        for (ch, bseg), (addr, length) in u.buffers.items():
            if bseg == s or fam == "ps4000":
                _write(addr, min(length, n), u.captured[s, ch, first:first + n])
        _out(n_ref, n)
        _out(overflow_ref, int(u.overflow[s]))
        return PICO_OK

    def _f_GetValuesBulk(self, fam, h, n_ref, frm, to, *rest):
        u = self._unit(fam, h)
        overflow_ptr = rest[-1]
        if _ref_size(n_ref) != 4:
            # the C prototype is uint32_t *noOfSamples: a 2-byte object would be overrun
            return PICO_INVALID_PARAMETER
        self._ready_data(u)
        a, b = _val(frm), _val(to)
        if not 0 <= a <= b < u.n_captures:
            return PICO_INVALID_PARAMETER
        n = min(n_ref._obj.value, u.n_samples)
        for s in range(a, b + 1):
            for (ch, bseg), (addr, length) in u.buffers.items():
                if bseg == s:
                    _write(addr, min(length, n), u.captured[s, ch, :n])
        _write(_addr(overflow_ptr), b - a + 1, u.overflow[a:b + 1])
        _out(n_ref, n)
        return PICO_OK

    def _dt_now(self, u: FakeUnit) -> float:
        return u.dt(u.timebase or 0) or 1e-9

    def _f_GetTriggerTimeOffset64(self, fam, h, time_ref, units_ref, seg):
        u = self._unit(fam, h)
        self._ready_data(u)
        _out(time_ref, int(round(u.trigger_offset(_val(seg), self._dt_now(u)) / 1e-12)))
        _out(units_ref, 1)  # PS
        return PICO_OK

    def _f_GetTriggerTimeOffset(self, fam, h, upper_ref, lower_ref, units_ref, seg):
        u = self._unit(fam, h)
        self._ready_data(u)
        t = int(round(u.trigger_offset(_val(seg), self._dt_now(u)) / 1e-12)) & 0xFFFFFFFFFFFFFFFF
        _out(upper_ref, t >> 32)
        _out(lower_ref, t & 0xFFFFFFFF)
        _out(units_ref, 1)
        return PICO_OK

    def _f_GetValuesTriggerTimeOffsetBulk64(self, fam, h, times_ptr, units_ptr, frm, to):
        u = self._unit(fam, h)
        self._ready_data(u)
        a, b = _val(frm), _val(to)
        dt = self._dt_now(u)
        times = np.array([round(u.trigger_offset(s, dt) / 1e-12) for s in range(a, b + 1)], dtype=np.int64)
        _write(_addr(times_ptr), b - a + 1, times, np.int64)
        _write(_addr(units_ptr), b - a + 1, np.ones(b - a + 1, dtype=np.int32), np.int32)
        return PICO_OK

    def _f_SetSigGenBuiltIn(self, fam, h, *args):
        u = self._unit(fam, h)
        u.siggen = tuple(_val(a) for a in args)
        return PICO_OK

    # ================================================================ ps2000 (old API)
    def _p2_unit(self, handle: Any) -> FakeUnit | None:
        try:
            return self._unit("ps2000", handle)
        except _Status:
            return None

    def _p2_open_unit(self, fam):
        u = self._find("ps2000", None)
        if u is None:
            return 0
        return self._open(u)

    def _p2_close_unit(self, fam, h):
        u = self._p2_unit(h)
        if u is None:
            return 0
        u.open = False
        return 1

    def _p2_get_unit_info(self, fam, h, s_ref, length, info):
        u = self._p2_unit(h)
        if u is None:
            return 0
        text = {0: "2.1.fake", 3: u.variant, 4: u.serial}.get(_val(info), "fake").encode()
        s_ref._obj.value = text
        return len(text)

    def _p2_flash_led(self, fam, h):
        return 0 if self._p2_unit(h) is None else 1

    def _p2_set_channel(self, fam, h, ch, enabled, dc, rng):
        u = self._p2_unit(h)
        if u is None or not 0 <= _val(ch) < u.n_channels:
            return 0
        try:
            u.range_v(_val(rng))
        except IndexError:
            return 0
        c = u.channels[_val(ch)]
        c.enabled, c.coupling, c.range_index, c.offset_v = bool(_val(enabled)), _val(dc), _val(rng), 0.0
        return 1

    def _p2_set_trigger(self, fam, h, src, threshold, direction, delay, auto):
        u = self._p2_unit(h)
        if u is None:
            return 0
        u.trigger = (_val(src), _val(threshold), _val(direction), _val(delay), _val(auto))
        return 1

    def _p2_get_timebase(self, fam, h, tb, n, interval_ref, units_ref, oversample, max_ref):
        u = self._p2_unit(h)
        if u is None:
            return 0
        dt = u.dt(_val(tb))
        if dt is None:
            return 0
        _out(interval_ref, int(round(dt * 1e9)))
        _out(units_ref, 2)
        _out(max_ref, u.max_samples())
        return 0 if _val(n) > u.max_samples() else 1

    def _p2_run_block(self, fam, h, n, tb, oversample, ti_ref):
        u = self._p2_unit(h)
        if u is None:
            return 0
        dt = u.dt(_val(tb))
        if dt is None or _val(n) > u.max_samples():
            return 0
        u.n_pre, u.n_post, u.timebase = 0, _val(n), _val(tb)
        _out(ti_ref, int(math.ceil(_val(n) * dt * 1e3)))
        u.start_run()
        return 1

    def _p2_ready(self, fam, h):
        u = self._p2_unit(h)
        if u is None:
            return -1
        return 1 if self._poll(u) else 0

    def _p2_stop(self, fam, h):
        u = self._p2_unit(h)
        if u is None:
            return 0
        u.running = False
        return 1

    def _p2_get_values(self, fam, h, buf_a, buf_b, buf_c, buf_d, overflow_ref, n):
        u = self._p2_unit(h)
        if u is None or u.captured is None:
            return 0
        count = min(_val(n), u.n_samples)
        for ch, p in enumerate((buf_a, buf_b)):
            addr = _addr(p)
            if addr is not None:
                _write(addr, count, u.captured[0, ch, :count])
        _out(overflow_ref, int(u.overflow[0]))
        return count

    def _p2_set_sig_gen_built_in(self, fam, h, *args):
        u = self._p2_unit(h)
        if u is None:
            return 0
        u.siggen = tuple(_val(a) for a in args)
        return 1
