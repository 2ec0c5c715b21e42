"""The IOC's handle on a DAQ session: settings through the session's pipeline, run control.

Settings: every put becomes a :class:`~picodaq_ioc.daq.settings.Change` handed to the
session's :class:`~picodaq_ioc.daq.settings.SettingsPipeline` (the one owner of the requested
settings; it merges, coalesces and applies them in its own thread). The controller awaits
the pipeline's outcome *and* its publication (setpoints = request in force, ``_RBV`` =
applied), so a put completes only when the applied state, as shown, includes it. Puts can be
collected and applied as one atomic change: by the current task (:meth:`Controller.staged`,
the autosave restore) or by every client while ``Settings:Defer`` is On (:meth:`set_defer`).

Run control and blocking waits run off the event loop: run control on one dedicated worker
thread (never two device calls at once), waits in ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..daq.accounting import RunSummary
from ..daq.events import RunState, RunStats
from ..daq.lifecycle import RunCallbacks, RunStart
from ..daq.settings import Change, Outcome, Settings
from ..scope.errors import InvalidConfig, ScopeError
from ..scope.types import Applied, ChannelConfig, SigGenConfig, TimebaseConfig, TriggerConfig

if TYPE_CHECKING:
    from ..session import DaqSession

log = logging.getLogger("picodaq_ioc.ioc")

Listener = Callable[[Applied], Awaitable[None]]


class PutRefused(ValueError):
    """A put the device or the run state does not allow (reported to the CA client)."""


@dataclasses.dataclass
class Stage:
    """Changes collected by :meth:`Controller.staged` (applied together by :meth:`Controller.commit`)."""

    controller: Controller
    changes: list[Change] = dataclasses.field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """What was staged, in order (the PV names the putters pass, e.g. ``"A:Offset"``)."""
        return [c.what for c in self.changes]


#: the stage of the current task (puts of other tasks, i.e. other clients, are not staged)
_STAGE: contextvars.ContextVar[Stage | None] = contextvars.ContextVar("picodaq_stage", default=None)


def explain(ex: BaseException) -> str:
    """One line naming the field and what is allowed (for CA errors and StatusMessage_RBV)."""
    if isinstance(ex, InvalidConfig):
        parts = [str(ex)]
        if ex.field and ex.field not in str(ex):
            parts.insert(0, f"{ex.field}:")
        if ex.allowed and ex.allowed not in str(ex):
            parts.append(f"(allowed: {ex.allowed})")
        return " ".join(parts)
    return f"{type(ex).__name__}: {ex}" if not isinstance(ex, (PutRefused, ValueError)) else str(ex)


class Controller:
    """Settings (through the session's pipeline) and serialised run control of one ``DaqSession``.

    Parameters
    ----------
    session
        A ``picodaq_ioc.session.DaqSession`` (``.bm``, ``.info``, ``.pipeline``,
        ``start``/``pause``/``resume``/``stop``/``close``).
    max_ring_bytes
        Settings whose ring (slots x enabled channels x samples x int16) would be larger are refused.
    """

    def __init__(self, session: DaqSession, *, max_ring_bytes: int = 1 << 30) -> None:
        self.session = session
        self.bm = session.bm
        self.info = session.info
        self.pipeline = session.pipeline
        self.applied: Applied | None = self.pipeline.applied
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="picodaq-ctl")
        self._lock: asyncio.Lock | None = None
        self.listeners: list[Listener] = []
        #: called on the event loop when a run started / ended (sync or async), in order
        self.run_listeners: list[Callable[[RunStart], Any]] = []
        self.run_end_listeners: list[Callable[[RunSummary], Any]] = []
        self.last_summary: RunSummary | None = None
        self.closed = False
        #: refuse settings whose ring (slots x enabled channels x samples x int16) is larger
        self.max_ring_bytes = int(max_ring_bytes)
        #: ring slots (kept current by resize(); read once here, before the event loop runs)
        self.n_buffers = int(self.bm.stats().n_buffers)
        # publication of the pipeline's outcomes on the event loop (bound at the first use)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outcomes: asyncio.Queue[Outcome] | None = None
        self._shown_batch = 0
        self._shown: asyncio.Condition | None = None
        self._publisher: asyncio.Task | None = None
        #: changes held while Settings:Defer is On (None: not deferring)
        self._deferred: list[Change] | None = None
        self.pipeline.validators.append(self._check_ring)
        self.pipeline.listeners.append(self._on_outcome)
        # the run lifecycle, as events from the buffer manager
        self._run_events: asyncio.Queue[tuple[str, Any]] | None = None
        self._run_cv: asyncio.Condition | None = None
        self._started_id = 0
        self._ended: dict[int, RunSummary] = {}
        self.bm.add_run_listener(RunCallbacks(functools.partial(self._to_loop, "start"),
                                              functools.partial(self._to_loop, "end")))

    # ---------------------------------------------------------------- requested settings
    @property
    def requested(self) -> Settings:
        """The request in force (owned by the session's settings pipeline)."""
        return self.pipeline.requested

    @property
    def channels(self) -> dict[str, ChannelConfig]:
        return self.pipeline.requested.channels

    @property
    def timebase(self) -> TimebaseConfig:
        return self.pipeline.requested.timebase

    @property
    def trigger(self) -> TriggerConfig:
        return self.pipeline.requested.trigger

    @property
    def siggen(self) -> SigGenConfig:
        return self.pipeline.requested.siggen

    def ring_bytes(self, n_buffers: int | None = None, channels: Mapping[str, ChannelConfig] | None = None,
                   timebase: TimebaseConfig | None = None) -> int:
        """Bytes of the ring for the given (or current) slots, channels and samples."""
        n = int(n_buffers if n_buffers is not None else self.n_buffers)
        chans = channels if channels is not None else self.channels
        tb = timebase if timebase is not None else self.timebase
        n_ch = max(1, sum(1 for c in chans.values() if c.enabled))
        return n * n_ch * int(tb.n_samples) * 2

    def check_memory(self, what: str, **kw: Any) -> None:
        need = self.ring_bytes(**kw)
        if need > self.max_ring_bytes:
            n = kw.get("n_buffers") or self.n_buffers
            chans = kw.get("channels") or self.channels
            tb = kw.get("timebase") or self.timebase
            n_ch = max(1, sum(1 for c in chans.values() if c.enabled))
            raise PutRefused(
                f"{what}: the ring would need {n} slots x {n_ch} channels x {tb.n_samples} samples x 2 B = "
                f"{need / 2**20:.0f} MiB, more than the limit of {self.max_ring_bytes / 2**20:.0f} MiB "
                "(fewer slots or samples, or start the IOC with a larger --max-ring-mb)")

    def _check_ring(self, req: Settings) -> None:
        """Pipeline validator: the merged request must fit the ring memory limit."""
        try:
            self.check_memory("ring", channels=req.channels, timebase=req.timebase)
        except PutRefused as ex:
            raise PutRefused(str(ex).removeprefix("ring: ")) from None

    # ---------------------------------------------------------------- plumbing
    @property
    def lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Run ``fn`` on the device worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kw))

    async def stats(self) -> RunStats:
        return await asyncio.to_thread(self.bm.stats)

    @property
    def state(self) -> RunState:
        return self.bm.state

    def bind_loop(self) -> None:
        """Publish the pipeline's outcomes on the running event loop (idempotent)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._publisher is not None and not self._publisher.done():
            return
        self._loop = loop
        self._outcomes = asyncio.Queue()
        self._shown = asyncio.Condition()
        self._publisher = loop.create_task(self._publish_outcomes(), name="picodaq-settings-publisher")
        self._run_events = asyncio.Queue()
        self._run_cv = asyncio.Condition()
        self._run_task = loop.create_task(self._process_run_events(), name="picodaq-run-events")

    def _on_outcome(self, outcome: Outcome) -> None:
        """Pipeline listener (its worker thread): hand the outcome to the event loop."""
        loop, queue = self._loop, self._outcomes
        if loop is None or queue is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is shutting down
            loop.call_soon_threadsafe(queue.put_nowait, outcome)

    async def _publish_outcomes(self) -> None:
        """Show each outcome: setpoints (the request in force) and readbacks (applied).

        Only the newest of several waiting outcomes is shown, so no PV ever shows a state
        that was already superseded when it was published."""
        assert self._outcomes is not None and self._shown is not None
        while True:
            outcome = await self._outcomes.get()
            while not self._outcomes.empty():
                outcome = self._outcomes.get_nowait()
            await self._notify(outcome.applied)
            async with self._shown:
                self._shown_batch = max(self._shown_batch, outcome.batch)
                self._shown.notify_all()

    async def _notify(self, applied: Applied) -> None:
        self.applied = applied
        for fn in list(self.listeners):
            try:
                await fn(applied)
            except Exception:  # a listener must not break the put
                log.exception("listener failed after reconfiguration")

    # ---------------------------------------------------------------- settings
    async def submit(self, change: Change) -> Applied | None:
        """Apply ``change`` through the pipeline; return when the applied state, as shown by the
        PVs, includes it.

        Staged (this task: :meth:`staged`) and deferred (``Settings:Defer`` On) changes are
        held and None is returned at once; they are applied later as one change.

        Raises ``PutRefused`` with a clear message when the device refuses; the request in
        force then stays as it was.
        """
        stage = _STAGE.get()
        if stage is not None and stage.controller is self:
            stage.changes.append(change)  # applied by commit() with the other staged changes
            return None
        if self._deferred is not None:
            self._deferred.append(change)
            log.info("deferred %s (Settings:Defer is On)", change.what)
            return None
        return await self._apply(change)

    async def _apply(self, change: Change) -> Applied:
        self.bind_loop()
        try:
            outcome = await asyncio.wrap_future(self.pipeline.submit(change))
        except (InvalidConfig, ValueError) as ex:
            raise PutRefused(f"{change.what}: {explain(ex)}") from ex
        except ScopeError as ex:
            raise PutRefused(f"{change.what}: device error: {explain(ex)}") from ex
        except RuntimeError as ex:
            raise PutRefused(f"{change.what}: {ex}") from ex
        log.info("applied %s (generation %s)", ", ".join(outcome.changes),
                 getattr(outcome.applied, "config_generation", "?"))
        assert self._shown is not None
        async with self._shown:
            await self._shown.wait_for(lambda: self._shown_batch >= outcome.batch)
        return outcome.applied

    async def update(self, what: str, *, channels: Mapping[str, Any] | None = None, timebase: Any = None,
                     trigger: Any = None, siggen: Any = None) -> Applied | None:
        """Apply the given sections (dataclasses or mappings of fields) as one change."""
        return await self.submit(Change.of(what, channels=channels, timebase=timebase, trigger=trigger,
                                           siggen=siggen))

    async def set_channel(self, ch: str, what: str, **changes: Any) -> Applied | None:
        return await self.submit(Change.of(what, channels={ch: changes}))

    async def set_timebase(self, what: str, **changes: Any) -> Applied | None:
        return await self.submit(Change.of(what, timebase=changes))

    async def set_trigger(self, what: str, **changes: Any) -> Applied | None:
        return await self.submit(Change.of(what, trigger=changes))

    async def set_siggen(self, what: str, **changes: Any) -> Applied | None:
        return await self.submit(Change.of(what, siggen=changes))

    @contextlib.asynccontextmanager
    async def staged(self) -> AsyncIterator[Stage]:
        """Collect the settings changes made by this task (e.g. puts through the PVs' putters)
        instead of applying them one by one; apply them with :meth:`commit` afterwards.

        Only the current task is affected: other clients' puts meanwhile go to the device.
        """
        stage = Stage(self)
        token = _STAGE.set(stage)
        try:
            yield stage
        finally:
            _STAGE.reset(token)

    async def commit(self, stage: Stage, what: str) -> Applied | None:
        """Apply everything ``stage`` collected as ONE configuration change (None if nothing).

        Raises ``PutRefused`` when the device refuses the combination; nothing of it is applied.
        """
        if not stage.changes:
            return None
        return await self._apply(Change(f"{what} ({', '.join(stage.names)})", _steps(stage.changes)))

    # ---------------------------------------------------------------- Settings:Defer
    @property
    def deferring(self) -> bool:
        return self._deferred is not None

    async def set_defer(self, on: bool) -> Applied | None:
        """``Settings:Defer``: On holds every settings put (of any client; each completes at
        once, its setpoint showing the held value) until Off, which applies them all as ONE
        atomic change and completes when it is applied and shown. When the device refuses the
        combination, Off fails naming why, nothing of it is applied and the setpoints show the
        request in force again."""
        if on:
            if self._deferred is None:
                self._deferred = []
                log.info("Settings:Defer On: settings puts are held until Defer is Off")
            return None
        held, self._deferred = self._deferred or [], None
        if not held:
            return None
        change = Change(f"Settings:Defer ({', '.join(c.what for c in held)})", _steps(held))
        try:
            return await self._apply(change)
        except PutRefused:
            if self.applied is not None:
                await self._notify(self.applied)  # the setpoints show the request in force again
            raise

    # ---------------------------------------------------------------- ring size
    async def resize(self, n: int) -> int:
        """``Buffer:Size``: change the ring slots (refused above the memory limit)."""
        async with self.lock:
            self.check_memory("Buffer:Size", n_buffers=int(n))
            try:
                await self.call(self.session.resize, int(n))
            except (InvalidConfig, ValueError, RuntimeError) as ex:
                raise PutRefused(f"Buffer:Size: {explain(ex)}") from ex
            self.n_buffers = int((await self.stats()).n_buffers)
            return self.n_buffers

    # ---------------------------------------------------------------- run lifecycle
    def _to_loop(self, kind: str, obj: Any) -> None:
        """Buffer-manager listener (its threads): hand a run event to the event loop, in order."""
        loop, queue = self._loop, self._run_events
        if loop is None or queue is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is shutting down
            loop.call_soon_threadsafe(queue.put_nowait, (kind, obj))

    async def _process_run_events(self) -> None:
        """Run the IOC's run listeners for each run start/end, then wake whoever awaits it."""
        assert self._run_events is not None and self._run_cv is not None
        while True:
            kind, obj = await self._run_events.get()
            for fn in list(self.run_listeners if kind == "start" else self.run_end_listeners):
                try:
                    result = fn(obj)
                    if inspect.isawaitable(result):
                        await result
                except Exception:  # a display or summary writer must not stop the others
                    log.exception("run-%s listener failed", kind)
            async with self._run_cv:
                if kind == "start":
                    self._started_id = max(self._started_id, obj.run_id)
                else:
                    self.last_summary = obj
                    self._ended[obj.run_id] = obj
                    for old in sorted(self._ended)[:-16]:
                        del self._ended[old]
                self._run_cv.notify_all()

    async def run_end(self, run_id: int) -> RunSummary:
        """Wait until run ``run_id`` ended and the run-end listeners (final statistics and
        analysis PVs, summary writers) ran; return its summary."""
        assert self._run_cv is not None, "bind_loop() first"
        async with self._run_cv:
            await self._run_cv.wait_for(lambda: run_id in self._ended)
        return self._ended[run_id]

    async def _run_start_shown(self, run_id: int) -> None:
        assert self._run_cv is not None
        async with self._run_cv:
            await self._run_cv.wait_for(lambda: self._started_id >= run_id)

    # ---------------------------------------------------------------- run control
    async def start(self, max_events: int | None) -> RunStart:
        """Start a run; returns when the run-start listeners ran.

        Raises ``PutRefused`` while a run is in progress: a second Start never reports success
        for a run it did not make (areaDetector's busy-record ``Acquire`` would instead wait for
        the running acquisition and report its result; see docs/settings.md).
        """
        self.bind_loop()
        async with self.lock:
            if self.state in (RunState.RUNNING, RunState.PAUSED):
                raise PutRefused(f"Acquire: a run is already in progress (State_RBV is {self.state.value}); "
                                 "put Acquire Stop first")
            try:
                run = await self.call(self.session.start, max_events=max_events or None)
            except (ScopeError, RuntimeError, ValueError) as ex:
                raise PutRefused(f"Acquire: {explain(ex)}") from ex
            log.info("run %d started (max_events=%s)", run.run_id, max_events or "unlimited")
        await self._run_start_shown(run.run_id)
        return run

    async def stop(self) -> RunSummary | None:
        """Stop the run in progress (None if there is none); returns its summary once the
        run-end listeners ran."""
        self.bind_loop()
        async with self.lock:
            if self.state not in (RunState.RUNNING, RunState.PAUSED):
                return None
            summary = await self.call(self.session.stop)
            log.info("run stopped")
        if summary is not None:
            await self.run_end(summary.run_id)
        return summary

    async def pause(self) -> None:
        if self.state == RunState.PAUSED:
            return  # nothing to do: no need to wait for a start/stop in progress
        async with self.lock:
            if self.state == RunState.PAUSED:
                return
            if self.state != RunState.RUNNING:
                raise PutRefused(f"Pause: no run in progress (State is {self.state.value})")
            try:
                await self.call(self.session.pause)
            except (ScopeError, RuntimeError) as ex:
                raise PutRefused(f"Pause: {explain(ex)}") from ex

    async def resume(self) -> None:
        if self.state != RunState.PAUSED:
            return  # nothing to do: no need to wait for a start/stop in progress
        async with self.lock:
            if self.state == RunState.PAUSED:
                try:
                    await self.call(self.session.resume)
                except (ScopeError, RuntimeError) as ex:
                    raise PutRefused(f"Pause: {explain(ex)}") from ex

    # ---------------------------------------------------------------- shutdown
    def shutdown(self, timeout: float = 10.0) -> RunSummary | None:
        """Stop a run (writing the summary) and close the session. Thread-safe, idempotent."""
        if self.closed:
            return self.last_summary
        self.closed = True
        summary = None
        try:
            if self.bm.state in (RunState.RUNNING, RunState.PAUSED):
                summary = self._executor.submit(self.session.stop).result(timeout)
                self.last_summary = summary
        except Exception:
            log.exception("stopping the run at shutdown failed")
        try:
            self._executor.submit(self.session.close).result(timeout)
        except Exception:
            log.exception("closing the session failed")
        self._executor.shutdown(wait=False)
        return summary


def _steps(changes: Iterable[Change]) -> tuple:
    """The steps of ``changes`` in order (one atomic change)."""
    return tuple(step for c in changes for step in c.steps)
