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
    hdf5:       {file_path: "", file_name: picodaq, num_capture: 0, compression: none, ...}
    output_dir: runs
    simulation: {seed: 1, realtime: true, noise_rms: 0.5e-3, sources: [...]}
    analysis:   [{module: pulse, ...}, ...]

The original picoDAQ keys (``PSmodel``, ``picoChannels``, ``ChanRanges`` ...) are
translated to this layout by ``picodaq_ioc.config.legacy`` before validation.
Units: volts, seconds, hertz.  Enumerated strings (coupling, direction, waveform, sweep)
are matched case-insensitively.  Checks against the scope model tables (ranges, channels,
offsets, memory ...) are in ``picodaq_ioc.config.limits`` and run in ``load_config``.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from ..scope.types import (
    Coupling,
    Direction,
    SweepType,
    WaveType,
)

ChannelName = Literal["A", "B", "C", "D", "E", "F", "G", "H"]
Family = Literal["2000", "2000a", "3000a", "4000", "4000a", "5000a", "6000"]
SourceKind = Literal["muon", "sipm", "geiger", "noise", "siggen"]

#: separator used by validators to hand "what is allowed" to the error formatter
ALLOWED_SEP = "; allowed: "


def _enum_ci(enum: type[Enum], v: Any) -> Any:
    """Case-insensitive match of a string to an enum value (``rising`` -> ``Rising``)."""
    if isinstance(v, str):
        key = v.strip().lower().replace("_", "").replace("-", "").replace(" ", "")
        for m in enum:
            if key in (str(m.value).lower(), m.name.lower().replace("_", "")):
                return m
    return v


def _accepts_bool(annotation: Any) -> bool:
    if annotation is bool:
        return True
    return any(_accepts_bool(a) for a in get_args(annotation))


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, use_enum_values=False, allow_inf_nan=False
    )

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        # pydantic's lax mode reads true/false as 1/0 for numbers; a YAML boolean where a
        # number belongs is a mistake (e.g. `range: yes`), so reject it
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name) if isinstance(name, str) else None
                if isinstance(value, bool) and field is not None and not _accepts_bool(field.annotation) \
                        and field.annotation is not Any:
                    raise ValueError(f"{name}: wrong type, true/false is not a number{ALLOWED_SEP}a number")
        return data


class DeviceSection(_Strict):
    """Which scope (or simulator) and which model family its tables come from."""

    backend: Literal["sim", "picoscope", "replay"] = Field(
        default="sim", description="`sim` (simulated scope), `picoscope` (hardware via pico-python) or "
        "`replay` (a recorded file, see `replay:`)")
    model: Family = Field(default="2000a", description="model family (driver), picoDAQ `PSmodel`")
    variant: str | None = Field(
        default=None, description="e.g. `2206B`; selects max sample rate / ranges where known")
    serial: str | None = Field(default=None, description="open this unit (hardware); null = first found")
    resolution_bits: int | None = Field(
        default=None, ge=8, le=16, description="ADC resolution (flexible-resolution models only)")

    @field_validator("model", mode="before")
    @classmethod
    def _model_str(cls, v: Any) -> Any:
        # YAML reads `PSmodel: 2000` as an int; the original picoDAQ coerced it to str.
        if isinstance(v, bool):
            return v
        if isinstance(v, int):
            return str(v)
        if isinstance(v, str):
            s = v.strip().lower()
            return s[2:] if s.startswith("ps") else s
        return v


class ChannelSection(_Strict):
    """One input channel. Channels not listed are disabled."""

    enabled: bool = Field(default=True, description="acquire this channel")
    range: float = Field(
        default=0.2, gt=0, description="requested ± full scale, V; snapped up to the next hardware range")
    coupling: Coupling = Field(default=Coupling.DC, description="AC, DC (1 MΩ) or DC50 (50 Ω, some models)")
    offset: float = Field(
        default=0.0, description="analogue offset, V, added before digitisation (V = raw·range/max − offset)")

    @field_validator("coupling", mode="before")
    @classmethod
    def _coupling(cls, v: Any) -> Any:
        return _enum_ci(Coupling, v)


