"""Voltmeter display: bars and history of the IOC's ``VMeter:`` values per channel.

The voltmeter module serves ``VMeter:<ch>:<Mean|RMS|Std|PkPk|Min|Max>_RBV`` only for the
channels it is configured for; channels without those PVs are left out (not an error).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from .base import CHANNEL_COLOURS, CHANNELS, Display, fnum, main_for
from .history import History

__all__ = ["VoltMeter", "main"]


class VoltMeter(Display):
    """Mean and RMS per enabled channel as bars, and a history of one quantity.

    Parameters
    ----------
    prefix, fig, cache
        See :class:`~picodaq_clients.base.Display`.
    quantity : str
        ``VMeter:<ch>:<quantity>_RBV`` drawn in the history (default ``Mean``).
    history : int
        Number of history points (default 120, as in picoDAQ).
    interval : float
        Seconds between history points (default 0.5).
    """

    title = "picodaq voltmeter"
    figsize = (9.0, 4.5)

    def __init__(self, prefix: str = "PICO:", *, quantity: str = "Mean", history: int = 120,
                 interval: float = 0.5, module: str = "VMeter", **kw) -> None:
        self.quantity = quantity
        self.module = module
        self.history = History(list(CHANNELS), history, interval)
        super().__init__(prefix, **kw)

    def pvs(self) -> Sequence[str]:
        m = self.module
        names = [f"{m}:Updates_RBV"]
        for c in CHANNELS:
            names += [f"{c}:Enable_RBV", f"{c}:Range_RBV", f"{c}:Offset_RBV",
                      f"{m}:{c}:Mean_RBV", f"{m}:{c}:RMS_RBV"]
            if self.quantity not in ("Mean", "RMS"):
                names.append(f"{m}:{c}:{self.quantity}_RBV")
        return names

    @property
    def required(self) -> Sequence[str]:
        return [f"{self.module}:Updates_RBV"] + [f"{c}:Enable_RBV" for c in CHANNELS]

    def build(self) -> None:
        # room on the right for the history's right-hand axis label
        gs = self.fig.add_gridspec(1, 3, wspace=0.3, left=0.09, right=0.85)
        self.ax_bar = self.fig.add_subplot(gs[0, 0])
        self.ax_hist = self.fig.add_subplot(gs[0, 1:])
        x = np.arange(len(CHANNELS))
        self.mean_bars = self.ax_bar.bar(x - 0.2, np.zeros(len(CHANNELS)), 0.4, label="mean",
                                         color=[CHANNEL_COLOURS[c] for c in CHANNELS])
        self.rms_bars = self.ax_bar.bar(x + 0.2, np.zeros(len(CHANNELS)), 0.4, label="RMS",
                                        color=[CHANNEL_COLOURS[c] for c in CHANNELS], alpha=0.45,
                                        hatch="//")
        self.ax_bar.set_xticks(x, list(CHANNELS))
        self.ax_bar.axhline(0, color="black", lw=0.8)
        self.ax_bar.set_ylabel("voltage (V)")
        self.ax_bar.legend(loc="upper right", fontsize=8)
        self.ax_bar.grid(True, axis="y", ls="--", alpha=0.5)
        self.hist_lines = {c: self.ax_hist.plot([], [], color=CHANNEL_COLOURS[c], label=c, marker=".", ms=4)[0]
                           for c in CHANNELS}
        self.ax_hist.yaxis.tick_right()
        self.ax_hist.yaxis.set_label_position("right")
        self.ax_hist.set_xlabel("time (s)")
        self.ax_hist.set_ylabel(f"{self.quantity} (V)")
        self.ax_hist.grid(True, ls="--", alpha=0.5)
        self.ax_hist.set_xlim(-self.history.length * self.history.interval, 0)
        self.text = self.ax_hist.text(0.01, 0.98, "", transform=self.ax_hist.transAxes, va="top",
                                      fontsize=9, family="monospace")
        self._suptitle = self.fig.suptitle(f"{self.prefix} voltmeter", fontsize=11)

    def enabled_channels(self) -> tuple[str, ...]:
        """Enabled channels (``Enable_RBV`` on) that the voltmeter module measures."""
        return tuple(ch for ch in super().enabled_channels()
                     if self.cache.connected(f"{self.module}:{ch}:Mean_RBV"))

    def draw(self, now: float) -> None:
        c = self.cache
        chans = self.enabled_channels()
        vals = {}
        lim = 0.0
        peak = 0.0
        lines = []
        for i, ch in enumerate(CHANNELS):
            on = ch in chans
            mean = c.value(f"{self.module}:{ch}:Mean_RBV") if on else None
            rms = c.value(f"{self.module}:{ch}:RMS_RBV") if on else None
            self.mean_bars[i].set_height(float(mean) if mean is not None else 0.0)
            self.rms_bars[i].set_height(float(rms) if rms is not None else 0.0)
            vals[ch] = c.value(f"{self.module}:{ch}:{self.quantity}_RBV") if on else None
            if on:
                rng = self.pv_float(f"{ch}:Range_RBV")
                off = self.pv_float(f"{ch}:Offset_RBV")
                lim = max(lim, rng + abs(off))
                for v in (mean, rms):
                    if v is not None and np.isfinite(v):
                        peak = max(peak, abs(float(v)))
                lines.append(f"{ch}: mean {fnum(mean, '+.4f', 'V')}  RMS {fnum(rms, '.4f', 'V')}")
        if lim > 0:
            # zoom to the values (the full input window would hide mV readings), never beyond it
            top = min(lim, max(peak * 1.4, 1e-3))
            self.ax_bar.set_ylim(-top, top)
        self.history.sample(now, vals)
        self._draw_history(now, chans)
        ymin, ymax = self._hist_limits(chans)
        if ymax > ymin:
            self.ax_hist.set_ylim(ymin, ymax)
        lines.append(f"readings: {c.value(f'{self.module}:Updates_RBV')}")
        self.text.set_text("\n".join(lines))

    def _hist_limits(self, chans: tuple[str, ...]) -> tuple[float, float]:
        data = np.concatenate([self.history.values[ch] for ch in chans]) if chans else np.zeros(0)
        data = data[np.isfinite(data)]
        if data.size == 0:
            return 0.0, 0.0
        lo, hi = float(data.min()), float(data.max())
        pad = max(0.1 * (hi - lo), 1e-3)
        return lo - pad, hi + pad

    def _draw_history(self, now: float, chans: tuple[str, ...]) -> None:
        ages = self.history.ages(now)
        for ch, line in self.hist_lines.items():
            line.set_data(ages, self.history.values[ch])
            line.set_visible(ch in chans)

    def draw_offline(self, now: float) -> None:
        self.history.sample(now, {})
        self._draw_history(now, self.enabled_channels())


def _args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--quantity", default="Mean", choices=["Mean", "RMS", "Std", "PkPk", "Min", "Max"],
                    help="voltmeter quantity in the history (default Mean)")
    ap.add_argument("--module", default="VMeter", help="PV segment of the voltmeter module (default VMeter)")
    ap.add_argument("--history", type=int, default=120, help="history points (default 120)")
    ap.add_argument("--interval", type=float, default=0.5, help="seconds per history point (default 0.5)")


def main(argv: Sequence[str] | None = None) -> int:
    """``picodaq-vmeter``: voltmeter display."""
    return main_for(VoltMeter, "picodaq voltmeter display (Channel Access client)", _args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
