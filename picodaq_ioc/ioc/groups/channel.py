"""One input channel: ``Enable``, ``Range``, ``Coupling``, ``Offset`` (+ ``_RBV``), ``Waveform_RBV``, ``Overflow_RBV``."""

from __future__ import annotations

import numpy as np
from caproto import AlarmSeverity, AlarmStatus, ChannelType

from ...scope.types import Applied, Coupling
from ..controller import PutRefused
from ..pvspec import enum_pv, finite, float_pv, pair, plain, set_alarm, waveform_pv, write_if_changed
from .base import PicoGroup, show_setpoint, shown

ON_OFF = ("Off", "On")


def max_offset(info) -> float:
    """Largest analogue offset of any range of the model (the device checks the exact limit)."""
    try:
        from ...scope import models  # noqa: PLC0415

        return max(models.offset_limit(info.family, r) for r in info.ranges_v)
    except Exception:
        return 20.0


def make_channel_group(ch: str, info, max_samples: int) -> type[PicoGroup]:
    """The group of channel ``ch`` of a scope described by ``info``."""
    ranges = tuple(float(r) for r in info.ranges_v)
    couplings = tuple(c.value if isinstance(c, Coupling) else str(c) for c in info.couplings)
    off_max = float(max_offset(info))
    v_max = max(ranges)

    class ChannelGroup(PicoGroup):
        __doc__ = f"Channel {ch} (prefix ``$(P){ch}:``)."
        channel = ch

        enable, enable_rbv = pair(enum_pv, "Enable", f"Channel {ch} on/off", strings=ON_OFF)
        range_sp, range_rbv = pair(float_pv, "Range", f"Channel {ch} input range (+/- full scale), "
                                   "snapped up to the next range of the scope", units="V", precision=3,
                                   low=min(ranges), high=max(ranges), value=max(ranges))
        coupling, coupling_rbv = pair(enum_pv, "Coupling", f"Channel {ch} coupling", strings=couplings)
        offset, offset_rbv = pair(float_pv, "Offset", f"Channel {ch} analogue offset (added before the ADC)",
                                  units="V", precision=3, low=-off_max, high=off_max)
        ranges_rbv = waveform_pv("Ranges_RBV", f"Input ranges channel {ch} accepts", max_length=len(ranges),
                                 dtype=ChannelType.DOUBLE, units="V", precision=3)
        waveform = waveform_pv("Waveform_RBV", f"Channel {ch} waveform of the latest published event",
                               max_length=max_samples, units="V", precision=4, low=-v_max, high=v_max)
        overflow = enum_pv("Overflow_RBV", f"Channel {ch} over range in the latest published event",
                           ("No", "Yes"), read_only=True)

        @enable.putter
        async def enable(self, instance, value):
            if value not in ON_OFF:
                raise PutRefused(f"{ch}:Enable: {plain(value)!r} is not one of Off, On")
            return shown(await self.ctl.set_channel(ch, f"{ch}:Enable", enabled=(value == "On")), value)

        @range_sp.putter
        async def range_sp(self, instance, value):
            v = finite(value, f"{ch}:Range")
            return shown(await self.ctl.set_channel(ch, f"{ch}:Range", range_v=v), v)

        @coupling.putter
        async def coupling(self, instance, value):
            if value not in couplings:
                raise PutRefused(f"{ch}:Coupling: {plain(value)!r} is not one of {', '.join(couplings)}")
            return shown(await self.ctl.set_channel(ch, f"{ch}:Coupling", coupling=Coupling(value)), value)

        @offset.putter
        async def offset(self, instance, value):
            v = finite(value, f"{ch}:Offset")
            return shown(await self.ctl.set_channel(ch, f"{ch}:Offset", offset_v=v), v)

        async def show_requested(self, ctl) -> None:
            c = ctl.channels[ch]
            await show_setpoint(self.enable, "On" if c.enabled else "Off")
            await show_setpoint(self.range_sp, float(c.range_v))
            await show_setpoint(self.coupling, Coupling(c.coupling).value)
            await show_setpoint(self.offset, float(c.offset_v))
            if len(self.ranges_rbv.value) != len(ranges):  # static: written once
                await self.ranges_rbv.write(np.asarray(ranges, dtype=np.float64))

        async def show_applied(self, applied: Applied) -> None:
            c = applied.channels.get(ch)
            if c is None:
                return
            await write_if_changed(self.enable_rbv, "On" if c.enabled else "Off")
            await write_if_changed(self.range_rbv, float(c.range_v))
            await write_if_changed(self.coupling_rbv, Coupling(c.coupling).value)
            await write_if_changed(self.offset_rbv, float(c.offset_v))
            if not c.enabled and len(self.waveform.value):
                await self.waveform.write(np.zeros(0, dtype=np.float32))
                await self.show_overflow(False)

        async def show_overflow(self, overflow: bool, **kw) -> None:
            await write_if_changed(self.overflow, "Yes" if overflow else "No", **kw)
            await set_alarm(self.overflow, AlarmSeverity.MAJOR_ALARM if overflow else AlarmSeverity.NO_ALARM,
                            AlarmStatus.HIHI)

    ChannelGroup.__name__ = f"Channel{ch}Group"
    return ChannelGroup
