"""Oscilloscope display: every enabled channel's waveform against ``TimeAxis_RBV``.

One panel per enabled channel (shared time axis), y-limits from the channel's applied
range and offset, the trigger level (dashed, on the trigger channel) and t = 0 (dotted),
and the event count and rates in the title.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from .base import CHANNEL_COLOURS, CHANNELS, Display, fnum, main_for

__all__ = ["Oscilloscope", "main", "time_scale"]


def time_scale(span: float) -> tuple[float, str]:
    """Unit for a time axis spanning ``span`` seconds: (factor, unit) as in picoDAQ."""
    if span < 1e-3:
        return 1e6, "µs"
    if span < 1.0:
        return 1e3, "ms"
    return 1.0, "s"


def channel_limits(rng: float, offset: float) -> tuple[float, float]:
    """Visible signal window of a channel: the device measures ``signal + offset`` in ±range."""
    return -rng - offset, rng - offset


class Oscilloscope(Display):
    """Waveforms of all enabled channels.

    Parameters
    ----------
    prefix, fig, cache
        See :class:`~picodaq_clients.base.Display`.
    max_points : int
        Draw at most this many points per trace (every k-th sample beyond).

    Attributes
    ----------
    axes : dict
        Channel letter -> Axes for the enabled channels.
    lines : dict
        Channel letter -> Line2D of its waveform.
    """

    title = "picodaq oscilloscope"
    figsize = (8.0, 6.0)

    def __init__(self, prefix: str = "PICO:", *, max_points: int = 5000, **kw) -> None:
        self.max_points = int(max_points)
        self.axes: dict = {}
        self.lines: dict = {}
        self.trigger_line = None
        self.zero_lines: list = []
        self._layout: tuple[str, ...] | None = None
        self.step = 1
        self.time_unit = ("µs", 1e6)
        super().__init__(prefix, **kw)

    def pvs(self) -> Sequence[str]:
        names = ["TimeAxis_RBV", "ArrayCounter_RBV", "Stats:Events_RBV", "Stats:EventRate_RBV",
                 "Stats:TriggerRate_RBV", "Trigger:Enable_RBV", "Trigger:Source_RBV",
                 "Trigger:Level_RBV", "Trigger:Direction_RBV"]
        for c in CHANNELS:
            names += [f"{c}:Enable_RBV", f"{c}:Range_RBV", f"{c}:Offset_RBV", f"{c}:Waveform_RBV",
                      f"{c}:Overflow_RBV"]
        return names + list(self.OPTIONAL)

    #: shown when the IOC serves them: event number of the displayed waveform
    OPTIONAL = ("EventNumber_RBV",)

    @property
    def required(self) -> Sequence[str]:
        return [s for s in self.pvs() if s not in self.OPTIONAL]

    def event_number(self):
        """Event number of the displayed waveform (``EventNumber_RBV``; else ``Stats:Events_RBV``)."""
        if self.cache.connected("EventNumber_RBV"):
            return self.cache.value("EventNumber_RBV")
        return self.cache.value("Stats:Events_RBV")

    def build(self) -> None:
        self._suptitle = self.fig.suptitle(f"{self.prefix} oscilloscope", fontsize=11)

    def _relayout(self, chans: tuple[str, ...]) -> None:
        for ax in list(self.axes.values()):
            ax.remove()
        self.axes.clear()
        self.lines.clear()
        self.zero_lines = []
        self.trigger_line = None
        n = max(len(chans), 1)
        first = None
        for i, c in enumerate(chans):
            ax = self.fig.add_subplot(n, 1, i + 1, sharex=first)
            first = first or ax
            (line,) = ax.plot([], [], color=CHANNEL_COLOURS[c], lw=1.0, label=c)
            ax.set_ylabel(f"{c}  voltage (V)", color=CHANNEL_COLOURS[c])
            ax.grid(True, ls="--", alpha=0.5)
            self.zero_lines.append(ax.axvline(0.0, color="grey", ls=":", lw=1.0))
            if i < n - 1:
                ax.tick_params(labelbottom=False)
            self.axes[c] = ax
            self.lines[c] = line
        self._layout = chans

    def draw(self, now: float) -> None:
        cache = self.cache
        chans = self.enabled_channels()
        if chans != self._layout:
            self._relayout(chans)
        t = np.asarray(cache.value("TimeAxis_RBV", np.zeros(0)), dtype=float).ravel()
        span = float(t[-1] - t[0]) if t.size > 1 else 1e-6
        scale, unit = time_scale(span)
        self.time_unit = (unit, scale)
        for c in chans:
            w = np.asarray(cache.value(f"{c}:Waveform_RBV", np.zeros(0)), dtype=float).ravel()
            n = min(t.size, w.size)
            self.step = max(1, -(-n // self.max_points)) if n else 1
            line = self.lines[c]
            line.set_data(t[:n:self.step] * scale, w[:n:self.step])
            line.set_alpha(1.0)
            rng = self.pv_float(f"{c}:Range_RBV", 1.0)
            off = self.pv_float(f"{c}:Offset_RBV")
            self.axes[c].set_ylim(*channel_limits(rng, off))
            over = self.pv_on(f"{c}:Overflow_RBV")
            self.axes[c].set_ylabel(f"{c}  voltage (V)" + ("\nOVER RANGE" if over else ""),
                                    color="red" if over else CHANNEL_COLOURS[c])
            if t.size > 1:
                self.axes[c].set_xlim(t[0] * scale, t[-1] * scale)
        if chans:
            self.axes[chans[-1]].set_xlabel(f"time ({unit})")
        self._draw_trigger(chans)
        self._suptitle.set_text(
            f"{self.prefix}  event {fnum(self.event_number(), 'd')}   "
            f"event rate {fnum(cache.value('Stats:EventRate_RBV'), '.3g', 'Hz')}   "
            f"trigger rate {fnum(cache.value('Stats:TriggerRate_RBV'), '.3g', 'Hz')}\n"
            f"{self.trigger_text()}")

    def trigger_text(self) -> str:
        """``Trigger: A, -0.05 V Falling`` or ``Trigger: none``."""
        c = self.cache
        if not self.pv_on("Trigger:Enable_RBV"):
            return "Trigger: none"
        return (f"Trigger: {c.string('Trigger:Source_RBV', '?')}, "
                f"{fnum(c.value('Trigger:Level_RBV'), '.3g', 'V')} {c.string('Trigger:Direction_RBV')}")

    def _draw_trigger(self, chans: tuple[str, ...]) -> None:
        c = self.cache
        src = c.string("Trigger:Source_RBV")
        enabled = self.pv_on("Trigger:Enable_RBV")
        if self.trigger_line is not None:
            self.trigger_line.remove()
            self.trigger_line = None
        if enabled and src in chans:
            level = self.pv_float("Trigger:Level_RBV")
            self.trigger_line = self.axes[src].axhline(level, color=CHANNEL_COLOURS[src], ls="--",
                                                       lw=1.0, alpha=0.8)

    def draw_offline(self, now: float) -> None:
        for line in self.lines.values():
            line.set_alpha(0.3)


def _args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--max-points", type=int, default=5000,
                    help="draw at most this many points per trace (default 5000)")


def main(argv: Sequence[str] | None = None) -> int:
    """``picodaq-osci``: oscilloscope display."""
    return main_for(Oscilloscope, "picodaq oscilloscope display (Channel Access client)", _args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
