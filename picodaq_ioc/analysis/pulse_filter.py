"""Pulse filter (``module: pulse``, PVs ``Pulse:*``): template matching in the spirit of
picoCosmo's ``PulseFilter``, vectorised over whole event batches.

Per event (all steps run on ``[k, n_samples]`` blocks at once):

1. **Amplitude traces.** Every analysed channel, baseline-corrected by its pre-trigger mean,
   is correlated (FFT, float32) with its unit template ``s`` (see :mod:`.templates`): with
   offset subtraction (default for unipolar shapes) the kernel is ``s - mean(s)``, so a
   constant baseline drops out; otherwise the raw template. Dividing by the kernel norm
   gives a least-squares amplitude ``A[j]`` (volts, positive for the configured polarity)
   of a pulse starting at sample ``j``.
2. **Trigger validation** on the trigger channel with ``trgPulseShape`` if given (as in
   picoCosmo, that shape validates the trigger pulse and nothing else): the maximum of ``A``
   over starts ``[n_pre - rise - p, n_pre + p]`` (``p = timing_precision``) must reach
   ``threshold * |height|``; time and height are refined by a parabola through the best
   sub-sample shift. A second pulse on the tail spoils the whole-template fit, so a muon
   that fails it is validated by the pulse head (rise, flat top, two fall samples) when both
   the mean-subtracted and the raw head amplitudes reach the threshold.
3. **Coincidences**: on every other channel the largest pulse whose start lies within
   ``coincidence_window`` of the trigger pulse (shifted by that channel's ``delays``)
   and that reaches the channel's threshold counts as a hit.
4. **Acceptance**: validated and ``hits >= min_coincidence`` (the trigger channel
   counts), or the hit pattern equals one of ``accept_pattern``.
5. **Double pulses** (accepted events, every channel with its ordinary pulse shape):
   the first pulse (fitted on its head) is subtracted; candidates are local maxima of the
   raw-template amplitude at or above threshold from ``rise + flat + p`` after the first
   pulse's start (``min_separation``), confirmed by the mean-subtracted amplitude (picoCosmo's
   two stages); inside the first template a candidate must also reach ``close_pair_ratio``
   of the first height, and the overlapping pair is refitted jointly. The **highest**
   confirmed candidate is the second pulse (picoCosmo takes the last one, which can be a
   noise fake); its delay to the event time is histogrammed and fitted (unbinned ML,
   exponential + flat background, :func:`.lifetime.fit_lifetime`).

Output files per run (``<stamp>_<name>_*`` in the run's output directory):
``accepted.csv`` (one row per accepted event), ``doubles.csv`` (one row per double
pulse), ``doubles_raw.npz`` (raw int16 waveforms of the double pulses with the scaling) and,
with ``raw_accepted: N``, ``accepted_raw.npz`` (the first N accepted events).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from scipy import fft as sfft

from ..daq.events import EventBatch
from ..scope.types import Applied
from .base import RATE_SCALE_HZ, AnalysisConfigError, AnalysisModule, ResultSpec, RunInfo
from .histograms import Histogram1D
from .lifetime import LifetimeFit, fit_lifetime, fit_lifetime_capture
from .output import CsvWriter, output_path
from .rate_history import RateCounter
from .templates import PulseShape, sample_template, shape_values

__all__ = ["PulseBatchResult", "PulseFilter", "PulseFilterParams"]

_CH = ("A", "B", "C", "D", "E", "F", "G", "H")
_FINE = 8  # sub-sample steps per sample of the position/height refinement
_PAIR_PASSES = 6  # alternating refits of overlapping pulse pairs


class PulseFilterParams(BaseModel):
    """Parameters of ``module: pulse`` (picoCosmo key names accepted as aliases)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    channels: list[str] | None = Field(None, description="subset of the enabled channels A-H; default all")
    trigger_channel: str | None = Field(None, alias="trgChan",
                                           description="an analysed channel; default the trigger source")
    pulse_shapes: list[PulseShape] = Field(default_factory=lambda: [PulseShape()], alias="pulseShape",
                                           min_length=1, description="list of shapes; channel i uses shape min(i, n-1)")
    trigger_shape: PulseShape | None = Field(None, alias="trgPulseShape")
    threshold: float = Field(1.0, gt=0.0, le=100.0,
                             description="fraction of |height| a fitted amplitude must reach, > 0 (picoCosmo: 1)")
    timing_precision: int = Field(2, ge=0, le=10_000, alias="timingPrecision", description="samples, >= 0")
    delays: list[float] | None = Field(None, alias="delay", description="per analysed channel, s")
    coincidence_window: float | None = Field(
        None, gt=0.0, description="half-width, s; default timing_precision * sample interval")
    min_coincidence: int | None = Field(None, ge=1, le=8, alias="NminCoincidence",
                                           description="1..number of channels; default min(n, 2)")
    accept_pattern: list[list[int]] | None = Field(None, alias="acceptPattern",
                                                      description="list of 0/1 lists, one entry per channel")
    double_pulse: bool = Field(True, alias="doublePulse")
    min_separation: float | None = Field(
        None, ge=0.0, description="s from the first pulse's start to the earliest second-pulse start; "
                                  "default: the template's rise + flat top + timing_precision")
    close_pair_ratio: float = Field(
        0.25, ge=0.0, le=10.0,
        description="a second pulse starting inside the first pulse's template must reach this fraction "
                    "of the first pulse's height (shape mismatch of real pulses leaves residuals)")
    fit_window: tuple[float, float] = Field((1.5e-6, 15e-6), description="[t_min, t_max] s, t_max > t_min >= 0")
    fit_background: bool = True
    fit_model: Literal["exponential", "capture"] = Field(
        "exponential", description="exponential (one lifetime) or capture (mu+ free decay + mu- decay "
                                   "with tau_capture and mu_ratio fixed; Lifetime_RBV is the mu+ lifetime)")
    mu_ratio: float = Field(1.25, gt=0.0, le=100.0, description="capture model: mu+/mu- ratio of stopped muons")
    tau_capture: float = Field(1.795e-6, gt=0.0, le=1e-3,
                               description="capture model: mu- lifetime in the target, s (oxygen/water 1.795e-6)")
    fit_interval: float = Field(1.0, ge=0.0, description="s between live refits")
    height_bins: int = Field(100, ge=1, le=100_000)
    height_range: tuple[float, float] | None = Field(None, description="[low, high] V; default [0, 4|height|]")
    decay_bins: int = Field(100, ge=1, le=100_000)
    decay_range: tuple[float, float] | None = Field(None, description="[low, high] s; default [0, record]")
    rate_window: float = Field(10.0, gt=0.0, description="s of trigger time for Rate_RBV")
    rate_history_interval: float = Field(10.0, gt=0.0, le=86400.0, description="s per RateHistory_RBV bin")
    rate_history_length: int = Field(360, ge=2, le=100_000, description="bins of RateHistory_RBV")
    write_files: bool = True
    max_raw_events: int = Field(10_000, ge=0, description="raw double-pulse waveforms kept per run")
    raw_accepted: int = Field(0, ge=0, alias="Nraw1",
                              description="raw waveforms of the first N accepted events per run (picoCosmo Nraw1)")

    @field_validator("channels", mode="before")
    @classmethod
    def _chs(cls, v: Any) -> Any:
        if v is None:
            return v
        if isinstance(v, str):
            v = list(v)
        out = [str(c).upper() for c in v]
        for c in out:
            if c not in _CH:
                raise ValueError(f"unknown channel {c!r}; allowed A-H")
        if len(set(out)) != len(out) or not out:
            raise ValueError("channels must be a non-empty list without duplicates")
        return out

    @field_validator("trigger_channel", mode="before")
    @classmethod
    def _trg(cls, v: Any) -> Any:
        if v is None:
            return v
        v = str(v).upper()
        if v not in _CH:
            raise ValueError("must be a channel A-H")
        return v

    @field_validator("accept_pattern")
    @classmethod
    def _pat(cls, v: Any) -> Any:
        if v is not None:
            for p in v:
                if not p or any(x not in (0, 1) for x in p):
                    raise ValueError("each pattern is a list of 0/1, one per channel")
        return v

    @model_validator(mode="after")
    def _windows(self) -> PulseFilterParams:
        a, b = self.fit_window
        if not (b > a >= 0):
            raise ValueError("fit_window must be [t_min, t_max] with t_max > t_min >= 0")
        for key in ("height_range", "decay_range"):
            r = getattr(self, key)
            if r is not None and not r[1] > r[0]:
                raise ValueError(f"{key} must be [low, high] with high > low")
        return self


