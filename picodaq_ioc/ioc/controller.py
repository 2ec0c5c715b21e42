"""The IOC's handle on a DAQ session: requested settings, serialised device calls, run control.

All backend and buffer-manager calls run off the event loop: settings and run control on
one dedicated worker thread (never two device calls at once), blocking waits in
``asyncio.to_thread``. Listeners (the PV groups) are told about every new ``Applied``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..daq.events import RunState, RunStats
from ..scope.errors import InvalidConfig, ScopeError
from ..scope.types import Applied, ChannelConfig, SigGenConfig, TimebaseConfig, TriggerConfig

log = logging.getLogger("picodaq_ioc.ioc")

Listener = Callable[[Applied], Awaitable[None]]


class PutRefused(ValueError):
    """A put the device or the run state does not allow (reported to the CA client)."""


@dataclasses.dataclass
class Stage:
    """Settings collected by :meth:`Controller.staged` (applied together by :meth:`Controller.commit`)."""

    controller: Any
    channels: dict[str, ChannelConfig]
    timebase: TimebaseConfig
    trigger: TriggerConfig
    siggen: SigGenConfig
    #: what was staged, in order (the PV names the putters pass, e.g. ``"A:Offset"``)
    names: list[str] = dataclasses.field(default_factory=list)
    #: which of channels / timebase / trigger / siggen changed
    changed: set[str] = dataclasses.field(default_factory=set)


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
    """Serialises settings and run control of one ``DaqSession``.

    Parameters
    ----------
    session
        A ``picodaq_ioc.session.DaqSession`` (``.bm``, ``.info``, ``.applied``,
        ``update_settings``, ``start``/``pause``/``resume``/``stop``/``close``).
    channels, timebase, trigger, siggen
        The requested settings (the setpoints), normally from ``scope_settings(cfg)``.
    """

    def __init__(self, session: Any, channels: Mapping[str, ChannelConfig], timebase: TimebaseConfig,
                 trigger: TriggerConfig, siggen: SigGenConfig, *, max_ring_bytes: int = 1 << 30) -> None:
        self.session = session
        self.bm = session.bm
        self.info = session.info
        self.channels: dict[str, ChannelConfig] = dict(channels)
        self.timebase = timebase
        self.trigger = trigger
        self.siggen = siggen
        self.applied: Applied | None = getattr(session, "applied", None) or self.bm.applied
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="picodaq-ctl")
        self._lock: asyncio.Lock | None = None
        self.listeners: list[Listener] = []
        self.run_listeners: list[Callable[[], None]] = []
        self.last_summary: Any = None
        self.closed = False
        #: refuse settings whose ring (slots x enabled channels x samples x int16) is larger
        self.max_ring_bytes = int(max_ring_bytes)
        #: ring slots (kept current by resize(); read once here, before the event loop runs)
        self.n_buffers = int(self.bm.stats().n_buffers)

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

    async def _notify(self, applied: Applied) -> None:
        self.applied = applied
        for fn in list(self.listeners):
            try:
                await fn(applied)
            except Exception:  # a listener must not break the put
                log.exception("listener failed after reconfiguration")

    # ---------------------------------------------------------------- settings
    async def update(self, what: str, *, channels: Mapping[str, ChannelConfig] | None = None,
                     timebase: TimebaseConfig | None = None, trigger: TriggerConfig | None = None,
                     siggen: SigGenConfig | None = None) -> Applied:
        """Apply new settings atomically (stop, reconfigure, resume while running).

        Raises ``PutRefused`` with a clear message when the device refuses; the old
        configuration then stays in place.
        """
        stage = _STAGE.get()
        if stage is not None and stage.controller is self:
            # collected, applied by commit() together with the other staged settings
            for field, value in (("channels", channels), ("timebase", timebase), ("trigger", trigger),
                                 ("siggen", siggen)):
                if value is not None:
                    setattr(stage, field, dict(value) if field == "channels" else value)
                    stage.changed.add(field)
            stage.names.append(what)
            return self.applied
        async with self.lock:
            self.check_memory(what, channels=channels, timebase=timebase)
            kw: dict[str, Any] = {}
            if channels is not None:
                kw["channels"] = dict(channels)
            if timebase is not None:
                kw["timebase"] = timebase
            if trigger is not None:
                kw["trigger"] = trigger
            if siggen is not None:
                kw["siggen"] = siggen
            t0 = time.monotonic()
            try:
                applied = await self.call(self.session.update_settings, **kw)
            except (InvalidConfig, ValueError) as ex:
                raise PutRefused(f"{what}: {explain(ex)}") from ex
            except ScopeError as ex:
                raise PutRefused(f"{what}: device error: {explain(ex)}") from ex
            if channels is not None:
                self.channels = dict(channels)
            if timebase is not None:
                self.timebase = timebase
            if trigger is not None:
                self.trigger = trigger
            if siggen is not None:
                self.siggen = siggen
            log.info("applied %s (generation %s, %.1f ms)", what,
                     getattr(applied, "config_generation", "?"), 1e3 * (time.monotonic() - t0))
            await self._notify(applied)
            return applied

    def _requested(self, field: str) -> Any:
        """The requested ``field`` (the staged one while this task stages settings)."""
        stage = _STAGE.get()
        return getattr(stage if stage is not None and stage.controller is self else self, field)

    async def set_channel(self, ch: str, what: str, **changes: Any) -> Applied:
        new = dict(self._requested("channels"))
        new[ch] = dataclasses.replace(new[ch], **changes)
        return await self.update(what, channels=new)

    async def set_timebase(self, what: str, **changes: Any) -> Applied:
        return await self.update(what, timebase=dataclasses.replace(self._requested("timebase"), **changes))

    async def set_trigger(self, what: str, **changes: Any) -> Applied:
        return await self.update(what, trigger=dataclasses.replace(self._requested("trigger"), **changes))

    async def set_siggen(self, what: str, **changes: Any) -> Applied:
        return await self.update(what, siggen=dataclasses.replace(self._requested("siggen"), **changes))

    @contextlib.asynccontextmanager
    async def staged(self) -> AsyncIterator[Stage]:
        """Collect the settings changes made by this task (e.g. puts through the PVs' putters)
        instead of applying them one by one; apply them with :meth:`commit` afterwards.

        Only the current task is affected: other clients' puts meanwhile go to the device.
        """
        stage = Stage(self, dict(self.channels), self.timebase, self.trigger, self.siggen)
        token = _STAGE.set(stage)
        try:
            yield stage
        finally:
            _STAGE.reset(token)

    async def commit(self, stage: Stage, what: str) -> Applied | None:
        """Apply everything ``stage`` collected as ONE configuration change (None if nothing).

        Raises ``PutRefused`` when the device refuses the combination; nothing of it is applied.
        """
        if not stage.changed:
            return None
        kw = {field: getattr(stage, field) for field in stage.changed}
        return await self.update(f"{what} ({', '.join(stage.names)})", **kw)

    async def resize(self, n: int) -> int:
        async with self.lock:
            self.check_memory("Buffer:Size", n_buffers=int(n))
            fn = getattr(self.session, "resize", None) or self.bm.resize
            try:
                await self.call(fn, int(n))
            except (InvalidConfig, ValueError, RuntimeError) as ex:
                raise PutRefused(f"Buffer:Size: {explain(ex)}") from ex
            self.n_buffers = int((await self.stats()).n_buffers)
            return self.n_buffers

    # ---------------------------------------------------------------- run control
    async def start(self, max_events: int | None) -> bool:
        """Start a run unless one is in progress. Returns True when a new run began."""
        async with self.lock:
            if self.state in (RunState.RUNNING, RunState.PAUSED):
                return False
            for fn in list(self.run_listeners):
                fn()
            try:
                await self.call(self.session.start, max_events=max_events or None)
            except (ScopeError, RuntimeError, ValueError) as ex:
                raise PutRefused(f"Acquire: {explain(ex)}") from ex
            log.info("run started (max_events=%s)", max_events or "unlimited")
            return True

    async def stop(self) -> Any:
        async with self.lock:
            if self.state not in (RunState.RUNNING, RunState.PAUSED):
                return None
            summary = await self.call(self.session.stop)
            self.last_summary = summary
            log.info("run stopped")
            return summary

    async def pause(self) -> None:
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
        async with self.lock:
            if self.state == RunState.PAUSED:
                try:
                    await self.call(self.session.resume)
                except (ScopeError, RuntimeError) as ex:
                    raise PutRefused(f"Pause: {explain(ex)}") from ex

    async def wait_processed(self, n: int) -> bool:
        """Wait until ``n`` events were processed by every obligatory consumer, or the run ended.

        Returns True when ``n`` was reached.
        """
        while True:
            done = await asyncio.to_thread(self.bm.wait_processed, n, 0.5)
            if done:
                return True
            if self.state not in (RunState.RUNNING, RunState.PAUSED):
                # the run ended (stopped by the user or an error): one last look
                return bool(await asyncio.to_thread(self.bm.wait_processed, n, 0.0))

    # ---------------------------------------------------------------- shutdown
    def shutdown(self, timeout: float = 10.0) -> Any:
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
