"""Run control: ``Acquire`` (put-completion), ``NumEvents``, ``Pause``, ``State_RBV``."""

from __future__ import annotations

import logging

from caproto import AlarmSeverity, AlarmStatus

from ...daq.events import RunState
from ..controller import PutRefused
from ..pvspec import enum_pv, int_pv, plain, set_alarm, write_if_changed
from .base import PicoGroup, init_write

log = logging.getLogger("picodaq_ioc.ioc")

STATES = tuple(s.value for s in RunState)  # Idle, Running, Paused, Stopped, Error


class AcquisitionGroup(PicoGroup):
    """Run control (prefix ``$(P)``)."""

    acquire = enum_pv(
        "Acquire",
        "Start/stop a run; with NumEvents>0 a put-callback completes after that many processed events",
        ("Stop", "Start"))
    acquire_rbv = enum_pv("Acquire_RBV", "Acquisition in progress", ("Done", "Acquiring"), read_only=True)
    num_events = int_pv("NumEvents", "Events per run for Acquire (0 = run until stopped)", low=0,
                        high=2**31 - 1)
    pause = enum_pv("Pause", "Pause/resume the running acquisition", ("Run", "Pause"))
    pause_rbv = enum_pv("Pause_RBV", "Acquisition paused", ("Run", "Pause"), read_only=True)
    state = enum_pv("State_RBV", "Run state", STATES, read_only=True)

    @acquire.putter
    async def acquire(self, instance, value):
        """Stop, or Start a run: refused while a run is in progress (never a success for a run
        this put did not make). With NumEvents N > 0 the put completes when that run ended
        (N events processed by every obligatory consumer, or stopped) and the run-end
        listeners showed its final statistics and analysis results."""
        if value not in ("Stop", "Start"):
            raise PutRefused(f"Acquire: {plain(value)!r} is not one of Stop, Start")
        ctl = self.ctl
        if value == "Stop":
            await ctl.stop()
            return "Stop"
        n = int(self.num_events.value)
        run = await ctl.start(n if n > 0 else None)
        if n <= 0:
            return "Start"
        # show Start while the put-callback is pending (the put's own value lands at the end)
        await init_write(self.acquire, "Start")
        summary = await ctl.run_end(run.run_id)
        log.info("Acquire: run %d ended (%s) with %d of %d events processed", run.run_id, summary.state,
                 summary.processed, n)
        return "Stop"

    @pause.putter
    async def pause(self, instance, value):
        if value not in ("Run", "Pause"):
            raise PutRefused(f"Pause: {plain(value)!r} is not one of Run, Pause")
        if value == "Pause":
            await self.ctl.pause()
        else:
            await self.ctl.resume()
        await self.refresh_state()
        return value

    async def refresh_state(self) -> None:
        refresh = getattr(self.root, "refresh_status", None)
        if refresh is not None:
            try:
                await refresh()  # statistics are final when a put-callback completes
                return
            except Exception:  # a display update must never fail the put
                log.exception("status refresh failed")
        await self.show_state(self.ctl.state)

    async def show_state(self, state: RunState) -> None:
        name = state.value
        await write_if_changed(self.state, name)
        await set_alarm(self.state, AlarmSeverity.MAJOR_ALARM if state == RunState.ERROR
                        else AlarmSeverity.NO_ALARM, AlarmStatus.STATE)
        active = state in (RunState.RUNNING, RunState.PAUSED)
        await write_if_changed(self.acquire_rbv, "Acquiring" if active else "Done")
        await write_if_changed(self.pause_rbv, "Pause" if state == RunState.PAUSED else "Run")
        if not active and self.acquire.value == "Start":
            # the run ended by itself (NumEvents reached, error): mirror it on the setpoint
            # unless a put-callback is still finishing (it returns "Stop" itself)
            await init_write(self.acquire, "Stop")
        if state == RunState.RUNNING and self.pause.value == "Pause":
            await init_write(self.pause, "Run")
