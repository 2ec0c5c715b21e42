"""The built-in signal generator of the simulated scope (looped back into a channel)."""

from __future__ import annotations

import math

import numpy as np

from ..types import SigGenConfig, SweepType, WaveType


def _unit_wave(wave: WaveType, ph: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Waveform of unit amplitude (peak 1) at phase ``ph`` in [0, 1)."""
    if wave is WaveType.SINE:
        return np.sin(2.0 * np.pi * ph)
    if wave is WaveType.SQUARE:
        return np.where(ph < 0.5, 1.0, -1.0)
    if wave is WaveType.TRIANGLE:
        return 1.0 - 4.0 * np.abs(ph - 0.5)
    if wave is WaveType.RAMP_UP:
        return 2.0 * ph - 1.0
    if wave is WaveType.RAMP_DOWN:
        return 1.0 - 2.0 * ph
    if wave is WaveType.SINC:
        return np.sinc(16.0 * (ph - 0.5))
    if wave is WaveType.GAUSSIAN:
        return 2.0 * np.exp(-0.5 * ((ph - 0.5) / 0.1) ** 2) - 1.0
    if wave is WaveType.HALF_SINE:
        return np.where(ph < 0.5, np.sin(2.0 * np.pi * ph), 0.0)
    if wave is WaveType.WHITE_NOISE:
        if rng is None:
            return np.zeros_like(ph)
        return np.clip(rng.standard_normal(ph.shape) / 3.0, -1.0, 1.0)
    return np.zeros_like(ph)  # DCVoltage: offset only


class SigGen:
    """Generator output ``offset + pk_to_pk/2 * w(phase)`` on the simulated clock.

    A sweep (``stop_frequency_hz`` and ``dwell_time_s`` set) is modelled as PicoScope does it
    in steps: the frequency moves by ``(stop - start) / 100`` every ``dwell_time_s``, up, down
    or both (``UpDown``/``DownUp``), and the phase stays continuous.
    """

    N_STEPS = 100

    def __init__(self, cfg: SigGenConfig, t0: float, rng: np.random.Generator | None = None):
        self.cfg = cfg
        self.t0 = t0
        self.rng = rng
        self.wave = WaveType(cfg.waveform)

    @property
    def active(self) -> bool:
        return bool(self.cfg.enabled)

    def _phase(self, t: np.ndarray) -> np.ndarray:
        c = self.cfg
        x = t - self.t0
        f0 = float(c.frequency_hz)
        if c.stop_frequency_hz is None or not c.dwell_time_s:
            return np.mod(f0 * x, 1.0)
        f1 = float(c.stop_frequency_hz)
        dw = float(c.dwell_time_s)
        n = self.N_STEPS
        df = (f1 - f0) / n
        sweep = SweepType(c.sweep)
        steps = n + 1 if sweep in (SweepType.UP, SweepType.DOWN) else 2 * n
        period = steps * dw
        # step index sequence over one sweep period and the phase accumulated per full step
        k = np.arange(steps)
        if sweep is SweepType.UP:
            idx = k
        elif sweep is SweepType.DOWN:
            idx = n - k
        elif sweep is SweepType.UP_DOWN:
            idx = np.where(k <= n, k, 2 * n - k)
        else:
            idx = np.where(k <= n, n - k, k - n)
        freqs = f0 + df * idx
        cum = np.concatenate([[0.0], np.cumsum(freqs * dw)])
        per_period = cum[-1]
        m = np.floor(x / period)
        r = x - m * period
        j = np.minimum((r / dw).astype(np.int64), steps - 1)
        ph = m * per_period + cum[j] + freqs[j] * (r - j * dw)
        return np.mod(ph, 1.0)

    def __call__(self, t: np.ndarray, ac: bool = False) -> np.ndarray:
        """Output voltage at absolute sim times ``t``; ``ac=True`` drops the DC offset."""
        c = self.cfg
        if not c.enabled:
            return np.zeros_like(t, dtype=np.float64)
        w = _unit_wave(self.wave, self._phase(t), self.rng)
        amp = 0.0 if self.wave is WaveType.DC_VOLTAGE else 0.5 * float(c.pk_to_pk_v)
        v = amp * w
        if not ac:
            v = v + float(c.offset_v)
        return v

    def extremes(self, ac: bool = False) -> tuple[float, float]:
        """(min, max) of the output voltage."""
        if not self.cfg.enabled:
            return 0.0, 0.0
        amp = 0.0 if self.wave is WaveType.DC_VOLTAGE else 0.5 * float(self.cfg.pk_to_pk_v)
        lo, hi = -amp, amp
        if self.wave is WaveType.SINC:
            lo = -0.22 * amp
        if self.wave is WaveType.HALF_SINE:
            lo = 0.0
        off = 0.0 if ac else float(self.cfg.offset_v)
        return lo + off, hi + off


def is_finite_number(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


__all__ = ["SigGen"]
