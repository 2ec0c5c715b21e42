"""Voltmeter (``module: voltmeter``, PVs ``VMeter:<ch>:Mean_RBV`` ...).

Per channel: mean, RMS (``sqrt(mean(v**2))``, including DC), standard deviation
(AC RMS), peak-to-peak, minimum and maximum over all samples of a block of
``n_events`` consecutive events (default 1: every event). The published values are the
last complete block; ``Updates_RBV`` counts blocks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..daq.events import EventBatch
from ..scope.models import ALL_RANGES_V
from ..scope.types import Applied
from .base import AnalysisConfigError, AnalysisModule, ResultSpec, RunInfo

__all__ = ["VoltMeter"]

_STATS = ("Mean", "RMS", "Std", "PkPk", "Min", "Max")


class VoltMeterParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channels: list[str] = Field(default_factory=lambda: ["A", "B", "C", "D"],
                                description="channels A-H that get PVs (disabled ones read NaN)")
    n_events: int = Field(1, ge=1, le=10_000_000, description="events per reading, >= 1")

    @field_validator("channels", mode="before")
    @classmethod
    def _chs(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = list(v)
        out = [str(c).upper() for c in v]
        if not out or len(set(out)) != len(out) or any(c not in "ABCDEFGH" or len(c) != 1 for c in out):
            raise ValueError("a non-empty list of distinct channels A-H")
        return out


class VoltMeter(AnalysisModule):
    """Mean/RMS/Std/PkPk/Min/Max per channel over blocks of ``n_events`` events."""

    prefix = "VMeter"
    Params = VoltMeterParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.p: VoltMeterParams = self.parse_params()
        units = {"Mean": "V", "RMS": "V", "Std": "V", "PkPk": "V", "Min": "V", "Max": "V"}
        docs = {"Mean": "mean", "RMS": "RMS incl. DC", "Std": "standard deviation (AC RMS)",
                "PkPk": "peak-to-peak", "Min": "minimum", "Max": "maximum"}
        # display limits: no PicoScope input exceeds its largest range (+/- V_MAX)
        v_max = max(ALL_RANGES_V)
        lim = {"Mean": (-v_max, v_max), "Min": (-v_max, v_max), "Max": (-v_max, v_max),
               "RMS": (0.0, v_max), "Std": (0.0, v_max), "PkPk": (0.0, 2 * v_max)}
        specs = [ResultSpec(f"{c}:{s}_RBV", "float", f"channel {c} {docs[s]}", units=units[s], precision=5,
                            low=lim[s][0], high=lim[s][1])
                 for c in self.p.channels for s in _STATS]
        specs.append(ResultSpec("Updates_RBV", "int", "completed readings"))
        specs.append(ResultSpec("NEvents_RBV", "int", "events per reading"))
        self.specs = tuple(specs)
        self._values = {s.name: float("nan") for s in specs if s.kind == "float"}
        self._updates = 0
        self._carry: tuple | None = None  # (events, sum, sumsq, min, max) of an incomplete block
        self._chan_idx: list[int] = []

    def start(self, applied: Applied, run: RunInfo) -> None:
        enabled = applied.enabled_channels
        with self.lock:
            self._chans = [c for c in self.p.channels if c in enabled]
            if not self._chans:
                raise AnalysisConfigError("none of the channels is enabled", key="channels",
                                          value=self.p.channels, allowed=", ".join(enabled))
            self._chan_idx = [enabled.index(c) for c in self._chans]
            self._scale = np.array([applied.volts_per_count(c) for c in self._chans])
            self._offset = np.array([applied.channels[c].offset_v for c in self._chans])
            self._ns = applied.n_samples
            self._carry = None  # blocks never span a configuration change

    def process(self, batch: EventBatch) -> None:
        raw = batch.raw[:, self._chan_idx, :]  # [k, m, ns] int16
        x = raw.astype(np.float64)
        s1 = x.sum(axis=2)
        s2 = np.einsum("kms,kms->km", x, x)
        mn = raw.min(axis=2).astype(np.float64)
        mx = raw.max(axis=2).astype(np.float64)
        w = np.ones(len(batch), dtype=np.int64)  # events per entry (the carry is one folded entry)
        if self._carry is not None:
            cn, c1, c2, cmn, cmx = self._carry
            w = np.concatenate([[cn], w])
            s1, s2 = np.vstack([c1, s1]), np.vstack([c2, s2])
            mn, mx = np.vstack([cmn, mn]), np.vstack([cmx, mx])
        N = self.p.n_events
        before = np.concatenate([[0], np.cumsum(w)[:-1]])
        block = before // N  # the carry holds < N events, so no entry straddles a block edge
        total = int(w.sum())
        n_blocks = total // N
        with self.lock:
            if n_blocks:
                sel = block == n_blocks - 1
                self._publish(s1[sel].sum(0), s2[sel].sum(0), mn[sel].min(0), mx[sel].max(0), N * self._ns)
                self._updates += n_blocks
            rest = block == n_blocks
            if rest.any():
                self._carry = (int(w[rest].sum()), s1[rest].sum(0), s2[rest].sum(0), mn[rest].min(0),
                               mx[rest].max(0))
            else:
                self._carry = None

    def _publish(self, s1: np.ndarray, s2: np.ndarray, mn: np.ndarray, mx: np.ndarray, n: int) -> None:
        mean_c = s1 / n
        var_c = np.maximum(s2 / n - mean_c**2, 0.0)
        for i, c in enumerate(self._chans):
            sc, off = self._scale[i], self._offset[i]
            mean_v = mean_c[i] * sc - off
            std_v = np.sqrt(var_c[i]) * sc
            self._values[f"{c}:Mean_RBV"] = float(mean_v)
            self._values[f"{c}:Std_RBV"] = float(std_v)
            self._values[f"{c}:RMS_RBV"] = float(np.sqrt(mean_v**2 + std_v**2))
            self._values[f"{c}:Min_RBV"] = float(mn[i] * sc - off)
            self._values[f"{c}:Max_RBV"] = float(mx[i] * sc - off)
            self._values[f"{c}:PkPk_RBV"] = float((mx[i] - mn[i]) * sc)

    def results(self) -> dict[str, Any]:
        with self.lock:
            out: dict[str, Any] = dict(self._values)
            out["Updates_RBV"] = self._updates
            out["NEvents_RBV"] = self.p.n_events
            return out

    def finish(self) -> dict[str, Any]:
        r = self.results()
        return {"updates": r["Updates_RBV"], "n_events": self.p.n_events,
                "last": {k: v for k, v in r.items() if k.endswith("_RBV") and ":" in k}}
