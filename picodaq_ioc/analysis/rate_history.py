"""Trigger-rate history (``module: rates``, PVs ``Rates:*``).

Events are counted in bins of ``interval`` seconds of trigger time (``t_trigger``, the
backend clock since run start); every completed bin becomes one entry of
``History_RBV`` (Hz, oldest first, fixed length ``length``, NaN before the run has
that many bins). ``HistoryTime_RBV`` holds the bin start times (s since run start).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..daq.events import EventBatch
from ..scope.types import Applied
from .base import RATE_SCALE_HZ, TIME_SCALE_S, AnalysisModule, ResultSpec, RunInfo

__all__ = ["RateHistory", "RateCounter"]


class RateCounter:
    """Counts event times into fixed bins and keeps the last ``length`` completed bins."""

    def __init__(self, interval: float, length: int) -> None:
        self.interval, self.length = float(interval), int(length)
        self.reset()

    def reset(self) -> None:
        self.rates = np.full(self.length, np.nan)
        self.times = np.full(self.length, np.nan)
        self._bin = None  # index of the current (open) bin
        self._count = 0
        self.events = 0
        self.t_first: float | None = None
        self.t_last: float | None = None

    def _push(self, b: int, count: int) -> None:
        self.rates = np.roll(self.rates, -1)
        self.times = np.roll(self.times, -1)
        self.rates[-1] = count / self.interval
        self.times[-1] = b * self.interval

    def add(self, t: np.ndarray, t_now: float | None = None) -> None:
        """Add event times (non-decreasing); ``t_now`` (>= the times) closes the bins before it
        even when no event arrived (e.g. the trigger time of a batch without accepted events)."""
        t = np.asarray(t, dtype=np.float64)
        if t.size:
            if self.t_first is None:
                self.t_first = float(t[0])
            self.t_last = float(t[-1])
            self.events += int(t.size)
            bins = np.floor(t / self.interval).astype(np.int64)
            if self._bin is None:
                self._bin = int(bins[0])
            ub, counts = np.unique(bins, return_counts=True)
            for b, c in zip(ub.tolist(), counts.tolist(), strict=True):
                if b < self._bin:  # out-of-order time: count in the open bin
                    self._count += c
                    continue
                self._advance(b)
                self._count += c
        if t_now is not None:
            b = int(math.floor(t_now / self.interval))
            if self._bin is None:
                self._bin = b
            self._advance(b)

    def _advance(self, b: int) -> None:
        """Close the open bin and any empty bins before bin ``b``."""
        if b > self._bin:
            self._push(self._bin, self._count)
            gap = min(b - self._bin - 1, self.length)  # empty bins in between
            for g in range(gap):
                self._push(b - gap + g, 0)
            self._bin, self._count = b, 0

    @property
    def latest(self) -> float:
        return float(self.rates[-1])

    @property
    def mean(self) -> float:
        if self.t_first is None or self.t_last is None or self.t_last <= 0:
            return 0.0
        return self.events / self.t_last if self.t_first >= 0 else float("nan")


class RateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interval: float = Field(1.0, gt=0.0, le=86400.0, description="bin width, s (0 < x <= 86400)")
    length: int = Field(600, ge=2, le=100_000, description="number of bins kept, 2..100000")


class RateHistory(AnalysisModule):
    """Trigger-rate history for rate-meter displays."""

    prefix = "Rates"
    Params = RateParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.p: RateParams = self.parse_params()
        n = self.p.length
        self.specs = (
            ResultSpec("History_RBV", "array", "event rate per bin, oldest first", units="Hz", max_length=n),
            ResultSpec("HistoryTime_RBV", "array", "bin start times since run start", units="s", max_length=n),
            ResultSpec("Rate_RBV", "float", "rate of the last completed bin", units="Hz",
                       low=0.0, high=RATE_SCALE_HZ),
            ResultSpec("MeanRate_RBV", "float", "events / trigger time of the run", units="Hz",
                       low=0.0, high=RATE_SCALE_HZ),
            ResultSpec("Events_RBV", "int", "events counted"),
            ResultSpec("Interval_RBV", "float", "bin width", units="s", low=0.0, high=TIME_SCALE_S),
            ResultSpec("Reset", "command", "clear the history"),
        )
        self.counter = RateCounter(self.p.interval, n)

    def start(self, applied: Applied, run: RunInfo) -> None:
        with self.lock:
            if self.is_new_run(run):
                self.counter.reset()

    def process(self, batch: EventBatch) -> None:
        with self.lock:
            self.counter.add(np.asarray(batch.t_trigger))

    def results(self) -> dict[str, Any]:
        with self.lock:
            c = self.counter
            return {"History_RBV": c.rates.copy(), "HistoryTime_RBV": c.times.copy(),
                    "Rate_RBV": c.latest, "MeanRate_RBV": c.mean, "Events_RBV": c.events,
                    "Interval_RBV": c.interval}

    def command(self, name: str, value: Any) -> None:
        if name == "Reset":
            with self.lock:
                self.counter.reset()

    def finish(self) -> dict[str, Any]:
        r = self.results()
        ok = np.isfinite(r["History_RBV"])
        return {"events": r["Events_RBV"], "mean_rate_hz": r["MeanRate_RBV"], "interval_s": r["Interval_RBV"],
                "history_hz": r["History_RBV"][ok], "history_t_s": r["HistoryTime_RBV"][ok],
                "max_rate_hz": float(np.max(r["History_RBV"][ok])) if ok.any() else math.nan}
