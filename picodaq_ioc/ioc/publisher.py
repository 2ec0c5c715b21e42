"""Waveform publishing: a random consumer of the buffer manager at a bounded rate.

A thread asks the buffer manager for the newest event (``wait_latest``) at most
``max_rate`` times per second, converts it to volts (vectorised, in the thread) and hands
it to the event loop, where only the *latest* hand-over is kept ("latest event wins").
Acquisition never waits for this thread, and caproto's send loop is never offered more
than ``max_rate`` updates per second (research notes §0 finding 2).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..daq.events import EventBatch
from ..daq.lifecycle import RunCallbacks
from ..scope.types import Applied

log = logging.getLogger("picodaq_ioc.ioc.publisher")


@dataclass
class Frame:
    """One event prepared for the PVs (arrays are read-only)."""

    applied: Applied
    volts: dict[str, np.ndarray]  # float32 per enabled channel
    overflow: dict[str, bool]
    event_number: int
    t_trigger: float
    timestamp: float  # the event's trigger time on the wall clock (the PVs' timestamp)


def frame_from_batch(batch: EventBatch, start_wall: float | None = None) -> Frame:
    """Volts of the last event of ``batch`` for each of its channels.

    The frame's ``timestamp`` -- given to every PV of the frame -- is the event's trigger
    time: the run's wall-clock start plus ``t_trigger`` (the backend clock since that
    start), as an EPICS record time-stamps a value by its event, not by when it was sent.
    Without ``start_wall`` it is the time the frame is taken."""
    i = len(batch) - 1
    volts: dict[str, np.ndarray] = {}
    overflow: dict[str, bool] = {}
    for j, ch in enumerate(batch.channels):
        v = batch.applied.to_volts(ch, batch.raw[i, j, :], dtype=np.float32)
        v = np.ascontiguousarray(v, dtype=np.float32)
        v.flags.writeable = False
        volts[ch] = v
        overflow[ch] = bool(batch.overflow[i, j])
    return Frame(applied=batch.applied, volts=volts, overflow=overflow,
                 event_number=int(batch.event_number[i]), t_trigger=float(batch.t_trigger[i]),
                 timestamp=time.time() if not start_wall else start_wall + float(batch.t_trigger[i]))


class WaveformPublisher:
    """Bounded-rate random consumer feeding an asyncio coroutine with the latest frame."""

    def __init__(self, bm: Any, max_rate: float = 20.0) -> None:
        self.bm = bm
        self._max_rate = float(max_rate)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._reset = threading.Event()
        self._rate_changed = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._latest: Frame | None = None
        self._ready: asyncio.Event | None = None
        self._published: deque[float] = deque(maxlen=4096)
        self.frames_taken = 0
        self.frames_published = 0
        self.errors = 0
        add_listener = getattr(bm, "add_run_listener", None)
        if add_listener is not None:
            # told in the starting thread, before the run's first event exists: a reset that came
            # later (from the IOC loop) could let the run's first event be published twice
            add_listener(RunCallbacks(started=lambda run: self.new_run()))

    # ------------------------------------------------------------- control
    @property
    def max_rate(self) -> float:
        return self._max_rate

    @max_rate.setter
    def max_rate(self, value: float) -> None:
        self._max_rate = max(0.0, float(value))
        self._rate_changed.set()
        self._wake.set()

    def new_run(self) -> None:
        """Event numbers restart at 1: forget the last one seen."""
        self._reset.set()
        self._wake.set()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._ready = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="picodaq-publisher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    # ------------------------------------------------------------- thread side
    #: slowest publish rate honoured (a smaller positive MaxRate is treated as this)
    MIN_RATE = 0.01

    def _run(self) -> None:
        state = {"last": 0, "next_t": 0.0}
        while not self._stop.is_set():
            try:
                if not self._step(state):
                    return
            except Exception:  # the publisher must never die: log, pause, go on
                self.errors += 1
                log.exception("waveform publisher error")
                self._stop.wait(0.5)

    def _step(self, state: dict) -> bool:
        """One publishing step; False when the thread should end."""
        if self._reset.is_set():
            self._reset.clear()
            state["last"] = 0
        rate = self._max_rate
        if not rate > 0:  # 0 (or NaN): publishing off
            self._wake.wait(0.5)
            self._wake.clear()
            return True
        period = 1.0 / max(rate, self.MIN_RATE)
        now = time.monotonic()
        if self._rate_changed.is_set():  # a new MaxRate: the next frame is due one new period from now
            self._rate_changed.clear()
            state["next_t"] = min(state["next_t"], now + period)
        if now < state["next_t"]:
            # bounded waits: a new MaxRate or a stop takes effect within a second
            self._wake.wait(min(state["next_t"] - now, 1.0))
            self._wake.clear()
            return True
        try:
            batch = self.bm.wait_latest(state["last"], 0.25)
        except Exception:
            self.errors += 1
            log.exception("wait_latest failed")
            self._stop.wait(0.5)
            return True
        if batch is None or len(batch) == 0:
            return True
        number = int(batch.event_number[-1])
        if number <= state["last"]:
            return True
        state["last"] = number
        state["next_t"] = max(now, state["next_t"]) + period
        if state["next_t"] < time.monotonic():  # fell behind (slow loop): do not burst to catch up
            state["next_t"] = time.monotonic() + period
        frame = frame_from_batch(batch, getattr(self.bm, "start_wall", None))
        self.frames_taken += 1
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        try:
            loop.call_soon_threadsafe(self._hand_over, frame)
        except RuntimeError:  # loop closed during shutdown
            return False
        return True

    # ------------------------------------------------------------- loop side
    def _hand_over(self, frame: Frame) -> None:
        self._latest = frame  # latest event wins
        if self._ready is not None:
            self._ready.set()

    async def frames(self, write: Callable[[Frame], Any]) -> None:
        """Forever: await the next frame and ``await write(frame)`` (exceptions are logged)."""
        assert self._ready is not None, "start() first"
        while True:
            await self._ready.wait()
            self._ready.clear()
            frame, self._latest = self._latest, None
            if frame is None:
                continue
            try:
                await write(frame)
            except Exception:
                self.errors += 1
                log.exception("publishing a waveform frame failed")
                continue
            self.frames_published += 1
            self._published.append(time.monotonic())

    def rate(self, window: float = 2.0) -> float:
        """Frames published per second over the last ``window`` seconds."""
        now = time.monotonic()
        n = sum(1 for t in self._published if now - t <= window)
        return n / window