class TimebaseSection(_Strict):
    """Sampling. Give ``sample_interval`` (native) or ``duration`` (picoDAQ ``sampleTime``)."""

    sample_interval: float | None = Field(
        default=None, gt=0, le=1.0,
        description="requested s per sample; the device takes the longest interval ≤ this "
        "(its fastest if none); default duration/(samples − 0.1)")
    duration: float | None = Field(
        default=None, gt=0, le=3600.0,
        description="total record length, s (picoDAQ `sampleTime`); default 10 µs if no interval")
    samples: int = Field(default=200, ge=2, le=100_000_000, description="samples per channel and event")
    pretrigger: float = Field(default=0.05, ge=0.0, le=1.0, description="fraction of samples before the trigger")
    segments: int = Field(default=1, ge=1, le=1_000_000, description="> 1: rapid block with this many segments")

    @model_validator(mode="before")
    @classmethod
    def _both(cls, data: Any) -> Any:
        if isinstance(data, dict):
            si, du, n = data.get("sample_interval"), data.get("duration"), data.get("samples", 200)
            nums = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (si, du, n))
            if si is not None and du is not None and nums and n > 1:
                expect = du / (n - 0.1)
                if not math.isclose(si, expect, rel_tol=1e-6):
                    raise ValueError(
                        f"sample_interval: disagrees with duration {du:g} s / {n} samples"
                        f"{ALLOWED_SEP}give only one of sample_interval and duration")
        return data

    @model_validator(mode="after")
    def _interval(self) -> TimebaseSection:
        if self.sample_interval is None:
            duration = self.duration if self.duration is not None else 10e-6
            # picoDAQ's empirical "- 0.1" keeps floor() from dropping to a faster timebase
            object.__setattr__(self, "sample_interval", duration / (self.samples - 0.1))
        return self


class TriggerSection(_Strict):
    """Simple edge/level trigger on one channel (or EXT)."""

    enabled: bool = Field(default=True, description="false: free-running (auto) capture")
    source: str = Field(default="A", description="channel A–H (must be enabled) or EXT")
    level: float = Field(default=0.0, description="threshold, V (must lie inside the source channel's range)")
    direction: Direction = Field(
        default=Direction.RISING, description="Above, Below, Rising, Falling or RiseOrFall")
    delay: int = Field(default=0, ge=0, le=2**31 - 1, description="samples from trigger to capture start")
    auto_timeout: float = Field(
        default=1.0, ge=0.0, le=3600.0, description="s without trigger until an auto-trigger; 0 = wait forever")

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v  # the str type check reports it
        s = v.strip().upper()
        if s in ("EXTERNAL", "EXT"):
            return "EXT"
        if s not in ("A", "B", "C", "D", "E", "F", "G", "H"):
            raise ValueError(f"not a trigger source{ALLOWED_SEP}a channel A-H (enabled) or EXT")
        return s

    @field_validator("direction", mode="before")
    @classmethod
    def _direction(cls, v: Any) -> Any:
        return _enum_ci(Direction, v)


class SigGenSection(_Strict):
    """Built-in signal generator (picoDAQ's demo loops it back into channel B)."""

    enabled: bool = Field(default=False, description="generator on (frequency 0 also means off)")
    waveform: WaveType = Field(default=WaveType.SINE, description="built-in waveform")
    frequency: float = Field(default=100e3, ge=0.0, description="(start) frequency, Hz")
    amplitude: float = Field(default=0.4, ge=0.0, description="peak-to-peak, V")
    offset: float = Field(default=0.0, description="DC offset, V")
    sweep: SweepType = Field(default=SweepType.UP_DOWN, description="sweep type if stop_frequency is set")
    stop_frequency: float | None = Field(
        default=None, ge=0.0, description="sweep stop frequency, Hz; null = fixed frequency")
    dwell_time: float | None = Field(default=None, gt=0.0, description="s per 10 Hz sweep step")

    @field_validator("waveform", mode="before")
    @classmethod
    def _wave(cls, v: Any) -> Any:
        return _enum_ci(WaveType, v)

    @field_validator("sweep", mode="before")
    @classmethod
    def _sweep(cls, v: Any) -> Any:
        return _enum_ci(SweepType, v)


