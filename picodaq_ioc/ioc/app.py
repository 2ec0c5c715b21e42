"""The IOC's top PV group: composition of the groups, startup, status loop and frame writer.

:func:`build_ioc_class` makes the PVGroup class for a scope model (its channels, ranges,
couplings, signal generator) and a list of analysis modules; it needs no device, so
``--list-pvs`` and the ``db/`` generator use it too. :class:`PicoDAQIOC` (the base of that
class) runs the IOC once a controller is attached with :meth:`PicoDAQIOC.attach`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from caproto import AlarmSeverity, AlarmStatus
from caproto.server import PVGroup, SubGroup
from caproto.server.stats import StatusHelper

from ..daq.accounting import RunSummary
from ..daq.events import RunState
from ..daq.lifecycle import RunStart
from ..scope.types import Applied, ScopeInfo
from . import caproto_fixes
from .caproto_ctrl import TYPE_MAP, TYPE_MAP_READ_ONLY
from .controller import Controller, PutRefused, explain
from .groups.acquisition import AcquisitionGroup
from .groups.analysis import AnalysisGroup, make_analysis_group
from .groups.buffer import BufferGroup
from .groups.channel import make_channel_group
from .groups.device import DeviceGroup
from .groups.hdf import HdfGroup
from .groups.settings import SettingsGroup
from .groups.siggen import make_siggen_group
from .groups.stats import StatsGroup
from .groups.timebase import make_timebase_group
from .groups.trigger import make_trigger_group
from .groups.waveform import WaveformGroup
from .publisher import Frame, WaveformPublisher
from .pvspec import fill_record_fields, write_if_changed

if TYPE_CHECKING:
    from ..analysis.runner import AnalysisRunner

log = logging.getLogger("picodaq_ioc.ioc")

DEFAULT_PREFIX = "PICO:"
STATUS_PERIOD = 0.25  # s, statistics / state / buffer PVs (4 Hz)
ANALYSIS_PERIOD = 0.5  # s, analysis result PVs (2 Hz)


@dataclass
class StagedResult:
    """Outcome of :meth:`PicoDAQIOC.staged_settings` (filled when the block ends)."""

    #: settings collected into the one configuration change (names without prefix)
    names: list[str] = field(default_factory=list)
    #: why the device refused the combination (None: applied)
    error: str | None = None


class IocStatus(StatusHelper):
    """caproto's IOC health PVs (``IOC:``), answering DBR_CTRL reads as RSRV does."""

    type_map = TYPE_MAP
    type_map_read_only = TYPE_MAP_READ_ONLY


