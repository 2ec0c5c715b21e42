"""Timebase: ``SampleInterval``, ``NumSamples``, ``PreTrigger``, ``NumSegments`` (+ ``_RBV``), ``TimeAxis_RBV``."""

from __future__ import annotations

import numpy as np
from caproto import ChannelType

from ...scope.types import Applied
from ..controller import PutRefused
from ..pvspec import finite, float_pv, int_pv, pair, waveform_pv, write_if_changed
from .base import PicoGroup, show_setpoint, shown


def make_timebase_group(info, max_samples: int) -> type[PicoGroup]:
    """The timebase group for a scope with ``info`` and waveforms of at most ``max_samples``."""
    dt_min = 1.0 / float(info.max_sample_rate_hz)
    max_segments = int(info.max_segments) if info.supports_rapid_block else 1

    class TimebaseGroup(PicoGroup):
        """Sampling settings (prefix ``$(P)``)."""

        interval, interval_rbv = pair(
            float_pv, "SampleInterval", "Time between samples", units="s", precision=12,
            low=dt_min, high=1.0, value=dt_min)
        samples, samples_rbv = pair(int_pv, "NumSamples", "Samples per event and channel",
                                    low=2, high=max_samples, value=200)
        pretrig, pretrig_rbv = pair(float_pv, "PreTrigger", "Fraction of the record before the trigger",
                                    precision=3, low=0.0, high=1.0)
        segments, segments_rbv = pair(int_pv, "NumSegments", "Rapid-block segments per capture (1 = block mode)",
                                      low=1, high=max(1, max_segments), value=1)
        pre_samples = int_pv("PreTriggerSamples_RBV", "Samples before the trigger (applied)", read_only=True)
        rate_rbv = float_pv("SampleRate_RBV", "Sample rate (applied)", units="Hz", precision=0,
                            read_only=True, low=0.0, high=float(info.max_sample_rate_hz))
        duration_rbv = float_pv("Duration_RBV", "Record length NumSamples x SampleInterval (applied)",
                                units="s", precision=9, read_only=True, low=0.0, high=float(max_samples))
        time_axis = waveform_pv("TimeAxis_RBV", "Sample times relative to the trigger (applied)",
                                max_length=max_samples, dtype=ChannelType.DOUBLE, units="s", precision=9)

        @interval.putter
        async def interval(self, instance, value):
            v = finite(value, "SampleInterval")
            return shown(await self.ctl.set_timebase("SampleInterval", sample_interval_s=v), v)

        @samples.putter
        async def samples(self, instance, value):
            n = int(value)
            if n > max_samples:
                raise PutRefused(f"NumSamples: {n} exceeds the waveform capacity {max_samples} "
                                 "(start the IOC with a larger --max-samples)")
            return shown(await self.ctl.set_timebase("NumSamples", n_samples=n), n)

        @pretrig.putter
        async def pretrig(self, instance, value):
            v = finite(value, "PreTrigger")
            return shown(await self.ctl.set_timebase("PreTrigger", pretrigger_fraction=v), v)

        @segments.putter
        async def segments(self, instance, value):
            n = int(value)
            if n > max_segments:
                raise PutRefused(f"NumSegments: {n} not possible on this scope (allowed: 1..{max_segments})")
            return shown(await self.ctl.set_timebase("NumSegments", n_segments=n), n)

        async def show_requested(self, ctl) -> None:
            tb = ctl.timebase
            await show_setpoint(self.interval, float(tb.sample_interval_s))
            await show_setpoint(self.samples, int(tb.n_samples))
            await show_setpoint(self.pretrig, float(tb.pretrigger_fraction))
            await show_setpoint(self.segments, int(tb.n_segments))

        async def show_applied(self, applied: Applied) -> None:
            dt = float(applied.sample_interval_s)
            await write_if_changed(self.interval_rbv, dt)
            await write_if_changed(self.samples_rbv, int(applied.n_samples))
            await write_if_changed(self.pretrig_rbv, applied.n_pre / max(1, applied.n_samples))
            await write_if_changed(self.segments_rbv, int(applied.n_segments))
            await write_if_changed(self.pre_samples, int(applied.n_pre))
            await write_if_changed(self.rate_rbv, 1.0 / dt if dt > 0 else 0.0)
            await write_if_changed(self.duration_rbv, dt * applied.n_samples)
            await self.show_time_axis(applied)

        async def show_time_axis(self, applied: Applied) -> None:
            axis = np.asarray(applied.time_axis(), dtype=np.float64)[:max_samples]
            axis.flags.writeable = False
            await self.time_axis.write(axis)

    return TimebaseGroup