class BufferSection(_Strict):
    """Buffer manager (picoDAQ BMconfig)."""

    n_buffers: int = Field(default=16, ge=2, le=1_000_000, description="ring slots (events)")
    log_file: str | None = Field(default=None, description="prefix of the run log file; null = no file")
    verbose: int = Field(default=1, ge=0, le=3, description="print level")
    log_time: float = Field(default=60.0, gt=0.0, le=86400.0, description="s between periodic rate log lines")


class Hdf5Section(_Strict):
    """HDF5 file writer (areaDetector NDFileHDF5 names; the same as the ``HDF:*`` PVs)."""

    file_path: str = Field(default="", description="directory of the files (`HDF:FilePath`); "
                           "empty = the output directory")
    file_name: str = Field(default="picodaq", description="base name (`HDF:FileName`)")
    file_number: int = Field(default=1, ge=0, le=2**31 - 1, description="number of the next file (`HDF:FileNumber`)")
    file_template: str = Field(default="%s%s_%3.3d.h5",
                               description="printf template of (path, name, number) (`HDF:FileTemplate`)")
    auto_increment: bool = Field(default=True, description="file_number + 1 after each file (`HDF:AutoIncrement`)")
    num_capture: int = Field(default=0, ge=0, le=2**31 - 1,
                             description="events per file, 0 = until stopped or the run ends (`HDF:NumCapture`)")
    compression: Literal["none", "lz4", "gzip"] = Field(
        default="none", description="none, lz4 (needs hdf5plugin) or gzip (`HDF:Compression`)")
    event_filter: Literal["all", "accepted", "double"] = Field(
        default="all", description="all events, events accepted by the pulse module, or double pulses "
        "(`HDF:EventFilter`)")
    capture: bool = Field(default=False, description="start capturing when the IOC starts (`HDF:Capture`)")

    @field_validator("file_template")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            v % ("", "x", 1)
        except (TypeError, ValueError):
            raise ValueError(f"does not format (path, name, number){ALLOWED_SEP}a printf template with "
                             "%s %s %d, e.g. %s%s_%3.3d.h5") from None
        return v

    @field_validator("compression", "event_filter", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v


class ReplaySection(_Strict):
    """The replay backend (``device.backend: replay``): plays a recorded file."""

    input: str | None = Field(default=None, description="recorded file: picodaq-ioc HDF5, picoCosmo raw "
                              "(.dat/.yaml) or a .zip holding one (`--input`)")
    pacing: Literal["recorded", "rate", "fast"] = Field(
        default="recorded", description="recorded timing, `rate` events/s, or as fast as possible")
    rate: float = Field(default=10.0, gt=0.0, le=1e7,
                        description="events/s for pacing `rate`; event spacing of files without times")


#: keys meaningful for each source kind (others are rejected)
SOURCE_KEYS: dict[str, frozenset[str]] = {
    "muon": frozenset({"kind", "channels", "rate", "amplitude", "amplitude_spread", "amplitude_spread_low",
                       "rise", "flat", "fall", "tail", "decay_fraction", "lifetime", "decay_amplitude",
                       "decay_amplitude_spread", "mu_ratio", "lifetime_minus", "afterpulse_probability",
                       "afterpulse_delay", "afterpulse_spread", "afterpulse_amplitude", "channel_delays",
                       "jitter"}),
    "sipm": frozenset({"kind", "channels", "rate", "amplitude", "amplitude_spread", "rise", "flat", "fall",
                       "crosstalk", "gain_spread", "jitter"}),
    "geiger": frozenset({"kind", "channels", "rate", "amplitude", "amplitude_spread", "rise", "flat", "fall",
                         "dead_time", "jitter"}),
    "noise": frozenset({"kind", "channels", "rms"}),
    "siggen": frozenset({"kind", "channels"}),
}


class SourceSection(_Strict):
    """One simulated signal source. Keys that do not apply to its ``kind`` are rejected."""

    kind: SourceKind = Field(description="muon, sipm, geiger, noise or siggen (generator loopback)")
    channels: list[ChannelName] = Field(
        default_factory=lambda: ["A"], min_length=1, description="channels the source feeds")
    rate: float = Field(default=10.0, ge=0.0, le=1e9, description="Poisson rate, Hz")
    amplitude: float = Field(
        default=-0.04, ge=-100.0, le=100.0, description="pulse height, V; the sign gives the polarity")
    amplitude_spread: float = Field(default=0.2, ge=0.0, le=10.0, description="relative sigma of the height")
    rise: float = Field(default=20e-9, ge=0.0, le=1.0, description="pulse rise time, s")
    flat: float = Field(default=12e-9, ge=0.0, le=1.0, description="pulse flat top, s")
    fall: float = Field(default=128e-9, gt=0.0, le=1.0, description="pulse fall time, s")
    amplitude_spread_low: float | None = Field(
        default=None, ge=0.0, le=10.0,
        description="muon: log-sigma below the median; set, amplitude is the median of a split log-normal "
                    "with amplitude_spread above it (real PM spectra have a long low tail)")
    tail: Literal["linear", "exponential"] = Field(
        default="linear", description="muon: linear fall, or exponential tail with time constant fall")
    decay_fraction: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="muon: fraction of muons that stop (with mu_ratio: some mu- are captured without pulse)")
    lifetime: float = Field(default=2.1969811e-6, gt=0.0, le=1.0, description="muon: (mu+) decay lifetime, s")
    decay_amplitude: float | None = Field(
        default=None, ge=-100.0, le=100.0, description="muon: mean decay-electron height, V; default amplitude")
    decay_amplitude_spread: float | None = Field(
        default=None, ge=0.0, le=10.0, description="muon: log-sigma of the decay-electron height")
    mu_ratio: float | None = Field(
        default=None, gt=0.0, le=100.0,
        description="muon: mu+/mu- ratio of stopped muons; mu- decay with lifetime_minus, and only with "
                    "probability lifetime_minus / lifetime (else captured); unset: all decay with lifetime")
    lifetime_minus: float = Field(default=1.795e-6, gt=0.0, le=1.0,
                                  description="muon: mu- lifetime in the target, s (oxygen/water 1.795e-6)")
    afterpulse_probability: float = Field(
        default=0.0, ge=0.0, le=1.0, description="muon: photomultiplier after-pulse probability per pulse")
    afterpulse_delay: float = Field(default=1.0e-6, ge=0.0, le=1.0, description="muon: mean after-pulse delay, s")
    afterpulse_spread: float = Field(default=0.3e-6, ge=0.0, le=1.0,
                                     description="muon: Gaussian sigma of the after-pulse delay, s")
    afterpulse_amplitude: float = Field(default=0.1, ge=0.0, le=10.0,
                                        description="muon: after-pulse height relative to its pulse")
    channel_delays: list[float] | None = Field(
        default=None, description="muon: per listed channel, s, added to the pulse time")
    jitter: float = Field(default=0.0, ge=0.0, le=1.0, description="Gaussian time jitter per channel, s")
    crosstalk: float = Field(default=0.0, ge=0.0, lt=1.0, description="sipm: optical crosstalk probability")
    gain_spread: float = Field(default=0.1, ge=0.0, le=10.0, description="sipm: relative sigma of one p.e.")
    dead_time: float = Field(default=100e-6, ge=0.0, le=1.0, description="geiger: tube dead time, s")
    rms: float | None = Field(default=None, ge=0.0, le=100.0, description="noise: rms, V")

    @model_validator(mode="after")
    def _kind_keys(self) -> SourceSection:
        extra = sorted(set(self.model_fields_set) - SOURCE_KEYS[self.kind])
        if extra:
            raise ValueError(
                f"{extra[0]}: does not apply to a {self.kind} source"
                f"{ALLOWED_SEP}{', '.join(sorted(SOURCE_KEYS[self.kind]))}")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channels: a channel is listed twice{ALLOWED_SEP}each channel once")
        if self.channel_delays is not None:
            if len(self.channel_delays) != len(self.channels):
                raise ValueError(
                    f"channel_delays: {len(self.channel_delays)} values for {len(self.channels)} channels"
                    f"{ALLOWED_SEP}one delay (s) per entry of channels")
            if any(abs(d) > 1.0 for d in self.channel_delays):
                raise ValueError(f"channel_delays: delay too large{ALLOWED_SEP}|delay| <= 1 s")
        return self


