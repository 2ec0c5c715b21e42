"""Data types shared by every scope backend (simulator and PicoScope hardware).

No EPICS and no backend-specific code lives here. All times are float64 seconds,
all counters Python ints (int64 in arrays). Raw samples are int16 PicoScope codes,
scaled so that ``max_adc`` is the positive full-scale value of the channel range.

Volts are computed as ``raw * range_v / max_adc - offset_v`` (the PicoScope
convention: the analogue offset is added to the signal before digitisation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable

import numpy as np

CHANNEL_NAMES: tuple[str, ...] = ("A", "B", "C", "D", "E", "F", "G", "H")


class Coupling(str, Enum):
    AC = "AC"
    DC = "DC"
    DC50 = "DC50"


class Direction(str, Enum):
    """Simple-trigger threshold directions (pico-python ``THRESHOLD_TYPE`` names)."""

    ABOVE = "Above"
    BELOW = "Below"
    RISING = "Rising"
    FALLING = "Falling"
    RISE_OR_FALL = "RiseOrFall"


class WaveType(str, Enum):
    """Built-in signal-generator waveforms (pico-python ``WAVE_TYPES`` names)."""

    SINE = "Sine"
    SQUARE = "Square"
    TRIANGLE = "Triangle"
    RAMP_UP = "RampUp"
    RAMP_DOWN = "RampDown"
    SINC = "Sinc"
    GAUSSIAN = "Gaussian"
    HALF_SINE = "HalfSine"
    DC_VOLTAGE = "DCVoltage"
    WHITE_NOISE = "WhiteNoise"


class SweepType(str, Enum):
    UP = "Up"
    DOWN = "Down"
    UP_DOWN = "UpDown"
    DOWN_UP = "DownUp"


@dataclass(frozen=True)
class SigGenCaps:
    waveforms: tuple[WaveType, ...]
    min_frequency_hz: float
    max_frequency_hz: float
    max_pk_to_pk_v: float
    max_offset_v: float


@dataclass(frozen=True)
class ScopeInfo:
    """Static capabilities of the opened unit (filled by ``open()``)."""

    model: str  # e.g. "2206B" or "2000a (simulated)"
    family: str  # model-table key: "2000", "2000a", "3000a", "4000", "4000a", "5000a", "6000"
    serial: str
    driver: str  # "sim" or "ps2000a", ...
    channels: tuple[str, ...]
    ranges_v: tuple[float, ...]
    couplings: tuple[Coupling, ...]
    resolutions_bits: tuple[int, ...]
    max_sample_rate_hz: float
    memory_samples: int
    max_segments: int
    supports_pretrigger: bool
    supports_rapid_block: bool
    siggen: SigGenCaps | None


@dataclass(frozen=True)
class ChannelConfig:
    enabled: bool = True
    coupling: Coupling = Coupling.DC
    range_v: float = 0.2
    offset_v: float = 0.0


@dataclass(frozen=True)
class TimebaseConfig:
    sample_interval_s: float = 50e-9
    n_samples: int = 200
    pretrigger_fraction: float = 0.05
    n_segments: int = 1  # > 1: rapid block


@dataclass(frozen=True)
class TriggerConfig:
    enabled: bool = True
    source: str = "A"  # channel name or "EXT"
    threshold_v: float = 0.0
    direction: Direction = Direction.RISING
    delay_samples: int = 0
    auto_trigger_s: float | None = 1.0  # None or 0: wait forever


@dataclass(frozen=True)
class SigGenConfig:
    enabled: bool = False
    waveform: WaveType = WaveType.SINE
    frequency_hz: float = 100e3
    pk_to_pk_v: float = 0.4
    offset_v: float = 0.0
    sweep: SweepType = SweepType.UP_DOWN
    stop_frequency_hz: float | None = None  # None: no sweep
    dwell_time_s: float | None = None


@dataclass(frozen=True)
class Applied:
    """What the device really accepted (ranges snapped, interval quantised)."""

    channels: Mapping[str, ChannelConfig]  # every channel of the unit; check .enabled
    sample_interval_s: float
    n_samples: int
    n_pre: int
    n_segments: int
    max_adc: int
    resolution_bits: int
    trigger: TriggerConfig
    siggen: SigGenConfig
    config_generation: int

    @property
    def enabled_channels(self) -> tuple[str, ...]:
        return tuple(c for c, cfg in self.channels.items() if cfg.enabled)

    def time_axis(self) -> np.ndarray:
        """Sample times in seconds relative to the trigger sample (index ``n_pre``)."""
        return (np.arange(self.n_samples, dtype=np.float64) - self.n_pre) * self.sample_interval_s

    def volts_per_count(self, ch: str) -> float:
        return self.channels[ch].range_v / self.max_adc

    def to_volts(self, ch: str, raw: np.ndarray, dtype=np.float32) -> np.ndarray:
        c = self.channels[ch]
        return (raw.astype(dtype) * dtype(c.range_v / self.max_adc) - dtype(c.offset_v)).astype(dtype)


@dataclass
class Capture:
    """One ``read()``: one or more segments (rapid block) of the enabled channels.

    ``raw`` holds int16 codes ``[n_segments, n_channels, n_samples]`` in the order of
    ``channels`` (the enabled channels of ``applied``).
    """

    channels: tuple[str, ...]
    raw: np.ndarray  # int16 [n_segments, n_channels, n_samples]
    overflow: np.ndarray  # bool [n_segments, n_channels]
    t_trigger: np.ndarray  # float64 [n_segments], backend clock seconds
    trigger_time_offset_s: np.ndarray  # float64 [n_segments], sub-sample, in (-dt, 0]
    auto_triggered: np.ndarray  # bool [n_segments]
    live_time_s: float  # time armed and waiting for a trigger, summed over segments
    t_armed: float  # backend clock when arm() was called
    t_ready: float  # backend clock when the capture was complete
    applied: Applied
    sequence: int  # monotonically increasing capture counter

    @property
    def n_segments(self) -> int:
        return int(self.raw.shape[0])


@runtime_checkable
class ScopeBackend(Protocol):
    """The small interface every backend implements (see docs/architecture.md).

    Calls come from one thread at a time (the buffer manager's acquisition thread);
    backends need not be re-entrant. Backends raise only ``picodaq_ioc.scope.errors``.
    """

    def open(self, serial: str | None = None) -> ScopeInfo: ...

    def close(self) -> None: ...  # idempotent, never raises

    def configure(
        self,
        channels: Mapping[str, ChannelConfig],
        timebase: TimebaseConfig,
        trigger: TriggerConfig,
        siggen: SigGenConfig | None = None,
    ) -> Applied: ...  # validates + applies atomically; cancels a capture in flight

    def arm(self) -> None: ...  # start a (rapid) block capture, non-blocking

    def wait(self, timeout_s: float) -> bool: ...  # True when ready, False on timeout (still armed)

    def stop(self) -> None: ...  # abort a capture in flight

    def read(self) -> Capture: ...  # after wait() returned True

    def clock(self) -> float: ...  # backend clock (sim time or monotonic host time), seconds

    def ping(self) -> bool: ...


__all__ = [
    "CHANNEL_NAMES",
    "Applied",
    "Capture",
    "ChannelConfig",
    "Coupling",
    "Direction",
    "ScopeBackend",
    "ScopeInfo",
    "SigGenCaps",
    "SigGenConfig",
    "SweepType",
    "TimebaseConfig",
    "TriggerConfig",
    "WaveType",
]
