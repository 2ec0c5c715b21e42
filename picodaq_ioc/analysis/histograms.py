"""Fixed-bin histograms: a reusable accumulator and the ``histogram`` analysis module.

The module histograms one per-event quantity of one channel (e.g. the peak-to-peak
voltage) and publishes ``<prefix>:Counts_RBV`` and ``<prefix>:Bins_RBV`` (bin centres)
for the displays.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..daq.events import EventBatch
from ..scope.types import Applied
from .base import AnalysisConfigError, AnalysisModule, ResultSpec, RunInfo

__all__ = ["Histogram1D", "HistogramModule", "event_quantity", "QUANTITIES"]


class Histogram1D:
    """Equal-width bins over ``[low, high)`` with under-/overflow counters."""

    def __init__(self, bins: int, low: float, high: float) -> None:
        if bins < 1 or not high > low:
            raise ValueError(f"histogram needs bins >= 1 and high > low, got {bins}, [{low}, {high}]")
        self.bins, self.low, self.high = int(bins), float(low), float(high)
        self.counts = np.zeros(self.bins, dtype=np.int64)
        self.underflow = 0
        self.overflow = 0
        self.entries = 0
        self._sum = 0.0

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.low, self.high, self.bins + 1)

    @property
    def centres(self) -> np.ndarray:
        e = self.edges
        return 0.5 * (e[1:] + e[:-1])

    def fill(self, values: np.ndarray) -> None:
        v = np.asarray(values, dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        if v.size == 0:
            return
        idx = np.floor((v - self.low) * (self.bins / (self.high - self.low))).astype(np.int64)
        under = idx < 0
        over = idx >= self.bins
        self.underflow += int(under.sum())
        self.overflow += int(over.sum())
        inside = idx[~(under | over)]
        self.counts += np.bincount(inside, minlength=self.bins)
        self.entries += int(v.size)
        self._sum += float(v.sum())

    @property
    def mean(self) -> float:
        return self._sum / self.entries if self.entries else float("nan")

    def reset(self) -> None:
        self.counts[:] = 0
        self.underflow = self.overflow = self.entries = 0
        self._sum = 0.0


QUANTITIES = ("pkpk", "min", "max", "mean", "rms", "std", "area", "peak")


def event_quantity(quantity: str, volts: np.ndarray, dt: float, n_base: int = 0,
                   polarity: float = -1.0) -> np.ndarray:
    """One number per event from ``volts[k, n_samples]``.

    ``peak`` is ``polarity * (v - baseline)`` maximised over the record, with the baseline
    the mean of the first ``n_base`` samples (0: no baseline); ``area`` is the integral
    (V s) after baseline subtraction.
    """
    if quantity == "min":
        return volts.min(axis=1)
    if quantity == "max":
        return volts.max(axis=1)
    if quantity == "pkpk":
        return volts.max(axis=1) - volts.min(axis=1)
    if quantity == "mean":
        return volts.mean(axis=1, dtype=np.float64)
    if quantity == "rms":
        return np.sqrt(np.mean(np.square(volts, dtype=np.float64), axis=1))
    if quantity == "std":
        return volts.std(axis=1, dtype=np.float64)
    base = volts[:, :n_base].mean(axis=1, dtype=np.float64) if n_base > 0 else np.zeros(len(volts))
    if quantity == "area":
        return (volts.sum(axis=1, dtype=np.float64) - base * volts.shape[1]) * dt
    if quantity == "peak":
        sig = polarity * (volts - base[:, None].astype(volts.dtype))
        return sig.max(axis=1)
    raise ValueError(f"unknown quantity {quantity!r}; allowed: {', '.join(QUANTITIES)}")


class HistogramParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: str = Field("A", description="a channel A-H")
    quantity: Literal["pkpk", "min", "max", "mean", "rms", "std", "area", "peak"] = "pkpk"
    bins: int = Field(100, ge=1, le=100_000, description="1..100000")
    range: tuple[float, float] = Field((0.0, 0.5), description="[low, high] with high > low")
    polarity: Literal[-1, 1] = Field(-1, description="-1 or 1 (for quantity 'peak')")
    baseline_samples: int | None = Field(None, ge=0, description="samples for the baseline; default: pre-trigger")

    @model_validator(mode="after")
    def _check(self) -> HistogramParams:
        if not self.range[1] > self.range[0]:
            raise ValueError("range must be [low, high] with high > low")
        ch = self.channel.upper()
        if ch not in tuple("ABCDEFGH"):
            raise ValueError("channel must be one of A-H")
        object.__setattr__(self, "channel", ch)
        return self


class HistogramModule(AnalysisModule):
    """Histogram of one per-event quantity of one channel (``module: histogram``)."""

    prefix = "Hist"
    Params = HistogramParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.p: HistogramParams = self.parse_params()
        self.hist = Histogram1D(self.p.bins, *self.p.range)
        self.specs = (
            ResultSpec("Counts_RBV", "int_array", f"counts of {self.p.quantity} of channel {self.p.channel}",
                       max_length=self.p.bins),
            ResultSpec("Bins_RBV", "array", "bin centres", units="V", max_length=self.p.bins),
            ResultSpec("Entries_RBV", "int", "entries (incl. under/overflow)"),
            ResultSpec("Underflow_RBV", "int", "entries below the range"),
            ResultSpec("Overflow_RBV", "int", "entries above the range"),
            ResultSpec("Mean_RBV", "float", "mean of all entries", units="V", precision=5,
                       low=self.p.range[0], high=self.p.range[1]),
            ResultSpec("Reset", "command", "clear the histogram"),
        )
        self._applied: Applied | None = None

    def start(self, applied: Applied, run: RunInfo) -> None:
        if self.p.channel not in applied.enabled_channels:
            raise AnalysisConfigError("channel is not enabled", key="channel", value=self.p.channel,
                                      allowed=", ".join(applied.enabled_channels))
        with self.lock:
            if self.is_new_run(run):
                self.hist.reset()
            self._applied = applied

    def process(self, batch: EventBatch) -> None:
        a = batch.applied
        v = batch.channel_volts(self.p.channel)
        nb = a.n_pre if self.p.baseline_samples is None else self.p.baseline_samples
        q = event_quantity(self.p.quantity, v, a.sample_interval_s, min(nb, a.n_samples), self.p.polarity)
        with self.lock:
            self.hist.fill(q)

    def results(self) -> dict[str, Any]:
        with self.lock:
            h = self.hist
            return {"Counts_RBV": h.counts.copy(), "Bins_RBV": h.centres, "Entries_RBV": h.entries,
                    "Underflow_RBV": h.underflow, "Overflow_RBV": h.overflow, "Mean_RBV": h.mean}

    def command(self, name: str, value: Any) -> None:
        if name == "Reset":
            with self.lock:
                self.hist.reset()

    def finish(self) -> dict[str, Any]:
        r = self.results()
        return {"quantity": self.p.quantity, "channel": self.p.channel, "entries": r["Entries_RBV"],
                "underflow": r["Underflow_RBV"], "overflow": r["Overflow_RBV"], "mean": r["Mean_RBV"],
                "bins": r["Bins_RBV"], "counts": r["Counts_RBV"]}