class SimulationSection(_Strict):
    """The simulated scope (used when ``device.backend`` is ``sim``)."""

    seed: int = Field(default=1, ge=0, le=2**63 - 1, description="seed of all random streams")
    realtime: bool = Field(default=True, description="pace to the wall clock (off in tests)")
    noise_rms: float = Field(default=0.5e-3, ge=0.0, le=100.0, description="white noise on every channel, V")
    readout_overhead: float | None = Field(
        default=None, ge=0.0, le=10.0,
        description="s per block; default 0.4 ms + 0.13 ms/channel + transfer")
    rearm_time: float = Field(default=1e-6, ge=0.0, le=1.0, description="s between rapid-block segments")
    count_host_time: bool = Field(
        default=True, description="host time between read() and arm() is dead time on the sim clock")
    siggen_channel: ChannelName | None = Field(
        default=None, description="generator output looped back into this channel")
    sources: list[SourceSection] = Field(default_factory=list, description="signal sources")

    @model_validator(mode="after")
    def _one_loopback_form(self) -> SimulationSection:
        if self.siggen_channel is not None and any(s.kind == "siggen" for s in self.sources):
            raise ValueError(
                f"siggen_channel: the generator loopback is also given as a 'siggen' source"
                f"{ALLOWED_SEP}either siggen_channel or a source of kind siggen, not both")
        return self


