"""ophyd devices for picodaq-ioc, so bluesky plans can trigger acquisitions and read results.

``ophyd`` is imported lazily (when a class is first used), so the displays do not need it.

Example
-------
>>> from bluesky import RunEngine
>>> from bluesky.plans import count
>>> from picodaq_clients.ophyd_device import PicoDAQ
>>> daq = PicoDAQ("PICO:", name="daq")
>>> daq.wait_for_connection()
>>> daq.num_events.put(500)          # each trigger(): one run of 500 processed events
>>> RE = RunEngine()
>>> RE(count([daq], num=3))          # doctest: +SKIP

``trigger()`` writes ``Acquire`` = 1 with put-completion: the IOC completes the put when
``NumEvents`` events have been processed (by the analysis too), so the values read right after
belong to that run.

Classes
-------
PicoDAQBase
    Settings (``EpicsSignalWithRBV``), run control, statistics — any configuration.
PicoDAQ
    ``PicoDAQBase`` plus the pulse filter's results (``Pulse:``): counts and the lifetime.
    Use it with a configuration that has the pulse-filter analysis module.
"""

from __future__ import annotations

from functools import cache
from typing import Any

#: classes built on first access (module ``__getattr__``), so importing ophyd is deferred
CLASSES = ("PicoDAQ", "PicoDAQBase", "PicoChannel", "PicoTrigger", "PicoStats", "PicoPulse", "PicoSigGen")


