"""Waveform publishing: ``Waveform:MaxRate``, ``Waveform:Rate_RBV``, ``ArrayCounter_RBV``,
``ArrayRate_RBV`` (areaDetector's name for the same rate), ``EventNumber_RBV``, ``TriggerTime_RBV``."""

from __future__ import annotations

from ..pvspec import TIME_SCALE_S, finite, float_pv, int_pv, write_if_changed
from .base import PicoGroup

MAX_PUBLISH_RATE = 1000.0


class WaveformGroup(PicoGroup):
    """Bounded-rate waveform publishing (prefix ``$(P)``)."""

    max_rate = float_pv("Waveform:MaxRate", "Highest rate at which waveform PVs are updated (0 = off); "
                        "the latest event wins", units="Hz", precision=1, low=0.0, high=MAX_PUBLISH_RATE,
                        value=20.0)
    rate = float_pv("Waveform:Rate_RBV", "Rate at which waveform PVs are updated", units="Hz", precision=1,
                    read_only=True, low=0.0, high=MAX_PUBLISH_RATE)
    array_rate = float_pv("ArrayRate_RBV", "Arrays (events) published per second (areaDetector name of "
                          "Waveform:Rate_RBV)", units="Hz", precision=1, read_only=True,
                          low=0.0, high=MAX_PUBLISH_RATE)
    counter = int_pv("ArrayCounter_RBV", "Events published to the waveform PVs since the IOC started",
                     read_only=True)
    event_number = int_pv("EventNumber_RBV", "Event number (in the run) of the published waveforms",
                          read_only=True)
    trigger_time = float_pv("TriggerTime_RBV", "Trigger time of the published event since run start",
                            units="s", precision=6, read_only=True,
                            low=0.0, high=TIME_SCALE_S)

    @max_rate.putter
    async def max_rate(self, instance, value):
        v = finite(value, "Waveform:MaxRate")
        publisher = getattr(self.root, "publisher", None)
        if publisher is not None:
            publisher.max_rate = v
        return v

    async def show_rate(self, rate: float) -> None:
        await write_if_changed(self.rate, round(float(rate), 2))
        await write_if_changed(self.array_rate, round(float(rate), 2))
