"""picoCosmo-style pulse templates: trapezoids (unipolar) and equal-area bipolar pulses.

A unipolar template is the piecewise-linear curve through
``(0, 0), (rise, 1), (rise + flat, 1), (rise + flat + fall, 0)``; the bipolar one
continues with a second lobe ``fall2`` (down to ``voff``), ``off`` (flat at ``voff``)
and ``rise2`` (back to 0), with ``voff = -(0.5 (rise + fall) + flat) / (0.5 (fall2 + rise2) + off)``
so that both lobes have equal area (picoCosmo ``PulseFilter``). Templates are sampled
at the scope's sample interval and multiplied by the sign of ``height``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["PulseShape", "sample_template", "shape_values"]


class PulseShape(BaseModel):
    """One pulse shape (seconds, volts). picoCosmo keys are accepted as aliases."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    rise: float = Field(20e-9, ge=0.0, alias="taur", description="rise time, s (>= 0)")
    flat: float = Field(12e-9, ge=0.0, alias="tauon", description="flat top, s (>= 0)")
    fall: float = Field(128e-9, ge=0.0, alias="tauf", description="fall time, s (>= 0)")
    height: float = Field(-0.035, alias="pheight", description="expected height, V, nonzero; sign = polarity")
    mode: Literal[0, 1, "unipolar", "bipolar"] = Field(0, description="0/unipolar or 1/bipolar")
    fall2: float | None = Field(None, ge=0.0, alias="tauf2", description="bipolar: s, default = rise")
    off: float | None = Field(None, ge=0.0, alias="tauoff", description="bipolar: s, default = flat")
    rise2: float | None = Field(None, ge=0.0, alias="taur2", description="bipolar: s, default = fall")
    offset_subtraction: bool | None = Field(
        None, alias="OffsetSubtraction",
        description="true: baseline-free mean-subtracted template (default for unipolar); "
                    "false: raw template on pre-trigger-baseline-corrected data (default for bipolar)")

    @field_validator("height")
    @classmethod
    def _nonzero(cls, v: float) -> float:
        if v == 0:
            raise ValueError("height (pheight) must be nonzero; its sign gives the polarity")
        return v

    @model_validator(mode="after")
    def _length(self) -> PulseShape:
        if self.rise + self.flat + self.fall <= 0:
            raise ValueError("rise + flat + fall must be > 0")
        return self

    @property
    def bipolar(self) -> bool:
        return self.mode in (1, "bipolar")

    @property
    def subtract_offset(self) -> bool:
        return (not self.bipolar) if self.offset_subtraction is None else bool(self.offset_subtraction)

    def nodes(self) -> tuple[np.ndarray, np.ndarray]:
        """Break points (times, unit values) of the piecewise-linear shape."""
        r, o, f = self.rise, self.flat, self.fall
        t = [0.0, r, r + o, r + o + f]
        v = [0.0, 1.0, 1.0, 0.0]
        if self.bipolar:
            f2 = self.rise if self.fall2 is None else self.fall2
            o2 = self.flat if self.off is None else self.off
            r2 = self.fall if self.rise2 is None else self.rise2
            denom = 0.5 * (f2 + r2) + o2
            if denom <= 0:
                raise ValueError("bipolar shape needs fall2 + off + rise2 > 0")
            voff = -(0.5 * (r + f) + o) / denom
            t0 = t[-1]
            t += [t0 + f2, t0 + f2 + o2, t0 + f2 + o2 + r2]
            v += [voff, voff, 0.0]
        return np.asarray(t), np.asarray(v)

    @property
    def duration(self) -> float:
        return float(self.nodes()[0][-1])


def shape_values(shape: PulseShape, t: np.ndarray) -> np.ndarray:
    """The signed unit shape at times ``t`` (s from the pulse start; 0 outside)."""
    tn, vn = shape.nodes()
    tt = np.unique(tn)
    vv = _collapse(tn, vn)
    return np.interp(t, tt, vv, left=0.0, right=0.0) * np.sign(shape.height)


def sample_template(shape: PulseShape, dt: float) -> np.ndarray:
    """The shape sampled every ``dt`` from 0 to its end, times ``sign(height)`` (float64).

    At least 2 samples; a template must have a nonzero sample.
    """
    t, v = shape.nodes()
    n = max(int(t[-1] / dt + 0.5) + 1, 2)
    # duplicate break times (zero-length segments) are fine for np.interp only if increasing
    tt, keep = np.unique(t, return_index=True)
    if tt.size < 2:
        raise ValueError("template has zero duration")
    vv = v[keep] if tt.size == t.size else _collapse(t, v)
    s = np.interp(np.arange(n) * dt, tt, vv)
    if not np.any(s != 0):
        raise ValueError(f"template is zero when sampled at dt = {dt} s")
    return s * np.sign(shape.height)


def _collapse(t: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Values at unique break times, taking the last value of duplicate times."""
    out = {}
    for ti, vi in zip(t.tolist(), v.tolist(), strict=True):
        out[ti] = vi
    return np.asarray([out[k] for k in sorted(out)])