@cache
def _classes() -> dict[str, type]:
    from ophyd import Component as Cpt
    from ophyd import Device, EpicsSignal, EpicsSignalRO, EpicsSignalWithRBV
    from ophyd.status import DeviceStatus, Status, SubscriptionStatus

    class PicoChannel(Device):
        """One input channel (``$(P)A:`` ...)."""

        enable = Cpt(EpicsSignalWithRBV, "Enable", string=True, kind="config")
        range = Cpt(EpicsSignalWithRBV, "Range", kind="config")
        coupling = Cpt(EpicsSignalWithRBV, "Coupling", string=True, kind="config")
        offset = Cpt(EpicsSignalWithRBV, "Offset", kind="config")
        waveform = Cpt(EpicsSignalRO, "Waveform_RBV", kind="omitted")
        overflow = Cpt(EpicsSignalRO, "Overflow_RBV", kind="omitted")

    class PicoTrigger(Device):
        """Trigger settings (``$(P)Trigger:``)."""

        enable = Cpt(EpicsSignalWithRBV, "Enable", string=True, kind="config")
        source = Cpt(EpicsSignalWithRBV, "Source", string=True, kind="config")
        level = Cpt(EpicsSignalWithRBV, "Level", kind="config")
        direction = Cpt(EpicsSignalWithRBV, "Direction", string=True, kind="config")
        delay = Cpt(EpicsSignalWithRBV, "Delay", kind="config")
        auto_timeout = Cpt(EpicsSignalWithRBV, "AutoTimeout", kind="config")

    class PicoSigGen(Device):
        """Signal generator (``$(P)SigGen:``)."""

        enable = Cpt(EpicsSignalWithRBV, "Enable", string=True, kind="config")
        waveform = Cpt(EpicsSignalWithRBV, "Waveform", string=True, kind="config")
        frequency = Cpt(EpicsSignalWithRBV, "Frequency", kind="config")
        amplitude = Cpt(EpicsSignalWithRBV, "Amplitude", kind="config")
        offset = Cpt(EpicsSignalWithRBV, "Offset", kind="config")

    class PicoStats(Device):
        """Run statistics of the buffer manager (``$(P)Stats:``)."""

        triggers = Cpt(EpicsSignalRO, "Triggers_RBV", kind="normal")
        events = Cpt(EpicsSignalRO, "Events_RBV", kind="normal")
        trigger_rate = Cpt(EpicsSignalRO, "TriggerRate_RBV", kind="normal")
        event_rate = Cpt(EpicsSignalRO, "EventRate_RBV", kind="normal")
        mean_trigger_rate = Cpt(EpicsSignalRO, "MeanTriggerRate_RBV", kind="hinted")
        run_time = Cpt(EpicsSignalRO, "RunTime_RBV", kind="normal")
        live_time = Cpt(EpicsSignalRO, "LiveTime_RBV", kind="normal")
        live_fraction = Cpt(EpicsSignalRO, "LiveFraction_RBV", kind="normal")
        reset = Cpt(EpicsSignal, "Reset", kind="omitted")

    class PicoPulse(Device):
        """Pulse-filter results (``$(P)Pulse:``): counts, rates, the live lifetime fit."""

        events = Cpt(EpicsSignalRO, "Events_RBV", kind="normal")
        validated = Cpt(EpicsSignalRO, "Validated_RBV", kind="normal")
        accepted = Cpt(EpicsSignalRO, "Accepted_RBV", kind="hinted")
        rate = Cpt(EpicsSignalRO, "Rate_RBV", kind="normal")
        double_pulses = Cpt(EpicsSignalRO, "DoublePulses_RBV", kind="hinted")
        lifetime = Cpt(EpicsSignalRO, "Lifetime_RBV", kind="hinted")
        lifetime_err = Cpt(EpicsSignalRO, "LifetimeErr_RBV", kind="normal")
        background = Cpt(EpicsSignalRO, "Background_RBV", kind="normal")
        fit_entries = Cpt(EpicsSignalRO, "FitEntries_RBV", kind="normal")
        heights = Cpt(EpicsSignalRO, "Heights_RBV", kind="omitted")
        height_bins = Cpt(EpicsSignalRO, "HeightBins_RBV", kind="omitted")
        decay_times = Cpt(EpicsSignalRO, "DecayTimes_RBV", kind="omitted")
        decay_bins = Cpt(EpicsSignalRO, "DecayBins_RBV", kind="omitted")
        reset = Cpt(EpicsSignal, "Reset", kind="omitted")

    class PicoDAQBase(Device):
        """A picodaq IOC: settings, run control and statistics.

        ``trigger()`` starts one run of ``num_events`` events with a put-completion on
        ``Acquire``; the returned status finishes when the IOC has processed them.
        """

        acquire = Cpt(EpicsSignal, "Acquire", put_complete=True, kind="omitted")
        num_events = Cpt(EpicsSignal, "NumEvents", kind="config")
        pause_run = Cpt(EpicsSignal, "Pause", kind="omitted")
        state = Cpt(EpicsSignalRO, "State_RBV", string=True, kind="omitted")
        model = Cpt(EpicsSignalRO, "Model_RBV", string=True, kind="config")
        backend = Cpt(EpicsSignalRO, "Backend_RBV", string=True, kind="config")
        sample_interval = Cpt(EpicsSignalWithRBV, "SampleInterval", kind="config")
        num_samples = Cpt(EpicsSignalWithRBV, "NumSamples", kind="config")
        pre_trigger = Cpt(EpicsSignalWithRBV, "PreTrigger", kind="config")
        num_segments = Cpt(EpicsSignalWithRBV, "NumSegments", kind="config")
        time_axis = Cpt(EpicsSignalRO, "TimeAxis_RBV", kind="omitted")
        event_number = Cpt(EpicsSignalRO, "EventNumber_RBV", kind="omitted")
        a = Cpt(PicoChannel, "A:")
        b = Cpt(PicoChannel, "B:")
        c = Cpt(PicoChannel, "C:")
        d = Cpt(PicoChannel, "D:")
        trig = Cpt(PicoTrigger, "Trigger:")
        siggen = Cpt(PicoSigGen, "SigGen:", kind="omitted")
        stats = Cpt(PicoStats, "Stats:")
        buffer_size = Cpt(EpicsSignalWithRBV, "Buffer:Size", kind="config")
        buffer_fill = Cpt(EpicsSignalRO, "Buffer:FillLevel_RBV", kind="normal")
        #: Settings:Defer: On holds settings puts, Off applies them as one change (docs/settings.md)
        settings_defer = Cpt(EpicsSignal, "Settings:Defer", string=True, put_complete=True, kind="omitted")

        def set_settings(self, changes: dict[Any, Any], timeout: float = 30.0) -> None:
            """Apply ``{signal: value}`` (setting signals of this device) as ONE atomic change.

            ``Settings:Defer`` On, plain puts of the values (held by the IOC), Defer Off with
            put-completion: returns when the device applied all of them; raises when the IOC
            refused the combination (then nothing of it was applied).
            """
            self.settings_defer.set("On").wait(timeout)
            try:
                for sig, value in changes.items():
                    sig.put(value, use_complete=False)
            finally:
                self.settings_defer.set("Off").wait(timeout)

        def trigger(self) -> Status:
            """Acquire ``num_events`` events (put-completion on ``Acquire``)."""
            n = int(self.num_events.get())
            if n <= 0:
                raise ValueError(f"{self.name}: num_events ({self.num_events.pvname}) is {n}; set it to "
                                 "the number of events per point (> 0) before triggering")
            state = self.state.get(use_monitor=False)
            if state in ("Running", "Paused"):
                # the IOC refuses Acquire=Start during a run; caproto's client does not report a
                # refused put-callback to ophyd, so say it here instead of waiting or reading
                # numbers of a run this trigger did not make
                raise RuntimeError(f"{self.name}: a run is already in progress ({self.state.pvname} is "
                                   f"{state}); the IOC refuses Acquire=Start until it is stopped")
            return self.acquire.set(1)

        def stop(self, *, success: bool = False) -> None:
            """Stop a run in progress (bluesky calls this on abort)."""
            self.acquire.put(0, use_complete=False)

    class PicoDAQ(PicoDAQBase):
        """A picodaq IOC with the pulse-filter analysis (``Pulse:``): adds pulse counts and lifetime.

        The IOC publishes analysis results at a bounded rate, so they can trail the
        put-completion of ``Acquire`` by a fraction of a second; ``trigger()`` therefore also
        waits until ``Pulse:Events_RBV`` (events analysed in this run) reaches ``num_events``.
        """

        pulse = Cpt(PicoPulse, "Pulse:")

        def trigger(self) -> Status:
            n = int(self.num_events.get())
            acquired = super().trigger()
            done = DeviceStatus(self)

            def finish(status: Status) -> None:
                if status.success:
                    done.set_finished()
                else:
                    done.set_exception(status.exception() or RuntimeError(f"{self.name}: trigger failed"))

            def after_acquire(status: Status) -> None:
                if not status.success:
                    finish(status)
                    return
                analysed = SubscriptionStatus(self.pulse.events,
                                              lambda *, value, **_: int(value) >= n, run=True)
                analysed.add_callback(finish)

            acquired.add_callback(after_acquire)
            return done

    return {c.__name__: c for c in (PicoDAQ, PicoDAQBase, PicoChannel, PicoTrigger, PicoStats,
                                    PicoPulse, PicoSigGen)}


def __getattr__(name: str) -> Any:
    if name in CLASSES:
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
