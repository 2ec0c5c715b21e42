"""Signal generator: ``Enable``, ``Waveform``, ``Frequency``, ``Amplitude``, ``Offset`` (+ ``_RBV``)."""

from __future__ import annotations

from ...scope.types import Applied, WaveType
from ..controller import PutRefused
from ..pvspec import enum_pv, finite, float_pv, pair, plain, write_if_changed
from .base import PicoGroup, show_setpoint, shown

ON_OFF = ("Off", "On")


def make_siggen_group(info) -> type[PicoGroup]:
    caps = info.siggen
    waves = tuple(w.value for w in (caps.waveforms if caps else (WaveType.SINE,)))
    f_max = float(caps.max_frequency_hz) if caps else 1e6
    pp_max = float(caps.max_pk_to_pk_v) if caps else 4.0
    off_max = float(caps.max_offset_v) if caps else 2.0

    class SigGenGroup(PicoGroup):
        """Built-in signal generator (prefix ``$(P)SigGen:``)."""

        enable, enable_rbv = pair(enum_pv, "Enable", "Signal generator output on/off", strings=ON_OFF)
        wave, wave_rbv = pair(enum_pv, "Waveform", "Signal generator waveform", strings=waves)
        freq, freq_rbv = pair(float_pv, "Frequency", "Signal generator frequency", units="Hz", precision=3,
                              low=0.0, high=f_max, value=min(100e3, f_max))
        ampl, ampl_rbv = pair(float_pv, "Amplitude", "Signal generator amplitude (peak to peak)", units="V",
                              precision=3, low=0.0, high=pp_max)
        offset, offset_rbv = pair(float_pv, "Offset", "Signal generator offset", units="V", precision=3,
                                  low=-off_max, high=off_max)

        @enable.putter
        async def enable(self, instance, value):
            if value not in ON_OFF:
                raise PutRefused(f"SigGen:Enable: {plain(value)!r} is not one of Off, On")
            if value == "On" and caps is None:
                raise PutRefused(f"SigGen:Enable: the {info.model} has no signal generator")
            return shown(await self.ctl.set_siggen("SigGen:Enable", enabled=(value == "On")), value)

        @wave.putter
        async def wave(self, instance, value):
            if value not in waves:
                raise PutRefused(f"SigGen:Waveform: {plain(value)!r} is not one of {', '.join(waves)}")
            return shown(await self.ctl.set_siggen("SigGen:Waveform", waveform=WaveType(value)), value)

        @freq.putter
        async def freq(self, instance, value):
            v = finite(value, "SigGen:Frequency")
            return shown(await self.ctl.set_siggen("SigGen:Frequency", frequency_hz=v), v)

        @ampl.putter
        async def ampl(self, instance, value):
            v = finite(value, "SigGen:Amplitude")
            return shown(await self.ctl.set_siggen("SigGen:Amplitude", pk_to_pk_v=v), v)

        @offset.putter
        async def offset(self, instance, value):
            v = finite(value, "SigGen:Offset")
            return shown(await self.ctl.set_siggen("SigGen:Offset", offset_v=v), v)

        async def show_requested(self, ctl) -> None:
            s = ctl.siggen
            await show_setpoint(self.enable, "On" if s.enabled else "Off")
            if WaveType(s.waveform).value in waves:
                await show_setpoint(self.wave, WaveType(s.waveform).value)
            await show_setpoint(self.freq, float(s.frequency_hz))
            await show_setpoint(self.ampl, float(s.pk_to_pk_v))
            await show_setpoint(self.offset, float(s.offset_v))

        async def show_applied(self, applied: Applied) -> None:
            s = applied.siggen
            await write_if_changed(self.enable_rbv, "On" if s.enabled else "Off")
            if WaveType(s.waveform).value in waves:
                await write_if_changed(self.wave_rbv, WaveType(s.waveform).value)
            await write_if_changed(self.freq_rbv, float(s.frequency_hz))
            await write_if_changed(self.ampl_rbv, float(s.pk_to_pk_v))
            await write_if_changed(self.offset_rbv, float(s.offset_v))

    return SigGenGroup
