"""Histogram display: pulse-height spectrum and decay-time histogram with the live lifetime fit.

The IOC's pulse filter publishes histogram arrays (``Pulse:Heights_RBV`` with bin edges or
centres ``Pulse:HeightBins_RBV``; ``Pulse:DecayTimes_RBV`` with ``Pulse:DecayBins_RBV``) and
the unbinned lifetime fit (``Pulse:Lifetime_RBV`` ± ``Pulse:LifetimeErr_RBV``, background
fraction ``Pulse:Background_RBV``, ``Pulse:FitEntries_RBV`` delays in the window
``Pulse:FitMin_RBV`` ... ``Pulse:FitMax_RBV``). The curve on the decay histogram is that fit,
scaled to counts per bin (:func:`fit_curve`); if the IOC does not publish the background and
window, the IOC's lifetime is drawn with its normalisation adjusted to the histogram by
linear least squares (:func:`exp_curve`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from .base import Display, fnum, main_for
from .osci import time_scale

__all__ = ["Histograms", "bin_edges", "exp_curve", "fit_curve", "main"]


def bin_edges(bins: np.ndarray, n: int) -> np.ndarray | None:
    """Edges for ``n`` counts from ``bins`` given as ``n + 1`` edges or ``n`` centres."""
    bins = np.asarray(bins, dtype=float).ravel()
    if n == 0:
        return None
    if bins.size >= n + 1:
        return bins[: n + 1]
    if bins.size == n and n >= 2:
        half = np.diff(bins) / 2.0
        return np.concatenate([[bins[0] - half[0]], bins[:-1] + half, [bins[-1] + half[-1]]])
    return None


def exp_curve(edges: np.ndarray, counts: np.ndarray, tau: float,
              points: int = 200) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Expected counts per bin of ``A·exp(-t/tau) + B`` fitted (A, B ≥ 0) to ``counts``.

    Returns
    -------
    t, y, A, B
        A smooth curve (per-bin expectation evaluated at ``t``) and the amplitudes.
    """
    a, b = edges[:-1], edges[1:]
    width = b - a
    # bin integrals of the two shapes: exponential and flat
    e = tau * (np.exp(-a / tau) - np.exp(-b / tau))
    f = width
    y = np.asarray(counts, dtype=float)
    best = (0.0, 0.0, np.inf)
    for use_e, use_f in ((True, True), (True, False), (False, True)):
        cols = [x for x, use in ((e, use_e), (f, use_f)) if use]
        m = np.stack(cols, axis=1)
        coef, *_ = np.linalg.lstsq(m, y, rcond=None)
        if np.any(coef < 0):
            continue
        amp = coef[0] if use_e else 0.0
        bkg = coef[-1] if use_f else 0.0
        chi2 = float(np.sum((y - amp * e - bkg * f) ** 2))
        if chi2 < best[2]:
            best = (float(amp), float(bkg), chi2)
    amp, bkg, _ = best
    t = np.linspace(edges[0], edges[-1], points)
    w_mean = float(np.mean(width))
    return t, (amp * np.exp(-t / tau) + bkg) * w_mean, amp, bkg


