"""Run statistics from the buffer manager's accounting (``Stats:*``), updated at a few Hz.

Definitions are those of :class:`picodaq_ioc.daq.events.RunStats`. ``Stats:Reset`` sets
the counters, times and the live fraction to zero without touching the run (the buffer
manager keeps its own accounting; the IOC shows differences to the reset snapshot). Every
new run starts from zero.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...daq.events import RunStats
from ..controller import PutRefused
from ..pvspec import RATE_SCALE_HZ, TIME_SCALE_S, enum_pv, float_pv, int_pv, plain, write_if_changed
from .base import PicoGroup

INT32_MAX = 2**31 - 1


@dataclass
class Baseline:
    triggers: int = 0
    events: int = 0
    discarded: int = 0
    processed: int = 0
    run_time: float = 0.0
    live_time: float = 0.0


def _i32(v: int) -> int:
    return int(min(max(v, 0), INT32_MAX))


class StatsGroup(PicoGroup):
    """Run statistics (prefix ``$(P)Stats:``)."""

    triggers = int_pv("Triggers_RBV", "Triggers captured by the scope this run", read_only=True)
    events = int_pv("Events_RBV", "Events delivered to the ring this run", read_only=True)
    processed = int_pv("Processed_RBV", "Events processed by every analysis consumer", read_only=True)
    discarded = int_pv("Discarded_RBV", "Captures of an outdated configuration dropped at a reconfiguration",
                       read_only=True)
    trigger_rate = float_pv("TriggerRate_RBV", "Trigger rate (recent window)", units="Hz", precision=2,
                            read_only=True, low=0.0, high=RATE_SCALE_HZ)
    event_rate = float_pv("EventRate_RBV", "Event rate (recent window)", units="Hz", precision=2,
                          read_only=True, low=0.0, high=RATE_SCALE_HZ)
    mean_trigger_rate = float_pv("MeanTriggerRate_RBV", "Triggers / run time", units="Hz", precision=2,
                                 read_only=True, low=0.0, high=RATE_SCALE_HZ)
    run_time = float_pv("RunTime_RBV", "Run time without pauses", units="s", precision=2, read_only=True,
                        low=0.0, high=TIME_SCALE_S)
    live_time = float_pv("LiveTime_RBV", "Time armed and waiting for a trigger", units="s", precision=2,
                         read_only=True, low=0.0, high=TIME_SCALE_S)
    dead_time = float_pv("DeadTime_RBV", "Run time - live time (readout, re-arm, full ring)", units="s",
                         precision=2, read_only=True, low=0.0, high=TIME_SCALE_S)
    live_fraction = float_pv("LiveFraction_RBV", "Live time / run time", units="%", precision=2, low=0.0,
                             high=100.0, read_only=True)
    generation = int_pv("ConfigGeneration_RBV", "Configuration generation of the device", read_only=True)
    reset = enum_pv("Reset", "Set the statistics to zero (the run goes on)", ("Done", "Reset"))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.baseline = Baseline()
        self.last: RunStats | None = None

    @reset.putter
    async def reset(self, instance, value):
        if value not in ("Done", "Reset"):
            raise PutRefused(f"Stats:Reset: {plain(value)!r} is not one of Done, Reset")
        if value == "Reset":
            st = await self.ctl.stats()
            self.baseline = Baseline(st.triggers, st.events, st.discarded, st.processed, st.run_time,
                                     st.live_time)
            await self.show_stats(st)
        return "Done"

    async def show_generation(self, generation: int) -> None:
        await write_if_changed(self.generation, _i32(generation))

    def new_run(self) -> None:
        self.baseline = Baseline()

    async def show_stats(self, st: RunStats) -> None:
        b = self.baseline
        self.last = st
        run_time = max(0.0, st.run_time - b.run_time)
        live_time = max(0.0, st.live_time - b.live_time)
        await write_if_changed(self.triggers, _i32(st.triggers - b.triggers))
        await write_if_changed(self.events, _i32(st.events - b.events))
        await write_if_changed(self.processed, _i32(st.processed - b.processed))
        await write_if_changed(self.discarded, _i32(st.discarded - b.discarded))
        await write_if_changed(self.trigger_rate, float(st.trigger_rate))
        await write_if_changed(self.event_rate, float(st.event_rate))
        await write_if_changed(self.mean_trigger_rate,
                               (st.triggers - b.triggers) / run_time if run_time > 0 else 0.0)
        await write_if_changed(self.run_time, run_time)
        await write_if_changed(self.live_time, live_time)
        await write_if_changed(self.dead_time, max(0.0, run_time - live_time))
        if b.run_time == 0.0:  # no reset: the buffer manager's own figure
            fraction = float(st.live_fraction)
        else:
            fraction = live_time / run_time if run_time > 0 else 0.0
        await write_if_changed(self.live_fraction, 100.0 * fraction)
        await write_if_changed(self.generation, _i32(st.generation))
