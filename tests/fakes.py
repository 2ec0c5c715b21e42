"""A tiny, fast, deterministic fake scope backend for buffer-manager and session tests.

It implements :class:`picodaq_ioc.scope.types.ScopeBackend` with a simulated clock:
triggers arrive as a seeded Poisson process of ``rate`` Hz while armed, every capture
costs ``readout_time`` s of dead time and (``count_host_time``) the host time between
``read()`` and the next ``arm()`` is added to the simulated clock, as the simulator does.

Every segment carries a serial number (1, 2, 3, ... over the life of the fake) encoded
in the first two samples of the first channel (15 bits each) and derived metadata, so
consumers can check what they got against ``truth()``:

* ``raw[s, 0, 0] = serial & 0x7fff``, ``raw[s, 0, 1] = serial >> 15``
* ``raw[s, c, 2] = c`` (channel index), ``raw[s, :, 3] = generation``
* ``overflow[s, 0] = serial % 7 == 0``, ``auto_triggered[s] = serial % 11 == 0``
* ``trigger_time_offset_s[s] = -(serial % 5) * 1e-10``
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Mapping

import numpy as np

from picodaq_ioc.scope.errors import InvalidConfig, ScopeError
from picodaq_ioc.scope.types import (
    Applied,
    Capture,
    ChannelConfig,
    Coupling,
    ScopeInfo,
    SigGenConfig,
    TimebaseConfig,
    TriggerConfig,
)

RANGES_V = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)
UNIT_CHANNELS = ("A", "B", "C", "D")


def decode_serials(raw: np.ndarray) -> np.ndarray:
    """Serial numbers of the events in ``raw`` ``[k, n_channels, n_samples]``."""
    return raw[:, 0, 0].astype(np.int64) | (raw[:, 0, 1].astype(np.int64) << 15)


class FakeScope:
    """Deterministic fake backend (see the module docstring).

    Parameters
    ----------
    rate : float
        Poisson trigger rate while armed, Hz (simulated time).
    seed : int
        Seed of the interval generator.
    readout_time : float
        Simulated dead time per capture, s.
    rearm_time : float
        Simulated dead time between rapid-block segments, s.
    count_host_time : bool
        Add host time between ``read()`` and ``arm()`` to the simulated clock.
    gate : threading.Event, optional
        If given, ``wait`` blocks (real time) until the gate is set, returning False on
        timeout; lets tests hold a capture "in flight".
    """

    def __init__(self, rate: float = 1000.0, seed: int = 1, readout_time: float = 1e-4,
                 rearm_time: float = 1e-6, count_host_time: bool = True,
                 gate: threading.Event | None = None) -> None:
        self.rate = float(rate)
        self.rng = np.random.default_rng(seed)
        self.readout_time = float(readout_time)
        self.rearm_time = float(rearm_time)
        self.count_host_time = count_host_time
        self.gate = gate
        self._t = 0.0
        self._host_read: float | None = None
        self._armed = False
        self._ready = False
        self._pending: tuple | None = None
        self._serial = 0
        self._sequence = 0
        self._generation = 0
        self.applied: Applied | None = None
        self.opened = False
        self.calls: dict[str, int] = defaultdict(int)
        self._faults: dict[str, deque] = defaultdict(deque)
        self.truth_serials: list[np.ndarray] = []
        self.truth_t: list[np.ndarray] = []
        self.truth_gen: list[int] = []
        self.truth_live = 0.0
        self.on_read = None  # optional hook called with the Capture (tests)

    # ------------------------------------------------------------------ test helpers
    def inject(self, op: str, exc: BaseException, times: int = 1) -> None:
        """Make the next ``times`` calls of ``op`` raise ``exc``."""
        for _ in range(times):
            self._faults[op].append(exc)

    def _call(self, op: str) -> None:
        self.calls[op] += 1
        q = self._faults.get(op)
        if q:
            raise q.popleft()

    def truth(self) -> tuple[np.ndarray, np.ndarray]:
        """(serials, trigger times) of every segment handed out by ``read()``."""
        if not self.truth_serials:
            return np.zeros(0, np.int64), np.zeros(0)
        return np.concatenate(self.truth_serials), np.concatenate(self.truth_t)

    # ------------------------------------------------------------------ protocol
    def open(self, serial: str | None = None) -> ScopeInfo:
        self._call("open")
        self.opened = True
        return ScopeInfo(model="fake", family="2000a", serial=serial or "FAKE0001", driver="fake",
                         channels=UNIT_CHANNELS, ranges_v=RANGES_V, couplings=(Coupling.AC, Coupling.DC),
                         resolutions_bits=(8,), max_sample_rate_hz=1e9, memory_samples=1 << 26,
                         max_segments=1 << 20, supports_pretrigger=True, supports_rapid_block=True,
                         siggen=None)

    def close(self) -> None:
        self.calls["close"] += 1
        self.opened = False
        self._armed = False

    def configure(self, channels: Mapping[str, ChannelConfig], timebase: TimebaseConfig,
                  trigger: TriggerConfig, siggen: SigGenConfig | None = None) -> Applied:
        self._call("configure")
        if not self.opened:
            raise ScopeError("fake scope: not open")
        out: dict[str, ChannelConfig] = {}
        for ch in UNIT_CHANNELS:
            c = channels.get(ch, ChannelConfig(enabled=False))
            if c.enabled:
                fits = [r for r in RANGES_V if r >= c.range_v]
                if not fits:
                    raise InvalidConfig(f"channels.{ch}.range: {c.range_v} V is too large",
                                        field=f"channels.{ch}.range", allowed=f"<= {RANGES_V[-1]} V")
                c = ChannelConfig(enabled=True, coupling=c.coupling, range_v=fits[0], offset_v=c.offset_v)
            out[ch] = c
        if not any(c.enabled for c in out.values()):
            raise InvalidConfig("no channel enabled", field="channels", allowed="at least one of A-D")
        if timebase.n_samples < 4:
            raise InvalidConfig(f"timebase.n_samples: {timebase.n_samples}", field="timebase.n_samples",
                                allowed=">= 4")
        if timebase.n_segments < 1:
            raise InvalidConfig(f"timebase.n_segments: {timebase.n_segments}",
                                field="timebase.n_segments", allowed=">= 1")
        self._armed = False
        self._ready = False
        self._generation += 1
        n = int(timebase.n_samples)
        self.applied = Applied(
            channels=out, sample_interval_s=float(timebase.sample_interval_s), n_samples=n,
            n_pre=int(round(n * timebase.pretrigger_fraction)), n_segments=int(timebase.n_segments),
            max_adc=32512, resolution_bits=8, trigger=trigger, siggen=siggen or SigGenConfig(),
            config_generation=self._generation)
        return self.applied

    def arm(self) -> None:
        self._call("arm")
        if self.applied is None:
            raise ScopeError("fake scope: not configured")
        h = self._host_read
        if h is not None:
            self._host_read = None
            if self.count_host_time:
                self._t += time.perf_counter() - h
        self._armed = True
        self._ready = False
        self._t_armed = self._t

    def wait(self, timeout_s: float) -> bool:
        self._call("wait")
        if not self._armed:
            raise ScopeError("fake scope: wait() without arm()")
        if self._ready:
            return True
        if self.gate is not None and not self.gate.wait(timeout_s):
            return False
        a = self.applied
        k = a.n_segments
        gaps = self.rng.exponential(1.0 / self.rate, size=k)
        record = a.n_samples * a.sample_interval_s
        t_trig = self._t + np.cumsum(gaps) + np.arange(k) * (record + self.rearm_time)
        live = float(gaps.sum())
        self._t = float(t_trig[-1]) + record + self.readout_time
        self._pending = (t_trig, live, self._t_armed, self._t)
        self._ready = True
        return True

    def stop(self) -> None:
        self.calls["stop"] += 1
        self._armed = False
        self._ready = False
        self._pending = None

    def read(self) -> Capture:
        self._call("read")
        if not self._ready or self._pending is None:
            raise ScopeError("fake scope: read() before the capture is ready")
        t_trig, live, t_armed, t_ready = self._pending
        self._pending = None
        self._ready = False
        self._armed = False
        a = self.applied
        chans = a.enabled_channels
        k, nch = a.n_segments, len(chans)
        serial = np.arange(self._serial + 1, self._serial + k + 1, dtype=np.int64)
        self._serial += k
        raw = np.zeros((k, nch, a.n_samples), dtype=np.int16)
        raw[:, 0, 0] = serial & 0x7FFF
        raw[:, 0, 1] = serial >> 15
        raw[:, :, 2] = np.arange(nch, dtype=np.int16)
        raw[:, :, 3] = a.config_generation
        overflow = np.zeros((k, nch), dtype=bool)
        overflow[:, 0] = serial % 7 == 0
        self._sequence += 1
        cap = Capture(channels=chans, raw=raw, overflow=overflow, t_trigger=t_trig,
                      trigger_time_offset_s=-(serial % 5) * 1e-10, auto_triggered=serial % 11 == 0,
                      live_time_s=live, t_armed=t_armed, t_ready=t_ready, applied=a,
                      sequence=self._sequence)
        self.truth_serials.append(serial)
        self.truth_t.append(t_trig)
        self.truth_gen.append(a.config_generation)
        self.truth_live += live
        self._host_read = time.perf_counter()
        if self.on_read is not None:
            self.on_read(cap)
        return cap

    def clock(self) -> float:
        # continuous: host time since read() already counts (it is added at the next arm())
        h = self._host_read
        if self.count_host_time and h is not None:
            return self._t + (time.perf_counter() - h)
        return self._t

    def ping(self) -> bool:
        return self.opened


def default_settings(n_samples: int = 16, n_segments: int = 1, channels: tuple[str, ...] = ("A", "B")):
    """(channels, timebase, trigger, siggen) for the fake scope."""
    chans = {c: ChannelConfig(enabled=c in channels, range_v=0.2) for c in UNIT_CHANNELS}
    tb = TimebaseConfig(sample_interval_s=4e-9, n_samples=n_samples, pretrigger_fraction=0.25,
                        n_segments=n_segments)
    return chans, tb, TriggerConfig(), SigGenConfig()


def make_fake(rate: float = 1000.0, n_samples: int = 16, n_segments: int = 1, **kw) -> FakeScope:
    """An opened fake scope (not yet configured)."""
    f = FakeScope(rate=rate, **kw)
    f.open()
    return f
