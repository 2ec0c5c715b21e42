"""Lossless ring buffer between a scope backend and its consumers.

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

Design
------
* The ring holds ``n_buffers`` preallocated event slots: ``raw`` int16
  ``[n_buffers, n_channels, n_samples]`` plus per-slot metadata (event number int64,
  trigger time float64, sub-sample trigger offset float64, overflow bool per channel,
  auto-trigger flag).  It is re-allocated only when the event shape changes
  (``configure`` with other channels/samples, ``resize``).
* Events are numbered by a run-wide sequence ``seq`` (0-based); event ``seq`` lives in
  slot ``seq % n_buffers`` and carries ``event_number = seq + 1``.  ``head`` is the
  number of events written, each obligatory consumer has ``next`` (first event not
  yet handed out) and ``released`` (first event not yet released); ``tail`` is the
  minimum of ``released`` over the obligatory consumers.  The acquisition thread
  writes at most ``n_buffers - (head - tail)`` events, so a slot is overwritten only
  after every obligatory consumer released it.
* One acquisition thread per run: ``arm -> wait -> read -> copy``.  A capture of K
  rapid-block segments is copied with at most two vectorised slice assignments per
  contiguous piece of free ring (wrap-around).  When the ring is full the thread
  waits on a ``threading.Condition`` (no sleep-polling); that time is dead time and
  is summed in ``RunStats.ring_wait_time``.
* Control calls (pause, resume, stop, configure while running) are handed to the
  acquisition thread, which executes every backend call; the backend therefore sees
  calls from one thread at a time.

Accounting (see also :class:`~picodaq_ioc.daq.events.RunStats`)
----------------------------------------------------------------
All times are on ``backend.clock()`` (the simulator's clock is simulated time, so the
figures are right both paced and unpaced) except ``ring_wait_time``, measured on the
host clock (``time.perf_counter``); on a paced backend the two agree, and the simulator
adds host time between ``read()`` and ``arm()`` to its dead time.

* ``run_time``: backend clock from the start of the run (taken by the acquisition
  thread before the first ``arm``) to now / to the end of the run, minus the time
  spent PAUSED.  The pause starts when the acquisition thread has aborted the
  capture in flight and ends when it resumes.
* ``live_time``: sum of ``Capture.live_time_s`` of every capture read, plus
  ``clock() - t_arm`` for a capture aborted by pause/stop/configure.
* ``dead_time = run_time - live_time``.
* ``triggers``: segments read from the backend (each rapid-block segment is one).
* ``events``: events written into the ring (delivered).  ``discarded``: segments not
  delivered: captures carrying an outdated configuration generation, segments beyond
  ``max_events`` of the last capture (also counted in ``RunSummary.truncated``), and
  segments abandoned because ``stop`` timed out while consumers did not release slots.
  ``triggers == events + discarded`` once acquisition has ended; while running the
  difference is at most the segments of the capture being copied.
* ``processed``: events released by every obligatory consumer (= ``events`` when there
  is none).
* Current rates: counts in the sliding window of the last ``rate_window`` seconds of
  run time (sampled every ``rate_window / 16``), divided by the run time elapsed since
  the window's first sample.  Mean rates: counts / ``run_time``.
* Event times (``EventBatch.t_trigger``) are backend-clock seconds since the start of
  the run, pauses included (like picoDAQ's ``timeStamp``).

Backend errors
--------------
* ``Busy`` / ``Timeout``: counted in ``n_retries``; the capture (if any) is abandoned and
  the scope re-armed after a 10 ms back-off (a condition wait, interruptible).
* ``DeviceDisconnected``: ``last_error`` is set, then ``close(); open(serial);
  configure(<last configuration>)`` is retried with exponential back-off (0.1 s doubling up to 5 s,
  condition waits interruptible by ``stop``); on success the ring is drained, the new
  generation installed, ``n_reconnects`` incremented and counting continues.  The time
  spent is run time (dead).
* Anything else: state ERROR, ``last_error`` holds the message; consumers drain and
  ``get`` returns None; ``stop`` returns the summary; ``start`` may be called again.

Choices
-------
* ``start(max_events=N)`` delivers exactly ``N`` events: if the last rapid-block capture
  has more segments, the surplus is counted in ``discarded`` (and ``truncated``), never
  silently dropped.  Choose ``N`` a multiple of the segment count to avoid that.
* ``ObligatoryConsumer.get`` releases a batch that is still held (picoDAQ's "the next
  request means done"), so forgetting ``release`` never deadlocks the ring.
* ``configure`` (and re-configuration after a reconnect) waits until every obligatory
  consumer released every event of the old generation before the backend is
  reconfigured, so batches never mix generations and the ring may be re-allocated.
  Random consumers (``latest``) never get an event of an older generation either.
* ``stop(timeout)`` gives the obligatory consumers ``timeout`` seconds in total to release
  what is in the ring; a consumer that does not is named in the log, and segments that
  found no free slot by then are counted in ``discarded``.
* Control calls that wait for the acquisition thread (``pause``, ``resume``,
  ``configure``/``resize`` while running) raise ``RuntimeError`` when called from an
  obligatory callback (the acquisition may be waiting for that very consumer); ``stop``
  from a callback only requests the stop.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

import numpy as np

from ..scope.errors import Busy, DeviceDisconnected, DeviceNotFound, ScopeError, Timeout
from ..scope.types import (
    Applied,
    Capture,
    ChannelConfig,
    ScopeBackend,
    SigGenConfig,
    TimebaseConfig,
    TriggerConfig,
)
from .accounting import RunSummary
from .events import EventBatch, RunState, RunStats
from .lifecycle import RunEvents, RunListener, RunStart

logger = logging.getLogger(__name__)

#: seconds the acquisition thread blocks in ``backend.wait`` before looking for commands
WAIT_CHUNK_S = 0.05
#: longest back-off between reconnection attempts, s
MAX_RECONNECT_BACKOFF_S = 5.0


class _Cmd:
    """A control request handed to the acquisition thread."""

    __slots__ = ("kind", "payload", "result", "error", "done")

    def __init__(self, kind: str, payload=None) -> None:
        self.kind = kind
        self.payload = payload
        self.result = None
        self.error: BaseException | None = None
        self.done = False


class _Abandon(Exception):
    """Raised inside the acquisition thread when ``stop`` gave up waiting for consumers."""


class ObligatoryConsumer:
    """Handle of one obligatory consumer. Sees every event, in order, exactly once.

    Obtain it with :meth:`BufferManager.add_obligatory`.  A consumer registered while a
    run is going starts at the next event written to the ring.
    """

    def __init__(self, bm: BufferManager, name: str) -> None:
        self.name = name
        self._bm = bm
        self.next = 0  # first seq not yet handed out
        self.released = 0  # first seq not yet released
        self._pending: EventBatch | None = None
        self._pending_end = 0
        self.detached = False
        self.error: BaseException | None = None
        self.n_batches = 0
        self._run_target = 0  # id of the run whose end makes get() return None

    def get(self, max_events: int = 1, timeout: float | None = None) -> EventBatch | None:
        """Wait for the next 1..max_events consecutive events (views, valid until released).

        Parameters
        ----------
        max_events : int
            Upper limit of the batch length.  The batch is shorter when fewer events are
            available, at the ring's wrap-around and at a configuration change.
        timeout : float or None
            Seconds to wait for data; None waits until data arrives or the run ends.
            Called before a run starts, it waits for that run.

        Returns
        -------
        EventBatch or None
            Read-only views into the ring.  None on timeout, when the consumer was
            detached, or when acquisition has ended and every event was handed out
            (once per run: the following call waits for the next run).
            A batch still held from the previous call is released first.
        """
        return self._bm._get(self, max_events, timeout, across_runs=False)

    def release(self, batch: EventBatch) -> None:
        """Give the slots of ``batch`` back (the views must not be used afterwards)."""
        self._bm._release(self, batch)

    def detach(self) -> None:
        """Stop gating the ring (its pending slots are released)."""
        self._bm._detach(self)

    @property
    def backlog(self) -> int:
        """Events in the ring this consumer has not yet been handed."""
        return self._bm._head - self.next


class BufferManager:
    """Ring buffer, acquisition thread, consumers, run control and accounting.

    Parameters
    ----------
    backend : ScopeBackend
        An opened backend.  ``backend.clock()`` must be callable from any thread.
    n_buffers : int
        Ring slots (events), >= 2.
    rate_window : float
        Seconds of run time over which current rates are computed.
    log : callable, optional
        Called with every log message (in addition to :mod:`logging`).
    log_file : str, optional
        Prefix of the end-of-run summary file.  The first run that ends creates
        ``<log_dir>/<log_file>_<yymmdd-HHMMSS>.sum`` (``-2``, ``-3`` ... appended when that name
        exists: created exclusively, so two buffer managers never share a file); every run
        of this buffer manager appends one line to it.
    log_dir : str, optional
        Directory of the summary file (created if needed); default the working directory.
    log_time : float
        Seconds of run time between periodic rate log lines.
    serial : str, optional
        Serial passed to ``backend.open`` when reconnecting.
    """

    def __init__(self, backend: ScopeBackend, n_buffers: int = 16, *, rate_window: float = 2.0,
                 log: Callable[[str], None] | None = None, log_file: str | None = None,
                 log_time: float = 60.0, serial: str | None = None, log_dir: str | None = None) -> None:
        if int(n_buffers) < 2:
            raise ValueError(f"n_buffers: {n_buffers} is too small; allowed: an integer >= 2")
        self.backend = backend
        self._n = int(n_buffers)
        self.rate_window = float(rate_window)
        self._log_cb = log
        self.log_file = log_file
        self.log_dir = log_dir
        self.summary_path: str | None = None  # set when the first summary is written
        self.log_time = float(log_time)
        self.serial = serial

        self._lock = threading.Lock()
        self._data_cv = threading.Condition(self._lock)  # new events / end of run
        self._space_cv = threading.Condition(self._lock)  # slots released
        self._ctl_cv = threading.Condition(self._lock)  # commands, acks, processed count
        self._ctl_mutex = threading.RLock()  # serialises the public control calls
        self._data_waiters = 0
        self._space_waiters = 0
        self._ctl_waiters = 0

        self._applied: Applied | None = None
        self._last_cfg: tuple | None = None
        self._channels: tuple[str, ...] = ()
        self._shape: tuple[int, int] = (0, 0)
        self._alloc(self._n, 0, 0)

        self._obl: list[ObligatoryConsumer] = []
        self._cb_threads: dict[ObligatoryConsumer, threading.Thread] = {}

        self._state = RunState.IDLE
        self._thread: threading.Thread | None = None
        self._cmd: _Cmd | None = None
        self._acquiring = False
        self._closed = False
        self._abandon = False
        self._stop_req = False
        self._stop_deadline: float | None = None
        self._run_id = 0
        self._drain_timeout = 10.0
        self._summary: RunSummary | None = None
        self._run_events = RunEvents()
        self.last_error: str | None = None
        self.n_retries = 0
        self.n_reconnects = 0
        self._reset_counters()

    # ------------------------------------------------------------------ ring memory
    def _alloc(self, n: int, nch: int, ns: int) -> None:
        """(Re-)allocate the ring; the pages are touched so the memory is resident now."""
        self._n = n
        self._shape = (nch, ns)
        raw = np.empty((n, nch, ns), dtype=np.int16)
        raw.fill(0)
        self._raw = raw
        self._evnum = np.zeros(n, dtype=np.int64)
        self._ttrig = np.zeros(n, dtype=np.float64)
        self._toff = np.zeros(n, dtype=np.float64)
        self._ovf = np.zeros((n, nch), dtype=bool)
        self._auto = np.zeros(n, dtype=bool)
        self._liveat = np.zeros(n, dtype=np.float64)
        self._ones = np.arange(1, n + 1, dtype=np.int64)
        # read-only views handed to consumers (slices of them are read-only too)
        self._ro = []
        for a in (self._raw, self._evnum, self._ttrig, self._toff, self._ovf, self._auto, self._liveat):
            v = a.view()
            v.flags.writeable = False
            self._ro.append(v)

    @property
    def n_buffers(self) -> int:
        return self._n

    @property
    def start_wall(self) -> float:
        """Host wall-clock time (epoch s) of the current run's start: ``t_trigger`` 0."""
        return self._start_wall

    @property
    def nbytes(self) -> int:
        """Bytes held by the ring arrays."""
        return int(sum(a.nbytes for a in (self._raw, self._evnum, self._ttrig, self._toff, self._ovf,
                                           self._auto, self._ones)))

    def _reset_counters(self) -> None:
        self._head = 0
        self._tail = 0
        self._ring_start = 0  # events before this seq are not (validly) in the ring
        self._triggers = 0
        self._events = 0
        self._discarded = 0
        self._truncated = 0
        self._live = 0.0
        self._ring_wait = 0.0
        self._t0 = 0.0
        self._t_end: float | None = None
        self._t_pause: float | None = None
        self._paused_total = 0.0
        self._start_wall = 0.0
        self._max_events: int | None = None
        self._samples: collections.deque = collections.deque(maxlen=64)
        self._next_sample = 0.0
        self._next_log = self.log_time

    # ------------------------------------------------------------------ logging
    def _log(self, msg: str, level: int = logging.INFO) -> None:
        logger.log(level, msg)
        if self._log_cb is not None:
            try:
                self._log_cb(msg)
            except Exception:  # a broken log sink must not stop acquisition
                logger.exception("log callback failed")

    # ------------------------------------------------------------------ configuration
    def configure(self, channels: Mapping[str, ChannelConfig], timebase: TimebaseConfig,
                  trigger: TriggerConfig, siggen: SigGenConfig | None = None,
                  timeout: float | None = None) -> Applied:
        """Apply atomically. While running: pause acquisition, drop any capture of the old
        configuration not yet in the ring, wait until consumers released the old events,
        reconfigure the backend (and re-allocate the ring if shapes changed), resume.
        Events of the old generation never appear in a batch with the new one.

        Raises
        ------
        InvalidConfig
            From the backend; the previous configuration stays in force.
        TimeoutError
            The acquisition thread did not complete the change within ``timeout``.
        """
        cfg = (dict(channels), timebase, trigger, siggen)
        with self._ctl_mutex:
            if self._closed:
                raise RuntimeError("BufferManager is closed")
            if self._acq_thread_alive() and self._acquiring:
                return self._command("reconf", (cfg, None), timeout)
            self._join_thread()
            applied = self.backend.configure(*cfg)
            self._last_cfg = cfg
            with self._lock:
                self._install(applied, self._n)
            return applied

    def resize(self, n_buffers: int, timeout: float | None = None) -> None:
        """Change the number of ring slots (while running: after the ring drained)."""
        n_buffers = int(n_buffers)
        if n_buffers < 2:
            raise ValueError(f"n_buffers: {n_buffers} is too small; allowed: an integer >= 2")
        with self._ctl_mutex:
            if self._acq_thread_alive() and self._acquiring:
                self._command("reconf", (None, n_buffers), timeout)
                return
            self._join_thread()
            with self._lock:
                if n_buffers != self._n:
                    self._alloc(n_buffers, *self._shape)
                    self._head = self._tail = self._ring_start = 0
                    for c in self._obl:
                        c.next = c.released = 0

    def _install(self, applied: Applied, n_buffers: int) -> None:
        """Make ``applied`` current; re-allocate if needed. Caller holds the lock and the
        ring holds no unreleased event."""
        channels = tuple(applied.enabled_channels)
        shape = (len(channels), int(applied.n_samples))
        if shape != self._shape or n_buffers != self._n:
            self._alloc(n_buffers, *shape)
            for c in self._obl:  # the ring is empty: everybody continues at head
                c.next = c.released = self._head
                c._pending = None
            self._tail = self._head
        self._applied = applied
        self._channels = channels
        self._ring_start = self._head  # random consumers never get an event of an older generation

    @property
    def applied(self) -> Applied | None:
        return self._applied

    # ------------------------------------------------------------------ consumers
    def add_obligatory(self, name: str) -> ObligatoryConsumer:
        """Register an obligatory (pull) consumer; it starts at the next event."""
        c = ObligatoryConsumer(self, str(name))
        with self._lock:
            c.next = c.released = self._head
            c._run_target = self._run_id if self._acquiring else self._run_id + 1
            if not self._obl:
                self._tail = self._head
            self._obl = [*self._obl, c]
        return c

    def add_obligatory_callback(self, name: str, fn: Callable[[EventBatch], None],
                                max_events: int = 256,
                                on_error: Callable[[str, BaseException], None] | None = None,
                                stop_on_error: bool = False) -> ObligatoryConsumer:
        """Run ``fn(batch)`` in a dedicated thread for every batch. If ``fn`` raises, the
        error is logged with the consumer's name, ``on_error`` is called and the consumer
        is detached (or the run stops cleanly if ``stop_on_error``).

        The thread lives across runs until the consumer is detached or the buffer
        manager is closed.
        """
        c = self.add_obligatory(name)
        t = threading.Thread(target=self._callback_loop, args=(c, fn, int(max_events), on_error,
                                                               stop_on_error),
                             name=f"picodaq-consumer-{name}", daemon=True)
        self._cb_threads[c] = t
        t.start()
        return c

    def _callback_loop(self, c: ObligatoryConsumer, fn, max_events: int, on_error, stop_on_error) -> None:
        while True:
            batch = self._get(c, max_events, None, across_runs=True)
            if batch is None:
                return
            try:
                fn(batch)
            except BaseException as exc:  # noqa: BLE001 - reported, never swallowed silently
                c.error = exc
                msg = f"obligatory consumer {c.name!r} raised {type(exc).__name__}: {exc}"
                logger.error(msg, exc_info=exc)
                if self._log_cb is not None:
                    self._log(msg, logging.ERROR)
                self.last_error = msg
                if on_error is not None:
                    try:
                        on_error(c.name, exc)
                    except Exception:
                        logger.exception("on_error handler of consumer %r failed", c.name)
                self._detach(c)
                if stop_on_error:
                    self._request_stop_async()
                else:
                    self._log(f"obligatory consumer {c.name!r} detached", logging.WARNING)
                return
            self._release(c, batch)

    def obligatory_consumers(self) -> tuple[ObligatoryConsumer, ...]:
        return tuple(self._obl)

    def _get(self, c: ObligatoryConsumer, max_events: int, timeout: float | None,
             across_runs: bool) -> EventBatch | None:
        if max_events < 1:
            raise ValueError(f"max_events: {max_events}; allowed: an integer >= 1")
        with self._lock:
            if c._pending is not None:
                self._release_locked(c, c._pending_end)
            deadline = None
            while c.next >= self._head:
                if c.detached or self._closed:
                    return None
                if not across_runs and not self._acquiring and c._run_target <= self._run_id:
                    c._run_target = self._run_id + 1  # the next get() waits for the next run
                    return None
                if timeout is not None:
                    if deadline is None:
                        deadline = time.monotonic() + timeout
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                else:
                    remaining = None
                self._data_waiters += 1
                try:
                    self._data_cv.wait(remaining)
                finally:
                    self._data_waiters -= 1
            if c.detached:
                return None
            s = c.next
            n = self._n
            k = min(self._head - s, max_events)
            i = s % n
            if i + k > n:
                k = n - i
            j = i + k
            ro = self._ro
            batch = EventBatch(self._applied, self._channels, ro[0][i:j], ro[1][i:j], ro[2][i:j],
                               ro[3][i:j], ro[4][i:j], ro[5][i:j], ro[6][i:j])
            c.next = s + k
            c._pending = batch
            c._pending_end = s + k
            c.n_batches += 1
            return batch

    def _release(self, c: ObligatoryConsumer, batch: EventBatch) -> None:
        with self._lock:
            if c._pending is None:
                return  # already released (e.g. implicitly, or detached)
            if batch is not c._pending:
                raise ValueError(f"consumer {c.name!r}: release() of a batch it does not hold")
            self._release_locked(c, c._pending_end)

    def _release_locked(self, c: ObligatoryConsumer, end: int) -> None:
        c._pending = None
        c.released = end
        self._update_tail()

    def _update_tail(self) -> None:
        obl = self._obl
        tail = min(c.released for c in obl) if obl else self._head
        if tail != self._tail:
            self._tail = tail
            if self._space_waiters:
                self._space_cv.notify_all()
            if self._ctl_waiters:
                self._ctl_cv.notify_all()

    def _detach(self, c: ObligatoryConsumer) -> None:
        with self._lock:
            if c.detached:
                return
            c.detached = True
            c._pending = None
            self._obl = [o for o in self._obl if o is not c]
            self._update_tail()
            self._data_cv.notify_all()
        t = self._cb_threads.pop(c, None)
        if t is not None and t is not threading.current_thread():
            t.join(timeout=5.0)

    # ------------------------------------------------------------------ random consumers
    def _copy_latest(self) -> EventBatch | None:
        if self._head <= self._ring_start or self._applied is None:
            return None
        i = (self._head - 1) % self._n
        j = i + 1
        return EventBatch(self._applied, self._channels, self._raw[i:j].copy(), self._evnum[i:j].copy(),
                          self._ttrig[i:j].copy(), self._toff[i:j].copy(), self._ovf[i:j].copy(),
                          self._auto[i:j].copy(), self._liveat[i:j].copy())

    def latest(self) -> EventBatch | None:
        """Random consumer: a copy of the newest event in the ring (k = 1), or None."""
        with self._lock:
            return self._copy_latest()

    def wait_latest(self, after_event: int, timeout: float) -> EventBatch | None:
        """Random consumer: wait until an event newer than ``after_event`` exists; copy it.

        Returns None on timeout.  Event numbers restart at 1 with every run.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._head <= after_event or self._head <= self._ring_start:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return None
                self._data_waiters += 1
                try:
                    self._data_cv.wait(remaining)
                finally:
                    self._data_waiters -= 1
            return self._copy_latest()

    # ------------------------------------------------------------------ run lifecycle
    def add_run_listener(self, listener: RunListener) -> None:
        """Tell ``listener`` about every run start and end (see :mod:`picodaq_ioc.daq.lifecycle`)."""
        self._run_events.add(listener)

    def remove_run_listener(self, listener: RunListener) -> None:
        self._run_events.remove(listener)

    # ------------------------------------------------------------------ run control
    def start(self, max_events: int | None = None) -> RunStart:
        """IDLE/STOPPED -> RUNNING (counters reset). With ``max_events`` the run stops by
        itself after exactly that many events were delivered (see module docstring).

        The run listeners' ``run_started`` is called before the first event is taken."""
        with self._ctl_mutex:
            if self._closed:
                raise RuntimeError("BufferManager is closed")
            if self._state in (RunState.RUNNING, RunState.PAUSED) and self._acquiring:
                raise RuntimeError(f"cannot start: state is {self._state.value}")
            if self._applied is None:
                raise RuntimeError("cannot start: configure() the buffer manager first")
            if max_events is not None and int(max_events) < 1:
                raise ValueError(f"max_events: {max_events}; allowed: None or an integer >= 1")
            self._join_thread()
            with self._lock:
                self._reset_counters()
                self._run_id += 1
                self._max_events = None if max_events is None else int(max_events)
                for c in self._obl:
                    c.next = c.released = 0
                    c._pending = None
                self._summary = None
                self._abandon = False
                self._stop_req = False
                self._stop_deadline = None
                self._cmd = None
                self._samples.append((0.0, 0, 0))
                self._acquiring = True
                self._state = RunState.RUNNING
                self._start_wall = time.time()
                self._t0 = self.backend.clock()
            self.last_error = None
            run = RunStart(self._run_id, self._start_wall, self._max_events)
            self._run_events.started(run)
            self._thread = threading.Thread(target=self._acquisition, name="picodaq-acquisition",
                                            daemon=True)
            self._thread.start()
            self._log(f"*==* BufferManager start running ({self._n} buffers, max_events={max_events})")
            return run

    def pause(self, timeout: float | None = None) -> None:
        """RUNNING -> PAUSED; the capture in flight is aborted (its armed time counts as live)."""
        with self._ctl_mutex:
            if self._state != RunState.RUNNING or not self._acquiring:
                raise RuntimeError(f"cannot pause: state is {self._state.value}")
            if self._in_callback_thread():
                raise RuntimeError("pause: not allowed from an obligatory consumer's callback")
            self._state = RunState.PAUSED
            self._command("pause", None, timeout)
            self._log("*==* BufferManager pause")

    def resume(self, timeout: float | None = None) -> None:
        """PAUSED -> RUNNING."""
        with self._ctl_mutex:
            if self._state != RunState.PAUSED or not self._acquiring:
                raise RuntimeError(f"cannot resume: state is {self._state.value}")
            self._command("resume", None, timeout)
            self._log("*==* BufferManager resume")

    def stop(self, timeout: float = 10.0) -> RunSummary | None:
        """RUNNING/PAUSED -> STOPPED; waits up to ``timeout`` s until the obligatory
        consumers drained the ring and returns the end-of-run summary (None if no run
        was ever started).  Calling it after the run ended by itself returns that run's
        summary.  Called from an obligatory callback it only requests the stop and
        returns None (the summary is then in :attr:`summary` once the ring drained)."""
        if self._in_callback_thread():  # joining here would wait for ourselves
            self._request_stop_async()
            return None
        with self._ctl_mutex:
            self._drain_timeout = float(timeout)
            if self._acq_thread_alive():
                self._request_stop_async(float(timeout))
                self._thread.join(timeout + 5.0)
                if self._thread.is_alive():  # consumers never released: give up the rest
                    with self._lock:
                        self._abandon = True
                        self._space_cv.notify_all()
                        self._ctl_cv.notify_all()
                    self._thread.join(5.0)
            return self._summary

    def _request_stop_async(self, timeout: float | None = None) -> None:
        """Ask the acquisition thread to end the run; consumers get ``timeout`` s (default
        the last ``stop`` timeout) to release the remaining events."""
        with self._lock:
            if not self._stop_req or timeout is not None:
                self._stop_deadline = time.monotonic() + (self._drain_timeout if timeout is None
                                                           else timeout)
            self._stop_req = True
            self._ctl_cv.notify_all()
            self._space_cv.notify_all()

    def wait_processed(self, n_events: int, timeout: float | None = None) -> bool:
        """Block until ``n_events`` events were released by every obligatory consumer
        (or delivered, when there is none).  False on timeout or when the run ended first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._tail < n_events:
                if not self._acquiring and self._tail >= self._head:
                    return False  # nothing more will come
                if not self._wait_ctl_until(deadline):
                    return False
            return True

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Block until acquisition has ended (by ``stop``, ``max_events``, an error)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._acquiring:
                if not self._wait_ctl_until(deadline):
                    return False
            return True

    def _wait_ctl_until(self, deadline: float | None) -> bool:
        """One wait on the control condition (``self._lock`` held) until ``deadline``
        (monotonic; None: no limit).  False, without waiting, when the deadline has passed."""
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return False
        self._ctl_waiters += 1
        try:
            self._ctl_cv.wait(remaining)
        finally:
            self._ctl_waiters -= 1
        return True

    def close(self) -> None:
        """Stop a run, end the callback threads.  The backend is not closed (its owner does)."""
        with self._ctl_mutex:
            if self._acq_thread_alive():
                self.stop()
            with self._lock:
                self._closed = True
                self._data_cv.notify_all()
                self._ctl_cv.notify_all()
                self._space_cv.notify_all()
            for c in list(self._obl):
                self._detach(c)

    @property
    def state(self) -> RunState:
        return self._state

    @property
    def run_start_time(self) -> float:
        """Host wall-clock time (epoch s) of the start of the current/last run (0: none yet);
        ``EventBatch.t_trigger`` counts from it."""
        return self._start_wall

    @property
    def summary(self) -> RunSummary | None:
        """Summary of the last finished run (None while running)."""
        return self._summary

    def _acq_thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _join_thread(self) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _in_callback_thread(self) -> bool:
        me = threading.current_thread()
        return any(t is me for t in list(self._cb_threads.values()))

    def _command(self, kind: str, payload, timeout: float | None):
        """Hand a command to the acquisition thread and wait for its acknowledgement."""
        if self._in_callback_thread():
            raise RuntimeError(f"{kind}: not allowed from an obligatory consumer's callback (the "
                               "acquisition may be waiting for that consumer: deadlock)")
        cmd = _Cmd(kind, payload)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._cmd = cmd
            self._ctl_cv.notify_all()
            while not cmd.done:
                if not self._acquiring:
                    raise RuntimeError(f"{kind}: the run ended before the command was executed")
                if not self._wait_ctl_until(deadline):
                    raise TimeoutError(f"{kind}: acquisition thread did not respond within {timeout} s")
        if cmd.error is not None:
            raise cmd.error
        return cmd.result

    def _ack(self, cmd: _Cmd, result=None, error: BaseException | None = None) -> None:
        with self._lock:
            cmd.result = result
            cmd.error = error
            cmd.done = True
            if self._cmd is cmd:
                self._cmd = None
            self._ctl_cv.notify_all()

    # ------------------------------------------------------------------ statistics
    def _run_time_locked(self) -> float:
        if self._t_end is not None:
            t = self._t_end
        elif self._t_pause is not None:
            t = self._t_pause
        elif self._acquiring:
            t = self.backend.clock()
        else:
            return 0.0
        return max(0.0, t - self._t0 - self._paused_total)

    def stats(self) -> RunStats:
        """A consistent snapshot of the accounting (see the module docstring)."""
        with self._lock:
            rt = self._run_time_locked()
            trig, ev = self._triggers, self._events
            trig_rate = ev_rate = 0.0
            if self._samples and self._state == RunState.RUNNING:
                lo = rt - self.rate_window
                ref = self._samples[-1]
                for smp in self._samples:
                    if smp[0] >= lo:
                        ref = smp
                        break
                dt = rt - ref[0]
                if dt > 0:
                    trig_rate = (trig - ref[1]) / dt
                    ev_rate = (ev - ref[2]) / dt
            live = self._live
            filled = self._head - self._tail
            return RunStats(
                state=self._state, run_time=rt, live_time=self._live, dead_time=max(0.0, rt - live),
                live_fraction=(live / rt) if rt > 0 else 0.0, triggers=trig, events=ev,
                discarded=self._discarded, processed=self._tail, trigger_rate=trig_rate,
                event_rate=ev_rate, mean_trigger_rate=(trig / rt) if rt > 0 else 0.0,
                filled=filled, n_buffers=self._n, fill_level=filled / self._n,
                generation=self._applied.config_generation if self._applied is not None else 0,
                ring_wait_time=self._ring_wait)

    # ------------------------------------------------------------------ acquisition thread
    def _acquisition(self) -> None:
        be = self.backend
        end_state = RunState.STOPPED
        try:
            while True:
                if self._stop_req:
                    break
                cmd = self._cmd
                if cmd is not None:
                    if not self._handle(cmd):
                        break
                    continue
                try:
                    be.arm()
                    t_arm = be.clock()  # after arm(): a backend may add host time at arm()
                    ready = be.wait(WAIT_CHUNK_S)
                    while not ready:
                        if self._cmd is not None or self._stop_req:
                            break
                        ready = be.wait(WAIT_CHUNK_S)
                    if not ready:  # a command arrived while armed: abort the capture
                        be.stop()
                        armed = be.clock() - t_arm
                        with self._lock:
                            self._live += armed
                        continue
                    cap = be.read()
                except (Busy, Timeout) as exc:  # the capture (if any) is abandoned and re-armed
                    self.n_retries += 1
                    logger.warning("backend %s, retrying: %s", type(exc).__name__, exc)
                    self._interruptible_wait(0.01)
                    continue
                except DeviceDisconnected as exc:
                    if not self._reconnect(exc):
                        break
                    continue
                if self._ingest(cap):
                    break  # max_events reached
        except _Abandon:
            pass
        except Exception as exc:  # unrecoverable backend (or internal) error
            msg = f"{type(exc).__name__}: {exc}"
            self.last_error = msg
            logger.error("acquisition stopped by an error: %s", msg, exc_info=exc)
            if self._log_cb is not None:
                self._log(f"acquisition stopped by an error: {msg}", logging.ERROR)
            end_state = RunState.ERROR
        self._finish(end_state)

    def _interruptible_wait(self, seconds: float) -> None:
        with self._lock:
            if self._cmd is None and not self._stop_req:
                self._ctl_cv.wait(seconds)

    def _ingest(self, cap: Capture) -> bool:
        """Copy a capture into the ring. Returns True when ``max_events`` is reached."""
        k = cap.raw.shape[0]
        t0 = self._t0
        if cap.applied.config_generation != self._applied.config_generation:
            with self._lock:
                self._triggers += k
                self._live += cap.live_time_s
                self._discarded += k
            logger.info("discarded %d segment(s) of configuration generation %d", k,
                        cap.applied.config_generation)
            return False
        use = k
        mx = self._max_events
        if mx is not None:
            use = min(k, mx - self._events)
        n_ring = self._n
        first = True
        live_at = self._live + cap.live_time_s  # only this thread changes _live
        i = 0
        while i < use:
            head = self._head
            free = n_ring - (head - self._tail) if self._obl else n_ring
            if free <= 0:
                free = self._wait_for_space()
                if free <= 0:  # abandoned by stop(): count the rest, deliver nothing more
                    with self._lock:
                        if first:
                            self._triggers += k
                            self._live += cap.live_time_s
                        self._discarded += k - i
                    raise _Abandon
                head = self._head
            slot = head % n_ring
            m = min(use - i, free, n_ring - slot, n_ring - 1)
            j = slot + m
            e = i + m
            if k == 1:
                self._raw[slot] = cap.raw[0]
                self._evnum[slot] = head + 1
                self._ttrig[slot] = cap.t_trigger[0] - t0
                self._toff[slot] = cap.trigger_time_offset_s[0]
                self._ovf[slot] = cap.overflow[0]
                self._auto[slot] = cap.auto_triggered[0]
                self._liveat[slot] = live_at
            else:
                self._raw[slot:j] = cap.raw[i:e]
                np.add(self._ones[:m], head, out=self._evnum[slot:j])
                np.subtract(cap.t_trigger[i:e], t0, out=self._ttrig[slot:j])
                self._toff[slot:j] = cap.trigger_time_offset_s[i:e]
                self._ovf[slot:j] = cap.overflow[i:e]
                self._auto[slot:j] = cap.auto_triggered[i:e]
                self._liveat[slot:j] = live_at
            with self._lock:
                if first:
                    self._triggers += k
                    self._live += cap.live_time_s
                    if use < k:
                        self._discarded += k - use
                        self._truncated += k - use
                    first = False
                self._head = head + m
                self._events += m
                if not self._obl:
                    self._tail = head + m
                    if self._ctl_waiters:
                        self._ctl_cv.notify_all()
                if self._data_waiters:
                    self._data_cv.notify_all()
            i = e
        if first:  # use == 0 (cannot happen unless max_events was already reached)
            with self._lock:
                self._triggers += k
                self._live += cap.live_time_s
                self._discarded += k
                self._truncated += k
        rt = cap.t_ready - t0 - self._paused_total
        if rt >= self._next_sample:
            self._sample(rt)
        return mx is not None and self._events >= mx

    def _sample(self, rt: float) -> None:
        with self._lock:
            self._samples.append((rt, self._triggers, self._events))
            self._next_sample = rt + self.rate_window / 16.0
        if rt >= self._next_log:
            self._next_log = rt + self.log_time
            st = self.stats()
            self._log(f"evt {st.events}: rate: {st.event_rate:.4g}Hz  life: {100 * st.live_fraction:.2f}%"
                      f"  buffer: {100 * st.fill_level:.0f}%")

    def _wait_for_space(self) -> int:
        """Block (dead time) until a slot is free; 0 if ``stop`` abandoned the run."""
        t = time.perf_counter()
        with self._lock:
            while True:
                free = self._n - (self._head - self._tail) if self._obl else self._n
                if free > 0 or self._abandon or self._closed:
                    break
                remaining = None
                if self._stop_req:  # stop(): wait for the consumers only until its deadline
                    remaining = self._stop_deadline - time.monotonic()
                    if remaining <= 0:
                        holders = [c.name for c in self._obl if c.released <= self._tail]
                        logger.warning("stop: consumers %s do not release slots; the rest of the "
                                       "capture is discarded", holders)
                        self._abandon = True
                        break
                self._space_waiters += 1
                try:
                    self._space_cv.wait(remaining)
                finally:
                    self._space_waiters -= 1
            self._ring_wait += time.perf_counter() - t
            return free if free > 0 else 0

    def _drain(self) -> None:
        """Wait until every obligatory consumer released every event (logs who holds)."""
        t = time.perf_counter()
        with self._lock:
            while self._obl and self._tail < self._head:
                if self._abandon or self._closed or self._stop_req:
                    raise _Abandon  # the run ends; _finish() lets the consumers drain
                self._space_waiters += 1
                try:
                    if not self._space_cv.wait(5.0):
                        holders = [c.name for c in self._obl if c.released < self._head]
                        logger.warning("waiting for obligatory consumers %s to release events", holders)
                finally:
                    self._space_waiters -= 1
            self._ring_wait += time.perf_counter() - t

    def _handle(self, cmd: _Cmd) -> bool:
        """Execute a command in the acquisition thread. False ends the run."""
        be = self.backend
        if cmd.kind == "reconf":
            self._reconf(cmd)
            return True
        if cmd.kind == "resume":  # not paused: nothing to do
            self._ack(cmd)
            return True
        # pause: park until resume/stop; execute reconfigurations meanwhile
        t_p = be.clock()
        with self._lock:
            self._t_pause = t_p
            self._state = RunState.PAUSED
        self._ack(cmd)
        while True:
            with self._lock:
                while (self._cmd is None or self._cmd.done) and not self._stop_req:
                    self._ctl_cv.wait()
                if self._stop_req:
                    return False
                c = self._cmd
            if c.kind == "resume":
                t_r = be.clock()
                with self._lock:
                    self._paused_total += t_r - t_p
                    self._t_pause = None
                    self._state = RunState.RUNNING
                self._ack(c)
                return True
            if c.kind == "reconf":
                self._reconf(c)
            else:
                self._ack(c)

    def _reconf(self, cmd: _Cmd) -> None:
        cfg, n_new = cmd.payload
        try:
            self._drain()
        except _Abandon:
            self._ack(cmd, error=RuntimeError("reconfigure: the run was stopped"))
            raise
        try:
            if cfg is not None:
                applied = self.backend.configure(*cfg)
                self._last_cfg = cfg
            else:
                applied = self._applied
        except DeviceDisconnected as exc:
            self._ack(cmd, error=exc)
            if not self._reconnect(exc):
                raise _Abandon from exc
            return
        except ScopeError as exc:  # InvalidConfig & co: the old configuration stays in force
            self._ack(cmd, error=exc)
            return
        except Exception as exc:
            self._ack(cmd, error=exc)
            raise
        with self._lock:
            self._install(applied, self._n if n_new is None else n_new)
        self._log(f"configuration generation {applied.config_generation} applied")
        self._ack(cmd, result=applied)

    def _reconnect(self, exc: BaseException) -> bool:
        """Re-open the device and re-apply the last configuration, with back-off.
        False when the run was stopped meanwhile."""
        self.last_error = f"device disconnected: {exc}"
        self._log(f"device disconnected ({exc}); reconnecting", logging.WARNING)
        be = self.backend
        delay = 0.1
        while True:
            with self._lock:
                if not self._stop_req:
                    self._ctl_cv.wait(delay)
                if self._stop_req or self._closed:
                    return False
            try:
                be.close()
                be.open(self.serial)
                applied = be.configure(*self._last_cfg)
            except (DeviceDisconnected, DeviceNotFound, Busy, Timeout) as e2:
                logger.info("reconnect failed: %s", e2)
                delay = min(2 * delay, MAX_RECONNECT_BACKOFF_S)
                continue
            self._drain()
            with self._lock:
                self._install(applied, self._n)
            self.n_reconnects += 1
            self._log(f"device reconnected, configuration generation {applied.config_generation}")
            return True

    def _summary_file(self, start_time: float):
        """The open summary file (append); created exclusively with a unique name at first use."""
        if self.summary_path is not None:
            return open(self.summary_path, "a", encoding="utf-8")
        d = Path(self.log_dir) if self.log_dir else Path(".")
        d.mkdir(parents=True, exist_ok=True)
        base = f"{self.log_file}_{datetime.fromtimestamp(start_time).strftime('%y%m%d-%H%M%S')}"
        n = 1
        while True:
            path = d / (f"{base}.sum" if n == 1 else f"{base}-{n}.sum")
            try:
                f = open(path, "x", encoding="utf-8")
            except FileExistsError:
                n += 1
                continue
            self.summary_path = str(path)
            return f

    def _finish(self, end_state: RunState) -> None:
        be = self.backend
        try:
            be.stop()
        except Exception as exc:  # the device may be gone
            logger.info("backend.stop() at end of run failed: %s", exc)
        t_end = self._t_pause if self._t_pause is not None else be.clock()
        with self._lock:
            self._t_end = t_end
            self._acquiring = False
            self._state = end_state
            self._data_cv.notify_all()
            self._ctl_cv.notify_all()
            pending = self._cmd
        if pending is not None and not pending.done:
            self._ack(pending, error=RuntimeError(f"{pending.kind}: the run ended"))
        # let the consumers drain (bounded by the stop() timeout)
        with self._lock:
            deadline = self._stop_deadline if self._stop_deadline is not None else (
                time.monotonic() + self._drain_timeout)
            while self._obl and self._tail < self._head and not self._abandon and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    holders = [c.name for c in self._obl if c.released < self._head]
                    logger.warning("end of run: consumers %s did not release all events", holders)
                    break
                self._space_waiters += 1
                try:
                    self._space_cv.wait(remaining)
                finally:
                    self._space_waiters -= 1
            rt = self._run_time_locked()
            summary = RunSummary(
                start_time=self._start_wall, run_time=rt, triggers=self._triggers, events=self._events,
                discarded=self._discarded, truncated=self._truncated, processed=self._tail,
                live_time=self._live, dead_time=max(0.0, rt - self._live),
                dead_fraction=(1.0 - self._live / rt) if rt > 0 else 0.0,
                ring_wait_time=self._ring_wait, mean_rate=(self._events / rt) if rt > 0 else 0.0,
                mean_trigger_rate=(self._triggers / rt) if rt > 0 else 0.0, state=end_state.value,
                last_error=self.last_error, n_buffers=self._n, run_id=self._run_id)
        self._log("*==* BufferManager ending, " + summary.format())
        if self.log_file:
            try:
                with self._summary_file(summary.start_time) as f:
                    f.write(summary.format() + "\n")
            except OSError as exc:
                logger.error("cannot write run summary (%s_*.sum in %s): %s", self.log_file,
                             self.log_dir or ".", exc)
        with self._lock:
            self._summary = summary
        self._run_events.ended(summary)
        with self._lock:
            self._ctl_cv.notify_all()


__all__ = ["BufferManager", "ObligatoryConsumer", "RunSummary", "WAIT_CHUNK_S"]
