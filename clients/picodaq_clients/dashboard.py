"""All displays of one IOC in one window (one shared set of CA monitors)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .base import Display, main_for, make_figure
from .bufman import BufferManagerPanel
from .hists import Histograms
from .osci import Oscilloscope
from .pvcache import PVCache
from .rates import RateMeter
from .vmeter import VoltMeter

__all__ = ["Dashboard", "main"]


class Dashboard(Display):
    """Oscilloscope, voltmeter, rate meter, buffer-manager panel and histograms together.

    Attributes
    ----------
    osci, vmeter, rates, bufman, hists : Display
        The parts, each drawing into its own sub-figure.
    """

    title = "picodaq dashboard"
    figsize = (18.0, 10.0)
    default_fps = 2.0  # one frame draws five displays (~0.2 s on a loaded 2-core machine)

    def __init__(self, prefix: str = "PICO:", *, fig=None, cache: PVCache | None = None,
                 **_: object) -> None:
        self.prefix = prefix
        self.cache = cache if cache is not None else PVCache(prefix)
        self.fig = fig if fig is not None else make_figure(self.figsize)
        gs = self.fig.add_gridspec(2, 3, width_ratios=(1.3, 1.0, 1.0))
        sub = self.fig.add_subfigure
        self.osci = Oscilloscope(prefix, fig=sub(gs[0, 0]), cache=self.cache)
        self.bufman = BufferManagerPanel(prefix, fig=sub(gs[0, 1]), cache=self.cache)
        self.rates = RateMeter(prefix, fig=sub(gs[0, 2]), cache=self.cache)
        self.vmeter = VoltMeter(prefix, fig=sub(gs[1, 0]), cache=self.cache)
        self.hists = Histograms(prefix, fig=sub(gs[1, 1:]), cache=self.cache)
        self.parts: list[Display] = [self.osci, self.bufman, self.rates, self.vmeter, self.hists]
        self.online = False
        self.frames = 0

    def pvs(self) -> Sequence[str]:
        return [s for p in self.parts for s in p.pvs()]

    @property
    def required(self) -> Sequence[str]:
        return [s for p in self.parts for s in p.required]

    def update(self, now: float | None = None) -> None:
        """Update every part (each shows its own disconnected state)."""
        for p in self.parts:
            p.update(now)
        self.online = all(p.online for p in self.parts)
        self.frames += 1

    @property
    def offline_text(self) -> str:
        return "\n".join(t for t in (p.offline_text for p in self.parts) if t)


def _args(ap: argparse.ArgumentParser) -> None:
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """``picodaq-dashboard``: all displays in one window."""
    return main_for(Dashboard, "picodaq dashboard: all displays in one window (Channel Access client)",
                    _args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