@dataclass
class PulseBatchResult:
    """Per-event results of :meth:`PulseFilter.analyse` (channel axis in ``channels`` order,
    the trigger channel first; positions in samples of the template start)."""

    channels: list[str]
    validated: np.ndarray  # bool [k]
    accepted: np.ndarray  # bool [k]
    hits: np.ndarray  # bool [k, n_channels]
    pos: np.ndarray  # float [k, n_channels], sub-sample template start of the (first) pulse
    height: np.ndarray  # float [k, n_channels], fitted amplitude, V (positive = configured polarity)
    t_event: np.ndarray  # float [k], mean start of the hit pulses (delay-corrected), samples
    doubles: list[dict[str, Any]]  # per double pulse: row, delay (s), channels {index: (delay samples, height, n_extra)}
    dt: float
    n_pre: int

    def times(self) -> np.ndarray:
        """Pulse start times relative to the trigger sample, s ``[k, n_channels]``."""
        return (self.pos - self.n_pre) * self.dt


def _fine(K: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shifted kernels ``K`` for templates ``T``: ``(K, sum(K T), |K|)`` per shift."""
    return K, np.sum(K * T, axis=1), np.sqrt(np.sum(K * K, axis=1))


class _Chan:
    """Per-channel filter constants for one shape and configuration.

    Both picoCosmo kernels are kept: the raw template ``s`` (least-squares amplitude on
    baseline-corrected volts, the lower-noise estimate) and the mean-subtracted ``s - mean(s)``
    (baseline-free, shape-sensitive). ``subtract`` (``OffsetSubtraction``) selects which one
    measures the pulse height and validates first pulses.
    """

    def __init__(self, name: str, index: int, shape: PulseShape, threshold: float, applied: Applied,
                 nfft: int, delay_s: float) -> None:
        dt = applied.sample_interval_s
        self.name, self.index, self.shape, self.dt = name, index, shape, dt
        try:
            s = sample_template(shape, dt)
        except ValueError as exc:
            raise AnalysisConfigError(
                f"pulse shape of channel {name} ({shape.duration * 1e9:.0f} ns) cannot be sampled at the "
                f"sample interval {dt * 1e9:.4g} ns: {exc}", key="pulse_shapes", value=shape.model_dump(by_alias=True, exclude_none=True),
                allowed="a shape several sample intervals long (taur/tauon/tauf in s)") from None
        self.length = len(s)
        if self.length > applied.n_samples:
            raise AnalysisConfigError(
                f"template of channel {name} ({self.length} samples) is longer than the record "
                f"({applied.n_samples} samples)", key="pulse_shapes", value=shape.model_dump(by_alias=True, exclude_none=True))
        self.subtract = shape.subtract_offset
        sub = s - s.mean()
        norm_sub = float(np.dot(sub, s))
        if self.subtract and not norm_sub > 0:
            raise AnalysisConfigError(f"template of channel {name} has no shape left after offset subtraction",
                                      key="pulse_shapes", value=shape.model_dump(by_alias=True, exclude_none=True), allowed="set OffsetSubtraction: false")
        self.norm_raw, self.norm_sub = float(np.dot(s, s)), norm_sub
        # conjugate spectra of the kernels: correlation = irfft(rfft(x) * conj(rfft(k)))
        self.kspec_raw = np.conj(sfft.rfft(s.astype(np.float32), nfft)).astype(np.complex64)
        self.kspec_sub = np.conj(sfft.rfft(sub.astype(np.float32), nfft)).astype(np.complex64)
        self.vpc = float(applied.volts_per_count(name))
        self.offset = float(applied.channels[name].offset_v)
        self.threshold = threshold * abs(shape.height)
        self.rise_samples = int(math.ceil(shape.rise / dt))
        #: closest resolvable start of a second pulse after this one: past its rise and flat top
        self.resolve_samples = max(int(math.ceil((shape.rise + shape.flat) / dt)), 2)
        self.delay = delay_s / dt  # samples
        # sub-sample refinement: templates shifted by -1..1 samples in steps of 1/FINE over a
        # window of length + 2 samples starting one sample before the coarse position
        self.shifts = np.arange(-_FINE, _FINE + 1) / _FINE
        i = np.arange(-1, self.length + 1)
        T = shape_values(shape, (i[None, :] - self.shifts[:, None]) * dt)
        K = T - T.mean(axis=1, keepdims=True) if self.subtract else T
        self.fine = _fine(K, T)  # [2 FINE + 1, length + 2] kernels with their norms
        # the pulse head (rise, flat top, two samples of the fall) with the raw template: a
        # height and start of a first pulse that a close second pulse on its tail cannot bias
        h = min(self.resolve_samples + 3, self.length + 2)
        self.head = _fine(T[:, :h], T[:, :h])
        self.head_sub = _fine(T[:, :h] - T[:, :h].mean(axis=1, keepdims=True), T[:, :h])

    def pulse(self, pos: np.ndarray, height: np.ndarray, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample indices ``[n, length + 2]`` and volts of pulses of ``height`` starting at ``pos``."""
        j0 = np.clip(np.floor(pos).astype(np.int64) - 1, 0, max(n_samples - self.length - 2, 0))
        idx = np.minimum(j0[:, None] + np.arange(self.length + 2)[None, :], n_samples - 1)
        return idx, height[:, None] * shape_values(self.shape, (idx - pos[:, None]) * self.dt)


class PulseFilter(AnalysisModule):
    """picoCosmo-style pulse filter with coincidences, double pulses and a live lifetime fit."""

    prefix = "Pulse"
    Params = PulseFilterParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.p: PulseFilterParams = self.parse_params()
        p = self.p
        h = abs(p.pulse_shapes[0].height if p.trigger_shape is None else p.trigger_shape.height)
        self._hrange = p.height_range or (0.0, 4.0 * h)
        self.specs = (
            ResultSpec("Events_RBV", "int", "events analysed"),
            ResultSpec("Validated_RBV", "int", "events with a validated trigger pulse"),
            ResultSpec("Accepted_RBV", "int", "accepted events (coincidence condition met)"),
            ResultSpec("Coincidences_RBV", "int_array", "accepted events by number of channels hit (1..8)",
                       max_length=8),
            ResultSpec("Rate_RBV", "float", "accepted rate over the last rate_window s", units="Hz",
                       low=0.0, high=RATE_SCALE_HZ),
            ResultSpec("MeanRate_RBV", "float", "accepted events / trigger time of the run", units="Hz",
                       low=0.0, high=RATE_SCALE_HZ),
            ResultSpec("RateHistory_RBV", "array", "accepted rate per bin, oldest first (muon rate history)",
                       units="Hz", max_length=p.rate_history_length),
            ResultSpec("RateHistoryTime_RBV", "array", "bin start times since run start", units="s",
                       max_length=p.rate_history_length),
            ResultSpec("DoublePulses_RBV", "int", "accepted events with a delayed second pulse"),
            ResultSpec("Heights_RBV", "int_array", "pulse-height spectrum of accepted pulses",
                       max_length=p.height_bins),
            ResultSpec("HeightBins_RBV", "array", "height bin centres", units="V", precision=4,
                       max_length=p.height_bins),
            ResultSpec("NoiseHeights_RBV", "int_array", "trigger-window amplitude of non-validated events",
                       max_length=p.height_bins),
            ResultSpec("DecayTimes_RBV", "int_array", "histogram of second-pulse delays",
                       max_length=p.decay_bins),
            ResultSpec("DecayBins_RBV", "array", "delay bin centres", units="s", precision=9,
                       max_length=p.decay_bins),
            ResultSpec("Lifetime_RBV", "float", "unbinned ML lifetime (exp + flat background)", units="s",
                       precision=9),
            ResultSpec("LifetimeErr_RBV", "float", "symmetric error of Lifetime_RBV (inverse Hessian)", units="s",
                       precision=9),
            ResultSpec("LifetimeErrLow_RBV", "float", "lower profile-likelihood error of Lifetime_RBV", units="s",
                       precision=9),
            ResultSpec("LifetimeErrHigh_RBV", "float", "upper profile-likelihood error of Lifetime_RBV", units="s",
                       precision=9),
            ResultSpec("Background_RBV", "float", "fitted flat background fraction", precision=4,
                       low=0.0, high=1.0),
            ResultSpec("FitEntries_RBV", "int", "delays inside the fit window"),
            ResultSpec("FitMin_RBV", "float", "lower edge of the fit window", units="s", precision=9),
            ResultSpec("FitMax_RBV", "float", "upper edge of the fit window (clipped to the record)",
                       units="s", precision=9),
            ResultSpec("Reset", "command", "clear counters, spectra and the lifetime fit"),
        )
        self._run: RunInfo | None = None
        self._cfg_key: tuple | None = None
        self._chans: list[_Chan] = []
        self._files: dict[str, Any] = {}
        self._reset_state()

    # ------------------------------------------------------------------ state
    def _reset_state(self) -> None:
        self.n_events = 0
        self.n_validated = 0
        self.n_accepted = 0
        self.n_double = 0
        self.fold = np.zeros(8, dtype=np.int64)
        self.h_heights = Histogram1D(self.p.height_bins, *self._hrange)
        self.h_noise = Histogram1D(self.p.height_bins, *self._hrange)
        dr = self.p.decay_range or (0.0, max(self.p.fit_window[1], 1e-9))
        self.h_decay = Histogram1D(self.p.decay_bins, *dr)
        self._delays: list[np.ndarray] = []
        self._n_delays = 0
        self._fit: LifetimeFit | None = None
        self._fit_n = -1
        self._fit_wall = 0.0
        self._rate_hist: deque[tuple[float, int]] = deque()
        self._acc_rates = RateCounter(self.p.rate_history_interval, self.p.rate_history_length)
        self._t_first: float | None = None
        self._t_last: float | None = None

    # ------------------------------------------------------------------ life cycle
    def start(self, applied: Applied, run: RunInfo) -> None:
        p = self.p
        enabled = applied.enabled_channels
        chans = list(p.channels) if p.channels is not None else list(enabled)
        for c in chans:
            if c not in enabled:
                raise AnalysisConfigError("channel is not enabled", key="channels", value=c,
                                          allowed=", ".join(enabled))
        trg = p.trigger_channel
        if trg is None:
            trg = applied.trigger.source if applied.trigger.source in chans else chans[0]
        if trg not in chans:
            raise AnalysisConfigError("trigger channel is not analysed", key="trigger_channel", value=trg,
                                      allowed=", ".join(chans))
        n = len(chans)
        if p.delays is not None and len(p.delays) != n:
            raise AnalysisConfigError(f"need one delay per analysed channel ({n})", key="delays",
                                      value=p.delays)
        if p.accept_pattern is not None and any(len(x) != n for x in p.accept_pattern):
            raise AnalysisConfigError(f"each pattern needs {n} entries (channels {', '.join(chans)})",
                                      key="accept_pattern", value=p.accept_pattern)
        nmin = p.min_coincidence if p.min_coincidence is not None else min(n, 2)
        if nmin > n:
            raise AnalysisConfigError(f"larger than the number of analysed channels ({n})",
                                      key="min_coincidence", value=nmin, allowed=f"1..{n}")
        # put the trigger channel first
        order = [trg] + [c for c in chans if c != trg]
        ns = applied.n_samples
        nfft = sfft.next_fast_len(ns, real=True)
        dt = applied.sample_interval_s
        delays = dict(zip(chans, p.delays or [0.0] * n, strict=True))
        built: list[_Chan] = []
        second: list[_Chan] = []  # shapes of the double-pulse search (picoCosmo: never the trigger shape)
        for c in order:
            i = chans.index(c)
            shape = p.pulse_shapes[min(i, len(p.pulse_shapes) - 1)]
            ch = _Chan(c, applied.enabled_channels.index(c), shape, p.threshold, applied, nfft,
                       delays[c] - delays[trg])
            second.append(ch)
            if c == trg and p.trigger_shape is not None:
                ch = _Chan(c, ch.index, p.trigger_shape, p.threshold, applied, nfft, 0.0)
            built.append(ch)
        lmax = max(ch.length for ch in built + second)
        npos = ns - lmax + 1
        window = p.coincidence_window if p.coincidence_window is not None else p.timing_precision * dt
        sep = ([int(math.ceil(p.min_separation / dt))] * n if p.min_separation is not None
               else [ch.resolve_samples + p.timing_precision for ch in built])
        # detectable delays: the second pulse needs a whole template inside the record and a
        # neighbour on each side (local maximum); the first pulse starts at most n_pre + p.
        latest_first = applied.n_pre + p.timing_precision
        t_det_max = (npos - 2 - latest_first) * dt
        t_det_min = (max(sep) + 1) * dt
        fit_min = max(p.fit_window[0], t_det_min)
        fit_max = min(p.fit_window[1], t_det_max)
        with self.lock:
            new_run = self.is_new_run(run)
            if new_run:
                self._close_files()
                self._reset_state()
                self._run = run
                self._raw_doubles = _RawStore(p.max_raw_events)
                self._raw_accepted = _RawStore(p.raw_accepted)
            self._applied = applied
            self._chans = built
            self._second = second
            self._nfft, self._npos, self._lmax = nfft, npos, lmax
            self._nmin = nmin
            # pre-trigger samples free of the trigger pulse's rise (baseline of raw templates)
            self._n_base = max(0, applied.n_pre - max(ch.rise_samples for ch in built) - 2 * p.timing_precision - 2)
            self._patterns = (np.asarray(p.accept_pattern, dtype=bool)[:, [chans.index(c) for c in order]]
                              if p.accept_pattern is not None else None)
            self._win = window / dt
            self._sep = sep
            self._fit_min, self._fit_max = fit_min, fit_max
            self._order = order
            self._fit_n = -1  # force a refit with the (possibly) new window
            if new_run and p.write_files:
                self._open_files(run, order)

    def _open_files(self, run: RunInfo, order: list[str]) -> None:
        cols = ["event", "t_trigger_s", "t_event_s", "n_hits"]
        fmt = ["%d", "%.9f", "%.4e", "%d"]
        for c in order:
            cols += [f"height_{c}_V", f"dt_{c}_s"]
            fmt += ["%.5g", "%.4e"]
        self._files["accepted"] = CsvWriter(output_path(run, (self.name or "pulse"), "accepted", "csv"), cols, fmt)
        cols2 = ["event", "t_trigger_s", "delay_s"]
        fmt2 = ["%d", "%.9f", "%.5e"]
        for c in order:
            cols2 += [f"delay_{c}_s", f"height2_{c}_V", f"height1_{c}_V", f"n_extra_{c}"]
            fmt2 += ["%.5e", "%.5g", "%.5g", "%d"]
        self._files["doubles"] = CsvWriter(output_path(run, (self.name or "pulse"), "doubles", "csv"), cols2, fmt2)

    def _close_files(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}

    # ------------------------------------------------------------------ processing
    def _volts(self, raw: np.ndarray, ch: _Chan) -> np.ndarray:
        """Baseline-corrected volts ``[k, ns]`` (float32) of channel ``ch``.

        The baseline is the mean of the pre-trigger samples before the trigger pulse's rise;
        without enough pre-trigger samples the analogue offset is the only known baseline.
        """
        x = raw[:, ch.index, :].astype(np.float32)
        nb = self._n_base
        if nb >= 4:
            x -= x[:, :nb].mean(axis=1, keepdims=True)
            x *= np.float32(ch.vpc)
        else:
            x *= np.float32(ch.vpc)
            x -= np.float32(ch.offset)
        return x

    def _amplitudes(self, v: np.ndarray, ch: _Chan, kernel: str | None = None) -> np.ndarray:
        """Least-squares amplitude ``A[k, npos]`` (volts, positive = configured polarity) of a
        pulse starting at every sample, by FFT correlation with the ``raw`` or the
        mean-subtracted (``sub``) template (default: the one ``OffsetSubtraction`` selects)."""
        if kernel is None:
            kernel = "sub" if ch.subtract else "raw"
        kspec, norm = (ch.kspec_sub, ch.norm_sub) if kernel == "sub" else (ch.kspec_raw, ch.norm_raw)
        spec = sfft.rfft(v, self._nfft, axis=1, workers=1)
        spec *= kspec
        corr = sfft.irfft(spec, self._nfft, axis=1, workers=1)[:, : self._npos]
        corr *= np.float32(1.0 / norm)
        return corr

    @staticmethod
    def _refine(ch: _Chan, v: np.ndarray, rows: np.ndarray, j: np.ndarray,
                kernels: str = "fine") -> tuple[np.ndarray, np.ndarray]:
        """Least-squares sub-sample position and height of pulses near integer starts ``j``.

        The template (or only its head, raw or mean-subtracted: ``kernels`` = ``fine``,
        ``head``, ``head_sub``) is evaluated at shifts of -1..1 samples in steps
        of 1/8 around ``j``; the best shift (maximum of the normalised correlation, refined by
        a parabola) gives the position, the amplitude at that shift the height (volts).
        """
        K, knorm, kabs = getattr(ch, kernels)
        L = ch.length
        ns = v.shape[1]
        jj = np.clip(np.asarray(j, dtype=np.int64), 1, max(ns - L - 1, 1))
        idx = np.minimum((jj - 1)[:, None] + np.arange(K.shape[1])[None, :], ns - 1)
        W = v[np.asarray(rows)[:, None], idx].astype(np.float64)
        amp = (W @ K.T) / knorm[None, :]  # [n, 2 FINE + 1]
        score = amp * (knorm / kabs)[None, :]
        nm = score.shape[1]
        n = np.arange(len(jj))
        m = np.clip(np.argmax(score, axis=1), 1, nm - 2)
        sm, s0, sp = score[n, m - 1], score[n, m], score[n, m + 1]
        den = sm - 2.0 * s0 + sp
        frac = np.zeros(len(jj))
        np.divide(0.5 * (sm - sp), den, out=frac, where=den < 0)
        frac = np.clip(frac, -0.5, 0.5)
        am, a0, ap = amp[n, m - 1], amp[n, m], amp[n, m + 1]
        height = a0 + 0.5 * frac * (ap - am) + 0.5 * frac * frac * (ap - 2.0 * a0 + am)
        pos = jj + ch.shifts[m] + frac / _FINE
        return pos, height

    def analyse(self, batch: EventBatch) -> PulseBatchResult:
        """Run the filter on one batch without touching counters or files (pure)."""
        k = len(batch)
        if batch.applied.config_generation != self._applied.config_generation:
            raise RuntimeError("batch of a configuration the filter was not started with")
        chans = self._chans
        rows = np.arange(k)
        volts = [self._volts(batch.raw, ch) for ch in chans]
        amps = [self._amplitudes(v, ch) for v, ch in zip(volts, chans, strict=True)]
        a_trg = amps[0]
        c0 = chans[0]
        n_pre = self._applied.n_pre
        p = self.p
        lo = max(0, n_pre - c0.rise_samples - p.timing_precision)
        hi = min(self._npos - 1, n_pre + p.timing_precision)
        if hi < lo:
            lo, hi = 0, self._npos - 1
        j0 = np.argmax(a_trg[:, lo: hi + 1], axis=1) + lo
        pos0, h0 = self._refine(c0, volts[0], rows, j0)
        validated = h0 >= c0.threshold
        # a close second pulse on the tail distorts the whole-template fit: validate those
        # by the pulse head (rise, flat top, start of the fall), in two stages as picoCosmo
        # does: the mean-subtracted head (a shape test) and the raw head (low noise)
        r2 = np.nonzero(~validated)[0]
        if r2.size:
            p2 = np.full(r2.size, 0.5 * (lo + hi))
            for _ in range(_PAIR_PASSES):
                p2, h2 = self._refine(c0, volts[0], r2, np.rint(p2), "head_sub")
            _, h_raw = self._refine(c0, volts[0], r2, np.rint(p2), "head")  # the low-noise stage
            ok = (h2 >= c0.threshold) & (h_raw >= c0.threshold) & (p2 >= lo - 1) & (p2 <= hi + 1)
            validated[r2[ok]] = True
            pos0[r2[ok]], h0[r2[ok]] = p2[ok], h2[ok]
        nch = len(chans)
        hits = np.zeros((k, nch), dtype=bool)
        pos = np.full((k, nch), np.nan)
        height = np.full((k, nch), np.nan)
        hits[:, 0] = validated
        pos[:, 0], height[:, 0] = pos0, h0
        w = self._win
        nw = int(2 * math.ceil(w) + 3)
        for ci in range(1, nch):
            ch = chans[ci]
            centre = pos0 + ch.delay
            start = np.floor(centre - w).astype(np.int64) - 1
            idx = np.clip(start[:, None] + np.arange(nw)[None, :], 0, self._npos - 1)
            vals = amps[ci][rows[:, None], idx]
            jj = idx[rows, np.argmax(vals, axis=1)]
            pc, hc = self._refine(ch, volts[ci], rows, jj)
            hits[:, ci] = validated & (hc >= ch.threshold) & (np.abs(pc - centre) <= w)
            pos[:, ci], height[:, ci] = pc, hc
        nhits = hits.sum(axis=1)
        if self._patterns is not None:
            accepted = validated & np.any(np.all(hits[:, None, :] == self._patterns[None, :, :], axis=2), axis=1)
        else:
            accepted = validated & (nhits >= self._nmin)
        # event time (samples): mean of the hit channels' pulse starts, corrected for delays
        delay_vec = np.array([ch.delay for ch in chans])
        corr_pos = pos - delay_vec[None, :]
        with np.errstate(invalid="ignore"):
            t_evt = np.where(hits, corr_pos, 0.0).sum(axis=1) / np.maximum(nhits, 1)
        doubles = self._find_doubles(volts, accepted, hits, pos, height, t_evt) if p.double_pulse else []
        return PulseBatchResult(self._order, validated, accepted, hits, pos, height, t_evt, doubles,
                                self._applied.sample_interval_s, n_pre)

    def process(self, batch: EventBatch) -> None:
        if len(batch) == 0:
            return
        r = self.analyse(batch)
        k, p = len(batch), self.p
        validated, hits, pos, height, t_evt, doubles = r.validated, r.hits, r.pos, r.height, r.t_event, r.doubles
        nhits = hits.sum(axis=1)
        h0 = height[:, 0]
        dt, n_pre = r.dt, r.n_pre
        acc = np.nonzero(r.accepted)[0]
        acc_heights = height[acc][hits[acc]]
        t_last = float(batch.t_trigger[-1])
        with self.lock:
            self.n_events += k
            self.n_validated += int(validated.sum())
            self.n_accepted += int(acc.size)
            self.fold += np.bincount(np.clip(nhits[acc] - 1, 0, 7), minlength=8)[:8]
            self._acc_rates.add(np.asarray(batch.t_trigger)[acc], t_now=t_last)
            self.h_heights.fill(acc_heights)
            self.h_noise.fill(h0[~validated])
            if self._t_first is None:
                self._t_first = float(batch.t_trigger[0])
            self._t_last = t_last
            self._rate_hist.append((t_last, self.n_accepted))
            while len(self._rate_hist) > 2 and self._rate_hist[1][0] <= t_last - p.rate_window:
                self._rate_hist.popleft()
            if doubles:
                taus = np.array([d["delay"] for d in doubles])
                self.n_double += len(doubles)
                self.h_decay.fill(taus)
                self._delays.append(taus)
                self._n_delays += taus.size
                self._raw_doubles.add(batch, [d["row"] for d in doubles])
            if len(self._raw_accepted) < self._raw_accepted.cap:
                self._raw_accepted.add(batch, acc)
            files = dict(self._files)
        if files:
            self._write_rows(files, batch, acc, hits, pos, height, t_evt, doubles, dt, n_pre)
        now = time.monotonic()
        if doubles and now - self._fit_wall >= p.fit_interval:
            self._refit()
            self._fit_wall = now

    def _find_doubles(self, volts: list[np.ndarray], accepted: np.ndarray, hits: np.ndarray, pos: np.ndarray,
                      height: np.ndarray, t_evt: np.ndarray) -> list[dict[str, Any]]:
        """Second pulses in accepted events: picoCosmo's two stages, vectorised, plus best choice.

        Per channel, with the channel's ordinary pulse shape (never the trigger shape):

        1. the fitted first pulse is subtracted from the baseline-corrected volts, so a second
           pulse can be searched from ``resolve_samples`` (rise + flat top) after its start
           instead of one template length (closer pairs cannot be told apart);
        2. **candidates** are strict local maxima of the raw-template amplitude (the lower-noise
           estimate, picoCosmo's ``correlate(x, refp)`` > ``sum(refp**2)``) at or above threshold;
        3. each is **confirmed** by the mean-subtracted amplitude at the same start (picoCosmo's
           shape test ``sum((x - mean) * refpm) > sum(refpm**2)``), and, if it starts inside the
           first pulse's template, by reaching ``close_pair_ratio`` of the first pulse's height;
        4. confirmed candidates closer than ``resolve_samples`` are merged; the **highest** one is
           the reported second pulse (picoCosmo reports the last, which may be a noise fake).
        """
        acc = np.nonzero(accepted)[0]
        if acc.size == 0:
            return []
        per_event: dict[int, dict[int, tuple[float, float, int]]] = {}
        found: dict[int, list[tuple[float, float]]] = {}
        ratio = self.p.close_pair_ratio
        for ci, (c1, ch) in enumerate(zip(self._chans, self._second, strict=True)):
            v = volts[ci][acc]  # a copy (fancy index)
            ns = v.shape[1]
            hit = hits[acc, ci]
            h1 = np.where(hit, height[acc, ci], 0.0)
            first = np.where(hit, pos[acc, ci], t_evt[acc] + ch.delay)
            r1 = np.nonzero(hit)[0]
            if r1.size:  # the first pulse from its head, then subtracted
                p1 = first[r1]
                for _ in range(_PAIR_PASSES // 2):
                    p1, hh = self._refine(c1, v, r1, np.rint(p1), "head")
                first[r1], h1[r1] = p1, hh
                idx, val = c1.pulse(first[r1], h1[r1], ns)
                np.subtract.at(v, (r1[:, None], idx), val.astype(np.float32))
            R = self._amplitudes(v, ch, "raw")
            M = self._amplitudes(v, ch, "sub") if ch.subtract else R
            s0 = np.ceil(first).astype(np.int64) + self._sep[ci]
            mid = R[:, 1:-1]
            m = (mid >= ch.threshold) & (mid > R[:, :-2]) & (mid >= R[:, 2:]) & (M[:, 1:-1] >= ch.threshold)
            m &= np.arange(1, R.shape[1] - 1)[None, :] >= s0[:, None]
            ev, jj = np.nonzero(m)
            if ev.size == 0:
                continue
            jj = jj + 1
            pc, hc = self._refine(ch, v, ev, jj)
            close = jj < np.ceil(first[ev]) + c1.length
            keep = ~(close & (hc < ratio * h1[ev]))
            best: dict[int, tuple[float, float, int]] = {}
            for e, pp, hh in zip(ev[keep].tolist(), pc[keep].tolist(), hc[keep].tolist(), strict=True):
                found.setdefault(e, []).append((pp, hh))
            for e, cands in found.items():
                merged = _merge(cands, ch.resolve_samples)
                p2, h2 = max(merged, key=lambda c: c[1])
                best[e] = (p2, h2, len(merged) - 1)
            found.clear()
            self._refit_close(c1, ch, volts[ci], acc, ci, best, first, hit, pos, height)
            for e, rec in best.items():
                per_event.setdefault(int(acc[e]), {})[ci] = rec
        if not per_event:
            return []
        # event times after the close-pair refits (mean of the hit channels' delay-corrected starts)
        delay_vec = np.array([ch.delay for ch in self._chans])
        rows = np.fromiter(per_event, dtype=np.int64)
        h = hits[rows]
        t_evt[rows] = np.where(h, pos[rows] - delay_vec[None, :], 0.0).sum(axis=1) / np.maximum(h.sum(axis=1), 1)
        out = []
        dt = self._applied.sample_interval_s
        for e in sorted(per_event):
            rec: dict[str, Any] = {"row": e, "channels": {}}
            delays = []
            for ci, (p2, h2, nx) in per_event[e].items():
                d = p2 - self._second[ci].delay - t_evt[e]
                rec["channels"][ci] = (d, h2, nx)
                delays.append(d)
            rec["delay"] = float(np.mean(delays)) * dt
            out.append(rec)
        return out

    def _refit_close(self, c1: _Chan, ch: _Chan, v: np.ndarray, acc: np.ndarray, ci: int,
                     best: dict[int, tuple[float, float, int]], first: np.ndarray, hit: np.ndarray,
                     pos: np.ndarray, height: np.ndarray) -> None:
        """Pulse pairs closer than one template length overlap: fit each with the other one
        subtracted (alternating passes; each may move a start by up to one sample), updating the first pulse's ``pos``/``height``
        and the second pulse in ``best`` in place."""
        ev = np.array([e for e, (p2, _, _) in best.items() if hit[e] and p2 < first[e] + c1.length],
                      dtype=np.int64)
        if ev.size == 0:
            return
        rows = acc[ev]
        p1, h1 = pos[rows, ci].copy(), height[rows, ci].copy()
        p2 = np.array([best[e][0] for e in ev.tolist()])
        h2 = np.array([best[e][1] for e in ev.tolist()])
        ns = v.shape[1]
        k = np.arange(ev.size)
        for _ in range(_PAIR_PASSES):
            w = v[rows].astype(np.float64)
            idx, val = ch.pulse(p2, h2, ns)
            np.subtract.at(w, (k[:, None], idx), val)
            p1, h1 = self._refine(c1, w, k, np.rint(p1))
            w = v[rows].astype(np.float64)
            idx, val = c1.pulse(p1, h1, ns)
            np.subtract.at(w, (k[:, None], idx), val)
            p2, h2 = self._refine(ch, w, k, np.rint(p2))
        pos[rows, ci], height[rows, ci] = p1, h1
        for i, e in enumerate(ev.tolist()):
            best[e] = (float(p2[i]), float(h2[i]), best[e][2])

    def _write_rows(self, files: dict[str, Any], batch: EventBatch, acc: np.ndarray, hits: np.ndarray,
                    pos: np.ndarray, height: np.ndarray, t_evt: np.ndarray, doubles: list[dict[str, Any]],
                    dt: float, n_pre: int) -> None:
        if acc.size and "accepted" in files:
            cols = [batch.event_number[acc], batch.t_trigger[acc], (t_evt[acc] - n_pre) * dt,
                    hits[acc].sum(axis=1)]
            for ci, ch in enumerate(self._chans):
                h = np.where(hits[acc, ci], height[acc, ci], np.nan)
                tt = np.where(hits[acc, ci], (pos[acc, ci] - ch.delay - t_evt[acc]) * dt, np.nan)
                cols += [h, tt]
            files["accepted"].write(cols)
        if doubles and "doubles" in files:
            rws = np.array([d["row"] for d in doubles])
            cols = [batch.event_number[rws], batch.t_trigger[rws], np.array([d["delay"] for d in doubles])]
            for ci in range(len(self._chans)):
                dl, h2, nx = [], [], []
                for d in doubles:
                    v = d["channels"].get(ci)
                    dl.append(v[0] * dt if v else np.nan)
                    h2.append(v[1] if v else np.nan)
                    nx.append(v[2] if v else 0)
                h1 = np.where(hits[rws, ci], height[rws, ci], np.nan)
                cols += [np.array(dl), np.array(h2), h1, np.array(nx)]
            files["doubles"].write(cols)
        for f in files.values():
            f.flush()

    # ------------------------------------------------------------------ fit, results
    def delays(self) -> np.ndarray:
        """All second-pulse delays of the run so far (s)."""
        with self.lock:
            return np.concatenate(self._delays) if self._delays else np.zeros(0)

    def _refit(self) -> None:
        with self.lock:
            if self._n_delays == self._fit_n:
                return
            if len(self._delays) > 1:
                self._delays = [np.concatenate(self._delays)]
            d = self._delays[0] if self._delays else np.zeros(0)
            n = self._n_delays
            lo, hi = self._fit_min, self._fit_max
        if hi > lo:
            if self.p.fit_model == "capture":
                fit = fit_lifetime_capture(d, lo, hi, ratio=self.p.mu_ratio, tau_minus=self.p.tau_capture,
                                           background=self.p.fit_background)
            else:
                fit = fit_lifetime(d, lo, hi, background=self.p.fit_background)
        else:
            fit = None
        with self.lock:
            if n <= self._n_delays:  # not reset meanwhile
                self._fit, self._fit_n = fit, n

    def results(self) -> dict[str, Any]:
        with self.lock:
            f = self._fit
            span = (self._t_last - self._t_first) if self._t_first is not None else 0.0
            rate = 0.0
            if len(self._rate_hist) >= 2:
                (t_a, n_a), (t_b, n_b) = self._rate_hist[0], self._rate_hist[-1]
                rate = (n_b - n_a) / (t_b - t_a) if t_b > t_a else 0.0
            nan = float("nan")
            return {
                "Events_RBV": self.n_events,
                "Validated_RBV": self.n_validated,
                "Accepted_RBV": self.n_accepted,
                "Coincidences_RBV": self.fold.copy(),
                "Rate_RBV": float(rate),
                "MeanRate_RBV": float(self.n_accepted / span) if span > 0 else 0.0,
                "RateHistory_RBV": self._acc_rates.rates.copy(),
                "RateHistoryTime_RBV": self._acc_rates.times.copy(),
                "DoublePulses_RBV": self.n_double,
                "Heights_RBV": self.h_heights.counts.copy(),
                "HeightBins_RBV": self.h_heights.centres,
                "NoiseHeights_RBV": self.h_noise.counts.copy(),
                "DecayTimes_RBV": self.h_decay.counts.copy(),
                "DecayBins_RBV": self.h_decay.centres,
                "Lifetime_RBV": f.tau if f is not None else nan,
                "LifetimeErr_RBV": f.tau_err if f is not None else nan,
                "LifetimeErrLow_RBV": f.tau_err_low if f is not None else nan,
                "LifetimeErrHigh_RBV": f.tau_err_high if f is not None else nan,
                "Background_RBV": f.background_fraction if f is not None else nan,
                "FitEntries_RBV": f.n if f is not None else 0,
                "FitMin_RBV": float(getattr(self, "_fit_min", self.p.fit_window[0])),
                "FitMax_RBV": float(getattr(self, "_fit_max", self.p.fit_window[1])),
            }

    def command(self, name: str, value: Any) -> None:
        if name == "Reset":  # counters, spectra and fit; the run's files (incl. raw) continue
            with self.lock:
                self._reset_state()

    def fit(self) -> LifetimeFit | None:
        """Refit now and return the result (None if the window is empty)."""
        self._fit_n = -1
        self._refit()
        with self.lock:
            return self._fit

    def finish(self) -> dict[str, Any]:
        fit = self.fit() if hasattr(self, "_fit_min") else None
        files: dict[str, str] = {f"{k}_file": str(v.path) for k, v in self._files.items()}
        with self.lock:
            self._close_files()
            raw_files: list[str] = []
            acc_files: list[str] = []
            chans = [ch.name for ch in self._chans]
            if self.p.write_files and self._run is not None:
                name = self.name or "pulse"
                if len(self._raw_doubles):
                    raw_files = self._raw_doubles.write(output_path(self._run, name, "doubles_raw", "npz"), chans)
                if len(self._raw_accepted):
                    acc_files = self._raw_accepted.write(output_path(self._run, name, "accepted_raw", "npz"),
                                                         chans)
        r = self.results()
        out = {
            "events": r["Events_RBV"], "validated": r["Validated_RBV"], "accepted": r["Accepted_RBV"],
            "accepted_by_fold": r["Coincidences_RBV"][: len(self._chans)] if self._chans else [],
            "double_pulses": r["DoublePulses_RBV"], "mean_rate_hz": r["MeanRate_RBV"],
            "channels": self._order if self._chans else [],
            "lifetime": fit.as_dict() if fit is not None else None,
            **files,
        }
        if raw_files:
            out["doubles_raw_files"] = raw_files
        if acc_files:
            out["accepted_raw_files"] = acc_files
        return out



class _RawStore:
    """Raw int16 waveforms of selected events of a run (capped), written as ``.npz``."""

    def __init__(self, cap: int) -> None:
        self.cap = int(cap)
        self.raw: list[np.ndarray] = []
        self.meta: list[tuple[int, float]] = []
        self.applied: list[Applied] = []

    def __len__(self) -> int:
        return len(self.raw)

    def add(self, batch: EventBatch, rows) -> None:
        for r in list(rows)[: max(self.cap - len(self.raw), 0)]:
            self.raw.append(np.array(batch.raw[r], copy=True))
            self.meta.append((int(batch.event_number[r]), float(batch.t_trigger[r])))
            self.applied.append(batch.applied)

    def write(self, path, chans: list[str]) -> list[str]:
        """One ``.npz`` per configuration generation seen (``_g<gen>`` suffix if several)."""
        gens = sorted({a.config_generation for a in self.applied})
        written = []
        for g in gens:
            sel = [i for i, a in enumerate(self.applied) if a.config_generation == g]
            a0 = self.applied[sel[0]]
            cs = [c for c in chans if c in a0.enabled_channels]
            idx = [a0.enabled_channels.index(c) for c in cs]
            raw = np.stack([self.raw[i] for i in sel])[:, idx, :]
            meta = np.array([self.meta[i] for i in sel])
            pth = path if len(gens) == 1 else path.with_name(path.stem + f"_g{g}.npz")
            np.savez_compressed(
                pth, raw=raw, event=meta[:, 0].astype(np.int64), t_trigger=meta[:, 1],
                channels=np.array(cs), volts_per_count=np.array([a0.volts_per_count(c) for c in cs]),
                offset_v=np.array([a0.channels[c].offset_v for c in cs]),
                sample_interval_s=a0.sample_interval_s, n_pre=a0.n_pre, config_generation=g)
            written.append(str(pth))
        return written


def _merge(cands: list[tuple[float, float]], length: int) -> list[tuple[float, float]]:
    """Merge candidates closer than ``length`` samples (keep the highest); sorted by time."""
    cands = sorted(cands)
    out: list[tuple[float, float]] = []
    for pp, hh in cands:
        if out and pp - out[-1][0] < length:
            if hh > out[-1][1]:
                out[-1] = (pp, hh)
            continue
        out.append((pp, hh))
    return out

