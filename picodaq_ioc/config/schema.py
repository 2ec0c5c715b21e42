"""The one validated configuration model (device, buffer, simulation, analysis).

Native YAML/JSON layout::

    device:     {backend: sim, model: 2000a, serial: null, resolution_bits: 8}
    channels:   {A: {enabled: true, range: 0.5, coupling: AC, offset: 0.4}, ...}
    timebase:   {sample_interval: 4e-9, samples: 4000, pretrigger: 0.05, segments: 1}
    trigger:    {enabled: true, source: A, level: -0.045, direction: Falling,
                 delay: 0, auto_timeout: 5.0}
    siggen:     {enabled: false, waveform: Sine, frequency: 1e5, amplitude: 0.4, offset: 0,
                 sweep: UpDown, stop_frequency: null, dwell_time: null}
    buffer:     {n_buffers: 16, log_file: null, verbose: 1, log_time: 60}
    simulation: {seed: 1, realtime: true, noise_rms: 0.5e-3, sources: [...]}
    analysis:   [{module: pulse, ...}, ...]

The original picoDAQ keys (``PSmodel``, ``picoChannels``, ``ChanRanges`` ...) are
translated to this layout by ``picodaq_ioc.config.legacy`` before validation.
Units: volts, seconds, hertz.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from ..scope.types import (
    Coupling,
    Direction,
    SweepType,
    WaveType,
)

ChannelName = Literal["A", "B", "C", "D", "E", "F", "G", "H"]
Family = Literal["2000", "2000a", "3000a", "4000", "4000a", "5000a", "6000"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_enum_values=False)


class DeviceSection(_Strict):
    backend: Literal["sim", "picoscope"] = "sim"
    model: Family = "2000a"
    variant: str | None = None  # e.g. "2206B"; selects max sample rate / ranges where known
    serial: str | None = None
    resolution_bits: int | None = Field(default=None, ge=8, le=16)

    @field_validator("model", mode="before")
    @classmethod
    def _model_str(cls, v: Any) -> Any:
        # YAML reads `PSmodel: 2000` as an int; the original picoDAQ coerced it to str.
        return str(v).lower() if isinstance(v, (int, str)) else v


class ChannelSection(_Strict):
    enabled: bool = True
    range: float = Field(default=0.2, gt=0, description="requested ± full scale, V")
    coupling: Coupling = Coupling.DC
    offset: float = 0.0


class TimebaseSection(_Strict):
    sample_interval: float | None = Field(default=None, gt=0)
    duration: float | None = Field(default=None, gt=0, description="total record length, s")
    samples: int = Field(default=200, ge=2, le=100_000_000)
    pretrigger: float = Field(default=0.05, ge=0.0, le=1.0)
    segments: int = Field(default=1, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _interval(self) -> TimebaseSection:
        if self.sample_interval is None:
            duration = self.duration if self.duration is not None else 10e-6
            # picoDAQ's empirical "- 0.1" keeps floor() from dropping to a faster timebase
            object.__setattr__(self, "sample_interval", duration / (self.samples - 0.1))
        return self


class TriggerSection(_Strict):
    enabled: bool = True
    source: str = "A"
    level: float = 0.0
    direction: Direction = Direction.RISING
    delay: int = Field(default=0, ge=0, le=2**31 - 1, description="samples")
    auto_timeout: float = Field(default=1.0, ge=0.0, le=3600.0, description="s; 0 = wait forever")

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        v = str(v).upper()
        if v not in ("A", "B", "C", "D", "E", "F", "G", "H", "EXT"):
            raise ValueError("must be a channel A-H or EXT")
        return v


class SigGenSection(_Strict):
    enabled: bool = False
    waveform: WaveType = WaveType.SINE
    frequency: float = Field(default=100e3, ge=0.0)
    amplitude: float = Field(default=0.4, ge=0.0, description="peak-to-peak, V")
    offset: float = 0.0
    sweep: SweepType = SweepType.UP_DOWN
    stop_frequency: float | None = Field(default=None, ge=0.0)
    dwell_time: float | None = Field(default=None, gt=0.0)


class BufferSection(_Strict):
    n_buffers: int = Field(default=16, ge=2, le=1_000_000)
    log_file: str | None = None
    verbose: int = Field(default=1, ge=0, le=3)
    log_time: float = Field(default=60.0, gt=0.0)


class SourceSection(_Strict):
    """One simulated signal source. Unused keys of other kinds are rejected."""

    kind: Literal["muon", "sipm", "geiger", "noise", "siggen"]
    channels: list[ChannelName] = Field(default_factory=lambda: ["A"], min_length=1)
    rate: float = Field(default=10.0, ge=0.0, le=1e9, description="Hz")
    amplitude: float = Field(default=-0.04, description="V, sign gives the polarity")
    amplitude_spread: float = Field(default=0.2, ge=0.0, le=10.0, description="relative sigma")
    # pulse shape (trapezoid; fall is the decay time constant of an exponential tail if tail: true)
    rise: float = Field(default=20e-9, ge=0.0)
    flat: float = Field(default=12e-9, ge=0.0)
    fall: float = Field(default=128e-9, gt=0.0)
    # muon
    decay_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    lifetime: float = Field(default=2.1969811e-6, gt=0.0)
    channel_delays: list[float] | None = None  # per listed channel, s
    jitter: float = Field(default=0.0, ge=0.0)
    # sipm
    crosstalk: float = Field(default=0.0, ge=0.0, lt=1.0)
    gain_spread: float = Field(default=0.1, ge=0.0)
    # geiger
    dead_time: float = Field(default=100e-6, ge=0.0)
    # noise
    rms: float | None = Field(default=None, ge=0.0)


class SimulationSection(_Strict):
    seed: int = Field(default=1, ge=0)
    realtime: bool = True
    noise_rms: float = Field(default=0.5e-3, ge=0.0, description="white noise on every channel, V")
    readout_overhead: float | None = Field(
        default=None, ge=0.0, description="s per block; default 0.4 ms + 0.13 ms/channel + transfer")
    rearm_time: float = Field(default=1e-6, ge=0.0, description="s between rapid-block segments")
    count_host_time: bool = Field(
        default=True, description="host time between read() and arm() is dead time on the sim clock")
    siggen_channel: ChannelName | None = None  # generator output looped back into this channel
    sources: list[SourceSection] = Field(default_factory=list)


class AnalysisSection(BaseModel):
    """One analysis module: ``module`` is a built-in name or ``pkg.mod:Class``."""

    model_config = ConfigDict(extra="allow")
    module: str
    name: str | None = None


def _default_channels() -> dict[str, ChannelSection]:
    return {"A": ChannelSection()}


class Config(_Strict):
    device: DeviceSection = Field(default_factory=DeviceSection)
    channels: dict[ChannelName, ChannelSection] = Field(default_factory=_default_channels)
    timebase: TimebaseSection = Field(default_factory=TimebaseSection)
    trigger: TriggerSection = Field(default_factory=TriggerSection)
    siggen: SigGenSection = Field(default_factory=SigGenSection)
    buffer: BufferSection = Field(default_factory=BufferSection)
    simulation: SimulationSection = Field(default_factory=SimulationSection)
    analysis: list[AnalysisSection] = Field(default_factory=list)
    source_file: str | None = Field(default=None, exclude=True)
    _notices: list[str] = PrivateAttr(default_factory=list)

    @property
    def notices(self) -> list[str]:
        """Informational messages from loading (ignored legacy keys, forced values ...)."""
        return self._notices
