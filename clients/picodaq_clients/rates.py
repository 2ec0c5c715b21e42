"""Rate meter display: history of the trigger, event (and accepted-pulse) rates.

Two sources: ``client`` (default) samples the IOC's current-rate PVs every ``interval``
seconds while the display runs; ``ioc`` draws the IOC's own rate history
(``Rates:History_RBV`` against ``Rates:HistoryTime_RBV``, the ``rates`` analysis module),
which covers the whole run whenever the display was started.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from .base import Display, fnum, main_for
from .history import History

__all__ = ["RateMeter", "main"]

#: (PV suffix, label, colour); the pulse rate is optional (only with the pulse filter).
SERIES = (
    ("Stats:TriggerRate_RBV", "trigger rate", "tab:blue"),
    ("Stats:EventRate_RBV", "event rate", "tab:orange"),
    ("Pulse:Rate_RBV", "accepted pulses", "tab:green"),
)


class RateMeter(Display):
    """Rate history (client-side samples of the IOC's rate PVs).

    Parameters
    ----------
    prefix, fig, cache
        See :class:`~picodaq_clients.base.Display`.
    history : int
        Number of points kept (default 100, as in picoDAQ).
    interval : float
        Seconds between points (default 1).
    log : bool
        Logarithmic rate axis.
    source : {"client", "ioc"}
        Sample the current rates here, or draw the IOC's ``<module>:History_RBV``.
    module : str
        PV segment of the rate-history module (default ``Rates``).
    """

    title = "picodaq rate meter"
    figsize = (8.0, 4.0)

    def __init__(self, prefix: str = "PICO:", *, history: int = 100, interval: float = 1.0,
                 log: bool = False, source: str = "client", module: str = "Rates", **kw) -> None:
        if source not in ("client", "ioc"):
            raise ValueError(f"source: {source!r} is not one of 'client', 'ioc'")
        self.history = History([s for s, _, _ in SERIES], history, interval)
        self.log = log
        self.source = source
        self.module = module
        super().__init__(prefix, **kw)

    def _ioc_pvs(self) -> list[str]:
        return [f"{self.module}:History_RBV", f"{self.module}:HistoryTime_RBV"]

    def pvs(self) -> Sequence[str]:
        names = [s for s, _, _ in SERIES] + ["Stats:Events_RBV", "Stats:RunTime_RBV", "Stats:LiveFraction_RBV"]
        return names + (self._ioc_pvs() if self.source == "ioc" else [])

    @property
    def required(self) -> Sequence[str]:
        return [s for s in self.pvs() if not s.startswith("Pulse:")]

    def build(self) -> None:
        self.ax = self.fig.add_subplot(1, 1, 1)
        # trigger and event rate coincide without dead-time losses: event rate dashed on top
        styles = {"Stats:TriggerRate_RBV": "-", "Stats:EventRate_RBV": "--", "Pulse:Rate_RBV": "-"}
        self.lines = {s: self.ax.plot([], [], color=col, label=lab, ls=styles[s], lw=1.5, marker=".", ms=4)[0]
                      for s, lab, col in SERIES}
        self.ax.set_xlim(-self.history.length * self.history.interval, 0)
        self.ax.set_xlabel("time (s)")
        self.ax.set_ylabel("rate (Hz)")
        if self.log:
            self.ax.set_yscale("log")
        self.ax.grid(True, ls="--", alpha=0.5)
        if self.source == "ioc":
            (self.ioc_line,) = self.ax.plot([], [], color="tab:purple", drawstyle="steps-post", lw=1.5,
                                            label=f"{self.module}:History_RBV")
            for line in self.lines.values():
                line.set_visible(False)
            self.ax.set_xlabel("time since run start (s)")
        # the legend lists only what is drawn (in ioc mode the client series are hidden)
        self.ax.legend(handles=[self.ioc_line] if self.source == "ioc" else list(self.lines.values()),
                       loc="upper left", fontsize=8)
        self._suptitle = self.fig.suptitle(f"{self.prefix} rates", fontsize=11)

    def draw(self, now: float) -> None:
        c = self.cache
        vals = {s: (c.value(s) if c.connected(s) else None) for s, _, _ in SERIES}
        if self.source == "ioc":
            self._draw_ioc()
        else:
            self.history.sample(now, vals)
            self._draw_lines(now)
        self._suptitle.set_text(
            f"{self.prefix}  run time {fnum(c.value('Stats:RunTime_RBV'), '.1f', 's')}   "
            f"events {fnum(c.value('Stats:Events_RBV'), 'd')}\n"
            f"trigger rate {fnum(vals['Stats:TriggerRate_RBV'], '.3g', 'Hz')}   "
            f"event rate {fnum(vals['Stats:EventRate_RBV'], '.3g', 'Hz')}   "
            f"live {fnum(c.value('Stats:LiveFraction_RBV'), '.1f', '%')}")

    def _draw_lines(self, now: float) -> None:
        ages = self.history.ages(now)
        top = 0.0
        for s, line in self.lines.items():
            v = self.history.values[s]
            line.set_data(ages, v)
            line.set_visible(bool(np.isfinite(v).any()))
            if np.isfinite(v).any():
                top = max(top, float(np.nanmax(v)))
        if self.log:
            self.ax.set_ylim(0.1, max(top * 2.0, 1.0))
        else:
            self.ax.set_ylim(0.0, max(top * 1.15, 1.0))

    def _draw_ioc(self) -> None:
        rates = np.asarray(self.cache.value(f"{self.module}:History_RBV", np.zeros(0)), dtype=float).ravel()
        times = np.asarray(self.cache.value(f"{self.module}:HistoryTime_RBV", np.zeros(0)), dtype=float).ravel()
        n = min(rates.size, times.size)
        rates, times = rates[:n], times[:n]
        self.ioc_line.set_data(times, rates)
        ok = np.isfinite(times) & np.isfinite(rates)
        if ok.any():
            t0, t1 = float(times[ok].min()), float(times[ok].max())
            self.ax.set_xlim(t0, max(t1, t0 + 1e-9))
            top = float(rates[ok].max())
            self.ax.set_ylim(0.1 if self.log else 0.0, max(top * (2.0 if self.log else 1.15), 1.0))

    def draw_offline(self, now: float) -> None:
        if self.source == "ioc":
            return
        self.history.sample(now, {})
        self._draw_lines(now)


def _args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--history", type=int, default=100, help="history points (default 100)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds per point (default 1)")
    ap.add_argument("--log", action="store_true", help="logarithmic rate axis")
    ap.add_argument("--source", choices=["client", "ioc"], default="client",
                    help="client: sample the current rates here (default); ioc: draw the IOC's "
                         "rate history Rates:History_RBV (needs the 'rates' analysis module)")
    ap.add_argument("--module", default="Rates", help="PV segment of the rate-history module (default Rates)")


def main(argv: Sequence[str] | None = None) -> int:
    """``picodaq-rates``: rate meter display."""
    return main_for(RateMeter, "picodaq rate meter (Channel Access client)", _args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