def fit_curve(tau: float, background: float, entries: float, t_min: float, t_max: float,
              bin_width: float, points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Expected counts per bin of the IOC's lifetime fit over its window.

    The fitted density over ``[t_min, t_max]`` (exponential plus flat background fraction
    ``f``) is ``p(t) = (1-f)·exp(-t/τ)/(τ·(exp(-t_min/τ) - exp(-t_max/τ))) + f/(t_max - t_min)``;
    the curve is ``entries · p(t) · bin_width``.
    """
    t = np.linspace(t_min, t_max, points)
    norm = tau * (np.exp(-t_min / tau) - np.exp(-t_max / tau))
    p = (1.0 - background) * np.exp(-t / tau) / norm + background / (t_max - t_min)
    return t, entries * p * bin_width


class Histograms(Display):
    """Pulse-height spectrum and decay-time histogram with the lifetime fit.

    Attributes
    ----------
    height_steps, decay_steps : matplotlib.patches.StepPatch
        The drawn histograms (``get_data()`` gives counts and edges).
    fit_line : Line2D
        The lifetime curve (empty when there is no fit).
    """

    title = "picodaq histograms"
    figsize = (10.0, 4.5)

    def __init__(self, prefix: str = "PICO:", *, log: bool = False, module: str = "Pulse", **kw) -> None:
        self.log = log
        self.module = module
        self.fit_kind = ""
        super().__init__(prefix, **kw)

    def _n(self, leaf: str) -> str:
        return f"{self.module}:{leaf}"

    def pvs(self) -> Sequence[str]:
        return [self._n(x) for x in self.REQUIRED + self.FIT]

    REQUIRED = ["Heights_RBV", "HeightBins_RBV", "DecayTimes_RBV", "DecayBins_RBV", "Lifetime_RBV",
                "LifetimeErr_RBV", "DoublePulses_RBV", "Accepted_RBV"]
    FIT = ["Background_RBV", "FitEntries_RBV", "FitMin_RBV", "FitMax_RBV"]

    @property
    def required(self) -> Sequence[str]:
        return [self._n(x) for x in self.REQUIRED]

    def build(self) -> None:
        self.ax_h = self.fig.add_subplot(1, 2, 1)
        self.ax_d = self.fig.add_subplot(1, 2, 2)
        self.height_steps = self.ax_h.stairs([0], [0, 1], fill=True, color="tab:blue", alpha=0.6)
        self.decay_steps = self.ax_d.stairs([0], [0, 1], fill=True, color="tab:purple", alpha=0.5)
        (self.fit_line,) = self.ax_d.plot([], [], color="black", lw=1.5, label="lifetime fit")
        self.ax_h.set_xlabel("pulse height (V)")
        self.ax_h.set_ylabel("entries")
        self.ax_d.set_ylabel("entries")
        for ax in (self.ax_h, self.ax_d):
            ax.grid(True, ls="--", alpha=0.5)
        if self.log:
            self.ax_d.set_yscale("log")
        self.h_text = self.ax_h.text(0.97, 0.97, "", transform=self.ax_h.transAxes, ha="right",
                                     va="top", fontsize=9)
        self.d_text = self.ax_d.text(0.97, 0.97, "", transform=self.ax_d.transAxes, ha="right",
                                     va="top", fontsize=10)
        self._suptitle = self.fig.suptitle(f"{self.prefix} pulse histograms", fontsize=11)
        self.time_unit = ("µs", 1e6)

    def draw(self, now: float) -> None:
        c = self.cache
        n = self._n
        h = np.asarray(c.value(n("Heights_RBV"), np.zeros(0)), dtype=float).ravel()
        he = bin_edges(c.value(n("HeightBins_RBV"), np.zeros(0)), h.size)
        if he is not None:
            self.height_steps.set_data(h, he)
            self.ax_h.set_xlim(he[0], he[-1])
            self.ax_h.set_ylim(0, max(float(h.max()) * 1.15, 1.0))
        self.h_text.set_text(f"accepted: {fnum(c.value(n('Accepted_RBV')), 'd')}\n"
                             f"in histogram: {int(h.sum())}")
        d = np.asarray(c.value(n("DecayTimes_RBV"), np.zeros(0)), dtype=float).ravel()
        de = bin_edges(c.value(n("DecayBins_RBV"), np.zeros(0)), d.size)
        doubles = f"double pulses: {fnum(c.value(n('DoublePulses_RBV')), 'd')}"
        if de is None:
            self.d_text.set_text(doubles)
            return
        scale, unit = time_scale(float(de[-1] - de[0]))
        self.time_unit = (unit, scale)
        self.decay_steps.set_data(d, de * scale)
        self.ax_d.set_xlim(de[0] * scale, de[-1] * scale)
        self.ax_d.set_xlabel(f"decay time ({unit})")
        top = max(float(d.max()) * 1.15, 1.0) if d.size else 1.0
        self.ax_d.set_ylim(0.5 if self.log else 0.0, top)
        tau = c.value(n("Lifetime_RBV"))
        err = c.value(n("LifetimeErr_RBV"))
        curve = self._curve(de, d, tau)
        if curve is None:
            self.fit_line.set_data([], [])
            self.d_text.set_text(f"τ = -- (no fit yet)\n{doubles}")
            return
        t, y = curve
        self.fit_line.set_data(t * scale, y)
        self.d_text.set_text(f"τ = {fnum(float(tau) * scale, '.3f')} ± "
                             f"{fnum(float(err) * scale if err is not None else None, '.3f')} {unit}\n"
                             f"{doubles}")

    def _curve(self, edges: np.ndarray, counts: np.ndarray, tau) -> tuple[np.ndarray, np.ndarray] | None:
        """The lifetime curve in counts per bin, or None without a usable fit."""
        if tau is None or not np.isfinite(tau) or tau <= 0:
            self.fit_kind = ""
            return None
        c = self.cache
        vals = [c.value(self._n(x)) if c.connected(self._n(x)) else None for x in self.FIT]
        if all(v is not None and np.isfinite(v) for v in vals):
            bkg, entries, t_min, t_max = (float(v) for v in vals)
            if entries > 0 and t_max > t_min:
                self.fit_kind = "ioc"
                return fit_curve(float(tau), bkg, entries, t_min, t_max, float(np.mean(np.diff(edges))))
        if counts.sum() <= 0:
            self.fit_kind = ""
            return None
        t, y, _, _ = exp_curve(edges, counts, float(tau))
        self.fit_kind = "lsq"
        return t, y


def _args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--log", action="store_true", help="logarithmic decay-time axis")
    ap.add_argument("--module", default="Pulse", help="PV segment of the pulse-filter module (default Pulse)")


def main(argv: Sequence[str] | None = None) -> int:
    """``picodaq-hists``: pulse-height and decay-time histograms."""
    return main_for(Histograms, "picodaq pulse histograms (Channel Access client)", _args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
