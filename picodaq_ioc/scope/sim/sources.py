"""Simulated pulse sources: explicit, time-ordered pulse streams on the simulated clock.

Every source owns one ``np.random.Generator`` (a child of the scope's ``SeedSequence``), so
adding a source does not change the pulses of the others. A stream is generated lazily in
chunks (vectorised) up to the time the scope needs, and trimmed behind the clock.

Pulse records are ``(t, amp, ch, aux)``: start time of the rise (s), signed amplitude (V),
channel index (0 = A), and a source-specific tag (muon: 0 primary / 1 decay; SiPM: number of
fired cells; Geiger: 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...config.schema import SourceSection
from ..types import CHANNEL_NAMES


@dataclass(frozen=True)
class PulseShape:
    """Trapezoid ``rise``/``flat``/``fall`` (linear fall) or, with ``exp_tail``, an RC tail
    ``exp(-t/fall)`` after the flat top. Peak-normalised to 1."""

    rise: float
    flat: float
    fall: float
    exp_tail: bool = False

    @property
    def duration(self) -> float:
        """Time after the pulse start beyond which the pulse is negligible (< 1e-5 of peak)."""
        tail = 11.6 * self.fall if self.exp_tail else self.fall
        return self.rise + self.flat + tail

    def __call__(self, tau: np.ndarray) -> np.ndarray:
        """Shape value at times ``tau`` after the pulse start (0 for tau < 0)."""
        r = max(self.rise, 1e-15)
        up = np.clip(tau / r, 0.0, 1.0)
        x = tau - (self.rise + self.flat)
        if self.exp_tail:
            down = np.exp(-np.maximum(x, 0.0) / self.fall)
        else:
            down = np.clip(1.0 - x / self.fall, 0.0, 1.0)
        v = np.minimum(up, down)
        v[tau < 0] = 0.0
        return v

    def crossing(self, u: np.ndarray, leading: bool) -> np.ndarray:
        """Time after pulse start where the shape passes the fraction ``u`` in (0, 1)."""
        if leading:
            return self.rise * u
        if self.exp_tail:
            return self.rise + self.flat + self.fall * np.log(1.0 / u)
        return self.rise + self.flat + self.fall * (1.0 - u)


class PulseStream:
    """Base class: a sorted record store with lazy chunked generation."""

    kind = "base"

    def __init__(self, src: SourceSection, rng: np.random.Generator, index: int):
        self.src = src
        self.rng = rng
        self.index = index
        self.channels = tuple(CHANNEL_NAMES.index(c) for c in src.channels)
        self.shape = PulseShape(src.rise, src.flat, src.fall, exp_tail=False)
        self.t = np.empty(0)
        self.amp = np.empty(0)
        self.ch = np.empty(0, dtype=np.int16)
        self.aux = np.empty(0, dtype=np.int32)
        self.prim_t = np.empty(0)  # primary event times (for truth counting)
        self.gen_until = 0.0
        self.n_primaries_extra = 0  # true primaries that made no record (e.g. Geiger dead time)
        self.decay_delays: list[np.ndarray] = []

    # -- generation ------------------------------------------------------------------------
    @property
    def rate(self) -> float:
        return float(self.src.rate)

    @property
    def guard(self) -> float:
        """Records of primaries after ``gen_until`` can land this much before it."""
        return 0.0

    def _chunk_len(self) -> float:
        r = self.rate * max(1, len(self.channels))
        return 4096.0 / r if r > 0 else math.inf

    def ensure(self, t_until: float) -> None:
        """Generate records so that every record with ``t < t_until`` exists."""
        if self.rate <= 0:
            self.gen_until = max(self.gen_until, t_until + self.guard)
            return
        target = t_until + self.guard
        while self.gen_until < target:
            a = self.gen_until
            b = max(target, a + min(self._chunk_len(), max(target - a, 1e-9) * 4 + 1e-9))
            t, amp, ch, aux, prim = self._generate(a, b)
            self._merge(a, t, amp, ch, aux)
            self.prim_t = np.concatenate([self.prim_t, prim])
            self.gen_until = b

    def _merge(self, a: float, t, amp, ch, aux) -> None:
        if t.size == 0:
            return
        cut = int(np.searchsorted(self.t, a - self.guard))
        tt = np.concatenate([self.t[cut:], t])
        order = np.argsort(tt, kind="stable")
        self.t = np.concatenate([self.t[:cut], tt[order]])
        self.amp = np.concatenate([self.amp[:cut], np.concatenate([self.amp[cut:], amp])[order]])
        self.ch = np.concatenate([self.ch[:cut], np.concatenate([self.ch[cut:], ch])[order]])
        self.aux = np.concatenate([self.aux[:cut], np.concatenate([self.aux[cut:], aux])[order]])

    def _poisson_times(self, a: float, b: float, rate: float) -> np.ndarray:
        n = self.rng.poisson(rate * (b - a))
        return a + np.sort(self.rng.random(n)) * (b - a)

    def _generate(self, a: float, b: float):  # pragma: no cover - abstract
        raise NotImplementedError

    def _amplitudes(self, n: int, a0: float) -> np.ndarray:
        s = float(self.src.amplitude_spread)
        if s <= 0:
            return np.full(n, a0)
        return a0 * np.exp(s * self.rng.standard_normal(n) - 0.5 * s * s)

    # -- housekeeping ----------------------------------------------------------------------
    def trim(self, t_keep: float) -> None:
        """Drop records (and primary times) before ``t_keep``."""
        k = int(np.searchsorted(self.t, t_keep))
        if k > 4096 or (k and k > self.t.size // 2):
            self.t, self.amp, self.ch, self.aux = self.t[k:], self.amp[k:], self.ch[k:], self.aux[k:]
        k = int(np.searchsorted(self.prim_t, t_keep))
        if k > 4096 or (k and k > self.prim_t.size // 2):
            self.prim_t = self.prim_t[k:]

    def count_primaries(self, a: float, b: float) -> int:
        return int(np.searchsorted(self.prim_t, b) - np.searchsorted(self.prim_t, a))

    def window(self, a: float, b: float) -> tuple[int, int]:
        return int(np.searchsorted(self.t, a)), int(np.searchsorted(self.t, b))


class MuonStream(PulseStream):
    """Poisson muons; coincident pulses on all listed channels (delays, jitter); optional decay
    second pulse at ``t + Exp(lifetime)`` with probability ``decay_fraction``."""

    kind = "muon"

    def __init__(self, src: SourceSection, rng: np.random.Generator, index: int):
        super().__init__(src, rng, index)
        d = src.channel_delays or [0.0] * len(self.channels)
        if len(d) != len(self.channels):
            d = (list(d) + [0.0] * len(self.channels))[: len(self.channels)]
        self.delays = np.asarray(d, dtype=float)

    def _chunk_len(self) -> float:
        return 4096.0 / self.rate if self.rate > 0 else math.inf

    @property
    def guard(self) -> float:
        return float(max(0.0, -self.delays.min(initial=0.0)) + 8.0 * self.src.jitter)

    def _generate(self, a: float, b: float):
        p = self._poisson_times(a, b, self.rate)
        n = p.size
        nc = len(self.channels)
        ts, amps, chs, auxs = [], [], [], []
        jit = self.src.jitter
        for j, c in enumerate(self.channels):
            t = p + self.delays[j]
            if jit > 0:
                t = t + jit * self.rng.standard_normal(n)
            ts.append(t)
            amps.append(self._amplitudes(n, self.src.amplitude))
            chs.append(np.full(n, c, dtype=np.int16))
            auxs.append(np.zeros(n, dtype=np.int32))
        f = float(self.src.decay_fraction)
        if f > 0 and n:
            m = self.rng.random(n) < f
            nd = int(m.sum())
            delay = self.rng.exponential(self.src.lifetime, nd)
            self.decay_delays.append(delay)
            for j in range(nc):
                ts.append(ts[j][m] + delay)
                amps.append(self._amplitudes(nd, self.src.amplitude))
                chs.append(np.full(nd, self.channels[j], dtype=np.int16))
                auxs.append(np.ones(nd, dtype=np.int32))
        t = np.concatenate(ts)
        order = np.argsort(t, kind="stable")
        return (t[order], np.concatenate(amps)[order], np.concatenate(chs)[order],
                np.concatenate(auxs)[order], p)


class SiPMStream(PulseStream):
    """Independent dark counts on each listed channel; optical crosstalk fires ``n`` cells with
    ``P(n) = (1-p) p^(n-1)`` (geometric); amplitude ``A1 * (n + gain_spread * sqrt(n) * N(0,1))``."""

    kind = "sipm"

    def __init__(self, src: SourceSection, rng: np.random.Generator, index: int):
        super().__init__(src, rng, index)
        self.shape = PulseShape(src.rise, src.flat, src.fall, exp_tail=True)

    def _generate(self, a: float, b: float):
        ts, amps, chs, auxs = [], [], [], []
        p = float(self.src.crosstalk)
        for c in self.channels:
            t = self._poisson_times(a, b, self.rate)
            n = t.size
            npe = self.rng.geometric(1.0 - p, n).astype(np.int32) if p > 0 else np.ones(n, np.int32)
            g = self.src.gain_spread
            amp = self.src.amplitude * (npe + g * np.sqrt(npe) * self.rng.standard_normal(n))
            ts.append(t)
            amps.append(amp)
            chs.append(np.full(n, c, dtype=np.int16))
            auxs.append(npe)
        t = np.concatenate(ts)
        order = np.argsort(t, kind="stable")
        return (t[order], np.concatenate(amps)[order], np.concatenate(chs)[order],
                np.concatenate(auxs)[order], t[order])


class GeigerStream(PulseStream):
    """Geiger-Mueller tube: true Poisson rate ``rate``, non-paralysable tube dead time
    ``dead_time`` (tube pulses are separated by ``dead_time + Exp(rate)``), constant amplitude,
    fast rise and an RC tail (``fall`` is its time constant). Independent per listed channel."""

    kind = "geiger"

    def __init__(self, src: SourceSection, rng: np.random.Generator, index: int):
        super().__init__(src, rng, index)
        self.shape = PulseShape(src.rise, src.flat, src.fall, exp_tail=True)
        self.last = {c: -math.inf for c in self.channels}

    def _generate(self, a: float, b: float):
        ts, chs = [], []
        dead = float(self.src.dead_time)
        lam = self.rate
        for c in self.channels:
            out = []
            last = self.last[c]
            # memoryless: the next pulse comes Exp(lam) after the tube is alive again
            start = max(last + dead, a) if math.isfinite(last) else a
            while True:
                n = int((b - start) / (dead + 1.0 / lam) * 1.2) + 16
                iv = self.rng.exponential(1.0 / lam, n)
                iv[1:] += dead
                t = start + np.cumsum(iv)
                keep = t[t < b]
                out.append(keep)
                if keep.size < n:
                    break
                start = keep[-1] + dead
            t = np.concatenate(out) if out else np.empty(0)
            if t.size:
                self.last[c] = t[-1]
            # primaries lost inside the tube dead time after each pulse (truth only)
            self.n_primaries_extra += int(self.rng.poisson(lam * dead * t.size)) if t.size else 0
            ts.append(t)
            chs.append(np.full(t.size, c, dtype=np.int16))
        t = np.concatenate(ts)
        order = np.argsort(t, kind="stable")
        t = t[order]
        amp = np.full(t.size, float(self.src.amplitude))
        return t, amp, np.concatenate(chs)[order], np.zeros(t.size, np.int32), t


def make_stream(src: SourceSection, rng: np.random.Generator, index: int) -> PulseStream | None:
    """A pulse stream for pulse-producing kinds; ``None`` for ``noise``/``siggen``."""
    if src.kind == "muon":
        return MuonStream(src, rng, index)
    if src.kind == "sipm":
        return SiPMStream(src, rng, index)
    if src.kind == "geiger":
        return GeigerStream(src, rng, index)
    return None


__all__ = ["GeigerStream", "MuonStream", "PulseShape", "PulseStream", "SiPMStream", "make_stream"]
