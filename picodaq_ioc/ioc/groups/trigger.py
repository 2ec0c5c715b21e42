"""Trigger: ``Enable``, ``Source``, ``Level``, ``Direction``, ``Delay``, ``AutoTimeout`` (+ ``_RBV``)."""

from __future__ import annotations

from ...scope.types import Applied, Direction
from ..controller import PutRefused
from ..pvspec import enum_pv, finite, float_pv, int_pv, pair, plain, write_if_changed
from .base import PicoGroup, show_setpoint, shown

ON_OFF = ("Off", "On")
DIRECTIONS = tuple(d.value for d in Direction)


def make_trigger_group(info) -> type[PicoGroup]:
    sources = tuple(info.channels) + ("EXT",)
    v_max = max(float(r) for r in info.ranges_v)

    class TriggerGroup(PicoGroup):
        """Simple edge trigger (prefix ``$(P)Trigger:``)."""

        enable, enable_rbv = pair(enum_pv, "Enable", "Trigger on/off (off: free running)", strings=ON_OFF)
        source, source_rbv = pair(enum_pv, "Source", "Trigger source channel", strings=sources)
        level, level_rbv = pair(float_pv, "Level", "Trigger threshold (applied value is ADC-quantised)",
                                units="V", precision=4, low=-v_max, high=v_max)
        direction, direction_rbv = pair(enum_pv, "Direction", "Trigger threshold direction",
                                        strings=DIRECTIONS)
        delay, delay_rbv = pair(int_pv, "Delay", "Trigger delay", units="samples", low=0, high=2**31 - 1)
        auto, auto_rbv = pair(float_pv, "AutoTimeout", "Auto-trigger after this time without a trigger "
                              "(0 = wait forever)", units="s", precision=3, low=0.0, high=3600.0, value=1.0)

        @enable.putter
        async def enable(self, instance, value):
            if value not in ON_OFF:
                raise PutRefused(f"Trigger:Enable: {plain(value)!r} is not one of Off, On")
            return shown(await self.ctl.set_trigger("Trigger:Enable", enabled=(value == "On")), value)

        @source.putter
        async def source(self, instance, value):
            if value not in sources:
                raise PutRefused(f"Trigger:Source: {plain(value)!r} is not one of {', '.join(sources)}")
            return shown(await self.ctl.set_trigger("Trigger:Source", source=value), value)

        @level.putter
        async def level(self, instance, value):
            v = finite(value, "Trigger:Level")
            return shown(await self.ctl.set_trigger("Trigger:Level", threshold_v=v), v)

        @direction.putter
        async def direction(self, instance, value):
            if value not in DIRECTIONS:
                raise PutRefused(f"Trigger:Direction: {plain(value)!r} is not one of {', '.join(DIRECTIONS)}")
            return shown(await self.ctl.set_trigger("Trigger:Direction", direction=Direction(value)), value)

        @delay.putter
        async def delay(self, instance, value):
            n = int(value)
            return shown(await self.ctl.set_trigger("Trigger:Delay", delay_samples=n), n)

        @auto.putter
        async def auto(self, instance, value):
            v = finite(value, "Trigger:AutoTimeout")
            return shown(await self.ctl.set_trigger("Trigger:AutoTimeout", auto_trigger_s=(v if v > 0 else None)), v)

        async def show_requested(self, ctl) -> None:
            t = ctl.trigger
            await show_setpoint(self.enable, "On" if t.enabled else "Off")
            if t.source in sources:
                await show_setpoint(self.source, t.source)
            await show_setpoint(self.level, float(t.threshold_v))
            await show_setpoint(self.direction, Direction(t.direction).value)
            await show_setpoint(self.delay, int(t.delay_samples))
            await show_setpoint(self.auto, float(t.auto_trigger_s or 0.0))

        async def show_applied(self, applied: Applied) -> None:
            t = applied.trigger
            await write_if_changed(self.enable_rbv, "On" if t.enabled else "Off")
            if t.source in sources:
                await write_if_changed(self.source_rbv, t.source)
            await write_if_changed(self.level_rbv, float(t.threshold_v))
            await write_if_changed(self.direction_rbv, Direction(t.direction).value)
            await write_if_changed(self.delay_rbv, int(t.delay_samples))
            await write_if_changed(self.auto_rbv, float(t.auto_trigger_s or 0.0))

    return TriggerGroup
