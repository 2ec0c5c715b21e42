"""Toy events for checking analysis configurations without a scope (tests, benchmarks, docs).

``make_applied`` builds an :class:`~picodaq_ioc.scope.types.Applied`; ``trapezoids`` sums
trapezoid pulses at sub-sample times; ``make_batch`` digitises volts into an
:class:`~picodaq_ioc.daq.events.EventBatch` the way a PicoScope does (int16 codes,
``raw * range / max_adc - offset``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..daq.events import EventBatch
from ..scope.types import Applied, ChannelConfig, Coupling, Direction, SigGenConfig, TriggerConfig

__all__ = ["ReplayScope", "make_applied", "make_batch", "trapezoids"]


def make_applied(channels: Sequence[str] = ("A",), *, dt: float = 4e-9, n_samples: int = 4000,
                 n_pre: int = 200, range_v: float = 0.5, offset_v: float = 0.0, max_adc: int = 32512,
                 generation: int = 1, trigger_source: str = "A", threshold_v: float = -0.02) -> Applied:
    """An ``Applied`` with the given enabled channels (others of A-D disabled)."""
    chans = {c: ChannelConfig(enabled=c in channels, coupling=Coupling.AC, range_v=range_v, offset_v=offset_v)
             for c in sorted(set(channels) | {"A", "B", "C", "D"})}
    return Applied(channels=chans, sample_interval_s=dt, n_samples=n_samples, n_pre=n_pre, n_segments=1,
                   max_adc=max_adc, resolution_bits=8,
                   trigger=TriggerConfig(source=trigger_source, threshold_v=threshold_v,
                                         direction=Direction.FALLING),
                   siggen=SigGenConfig(), config_generation=generation)


def trapezoids(n_samples: int, dt: float, t0: np.ndarray, amp: np.ndarray, rise: float, flat: float,
               fall: float) -> np.ndarray:
    """Sum of trapezoid pulses per event: ``t0``/``amp`` are ``[k, m]`` (NaN t0 = no pulse).

    Returns float64 volts ``[k, n_samples]``; pulse ``i`` starts at ``t0`` (s from sample 0).
    """
    t0 = np.atleast_2d(np.asarray(t0, dtype=np.float64))
    amp = np.atleast_2d(np.asarray(amp, dtype=np.float64))
    k = t0.shape[0]
    out = np.zeros((k, n_samples))
    t = np.arange(n_samples) * dt
    xs = np.array([0.0, rise, rise + flat, rise + flat + fall])
    ys = np.array([0.0, 1.0, 1.0, 0.0])
    for m in range(t0.shape[1]):
        ok = np.isfinite(t0[:, m])
        if not ok.any():
            continue
        rel = t[None, :] - t0[ok, m][:, None]
        out[ok] += amp[ok, m][:, None] * np.interp(rel, xs, ys, left=0.0, right=0.0)
    return out


def make_batch(applied: Applied, volts: np.ndarray, *, first_event: int = 1,
               t_trigger: np.ndarray | None = None) -> EventBatch:
    """Digitise ``volts[k, n_channels, n_samples]`` (enabled-channel order) into a batch."""
    chans = applied.enabled_channels
    k = volts.shape[0]
    raw = np.empty(volts.shape, dtype=np.int16)
    overflow = np.zeros((k, len(chans)), dtype=bool)
    for i, c in enumerate(chans):
        cfg = applied.channels[c]
        codes = np.rint((volts[:, i, :] + cfg.offset_v) * applied.max_adc / cfg.range_v)
        overflow[:, i] = np.any(np.abs(codes) > applied.max_adc, axis=1)
        raw[:, i, :] = np.clip(codes, -applied.max_adc, applied.max_adc).astype(np.int16)
    if t_trigger is None:
        t_trigger = (first_event + np.arange(k)) * 1e-3
    return EventBatch(applied=applied, channels=chans, raw=raw,
                      event_number=first_event + np.arange(k, dtype=np.int64),
                      t_trigger=np.asarray(t_trigger, dtype=np.float64),
                      trigger_time_offset_s=np.zeros(k), overflow=overflow,
                      auto_triggered=np.zeros(k, dtype=bool))


class ReplayScope:
    """A minimal backend that replays prepared raw events (for analysis tests and benchmarks).

    ``configure`` accepts any settings whose enabled channels and record length match the
    prepared events; ``read`` returns the next ``n_segments`` events (cycling) with trigger
    times spaced ``1 / rate`` s on a simulated clock. Not a physics simulator: use
    ``picodaq_ioc.scope.sim`` for that.
    """

    def __init__(self, raw: np.ndarray, rate: float = 1000.0) -> None:
        from ..scope.types import ScopeInfo  # local: keep the import list short

        self.raw = np.ascontiguousarray(raw, dtype=np.int16)
        self.rate = float(rate)
        self._i = 0
        self._clock = 0.0
        self._gen = 0
        self._applied: Applied | None = None
        self._armed = False
        self._seq = 0
        self.info = ScopeInfo(model="replay", family="2000a", serial="REPLAY", driver="replay",
                              channels=("A", "B", "C", "D"), ranges_v=(0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
                              couplings=(Coupling.AC, Coupling.DC), resolutions_bits=(8,),
                              max_sample_rate_hz=1e9, memory_samples=1 << 28, max_segments=1 << 16,
                              supports_pretrigger=True, supports_rapid_block=True, siggen=None)

    def open(self, serial: str | None = None):
        return self.info

    def close(self) -> None:
        self._armed = False

    def configure(self, channels, timebase, trigger, siggen=None) -> Applied:
        enabled = [c for c, cfg in channels.items() if cfg.enabled]
        if len(enabled) != self.raw.shape[1] or timebase.n_samples != self.raw.shape[2]:
            from ..scope.errors import InvalidConfig

            raise InvalidConfig(f"replay data has {self.raw.shape[1]} channels x {self.raw.shape[2]} samples")
        self._gen += 1
        self._applied = Applied(channels=dict(channels), sample_interval_s=timebase.sample_interval_s,
                                n_samples=timebase.n_samples,
                                n_pre=int(round(timebase.n_samples * timebase.pretrigger_fraction)),
                                n_segments=timebase.n_segments, max_adc=32512, resolution_bits=8,
                                trigger=trigger, siggen=siggen or SigGenConfig(), config_generation=self._gen)
        return self._applied

    def arm(self) -> None:
        self._armed = True
        self._t_arm = self._clock

    def wait(self, timeout_s: float) -> bool:
        return self._armed

    def stop(self) -> None:
        self._armed = False

    def read(self):
        from ..scope.types import Capture

        a = self._applied
        n = a.n_segments
        idx = (self._i + np.arange(n)) % self.raw.shape[0]
        self._i = int((self._i + n) % self.raw.shape[0])
        t = self._clock + (np.arange(n) + 1) / self.rate
        self._clock = float(t[-1])
        self._armed = False
        self._seq += 1
        return Capture(channels=a.enabled_channels, raw=self.raw[idx], overflow=np.zeros((n, self.raw.shape[1]), bool),
                       t_trigger=t, trigger_time_offset_s=np.zeros(n), auto_triggered=np.zeros(n, bool),
                       live_time_s=n / self.rate, t_armed=self._t_arm, t_ready=self._clock, applied=a,
                       sequence=self._seq)

    def clock(self) -> float:
        return self._clock

    def ping(self) -> bool:
        return True
