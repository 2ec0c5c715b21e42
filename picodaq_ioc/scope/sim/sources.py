"""Simulated pulse sources: explicit, time-ordered pulse streams on the simulated clock.

Every source owns one ``np.random.Generator`` (a child of the scope's ``SeedSequence``), so
adding a source does not change the pulses of the others. A stream is generated lazily in
chunks (vectorised) up to the time the scope needs, and trimmed behind the clock.

Pulse records are ``(t, amp, ch, aux)``: start time of the rise (s), signed amplitude (V),
channel index (0 = A), and a source-specific tag (muon: 0 primary / 1 decay (mu+, or any decay
without ``mu_ratio``) / 2 mu- decay / 3 photomultiplier after-pulse; SiPM: number of fired
cells; Geiger: 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..types import CHANNEL_NAMES
from .params import SourceSection


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
        self.decay_delays: list[np.ndarray] = []  # generated decay delays (if keep_truth)
        self.keep_truth = False
        self.explicit_fraction = 1.0  # share of the primaries generated on the timeline

    # -- explicit / windowed split -----------------------------------------------------------
    @property
    def rate(self) -> float:
        """Primary rate (Hz) of the explicit, time-ordered part of the stream."""
        return float(self.src.rate) * self.explicit_fraction

    @property
    def window_rate(self) -> float:
        """Primary rate (Hz) of the part generated only inside sample windows."""
        return float(self.src.rate) * (1.0 - self.explicit_fraction)

    def _set_fraction(self, frac: float, t_now: float) -> None:
        if frac != self.explicit_fraction:
            self.reset_future(t_now)
            self.explicit_fraction = frac

    def reset_future(self, t_now: float) -> None:
        """Forget generated records at and after ``t_now`` (a Poisson process is memoryless)."""
        k = int(np.searchsorted(self.t, t_now))
        self.t, self.amp, self.ch, self.aux = self.t[:k], self.amp[:k], self.ch[:k], self.aux[:k]
        self.prim_t = self.prim_t[: int(np.searchsorted(self.prim_t, t_now))]
        self.gen_until = min(self.gen_until, t_now)

    def skip_to(self, t: float) -> float:
        """Jump the explicit generation to ``t`` without making records (idle scope: nothing
        in between can be seen). The skipped primaries are counted statistically. Returns
        the skipped time."""
        gap = t - self.gen_until
        if gap <= 0:
            return 0.0
        if self.rate > 0:
            self.n_primaries_extra += int(self.rng.poisson(self.rate * max(1, self._n_indep()) * gap))
        self.gen_until = t
        return gap

    def _n_indep(self) -> int:
        return 1

    def set_split(self, *args, **kwargs) -> None:
        """Choose the explicit/windowed split for a trigger setting (default: all explicit)."""

    def window_records(self, t0: np.ndarray, span: float):
        """Pulses of the windowed part in ``[t0[j] - duration, t0[j] + span)`` for every row j.

        Returns ``(row, t, amp, ch)``. Windows are generated independently (exact for a
        Poisson process when the windows, extended by the pulse duration, do not overlap).
        """
        e = np.empty(0)
        return np.empty(0, np.int64), e, e, np.empty(0, np.int16)

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

    def _window_times(self, t0: np.ndarray, lo: float, span: float, rate: float):
        """Poisson times in ``[t0 - lo, t0 + span)`` per row: ``(row, t)``."""
        n = self.rng.poisson(rate * (span + lo), t0.size)
        row = np.repeat(np.arange(t0.size), n)
        t = t0[row] - lo + self.rng.random(row.size) * (span + lo)
        return row, t

    def _generate(self, a: float, b: float):  # pragma: no cover - abstract
        raise NotImplementedError

    def _amplitudes(self, n: int, a0: float, spread: float | None = None, spread_low: float | None = None,
                    ) -> np.ndarray:
        """Heights: log-normal with mean ``a0`` and log-sigma ``spread`` (default the source's
        ``amplitude_spread``); with ``spread_low`` a split log-normal with median ``a0``
        (log-sigma ``spread_low`` below, ``spread`` above the median)."""
        s = float(self.src.amplitude_spread if spread is None else spread)
        if spread_low is not None:
            z = self.rng.standard_normal(n)
            return a0 * np.exp(np.where(z < 0, float(spread_low), s) * z)
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
    """Poisson muons; coincident pulses on all listed channels (delays, jitter); a fraction
    ``decay_fraction`` stops. A stopped muon gives a decay-electron pulse (own height
    distribution ``decay_amplitude``/``decay_amplitude_spread``) after ``Exp(lifetime)``; with
    ``mu_ratio`` it is a mu- with probability ``1 / (1 + mu_ratio)``, which decays after
    ``Exp(lifetime_minus)`` only with probability ``lifetime_minus / lifetime`` (otherwise it is
    captured by a nucleus: no electron). Every muon and decay pulse may be followed by a
    photomultiplier after-pulse (probability ``afterpulse_probability``, delay
    ``N(afterpulse_delay, afterpulse_spread)`` truncated at 0, height ``afterpulse_amplitude``
    times its pulse's)."""

    kind = "muon"

    def __init__(self, src: SourceSection, rng: np.random.Generator, index: int):
        super().__init__(src, rng, index)
        self.shape = PulseShape(src.rise, src.flat, src.fall, exp_tail=src.tail == "exponential")
        self.decay_kinds: list[np.ndarray] = []  # per generated decay: 1 mu+, 2 mu- (if keep_truth)
        d = src.channel_delays or [0.0] * len(self.channels)
        if len(d) != len(self.channels):
            d = (list(d) + [0.0] * len(self.channels))[: len(self.channels)]
        self.delays = np.asarray(d, dtype=float)

    def _chunk_len(self) -> float:
        return 4096.0 / self.rate if self.rate > 0 else math.inf

    @property
    def guard(self) -> float:
        return float(max(0.0, -self.delays.min(initial=0.0)) + 8.0 * self.src.jitter)

    def set_split(self, on_trigger: bool, t_now: float) -> None:
        """Explicit when the muons can trigger; windowed (cheap) otherwise."""
        if self.src.decay_fraction > 0 and not on_trigger and self.src.lifetime > 1e-3:
            on_trigger = True  # very long "lifetimes": windows would need a huge look-back
        self._set_fraction(1.0 if on_trigger else 0.0, t_now)

    def _records(self, p: np.ndarray, truth: bool = True):
        """Pulse records of primaries ``p``: ``(t, amp, ch, aux, primary_index)``."""
        n = p.size
        nc = len(self.channels)
        ts, amps, chs, auxs, src = [], [], [], [], []
        jit = self.src.jitter
        idx = np.arange(n)
        sc = self.src
        for j, c in enumerate(self.channels):
            t = p + self.delays[j]
            if jit > 0:
                t = t + jit * self.rng.standard_normal(n)
            ts.append(t)
            amps.append(self._amplitudes(n, sc.amplitude, spread_low=sc.amplitude_spread_low))
            chs.append(np.full(n, c, dtype=np.int16))
            auxs.append(np.zeros(n, dtype=np.int32))
            src.append(idx)
        f = float(sc.decay_fraction)
        if f > 0 and n:
            m = self.rng.random(n) < f
            kind = np.ones(int(m.sum()), dtype=np.int32)
            delay = self.rng.exponential(sc.lifetime, kind.size)
            if sc.mu_ratio is not None:  # mu-: faster decay in the target, or capture (no pulse)
                minus = self.rng.random(kind.size) < 1.0 / (1.0 + sc.mu_ratio)
                decays = ~minus | (self.rng.random(kind.size) < min(sc.lifetime_minus / sc.lifetime, 1.0))
                kind[minus] = 2
                delay[minus] = self.rng.exponential(sc.lifetime_minus, int(minus.sum()))
                m[np.flatnonzero(m)[~decays]] = False
                kind, delay = kind[decays], delay[decays]
            nd = kind.size
            if truth and self.keep_truth:
                self.decay_delays.append(delay)
                self.decay_kinds.append(kind)
            a_dec = sc.amplitude if sc.decay_amplitude is None else sc.decay_amplitude
            for j in range(nc):
                ts.append(ts[j][m] + delay)
                amps.append(self._amplitudes(nd, a_dec, spread=sc.decay_amplitude_spread))
                chs.append(np.full(nd, self.channels[j], dtype=np.int16))
                auxs.append(kind)
                src.append(idx[m])
        pa = float(sc.afterpulse_probability)
        if pa > 0:
            t_all, a_all = np.concatenate(ts), np.concatenate(amps)
            k = np.flatnonzero(self.rng.random(t_all.size) < pa)
            d = np.abs(sc.afterpulse_delay + sc.afterpulse_spread * self.rng.standard_normal(k.size))
            ts.append(t_all[k] + d)
            amps.append(a_all[k] * sc.afterpulse_amplitude)
            chs.append(np.concatenate(chs)[k])
            auxs.append(np.full(k.size, 3, dtype=np.int32))
            src.append(np.concatenate(src)[k])
        t = np.concatenate(ts)
        order = np.argsort(t, kind="stable")
        return (t[order], np.concatenate(amps)[order], np.concatenate(chs)[order],
                np.concatenate(auxs)[order], np.concatenate(src)[order])

    def _generate(self, a: float, b: float):
        p = self._poisson_times(a, b, self.rate)
        t, amp, ch, aux, _ = self._records(p)
        return t, amp, ch, aux, p

    def window_records(self, t0: np.ndarray, span: float):
        if self.window_rate <= 0 or t0.size == 0:
            return super().window_records(t0, span)
        dur = self.shape.duration
        lo = dur + max(0.0, float(self.delays.max(initial=0.0))) + 8.0 * self.src.jitter
        if self.src.decay_fraction > 0:
            lo += 12.0 * max(self.src.lifetime, self.src.lifetime_minus if self.src.mu_ratio else 0.0)
        if self.src.afterpulse_probability > 0:
            lo += self.src.afterpulse_delay + 5.0 * self.src.afterpulse_spread
        prow, p = self._window_times(t0, lo, span, self.window_rate)
        t, amp, ch, _, k = self._records(p, truth=False)
        row = prow[k]
        keep = (t >= t0[row] - dur) & (t < t0[row] + span)
        return row[keep], t[keep], amp[keep], ch[keep]


class SiPMStream(PulseStream):
    """Independent dark counts on each listed channel; optical crosstalk fires ``n`` cells with
    ``P(n) = (1-p) p^(n-1)`` (geometric); amplitude ``A1 * (n + gain_spread * sqrt(n) * N(0,1))``."""

    kind = "sipm"

    def __init__(self, src: SourceSection, rng: np.random.Generator, index: int):
        super().__init__(src, rng, index)
        self.shape = PulseShape(src.rise, src.flat, src.fall, exp_tail=True)
        self.n_lo = 1  # multiplicities >= n_lo are explicit (they can fire the trigger)

    def _n_indep(self) -> int:
        return len(self.channels)

    def set_split(self, n_lo: int | None, t_now: float) -> None:
        """Generate dark counts with ``n >= n_lo`` fired cells explicitly (``None``: none).

        Thinning a Poisson process by an independent mark gives independent Poisson processes:
        the explicit part has rate ``rate * p**(n_lo-1)`` and ``n = n_lo - 1 + Geometric``
        (memoryless); the rest (``n < n_lo``, too small to trigger) is generated per window.
        """
        p = float(self.src.crosstalk)
        if n_lo is None:
            frac, n_lo = 0.0, 10**9
        elif n_lo <= 1:
            frac, n_lo = 1.0, 1
        else:
            frac = p ** (n_lo - 1) if p > 0 else 0.0
        self.n_lo = int(n_lo)
        self._set_fraction(frac, t_now)

    def _amp(self, npe: np.ndarray) -> np.ndarray:
        g = self.src.gain_spread
        return self.src.amplitude * (npe + g * np.sqrt(npe) * self.rng.standard_normal(npe.size))

    def _generate(self, a: float, b: float):
        ts, amps, chs, auxs = [], [], [], []
        p = float(self.src.crosstalk)
        for c in self.channels:
            t = self._poisson_times(a, b, self.rate)
            n = t.size
            if p > 0:
                npe = (self.n_lo - 1 + self.rng.geometric(1.0 - p, n)).astype(np.int32)
            else:
                npe = np.full(n, self.n_lo, np.int32)
            ts.append(t)
            amps.append(self._amp(npe))
            chs.append(np.full(n, c, dtype=np.int16))
            auxs.append(npe)
        t = np.concatenate(ts)
        order = np.argsort(t, kind="stable")
        return (t[order], np.concatenate(amps)[order], np.concatenate(chs)[order],
                np.concatenate(auxs)[order], t[order])

    def window_records(self, t0: np.ndarray, span: float):
        if self.window_rate <= 0 or t0.size == 0:
            return super().window_records(t0, span)
        p = float(self.src.crosstalk)
        dur = self.shape.duration
        rows, ts, amps, chs = [], [], [], []
        for c in self.channels:
            row, t = self._window_times(t0, dur, span, self.window_rate)
            if p > 0:  # geometric truncated to n < n_lo, by inverse CDF: P(n <= k) = 1 - p^k
                top = 1.0 - p ** (self.n_lo - 1) if self.n_lo < 10**9 else 1.0
                u = self.rng.random(t.size) * top
                npe = np.minimum(1 + np.floor(np.log1p(-u) / math.log(p)), self.n_lo - 1).astype(np.int32)
            else:
                npe = np.ones(t.size, np.int32)
            rows.append(row)
            ts.append(t)
            amps.append(self._amp(npe))
            chs.append(np.full(t.size, c, dtype=np.int16))
        return np.concatenate(rows), np.concatenate(ts), np.concatenate(amps), np.concatenate(chs)


class GeigerStream(PulseStream):
    """Geiger-Mueller tube: true Poisson rate ``rate``, non-paralysable tube dead time
    ``dead_time`` (tube pulses are separated by ``dead_time + Exp(rate)``), constant amplitude,
    fast rise and an RC tail (``fall`` is its time constant). Independent per listed channel."""

    kind = "geiger"

    def __init__(self, src: SourceSection, rng: np.random.Generator, index: int):
        super().__init__(src, rng, index)
        self.shape = PulseShape(src.rise, src.flat, src.fall, exp_tail=True)
        self.last = {c: -math.inf for c in self.channels}

    def _n_indep(self) -> int:
        return len(self.channels)

    def skip_to(self, t: float) -> float:
        gap = super().skip_to(t)
        if gap > 0:  # the tube's memory is one dead time: start fresh
            self.last = {c: -math.inf for c in self.channels}
        return gap

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
