"""Trigger logic of the simulated scope, on digitised ADC codes.

Edge triggers (Rising/Falling/RiseOrFall) need the signal to have been beyond the level by the
hysteresis on the other side first (re-arm), then fire on the first sample at or beyond the
level. Level triggers (Above/Below) fire on the first sample at or beyond the level.
"""

from __future__ import annotations

import numpy as np

from ..types import Direction
from .sources import PulseShape


def _first_edge(codes: np.ndarray, start: np.ndarray, stop: np.ndarray, beyond: np.ndarray,
                rearm: np.ndarray, armed0: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """First index j in [start, stop) with ``beyond[j]`` while armed; and armed state at stop.

    Armed at j when the last ``rearm`` sample in [start, j) is later than the last ``beyond``
    sample in [start, j), or (``armed0`` and no ``beyond`` sample in [start, j)).
    """
    s, b = codes.shape
    if armed0 is None:  # re-armed if the sample before the search satisfies the re-arm condition
        armed0 = rearm[np.arange(s), np.clip(start - 1, 0, b - 1)]
    idx = np.arange(b)
    inside = (idx[None, :] >= start[:, None]) & (idx[None, :] < stop[:, None])
    # sentinel: armed0 rows behave as if re-armed at start-1
    lo = np.where(rearm & inside, idx[None, :], -2)
    hi = np.where(beyond & inside, idx[None, :], -2)
    seed = np.where(armed0, start - 1, -2)
    lo_acc = np.maximum.accumulate(lo, axis=1)
    hi_acc = np.maximum.accumulate(hi, axis=1)
    lo_prev = np.empty_like(lo_acc)
    hi_prev = np.empty_like(hi_acc)
    lo_prev[:, 0] = -2
    hi_prev[:, 0] = -2
    lo_prev[:, 1:] = lo_acc[:, :-1]
    hi_prev[:, 1:] = hi_acc[:, :-1]
    lo_prev = np.maximum(lo_prev, np.where(idx[None, :] >= start[:, None], seed[:, None], -2))
    fire = beyond & inside & (lo_prev > hi_prev)
    any_fire = fire.any(axis=1)
    first = np.where(any_fire, fire.argmax(axis=1), -1)
    last = np.clip(stop - 1, 0, b - 1)
    rows = np.arange(s)
    lo_end = np.maximum(lo_acc[rows, last], np.where(armed0, start - 1, -2))
    armed_end = lo_end > hi_acc[rows, last]
    return first, armed_end


def find_trigger(codes: np.ndarray, level: int, hyst: int, direction: Direction,
                 start: np.ndarray, stop: np.ndarray, armed0: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """First trigger sample per row of ``codes`` (int or float ADC codes, ``[S, B]``).

    Parameters
    ----------
    codes : array [S, B]
    level, hyst : int
        Trigger level and hysteresis in raw codes.
    direction : Direction
    start, stop : int arrays [S]
        Search ``[start, stop)``; ``start >= 1`` so the interpolation has a previous sample.
    armed0 : bool array [S, 2], optional
        Rising (column 0) and falling (column 1) edge logic already re-armed at ``start``
        (carried over from a previous chunk); default: re-armed if sample ``start - 1`` is
        beyond the hysteresis band.

    Returns
    -------
    index : int array [S], -1 where none
    armed_end : bool array [S, 2], the re-arm states after ``stop`` (for chunked scanning)
    """
    s = codes.shape[0]
    d = Direction(direction)
    if d in (Direction.ABOVE, Direction.BELOW):
        beyond = codes >= level if d is Direction.ABOVE else codes <= level
        idx = np.arange(codes.shape[1])
        inside = (idx[None, :] >= start[:, None]) & (idx[None, :] < stop[:, None])
        fire = beyond & inside
        anyf = fire.any(axis=1)
        return np.where(anyf, fire.argmax(axis=1), -1), np.ones((s, 2), dtype=bool)
    a_r = None if armed0 is None else armed0[:, 0]
    a_f = None if armed0 is None else armed0[:, 1]
    arm = np.zeros((s, 2), dtype=bool)
    r = f = None
    if d in (Direction.RISING, Direction.RISE_OR_FALL):
        r, arm[:, 0] = _first_edge(codes, start, stop, codes >= level, codes < level - hyst, a_r)
    if d in (Direction.FALLING, Direction.RISE_OR_FALL):
        f, arm[:, 1] = _first_edge(codes, start, stop, codes <= level, codes > level + hyst, a_f)
    if f is None:
        return r, arm
    if r is None:
        return f, arm
    first = np.where((r >= 0) & ((f < 0) | (r <= f)), r, f)
    return first, arm


def time_offset(codes: np.ndarray, c: np.ndarray, level: int, dt: float) -> np.ndarray:
    """Sub-sample trigger time offset in (-dt, 0] by linear interpolation between c-1 and c."""
    rows = np.arange(codes.shape[0])
    ok = c >= 1
    cc = np.where(ok, c, 1)
    y1 = codes[rows, cc].astype(np.float64)
    y0 = codes[rows, cc - 1].astype(np.float64)
    den = y1 - y0
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(den != 0, (level - y0) / den, 1.0)
    # the crossing lies in (c-1, c]: frac in (0, 1]; level triggers already beyond at c-1 -> 0
    frac = np.where((frac > 0) & (frac <= 1), frac, 1.0)
    off = (frac - 1.0) * dt
    return np.where(ok, off, 0.0)


def candidate_times(t0: np.ndarray, amp: np.ndarray, shape: PulseShape, level_v: float,
                    hyst_v: float, base_v: float, direction: Direction) -> np.ndarray:
    """Analytic trigger-crossing times of isolated pulses on a flat baseline ``base_v``.

    Returns the time for each pulse (NaN where the pulse cannot fire the trigger). Edge
    triggers fire on the leading edge of pulses towards the level, or on the trailing edge of
    pulses that went beyond the level (plus hysteresis) from the other side.
    """
    d = Direction(direction)
    out = np.full(t0.shape, np.nan)
    if amp.size == 0:
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (level_v - base_v) / amp  # shape fraction where the signal is at the level
    up_dirs = (Direction.RISING, Direction.RISE_OR_FALL, Direction.ABOVE)
    down_dirs = (Direction.FALLING, Direction.RISE_OR_FALL, Direction.BELOW)
    lead = (u > 0) & (u < 1)
    # leading edge: positive pulse upwards through a level above the baseline (rising), or
    # negative pulse downwards through a level below the baseline (falling)
    lead_ok = np.zeros(t0.shape, dtype=bool)
    if d in up_dirs:
        lead_ok |= lead & (amp > 0) & (level_v - hyst_v >= base_v)
    if d in down_dirs:
        lead_ok |= lead & (amp < 0) & (level_v + hyst_v <= base_v)
    trail_ok = np.zeros(t0.shape, dtype=bool)
    if d in (Direction.RISING, Direction.RISE_OR_FALL):
        # negative pulse dips below level - hyst, comes back up through the level
        trail_ok |= (amp < 0) & (level_v < base_v) & (base_v + amp < level_v - hyst_v)
    if d in (Direction.FALLING, Direction.RISE_OR_FALL):
        trail_ok |= (amp > 0) & (level_v > base_v) & (base_v + amp > level_v + hyst_v)
    uu = np.clip(np.where(np.isfinite(u), u, 0.5), 1e-12, 1.0)
    t_lead = t0 + shape.crossing(uu, True)
    t_trail = t0 + shape.crossing(uu, False)
    out = np.where(trail_ok, t_trail, out)
    out = np.where(lead_ok, t_lead, out)  # leading edge comes first when both apply
    return out


__all__ = ["candidate_times", "find_trigger", "time_offset"]
