"""Common machinery of the displays: PV cache, disconnected overlay, frame loop, CLI.

Every display is a class with ``update(now)`` that redraws from the newest cached PV
values. A GUI drives it with a matplotlib timer (:func:`run`, bounded frame rate); tests and
the screenshot script call ``update`` directly with the Agg backend.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from matplotlib.figure import Figure, SubFigure

from .pvcache import PVCache

__all__ = ["Display", "add_common_args", "make_figure", "root_figure", "run", "main_for"]

CHANNELS = ("A", "B", "C", "D")
#: PicoScope's own channel colours.
CHANNEL_COLOURS = {"A": "tab:blue", "B": "tab:red", "C": "tab:green", "D": "goldenrod"}

ONLINE_STATES = ("On", "Yes", "Enabled", "Enable", "1", "True")


def is_on(text: str, value: Any) -> bool:
    """Interpret an enum/boolean readback (``"On"`` or a non-zero value) as on."""
    if text:
        return text.strip() in ONLINE_STATES
    try:
        return bool(int(value))
    except (TypeError, ValueError):
        return False


def fnum(value: Any, fmt: str = ".4g", unit: str = "") -> str:
    """Format a possibly missing number for display (``"--"`` when missing or NaN)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "--"
    if v != v:  # NaN
        return "--"
    if fmt == "d":
        return f"{int(v)}{(' ' + unit) if unit else ''}"
    return f"{v:{fmt}}{(' ' + unit) if unit else ''}"


class Display:
    """Base class of a display bound to one IOC prefix.

    Parameters
    ----------
    prefix : str
        IOC prefix, e.g. ``"PICO:"``.
    fig : Figure or SubFigure, optional
        Where to draw; a new figure of :attr:`figsize` if omitted (the dashboard passes
        sub-figures).
    cache : PVCache, optional
        Shared cache of monitored PVs (one per prefix); created if omitted.

    Subclasses set :attr:`title`, :meth:`pvs` (what to monitor), :attr:`required` (what must
    be connected to count as online), build their artists in :meth:`build` and draw in
    :meth:`draw`.
    """

    title = "picodaq"
    figsize: tuple[float, float] = (8.0, 5.0)
    #: frame rate of the console command unless ``--fps`` is given
    default_fps = 5.0

    def __init__(self, prefix: str = "PICO:", *, fig: Figure | SubFigure | None = None,
                 cache: PVCache | None = None) -> None:
        self.prefix = prefix
        self.cache = cache if cache is not None else PVCache(prefix)
        self.cache.add(*self.pvs())
        self.fig = fig if fig is not None else make_figure(self.figsize)
        self.online = False
        self.frames = 0
        self.build()
        self._overlay = self.fig.text(
            0.5, 0.5, "", ha="center", va="center", fontsize=16, color="white", zorder=100,
            bbox={"boxstyle": "round", "facecolor": "firebrick", "alpha": 0.9}, visible=False)

    # -- to override -------------------------------------------------------------------------
    def pvs(self) -> Sequence[str]:
        """PV suffixes this display monitors."""
        return ()

    @property
    def required(self) -> Sequence[str]:
        """PVs that must be connected for the display to be online (default: all)."""
        return self.pvs()

    def build(self) -> None:
        """Create axes and artists."""

    def draw(self, now: float) -> None:
        """Update artists from the cache (called only while online)."""

    # -- frame -------------------------------------------------------------------------------
    def update(self, now: float | None = None) -> None:
        """Redraw from the newest PV values; shows the disconnected state if the IOC is gone.

        Parameters
        ----------
        now : float, optional
            ``time.monotonic()`` of this frame (for histories); taken now if omitted.
        """
        now = time.monotonic() if now is None else now
        self.online = self.cache.all_connected(self.required)
        self.frames += 1
        if self.online:
            self._overlay.set_visible(False)
            self.draw(now)
        else:
            missing = [s for s in self.required if not self.cache.connected(s)]
            more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
            self._overlay.set_text(f"DISCONNECTED\n{self.prefix}{missing[0] if missing else ''}{more}\n"
                                   "waiting for the IOC ...")
            self._overlay.set_visible(True)
            self.draw_offline(now)

    def draw_offline(self, now: float) -> None:
        """Hook while offline (histories record a gap); default does nothing."""

    # -- helpers for subclasses --------------------------------------------------------------
    def pv_on(self, suffix: str) -> bool:
        """Whether the enum/boolean readback ``suffix`` reads on (see :func:`is_on`)."""
        return is_on(self.cache.string(suffix), self.cache.value(suffix))

    def pv_float(self, suffix: str, default: float = 0.0) -> float:
        """Newest value of ``suffix`` as a float; ``default`` while missing, None or zero."""
        return float(self.cache.value(suffix, default) or default)

    def enabled_channels(self) -> tuple[str, ...]:
        """Channels whose ``<ch>:Enable_RBV`` reads on."""
        return tuple(c for c in CHANNELS if self.pv_on(f"{c}:Enable_RBV"))

    @property
    def offline_text(self) -> str:
        """The overlay text shown while disconnected ('' while online)."""
        return self._overlay.get_text() if self._overlay.get_visible() else ""

    def savefig(self, path: str, **kw: Any) -> None:
        """Save the (top-level) figure as an image."""
        root_figure(self.fig).savefig(path, **kw)

    def close(self) -> None:
        """Release the figure (the shared cache is closed by its owner)."""
        import matplotlib.pyplot as plt

        plt.close(root_figure(self.fig))