class PicoDAQIOC(PVGroup):
    """Root group of the IOC (see :func:`build_ioc_class` for the composition)."""

    type_map = TYPE_MAP
    type_map_read_only = TYPE_MAP_READ_ONLY

    channel_names: tuple[str, ...] = ()
    analysis_attrs: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ctl: Controller | None = None
        self.publisher: WaveformPublisher | None = None
        self.backend_name = ""
        self.analysis_errors: Any = None
        self._axis_generation: int | None = None
        self._tasks: list[asyncio.Task] = []
        #: ``async fn(summary)`` called when a run ended, after the final figures were shown
        #: (summary writers)
        self.run_end_hooks: list[Callable[[RunSummary], Awaitable[None]]] = []
        #: the session's analysis runner (the session owns it and subscribes it to the run events)
        self.runner: AnalysisRunner | None = None
        #: ``fn(frame)`` called after each published event (the PV Access ``Frame`` PV)
        self.frame_listeners: list[Any] = []
        #: the PV Access mirror (:class:`~picodaq_ioc.ioc.pva.PvaMirror`) when ``--pva``, else None
        self.pva: Any = None
        #: the HDF5 file writer (``Hdf5Writer``) behind the ``HDF:`` PVs, set by the CLI
        self.writer: Any = None
        #: the caproto server Context (set by the CLI): client counts for IOC:CA_CLNT_CNT
        self.server_context: Any = None
        self._last_state: RunState | None = None
        self._device_error_seen: str | None = None
        self._reconnects_at_error: int | None = None
        # one refresh at a time: a periodic update that read its figures before a put-callback's
        # final refresh must not overwrite the final figures afterwards
        self._status_lock: asyncio.Lock | None = None
        self._analysis_lock: asyncio.Lock | None = None

    # ----------------------------------------------------------- composition
    @property
    def channel_groups(self) -> dict[str, Any]:
        return {ch: getattr(self, "ch_" + ch) for ch in self.channel_names}

    @property
    def analysis_groups(self) -> list[AnalysisGroup]:
        return [getattr(self, a) for a in self.analysis_attrs]

    def setting_groups(self) -> list[Any]:
        return [self.device, self.timebase, *self.channel_groups.values(), self.trigger, self.siggen]

    def attach(self, ctl: Controller, publisher: WaveformPublisher, backend_name: str,
               analysis_errors: Any = None) -> None:
        """Connect the PVs to a device session (before the server runs)."""
        self.ctl = ctl
        self.publisher = publisher
        self.backend_name = backend_name
        self.analysis_errors = analysis_errors
        ctl.listeners.append(self.show_applied)
        ctl.run_listeners.append(self._run_started)
        ctl.run_end_listeners.append(self._run_ended)
        caproto_fixes.on_refused = self._on_refused

    # ----------------------------------------------------------- startup
    async def __ainit__(self, async_lib: Any) -> None:
        """Startup hook: show the device, start the loops. Never raises (a raising startup
        hook would shut caproto's server down)."""
        try:
            ctl = self.ctl
            assert ctl is not None, "attach() a controller first"
            await self.device.show_info(ctl.info, self.backend_name)
            ctl.bind_loop()
            await fill_record_fields(self.pvdb)
            for g in self.setting_groups():
                await g.show_requested(ctl)
            await self.buffer.show_requested(ctl)
            if self.writer is not None:
                await self.hdf.start(self.writer)
            applied = ctl.applied
            if applied is not None:
                await self.show_applied(applied)
            await self.wf.max_rate.write(float(self.publisher.max_rate), verify_value=False)
            self.publisher.start(asyncio.get_running_loop())
            loop = asyncio.get_running_loop()
            self._tasks.append(loop.create_task(self._status_loop(), name="picodaq-status"))
            self._tasks.append(loop.create_task(self.publisher.frames(self.write_frame), name="picodaq-frames"))
            if self.analysis_attrs:
                self._tasks.append(loop.create_task(self._analysis_loop(), name="picodaq-analysis"))
            await self.acq.show_state(ctl.state)
            upd = self.pvdb.get(self.prefix + "IOC:UPD_TIME")
            if upd is not None:
                await upd.write(5.0)  # IOC:UPTIME, IOC:MEM_USED ... every 5 s (caproto default 15 s)
            await self.device.set_status(f"Ready: {ctl.info.model} ({self.backend_name})")
            log.info("IOC ready: %d PVs under %s", len(self.pvdb), self.prefix)
        except Exception as ex:
            log.exception("IOC startup failed")
            try:
                await self.device.set_status(f"Startup failed: {explain(ex)}", AlarmSeverity.MAJOR_ALARM)
                await self.acq.show_state(RunState.ERROR)
            except Exception:
                log.exception("cannot even report the startup failure")
        # keep the hook alive like caproto's examples; tasks run independently
        try:
            await asyncio.gather(*self._tasks)
        except asyncio.CancelledError:
            for t in self._tasks:
                t.cancel()
            raise

    @contextlib.asynccontextmanager
    async def staged_settings(self, what: str = "settings") -> AsyncIterator[StagedResult]:
        """Puts made inside the block (``await pv.write(value)``) pass the PVs' own checks
        but their device settings are collected and applied at the end as ONE atomic
        configuration change, so their order never matters (autosave restore).

        When the device refuses the combination nothing of it is applied, the setpoints
        show the configuration in force again and ``result.error`` says why. Settings that
        are not device settings (``Buffer:Size``, ``Waveform:MaxRate`` ...) apply at once.
        """
        result = StagedResult()
        ctl = self.ctl
        assert ctl is not None, "attach() a controller first"
        async with ctl.staged() as stage:
            yield result
        result.names = list(stage.names)
        try:
            await ctl.commit(stage, what)
        except PutRefused as ex:
            result.error = str(ex)
            log.warning("%s refused as a whole, nothing of it applied: %s", what, ex)
            for g in self.setting_groups():  # the setpoints show the request in force again
                await g.show_requested(ctl)

    # ----------------------------------------------------------- readbacks
    async def show_applied(self, applied: Applied) -> None:
        """Show a settings outcome: setpoints = the request in force, ``_RBV`` = ``applied``."""
        for g in self.setting_groups():
            await g.show_requested(self.ctl)
            await g.show_applied(applied)
        await self.stats.show_generation(int(applied.config_generation))
        self._axis_generation = applied.config_generation

    async def write_frame(self, frame: Frame) -> None:
        """Publish one event (called at most Waveform:MaxRate times per second)."""
        ts = frame.timestamp
        if frame.applied.config_generation != self._axis_generation:
            # the time axis always belongs to the waveforms shown with it
            await self.timebase.show_time_axis(frame.applied)
            self._axis_generation = frame.applied.config_generation
        for ch, grp in self.channel_groups.items():
            volts = frame.volts.get(ch)
            if volts is None:
                continue
            await grp.waveform.write(volts, timestamp=ts)
            await grp.show_overflow(frame.overflow.get(ch, False), timestamp=ts)
        await self.wf.event_number.write(min(frame.event_number, 2**31 - 1), timestamp=ts)
        await self.wf.trigger_time.write(frame.t_trigger, timestamp=ts)
        await self.wf.counter.write(min(int(self.wf.counter.value) + 1, 2**31 - 1), timestamp=ts)
        for listener in self.frame_listeners:
            listener(frame)

    # ----------------------------------------------------------- loops
    async def refresh_status(self) -> None:
        """Update statistics, buffer, state and publishing PVs now (also every 0.25 s)."""
        if self._status_lock is None:
            self._status_lock = asyncio.Lock()
        async with self._status_lock:
            await self._refresh_status()

    async def _refresh_status(self) -> None:
        st = await self.ctl.stats()
        await self.stats.show_stats(st)
        await self.buffer.show_stats(st)
        await self.acq.show_state(st.state)
        await self.wf.show_rate(self.publisher.rate())
        await self._show_clients()
        self._last_state = st.state
        await self._watch_device()

    async def _show_clients(self) -> None:
        """IOC:CA_CLNT_CNT / IOC:CA_CONN_CNT (caproto's StatusHelper leaves them at 0)."""
        ctx = self.server_context
        if ctx is None:
            return
        circuits = [c for c in list(ctx.circuits) if getattr(c, "connected", True)]
        n_chan = sum(len(getattr(c.circuit, "channels", {})) for c in circuits)
        for name, value in (("IOC:CA_CLNT_CNT", len(circuits)), ("IOC:CA_CONN_CNT", n_chan)):
            pv = self.pvdb.get(self.prefix + name)
            if pv is not None:
                await write_if_changed(pv, value)

    async def _watch_device(self) -> None:
        """Device trouble during a run (unplugged, reconnecting) -> StatusMessage_RBV MAJOR;
        back to no alarm once the buffer manager reconnected."""
        bm = self.ctl.bm
        err = getattr(bm, "last_error", None)
        n_rec = int(getattr(bm, "n_reconnects", 0) or 0)
        if err and err != self._device_error_seen:
            self._device_error_seen = err
            self._reconnects_at_error = n_rec
            log.error("device problem: %s", err)
            await self.device.set_status(f"Device: {err}", AlarmSeverity.MAJOR_ALARM, AlarmStatus.COMM)
        elif not err:
            self._device_error_seen = None
        if (self._reconnects_at_error is not None and n_rec > self._reconnects_at_error
                and self._last_state != RunState.ERROR):
            self._reconnects_at_error = None
            log.info("device reconnected (%d reconnection(s) so far)", n_rec)
            await self.device.set_status(f"Device reconnected ({n_rec} reconnection(s) so far)")

    async def _status_loop(self) -> None:
        last_error = 0.0
        while True:
            t0 = time.monotonic()
            try:
                await self.refresh_status()
            except asyncio.CancelledError:
                raise
            except Exception:
                if time.monotonic() - last_error > 10.0:
                    log.exception("status update failed")
                    last_error = time.monotonic()
            await asyncio.sleep(max(0.0, STATUS_PERIOD - (time.monotonic() - t0)))

    # ----------------------------------------------------------- run lifecycle (events)
    async def _run_started(self, run: RunStart) -> None:
        """A run started: statistics and analysis results restart (the waveform publisher hears of the run from the buffer manager itself) (the
        analysis modules were started for the new run), then the PVs show it: once State_RBV is
        Running, no PV shows a figure of the previous run."""
        self.stats.new_run()
        await self.refresh_analysis()
        await self.acq.show_state(RunState.RUNNING)
        await self.device.set_status(f"Running (run {run.run_id})")
        await self.refresh_status()

    async def _run_ended(self, summary: RunSummary) -> None:
        """A run ended (stopped, NumEvents reached, error): final statistics and analysis
        results on the PVs, the status message, then the run-end hooks (summary writers)."""
        await self.acq.show_state(RunState(summary.state))
        await self.refresh_status()
        await self.refresh_analysis()
        if summary.state == RunState.ERROR.value:
            msg = summary.last_error or self._device_error() or "acquisition error (see the IOC log)"
            log.error("acquisition entered the Error state: %s", msg)
            await self.device.set_status(f"Error: {msg}", AlarmSeverity.MAJOR_ALARM, AlarmStatus.COMM)
        else:
            await self.device.set_status(f"{summary.state} (run {summary.run_id}: {summary.events} events)")
        for hook in list(self.run_end_hooks):
            try:
                await hook(summary)
            except Exception:
                log.exception("run-end hook failed")

    def _device_error(self) -> str:
        for obj in (self.ctl.session, self.ctl.bm):
            for attr in ("last_error", "error"):
                err = getattr(obj, attr, None)
                if err:
                    return err if isinstance(err, str) else explain(err)
        return ""

    async def refresh_analysis(self) -> None:
        """Copy every analysis module's results to its PVs now (also every 0.5 s).

        A put-callback of ``Acquire`` calls this after the last event was processed, so the
        analysis PVs are final when the client is told the put completed."""
        if self._analysis_lock is None:
            self._analysis_lock = asyncio.Lock()
        async with self._analysis_lock:
            for grp in self.analysis_groups:
                try:
                    results = await asyncio.to_thread(grp.module.results)
                    await grp.show_results(results, self._analysis_error(grp.module))
                except asyncio.CancelledError:
                    raise
                except Exception as ex:
                    if time.monotonic() - self._analysis_error_logged > 10.0:
                        log.exception("analysis %s: results() failed", grp.module.prefix)
                        self._analysis_error_logged = time.monotonic()
                    await grp.show_results(None, f"results() failed: {type(ex).__name__}: {ex}")

    _analysis_error_logged = 0.0

    async def _analysis_loop(self) -> None:
        while True:
            t0 = time.monotonic()
            await self.refresh_analysis()
            await asyncio.sleep(max(0.0, ANALYSIS_PERIOD - (time.monotonic() - t0)))

    def _analysis_error(self, module: Any) -> str | None:
        errs = self.analysis_errors
        err = None
        if callable(errs):
            err = errs(module)
        elif isinstance(errs, dict):
            err = errs.get(module.prefix) or errs.get(getattr(module, "name", None))
        if err is None:
            err = getattr(module, "error", None)
        if err is None:
            return None
        return err if isinstance(err, str) else f"{type(err).__name__}: {err}"

    def _on_refused(self, pvname: str, reason: str) -> None:
        """Show a refused put in StatusMessage_RBV (no alarm: a user error, not a device error)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        name = pvname[len(self.prefix):] if pvname.startswith(self.prefix) else pvname
        text = reason if reason.startswith(name + ":") else f"{name}: {reason}"
        loop.create_task(self.device.set_status(f"Put refused: {text}"))


def build_ioc_class(info: ScopeInfo, *, max_samples: int = 16384,
                    analysis_modules: Sequence[Any] = ()) -> type[PicoDAQIOC]:
    """The root PVGroup class for a scope ``info`` and ``analysis_modules``.

    Parameters
    ----------
    info : ScopeInfo
        Channels, ranges, couplings, sample rate, signal generator of the model.
    max_samples : int
        Capacity (NELM) of the waveform and time-axis PVs; ``NumSamples`` cannot exceed it.
    analysis_modules : sequence of AnalysisModule
        Each gets a group ``<module.prefix>:`` built from its ``specs``.
    """
    attrs: dict[str, Any] = {
        "device": SubGroup(DeviceGroup, prefix=""),
        "acq": SubGroup(AcquisitionGroup, prefix=""),
        "timebase": SubGroup(make_timebase_group(info, max_samples), prefix=""),
    }
    for ch in info.channels:
        attrs["ch_" + ch] = SubGroup(make_channel_group(ch, info, max_samples), prefix=f"{ch}:")
    attrs.update({
        "trigger": SubGroup(make_trigger_group(info), prefix="Trigger:"),
        "siggen": SubGroup(make_siggen_group(info), prefix="SigGen:"),
        "settings": SubGroup(SettingsGroup, prefix="Settings:"),
        "buffer": SubGroup(BufferGroup, prefix="Buffer:"),
        "stats": SubGroup(StatsGroup, prefix="Stats:"),
        "wf": SubGroup(WaveformGroup, prefix=""),
        "hdf": SubGroup(HdfGroup, prefix="HDF:"),
    })
    seen: set[str] = set()
    analysis_attrs = []
    for i, module in enumerate(analysis_modules):
        prefix = str(module.prefix)
        if prefix in seen or prefix in ("Trigger", "SigGen", "Settings", "HDF", "Buffer", "Stats", "Waveform", "IOC",
                                        *info.channels):
            raise ValueError(f"analysis module prefix {prefix!r} is already used")
        seen.add(prefix)
        attr = f"analysis_{i}"
        attrs[attr] = SubGroup(make_analysis_group(module), prefix=f"{prefix}:")
        analysis_attrs.append(attr)
    attrs["ioc"] = SubGroup(IocStatus, prefix="IOC:")
    attrs["channel_names"] = tuple(info.channels)
    attrs["analysis_attrs"] = tuple(analysis_attrs)
    return type("PicoDAQIOCGroup", (PicoDAQIOC,), attrs)
