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

__all__ = ["make_applied", "make_batch", "trapezoids"]


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
