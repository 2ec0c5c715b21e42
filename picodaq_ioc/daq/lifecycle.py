"""The run lifecycle as events: the buffer manager tells its listeners when a run starts and ends.

Nobody polls for state changes and nobody guesses new runs from event numbers::

    class Recorder:                      # any object with these two methods (RunListener)
        def run_started(self, run: RunStart) -> None: ...
        def run_ended(self, summary: RunSummary) -> None: ...

    bm.add_run_listener(Recorder())

* ``run_started`` is called by :meth:`BufferManager.start`, in the caller's thread, after the
  counters were reset and *before* the acquisition thread starts: a listener knows the run
  before any of its events reaches a consumer.
* ``run_ended`` is called in the acquisition thread once the run is over (``stop``,
  ``max_events`` reached, an error) and the obligatory consumers drained the ring (bounded by
  the ``stop`` timeout), with the end-of-run summary. :meth:`BufferManager.stop` returns only
  after every ``run_ended`` listener returned.
* Listeners are called in the order they were added; one that raises is logged and the
  others are still called. They must not call blocking control methods of the buffer
  manager from ``run_ended`` (``start`` is fine from another thread).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .accounting import RunSummary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunStart:
    """What is known when a run starts."""

    #: increases by one with every run of the buffer manager (``RunSummary.run_id`` matches)
    run_id: int
    #: host wall clock (epoch seconds) of the start
    start_time: float
    #: the run stops by itself after this many events (None: until stopped)
    max_events: int | None


class RunListener(Protocol):
    """Receiver of run-lifecycle events (see the module docstring)."""

    def run_started(self, run: RunStart) -> None: ...

    def run_ended(self, summary: RunSummary) -> None: ...


@dataclass
class RunCallbacks:
    """A :class:`RunListener` made of two optional callables."""

    started: Callable[[RunStart], None] | None = None
    ended: Callable[[RunSummary], None] | None = None

    def run_started(self, run: RunStart) -> None:
        if self.started is not None:
            self.started(run)

    def run_ended(self, summary: RunSummary) -> None:
        if self.ended is not None:
            self.ended(summary)


class RunEvents:
    """The listeners of one buffer manager and the two emitters (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: tuple[RunListener, ...] = ()

    def add(self, listener: RunListener) -> None:
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def remove(self, listener: RunListener) -> None:
        with self._lock:
            self._listeners = tuple(x for x in self._listeners if x is not listener)

    def started(self, run: RunStart) -> None:
        for listener in self._listeners:
            try:
                listener.run_started(run)
            except Exception:  # one broken listener must not stop the run or the others
                log.exception("run-started listener %r failed", listener)

    def ended(self, summary: RunSummary) -> None:
        for listener in self._listeners:
            try:
                listener.run_ended(summary)
            except Exception:
                log.exception("run-ended listener %r failed", listener)


__all__ = ["RunCallbacks", "RunEvents", "RunListener", "RunStart"]
