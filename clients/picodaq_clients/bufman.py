"""Buffer-manager panel: run time, triggers, live fraction, fill level, state and run control.

The Start/Pause/Resume/Stop buttons ``caput`` the IOC: Start -> ``Acquire`` = 1,
Stop -> ``Acquire`` = 0, Pause -> ``Pause`` = 1, Resume -> ``Pause`` = 0.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence

import numpy as np
from matplotlib.widgets import Button

from .base import Display, fnum, main_for
from .history import History

__all__ = ["BufferManagerPanel", "main", "COMMANDS"]

log = logging.getLogger(__name__)

#: Button label -> (PV suffix, value written).
COMMANDS: dict[str, tuple[str, int]] = {
    "Start": ("Acquire", 1),
    "Pause": ("Pause", 1),
    "Resume": ("Pause", 0),
    "Stop": ("Acquire", 0),
}

STATE_COLOURS = {"Running": "forestgreen", "Paused": "darkorange", "Idle": "grey",
                 "Stopped": "dimgrey", "Error": "red"}


class BufferManagerPanel(Display):
    """Run summary text, fill-level and live-fraction bars, rate history and run-control buttons.

    Attributes
    ----------
    buttons : dict
        Label -> :class:`matplotlib.widgets.Button`.
    last_command : str
        Label of the last button pressed and whether the put went out.
    """

    title = "picodaq buffer manager"
    figsize = (8.0, 5.0)

    def __init__(self, prefix: str = "PICO:", *, history: int = 100, interval: float = 1.0,
                 **kw) -> None:
        self.history = History(["rate"], history, interval)
        self.buttons: dict[str, Button] = {}
        self.last_command = ""
        super().__init__(prefix, **kw)

    def pvs(self) -> Sequence[str]:
        return ["State_RBV", "Acquire", "Pause", "StatusMessage_RBV", "Stats:RunTime_RBV",
                "Stats:Triggers_RBV", "Stats:Events_RBV", "Stats:LiveTime_RBV",
                "Stats:LiveFraction_RBV", "Stats:TriggerRate_RBV", "Buffer:FillLevel_RBV",
                "Buffer:Filled_RBV", "Buffer:Size_RBV"]

    def build(self) -> None:
        f = self.fig
        self._suptitle = f.suptitle(f"{self.prefix} buffer manager", fontsize=11)
        self.state_text = f.text(0.03, 0.86, "state: --", fontsize=13, weight="bold", color="white",
                                 bbox={"boxstyle": "round", "facecolor": "grey"})
        self.info_text = f.text(0.03, 0.70, "", fontsize=9.5, family="monospace", va="bottom")
        self.msg_text = f.text(0.03, 0.655, "", fontsize=8, color="dimgrey", va="bottom")
        self.ax_fill = f.add_axes((0.15, 0.58, 0.8, 0.045))
        self.ax_live = f.add_axes((0.15, 0.51, 0.8, 0.045))
        for ax, label in ((self.ax_fill, "buffer %"), (self.ax_live, "live %")):
            ax.set_xlim(0, 100)
            ax.set_yticks([])
            ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
            ax.tick_params(labelsize=7)
        self.fill_bar = self.ax_fill.barh([0], [0], color="tab:blue")[0]
        self.live_bar = self.ax_live.barh([0], [0], color="tab:green")[0]
        self.ax_fill.tick_params(labelbottom=False)
        self.ax_rate = f.add_axes((0.1, 0.2, 0.85, 0.25))
        (self.rate_line,) = self.ax_rate.plot([], [], color="tab:blue", marker=".", ms=4)
        self.ax_rate.set_xlim(-self.history.length * self.history.interval, 0)
        self.ax_rate.set_ylabel("trigger rate (Hz)", fontsize=8)
        self.ax_rate.set_xlabel("time (s)", fontsize=8)
        self.ax_rate.tick_params(labelsize=7)
        self.ax_rate.grid(True, ls="--", alpha=0.5)
        for i, label in enumerate(COMMANDS):
            ax = f.add_axes((0.1 + i * 0.215, 0.03, 0.19, 0.08))
            b = Button(ax, label)
            b.on_clicked(self._handler(label))
            self.buttons[label] = b

    def _handler(self, label: str) -> Callable[[object], None]:
        def on_click(_event: object) -> None:
            self.command(label)

        return on_click

    def command(self, label: str) -> bool:
        """Send the run-control command of button ``label`` (``Start``, ``Pause``, ...)."""
        suffix, value = COMMANDS[label]
        try:
            ok = self.cache.put(suffix, value, wait=False)
        except Exception as exc:  # a CA error must not kill the GUI
            log.error("caput %s%s %s failed: %s", self.prefix, suffix, value, exc)
            ok = False
        self.last_command = f"{label} {'sent' if ok else 'FAILED (IOC not connected)'}"
        return ok

    def click(self, label: str) -> None:
        """Fire the button's registered callbacks as a mouse click would (for scripts/tests)."""
        self.buttons[label]._observers.process("clicked", None)

    def draw(self, now: float) -> None:
        c = self.cache
        state = c.string("State_RBV", "--")
        self.state_text.set_text(f"state: {state}")
        self.state_text.get_bbox_patch().set_facecolor(STATE_COLOURS.get(state, "grey"))
        run = c.value("Stats:RunTime_RBV")
        live = c.value("Stats:LiveTime_RBV")
        frac = c.value("Stats:LiveFraction_RBV")
        fill = c.value("Buffer:FillLevel_RBV")
        rate = c.value("Stats:TriggerRate_RBV")
        self.info_text.set_text(
            f"TRun: {fnum(run, '.1f', 's')}   Triggers: {fnum(c.value('Stats:Triggers_RBV'), 'd')}   "
            f"Events: {fnum(c.value('Stats:Events_RBV'), 'd')}\n"
            f"Live time: {fnum(live, '.1f', 's')} ({fnum(frac, '.1f', '%')})   "
            f"rate: {fnum(rate, '.3g', 'Hz')}\n"
            f"buffer: {fnum(fill, '.0f', '%')} "
            f"({fnum(c.value('Buffer:Filled_RBV'), 'd')}/{fnum(c.value('Buffer:Size_RBV'), 'd')} slots)")
        self.msg_text.set_text(" | ".join(x for x in (c.string("StatusMessage_RBV"), self.last_command) if x))
        self.fill_bar.set_width(float(fill) if fill is not None else 0.0)
        self.live_bar.set_width(float(frac) if frac is not None else 0.0)
        self.history.sample(now, {"rate": rate})
        self._draw_rate(now)

    def _draw_rate(self, now: float) -> None:
        v = self.history.values["rate"]
        self.rate_line.set_data(self.history.ages(now), v)
        top = float(np.nanmax(v)) if np.isfinite(v).any() else 0.0
        self.ax_rate.set_ylim(0, max(top * 1.15, 1.0))

    def draw_offline(self, now: float) -> None:
        self.state_text.set_text("state: DISCONNECTED")
        self.state_text.get_bbox_patch().set_facecolor("firebrick")
        self.history.sample(now, {})
        self._draw_rate(now)


def _args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--history", type=int, default=100, help="rate history points (default 100)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds per point (default 1)")


def main(argv: Sequence[str] | None = None) -> int:
    """``picodaq-bufman``: buffer-manager panel with run control."""
    return main_for(BufferManagerPanel, "picodaq buffer-manager panel with run control "
                    "(Channel Access client)", _args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
