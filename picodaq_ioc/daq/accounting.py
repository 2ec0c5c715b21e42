"""Accounting of a run: the end-of-run summary (see the buffer manager's docstring for the figures)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime


@dataclass(frozen=True)
class RunSummary:
    """End-of-run summary (written to the log and, if configured, to a ``.sum`` file).

    ``dead_fraction = 1 - live_time / run_time``; ``mean_rate = events / run_time``;
    ``mean_trigger_rate = triggers / run_time`` (0 when ``run_time`` is 0).
    """

    start_time: float  # epoch seconds (host wall clock) of the start
    run_time: float
    triggers: int
    events: int
    discarded: int
    truncated: int
    processed: int
    live_time: float
    dead_time: float
    dead_fraction: float
    ring_wait_time: float
    mean_rate: float
    mean_trigger_rate: float
    state: str
    last_error: str | None
    n_buffers: int
    #: the run's number (``RunStart.run_id`` of the same run)
    run_id: int = 0

    @property
    def start_time_str(self) -> str:
        return datetime.fromtimestamp(self.start_time).strftime("%y%m%d-%H%M")

    def format(self) -> str:
        """One human-readable line (picoDAQ style plus the new figures)."""
        s = (f"Run Summary: started {self.start_time_str}  Trun={self.run_time:.3f}s  "
             f"Ntrig={self.triggers}  Nev={self.events}  Ndiscarded={self.discarded}  "
             f"Tlife={self.live_time:.3f}s  dead={100.0 * self.dead_fraction:.2f}%  "
             f"ringwait={self.ring_wait_time:.3f}s  rate={self.mean_rate:.6g}Hz  state={self.state}")
        if self.last_error:
            s += f"  last_error={self.last_error!r}"
        return s

    def as_dict(self) -> dict:
        return asdict(self)


__all__ = ["RunSummary"]