class AnalysisSection(BaseModel):
    """One analysis module: ``module`` is a built-in name or ``pkg.mod:Class``; other keys are its params."""

    model_config = ConfigDict(extra="allow")
    module: str = Field(description="built-in name (e.g. `pulse`) or import path `pkg.mod:Class`")
    name: str | None = Field(default=None, description="PV prefix / instance name (default from module)")


class IocSection(_Strict):
    """How the IOC serves its PVs (Channel Access is always on)."""

    pva: bool = Field(default=False, description="also serve the PVs and the `Frame` PV over PV Access "
                      "(needs the `pva` extra, p4p; same as `--pva`)")


def _default_channels() -> dict[str, ChannelSection]:
    return {"A": ChannelSection()}


class Config(_Strict):
    """The whole configuration (see the module docstring for the layout)."""

    device: DeviceSection = Field(default_factory=DeviceSection)
    channels: dict[ChannelName, ChannelSection] = Field(default_factory=_default_channels)
    timebase: TimebaseSection = Field(default_factory=TimebaseSection)
    trigger: TriggerSection = Field(default_factory=TriggerSection)
    siggen: SigGenSection = Field(default_factory=SigGenSection)
    buffer: BufferSection = Field(default_factory=BufferSection)
    simulation: SimulationSection = Field(default_factory=SimulationSection)
    analysis: list[AnalysisSection] = Field(default_factory=list)
    ioc: IocSection = Field(default_factory=IocSection)
    hdf5: Hdf5Section = Field(default_factory=Hdf5Section)
    replay: ReplaySection = Field(default_factory=ReplaySection)
    output_dir: str = Field(default="runs", description="directory of the run files (analysis CSV/summary, "
                            "HDF5 files, BMsum files); `--output-dir` overrides it")
    source_file: str | None = Field(default=None, exclude=True)
    _notices: list[str] = PrivateAttr(default_factory=list)

    @field_validator("channels", mode="before")
    @classmethod
    def _upper_channels(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {(k.upper() if isinstance(k, str) else k): val for k, val in v.items()}
        return v

    @property
    def notices(self) -> list[str]:
        """Informational messages from loading (ignored legacy keys, forced values ...)."""
        return self._notices
