"""Ring buffer: ``Buffer:Size`` (+ ``_RBV``), ``Buffer:Filled_RBV``, ``Buffer:FillLevel_RBV`` (%)."""

from __future__ import annotations

from ...daq.events import RunStats
from ..pvspec import TIME_SCALE_S, float_pv, int_pv, pair, write_if_changed
from .base import PicoGroup, init_write

MAX_BUFFERS = 65536


class BufferGroup(PicoGroup):
    """Buffer manager ring (prefix ``$(P)Buffer:``)."""

    size, size_rbv = pair(int_pv, "Size", "Number of event slots in the ring", low=2, high=MAX_BUFFERS, value=16)
    filled = int_pv("Filled_RBV", "Slots holding events not yet released by every analysis consumer",
                    read_only=True)
    fill_level = float_pv("FillLevel_RBV", "Ring fill level (MINOR >= 75 %, MAJOR at 100 %)", units="%",
                          precision=1, low=0.0, high=100.0, read_only=True,
                          upper_warning_limit=75.0, upper_alarm_limit=100.0,
                          lower_warning_limit=-1.0, lower_alarm_limit=-2.0)
    ring_wait = float_pv("RingWaitTime_RBV", "Dead time spent waiting for a free slot this run", units="s",
                         precision=3, read_only=True, low=0.0, high=TIME_SCALE_S)

    @size.putter
    async def size(self, instance, value):
        n = await self.ctl.resize(int(value))
        await write_if_changed(self.size_rbv, int(n))
        return int(value)

    async def show_requested(self, ctl) -> None:
        await init_write(self.size, int(ctl.n_buffers))

    async def show_stats(self, st: RunStats) -> None:
        await write_if_changed(self.size_rbv, int(st.n_buffers))
        await write_if_changed(self.filled, int(st.filled))
        await write_if_changed(self.fill_level, round(100.0 * float(st.fill_level), 3))
        await write_if_changed(self.ring_wait, float(st.ring_wait_time))
