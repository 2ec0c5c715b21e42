"""Lossless ring buffer between a scope backend and its consumers (API skeleton).

THIS FILE IS THE AGREED PUBLIC API; the implementation fills in the bodies.

Usage from plain Python::

    bm = BufferManager(backend, n_buffers=16)
    bm.configure(channels, timebase, trigger, siggen)      # -> Applied
    cons = bm.add_obligatory("pulses")                      # pull style
    bm.start()
    while (batch := cons.get(max_events=256, timeout=1.0)) is not None:
        analyse(batch)                                       # read-only views
        cons.release(batch)
    bm.stop()                                                # -> RunSummary

    bm.add_obligatory_callback("voltmeter", fn)             # fn(batch) in its own thread
    ev = bm.latest()                                         # random consumer: a copy, never blocks
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional

from ..scope.types import Applied, ChannelConfig, ScopeBackend, SigGenConfig, TimebaseConfig, TriggerConfig
from .events import EventBatch, RunState, RunStats


class ObligatoryConsumer:
    """Handle of one obligatory consumer. Sees every event, in order, exactly once."""

    name: str

    def get(self, max_events: int = 1, timeout: Optional[float] = None) -> Optional[EventBatch]:
        """Wait for the next 1..max_events consecutive events (views, valid until released).

        Returns None on timeout, or when the run has ended and every event was handed out.
        Batches never span a configuration change (one ``applied`` per batch).
        """
        raise NotImplementedError

    def release(self, batch: EventBatch) -> None:
        """Give the slots of ``batch`` back. Must be called before the next ``get``."""
        raise NotImplementedError

    def detach(self) -> None:
        """Stop gating the ring (its pending slots are released)."""
        raise NotImplementedError


class BufferManager:
    def __init__(self, backend: ScopeBackend, n_buffers: int = 16, *, rate_window: float = 2.0,
                 log: Optional[Callable[[str], None]] = None) -> None:
        raise NotImplementedError

    # --- configuration -------------------------------------------------------------
    def configure(self, channels: Mapping[str, ChannelConfig], timebase: TimebaseConfig,
                  trigger: TriggerConfig, siggen: SigGenConfig | None = None) -> Applied:
        """Apply atomically. While running: pause acquisition, drop any capture of the old
        configuration not yet in the ring, wait until consumers released the old events,
        reconfigure the backend (and re-allocate the ring if shapes changed), resume.
        Events of the old generation never appear in a batch with the new one."""
        raise NotImplementedError

    def resize(self, n_buffers: int) -> None:
        raise NotImplementedError

    @property
    def applied(self) -> Optional[Applied]:
        raise NotImplementedError

    # --- consumers -----------------------------------------------------------------
    def add_obligatory(self, name: str) -> ObligatoryConsumer:
        raise NotImplementedError

    def add_obligatory_callback(self, name: str, fn: Callable[[EventBatch], None],
                                max_events: int = 256,
                                on_error: Callable[[str, BaseException], None] | None = None,
                                stop_on_error: bool = False) -> ObligatoryConsumer:
        """Run ``fn(batch)`` in a dedicated thread for every batch. If ``fn`` raises, the
        error is logged with the consumer's name, ``on_error`` is called and the consumer
        is detached (or the run stops cleanly if ``stop_on_error``)."""
        raise NotImplementedError

    def latest(self) -> Optional[EventBatch]:
        """Random consumer: a copy of the newest event in the ring (k = 1), or None."""
        raise NotImplementedError

    def wait_latest(self, after_event: int, timeout: float) -> Optional[EventBatch]:
        """Random consumer: wait until an event newer than ``after_event`` exists; copy it."""
        raise NotImplementedError

    # --- run control ---------------------------------------------------------------
    def start(self, max_events: Optional[int] = None) -> None:
        """IDLE/STOPPED -> RUNNING (counters reset). With ``max_events`` the run stops by
        itself after that many events were delivered."""
        raise NotImplementedError

    def pause(self) -> None:
        raise NotImplementedError

    def resume(self) -> None:
        raise NotImplementedError

    def stop(self, timeout: float = 10.0):
        """-> RUNNING/PAUSED -> STOPPED; waits until obligatory consumers drained the ring;
        returns the end-of-run summary."""
        raise NotImplementedError

    def wait_processed(self, n_events: int, timeout: Optional[float] = None) -> bool:
        """Block until ``n_events`` events were released by every obligatory consumer."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @property
    def state(self) -> RunState:
        raise NotImplementedError

    def stats(self) -> RunStats:
        raise NotImplementedError