def root_figure(fig: Figure | SubFigure) -> Figure:
    """The top-level figure of ``fig`` (a dashboard part draws into a sub-figure)."""
    return fig.figure if isinstance(fig, SubFigure) else fig


def make_figure(figsize: tuple[float, float]) -> Figure:
    """A new pyplot figure (interactive backends get a window; Agg renders off screen)."""
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize)


def add_common_args(ap: argparse.ArgumentParser) -> None:
    """Options every display command accepts."""
    ap.add_argument("--prefix", action="append", default=None, metavar="P",
                    help="IOC prefix, e.g. PICO: (repeat for several IOCs; one window each). "
                         "Default PICO:")
    ap.add_argument("--fps", type=float, default=None,
                    help="maximum redraw rate in frames per second (default 5; dashboard 2)")
    ap.add_argument("--save", metavar="PNG", default=None,
                    help="headless: wait for the IOC, draw --frames frames, save the image "
                         "(one file per prefix: {prefix} in the name is replaced) and exit")
    ap.add_argument("--frames", type=int, default=3,
                    help="frames to draw before --save (default 3); displays with a history take one "
                         "point per --interval, so the image shows that many points")
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="--save: seconds to wait for the IOC (default 10)")


def run(displays: Iterable[Display], fps: float, show: Callable[[], Any] | None = None) -> list:
    """Drive the displays with matplotlib timers at ``fps`` frames/s until the windows close.

    Parameters
    ----------
    displays : iterable of Display
        One window (figure) each.
    fps : float
        Frames per second (the timer interval is ``1000/fps`` ms).
    show : callable, optional
        Event loop to enter (default ``matplotlib.pyplot.show``).

    Returns
    -------
    list of FuncAnimation
        The animations driving the displays (alive while referenced).
    """
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation

    interval_ms = max(1.0, 1000.0 / max(fps, 0.1))
    anims = []
    for d in displays:
        root = root_figure(d.fig)
        manager = getattr(root.canvas, "manager", None)
        if manager is not None:
            manager.set_window_title(f"{d.title} - {d.prefix}")

        def frame(_i: int, d: Display = d) -> list:
            d.update()
            return []

        anims.append(FuncAnimation(root, frame, interval=interval_ms, cache_frame_data=False))
    (show or plt.show)()
    return anims


def save_when_ready(display: Display, path: str, frames: int, timeout: float,
                    frame_interval: float = 0.2) -> bool:
    """Wait for the IOC, draw ``frames`` frames ``frame_interval`` s apart, save; True if online.

    A display with a client-side history (``display.history``) samples one point per history
    interval, so its frames are spaced by that interval and there are at least two: the saved
    image shows a line, not an empty plot (a history only starts when the display does)."""
    display.cache.wait_connected(display.required, timeout=timeout)
    import epics

    history = getattr(display, "history", None)
    if history is not None:
        frame_interval = max(frame_interval, float(history.interval))
        frames = max(frames, 2)
    for _ in range(max(frames, 1)):
        display.update()
        epics.ca.poll(frame_interval)
    display.update()
    display.savefig(path)
    return display.online


def main_for(factory: Callable[..., Display], description: str,
             extra_args: Callable[[argparse.ArgumentParser], None] | None = None,
             argv: Sequence[str] | None = None) -> int:
    """Console-command body shared by the displays: parse, build one display per prefix, run."""
    ap = argparse.ArgumentParser(description=description)
    add_common_args(ap)
    if extra_args is not None:
        extra_args(ap)
    args = ap.parse_args(argv)
    prefixes = args.prefix or ["PICO:"]
    if args.save:
        import matplotlib

        matplotlib.use("Agg")
    opts = {k: v for k, v in vars(args).items()
            if k not in ("prefix", "fps", "save", "frames", "timeout")}
    displays = [factory(p, **opts) for p in prefixes]
    if args.save:
        ok = True
        for d in displays:
            path = args.save.replace("{prefix}", d.prefix.strip(":").replace(":", "_"))
            ok &= save_when_ready(d, path, args.frames, args.timeout)
            print(f"saved {path} ({'online' if d.online else 'DISCONNECTED'})")
        return 0 if ok else 1
    run(displays, args.fps if args.fps is not None else getattr(factory, "default_fps", 5.0))
    return 0
