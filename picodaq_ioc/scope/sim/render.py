"""Analogue chain and digitiser of the simulated scope (vectorised over segments).

``render`` sums every pulse that overlaps a sample window (including tails of pulses that
started before it), the looped-back signal generator and white noise, in volts (float32,
``[S, C, L]``). ``digitise`` adds the analogue offset, quantises to the ADC bits and scales
to int16 PicoScope codes, clipping at the largest code and flagging overflow.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .sources import PulseStream

_MAX_GRID = 2_000_000  # pulse-sample pairs per vectorised block (memory bound)


def _ranges_to_index(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ``arange(lo[i], hi[i])`` and the row ``i`` of each element."""
    n = np.maximum(hi - lo, 0)
    total = int(n.sum())
    if total == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    rows = np.repeat(np.arange(lo.size), n)
    starts = np.repeat(np.cumsum(n) - n, n)
    idx = np.repeat(lo, n) + (np.arange(total) - starts)
    return idx, rows


def add_pulses(buf: np.ndarray, t_start: np.ndarray, dt: float, stream: PulseStream,
               slot_of_channel: np.ndarray) -> int:
    """Add the pulses of ``stream`` to ``buf[S, C, L]`` whose sample 0 is at ``t_start[S]``.

    Returns the number of pulse records that touched the windows.
    """
    s, c, length = buf.shape
    if stream.t.size == 0:
        return 0
    shape = stream.shape
    dur = shape.duration
    lo = np.searchsorted(stream.t, t_start - dur)
    hi = np.searchsorted(stream.t, t_start + length * dt)
    idx, seg = _ranges_to_index(lo, hi)
    if idx.size == 0:
        return 0
    slot = slot_of_channel[stream.ch[idx]]
    ok = slot >= 0
    idx, seg, slot = idx[ok], seg[ok], slot[ok]
    if idx.size == 0:
        return 0
    _add(buf, stream.t[idx] - t_start[seg], stream.amp[idx], seg, slot, shape, dt)
    return int(idx.size)


def add_pulse_rows(buf: np.ndarray, t_start: np.ndarray, dt: float, row: np.ndarray, t: np.ndarray,
                   amp: np.ndarray, ch: np.ndarray, shape, slot_of_channel: np.ndarray) -> int:
    """Add pulses given per window row (``row[i]`` is the segment of pulse i)."""
    if t.size == 0:
        return 0
    slot = slot_of_channel[ch]
    ok = slot >= 0
    if not ok.any():
        return 0
    row, t, amp, slot = row[ok], t[ok], amp[ok], slot[ok]
    _add(buf, t - t_start[row], amp, row, slot, shape, dt)
    return int(t.size)


def _add(buf: np.ndarray, t_rel: np.ndarray, amp: np.ndarray, seg: np.ndarray, slot: np.ndarray,
         shape, dt: float) -> None:
    """Accumulate pulse shapes (vectorised over pulses and their samples) into ``buf``."""
    s, c, length = buf.shape
    dur = shape.duration
    i0 = np.maximum(np.ceil(t_rel / dt), 0).astype(np.int64)
    k = int(min(length, np.ceil(dur / dt) + 2))
    flat = buf.reshape(-1)
    base = (seg * c + slot) * length
    step = max(1, _MAX_GRID // max(k, 1))
    kk = np.arange(k)
    for a in range(0, t_rel.size, step):
        b = min(t_rel.size, a + step)
        ii = i0[a:b, None] + kk[None, :]
        tau = ii * dt - t_rel[a:b, None]
        val = amp[a:b, None] * shape(tau)
        m = ii < length
        np.add.at(flat, (base[a:b, None] + ii)[m], val[m].astype(flat.dtype))


def add_noise(buf: np.ndarray, rms: Sequence[float], rng: np.random.Generator) -> None:
    """White Gaussian noise of ``rms[c]`` volts on channel slot ``c``."""
    rms = np.asarray(rms, dtype=np.float32)
    if not np.any(rms > 0):
        return
    if np.all(rms == rms[0]):
        n = rng.standard_normal(buf.shape, dtype=np.float32)
        n *= rms[0]
        buf += n
        return
    for c in np.flatnonzero(rms > 0):
        n = rng.standard_normal((buf.shape[0], buf.shape[2]), dtype=np.float32)
        n *= rms[c]
        buf[:, c, :] += n


def digitise(volts: np.ndarray, offset_v: np.ndarray, range_v: np.ndarray, max_adc: int,
             bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantise ``volts[..., C, L]`` to ADC codes of ``bits`` in raw int16 units.

    The code of a voltage is ``round((v + offset) * max_adc / range / step)`` with
    ``step = 2**(16 - bits)``; it is clipped to ``±(max_adc // step)`` and multiplied by
    ``step``. Returns ``(raw int16, q float32 unclipped codes in ADC steps)``.
    """
    step = 1 << (16 - bits)
    qmax = max_adc // step
    scale = (max_adc / (range_v * step)).astype(np.float32)
    off = offset_v.astype(np.float32)
    q = volts + off[:, None]
    q *= scale[:, None]
    np.rint(q, out=q)
    raw = np.clip(q, -qmax, qmax)
    if step != 1:
        raw *= step
    return raw.astype(np.int16), q


__all__ = ["add_noise", "add_pulse_rows", "add_pulses", "digitise"]
