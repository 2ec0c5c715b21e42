"""Event batches, run states and statistics of the buffer manager (no EPICS)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from ..scope.types import Applied


class RunState(str, Enum):  # noqa: UP042 - str mix-in kept for compatibility
    IDLE = "Idle"
    RUNNING = "Running"
    PAUSED = "Paused"
    STOPPED = "Stopped"
    ERROR = "Error"


@dataclass
class EventBatch:
    """Consecutive events handed to a consumer.

    For obligatory consumers the arrays are read-only *views* into ring slots and
    are valid until the batch is released. For random consumers they are copies.
    """

    applied: Applied  # configuration (incl. generation) these events were taken with
    channels: tuple[str, ...]  # enabled channels, the order of axis 1 of ``raw``
    raw: np.ndarray  # int16 [k, n_channels, n_samples]
    event_number: np.ndarray  # int64 [k], 1-based, counts every delivered event of the run
    t_trigger: np.ndarray  # float64 [k], seconds since run start (backend clock)
    trigger_time_offset_s: np.ndarray  # float64 [k]
    overflow: np.ndarray  # bool [k, n_channels]
    auto_triggered: np.ndarray  # bool [k]
    #: float64 [k], the run's live time up to and including the event's capture, s
    live_time: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.raw.shape[0])

    def volts(self, dtype=np.float32) -> np.ndarray:
        """All channels in volts, ``[k, n_channels, n_samples]`` (a new array)."""
        scale = np.array([self.applied.volts_per_count(c) for c in self.channels], dtype=dtype)
        offset = np.array([self.applied.channels[c].offset_v for c in self.channels], dtype=dtype)
        return self.raw.astype(dtype) * scale[None, :, None] - offset[None, :, None]

    def channel_volts(self, ch: str, dtype=np.float32) -> np.ndarray:
        """One channel in volts, ``[k, n_samples]``."""
        i = self.channels.index(ch)
        return self.applied.to_volts(ch, self.raw[:, i, :], dtype=dtype)


@dataclass(frozen=True)
class RunStats:
    """A consistent snapshot of the buffer manager's accounting.

    Definitions (all times on the backend clock, seconds; see
    ``picodaq_ioc.daq.buffer_manager`` for the details):
    - ``run_time``: time in RUNNING since start, pauses excluded.
    - ``live_time``: time the scope was armed and waiting for a trigger (sum of
      ``Capture.live_time_s``, plus the armed time of captures aborted by pause/stop/
      reconfiguration).
    - ``dead_time = run_time - live_time`` (readout, re-arm, waiting for a free slot,
      reconfiguration, reconnection).
    - ``triggers``: segments read from the scope; ``events``: events delivered to the
      ring; ``discarded``: segments not delivered: captures of an outdated configuration
      generation, segments beyond ``max_events`` of the last rapid-block capture, and
      segments abandoned when ``stop`` timed out on a consumer that never released.
      ``triggers == events + discarded`` once acquisition has ended.
    - ``processed``: events released by every obligatory consumer (= ``events`` without any).
    - rates: ``*_rate`` over the last ``rate_window`` s of run time (0 unless RUNNING);
      ``mean_*`` over the run.
    - ``filled``/``fill_level``: events in the ring not yet released by every obligatory
      consumer.
    - ``ring_wait_time``: time the acquisition waited for a free slot (host clock; it is
      part of ``dead_time`` on a paced or host-clock backend, and on the simulator, which
      adds host time between ``read()`` and ``arm()`` to its clock).
    """

    state: RunState
    run_time: float
    live_time: float
    dead_time: float
    live_fraction: float  # 0..1, live_time / run_time
    triggers: int
    events: int
    discarded: int
    processed: int  # events released by every obligatory consumer
    trigger_rate: float
    event_rate: float
    mean_trigger_rate: float
    filled: int  # slots holding events not yet released by every obligatory consumer
    n_buffers: int
    fill_level: float  # 0..1
    generation: int
    ring_wait_time: float  # part of dead_time spent waiting for a free slot
