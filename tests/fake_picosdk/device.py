"""State and deterministic waveforms of one fake PicoScope unit.

The waveform is simple on purpose so that tests can predict every sample:
baseline 0 V on every channel, and from the trigger sample ``n_pre`` on a
pulse ``amplitude * (1 + 0.25 * segment) * exp(-(k - n_pre) / tau)`` in
volts (``tau`` in samples).  With ``pulse=False`` the channels stay flat
(what an auto-triggered capture without signal looks like).  Voltages are
digitised like the real unit: ``code = round((v + offset) / range * max_adc)``,
quantised to the ADC bit depth, clipped to ``±max_adc``; a channel whose
analogue value left the range in a segment gets its overflow bit set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Range tables (index = API enum value) in volts, as in the C headers.
RANGES_1 = [10e-3, 20e-3, 50e-3, 100e-3, 200e-3, 500e-3, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0]
RANGES_PS2000 = [None, 20e-3, 50e-3, 100e-3, 200e-3, 500e-3, 1.0, 2.0, 5.0, 10.0, 20.0]


@dataclass
class FakeChannel:
    enabled: bool = False
    coupling: int = 1
    range_index: int = 7
    offset_v: float = 0.0
    bandwidth: int = 0


@dataclass
class FakeUnit:
    """One attached unit.  ``family`` is the driver name, e.g. ``"ps2000a"``."""

    family: str
    variant: str
    serial: str
    n_channels: int = 4
    resolution_bits: int = 8
    # waveform knobs (volts; one amplitude per channel letter, default 0.1 V)
    amplitude_v: dict[str, float] = field(default_factory=dict)
    tau_samples: float = 5.0
    pulse: bool = True
    polls_before_ready: int = 2  # IsReady answers "not ready" this many times per run
    never_ready: bool = False
    unplugged: bool = False
    open_status: int = 0  # what OpenUnit returns after opening (0x11A: no external power)
    trigger_offset_fraction: float = 0.25  # reported trigger time offset = -fraction*dt*(1+seg)/2^seg
    # state
    handle: int = 0
    open: bool = False
    channels: dict[int, FakeChannel] = field(default_factory=dict)
    timebase: int | None = None
    n_pre: int = 0
    n_post: int = 0
    n_segments: int = 1
    n_captures: int = 1
    trigger: tuple | None = None
    siggen: tuple | None = None
    running: bool = False
    polls_left: int = 0
    captured: np.ndarray | None = None  # int16 [n_captures, n_channels, n_samples]
    overflow: np.ndarray | None = None  # int16 bitmask [n_captures]
    buffers: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    runs: int = 0

    def __post_init__(self) -> None:
        for i in range(self.n_channels):
            self.channels.setdefault(i, FakeChannel(enabled=(i == 0)))

    # ------------------------------------------------------------------ model data
    @property
    def max_adc(self) -> int:
        if self.family == "ps2000":
            return 32767
        if self.family == "ps4000":
            return 32767 if self.variant == "4262" else 32764
        if self.family in ("ps2000a", "ps3000a", "ps6000"):
            return 32512
        if self.family == "ps5000a":
            return 32512 if self.resolution_bits == 8 else 32767
        return 32767

    def range_v(self, index: int) -> float:
        table = RANGES_PS2000 if self.family == "ps2000" else RANGES_1
        if not 0 <= index < len(table) or table[index] is None:
            raise IndexError(index)
        return float(table[index])

    def min_range_index(self) -> int:
        # like a 2206B / 4224: the smallest ranges are not available on the unit
        return {"ps2000a": 1, "ps4000": 2, "ps5000a": 0, "ps2000": 1}.get(self.family, 1)

    def dt(self, timebase: int) -> float | None:
        """Sample interval of ``timebase`` (programmer's-guide formulas), None if invalid."""
        f = self.family
        if timebase < 0:
            return None
        if f == "ps2000a" or (f == "ps3000a" and self.variant[:4] in ("3204", "3205", "3206")):
            # 500 MS/s units (3204A-3206A/B: like the 2206B), the rest below: 1 GS/s
            if f == "ps3000a" or self.variant in ("2206", "2206A", "2206B", "2205AMSO", "2405A"):
                return 2.0**timebase / 5e8 if timebase < 3 else (timebase - 2) / 62.5e6
            return 2.0**timebase / 1e9 if timebase < 3 else (timebase - 2) / 125e6
        if f == "ps4000":
            if self.variant == "4262":
                return (timebase + 1) / 1e7
            return 2.0**timebase / 8e7 if timebase < 3 else (timebase - 1) / 2e7
        if f == "ps5000a":
            bits = self.resolution_bits
            if bits == 8:
                return 2.0**timebase / 1e9 if timebase < 3 else (timebase - 2) / 125e6
            if bits == 12:
                if timebase < 1:
                    return None
                return 2.0 ** (timebase - 1) / 5e8 if timebase < 4 else (timebase - 3) / 62.5e6
            if bits in (14, 15):
                return None if timebase < 3 else (timebase - 2) / 125e6
            return None if timebase < 4 else (timebase - 3) / 62.5e6
        if f == "ps4000a":  # 4824: (n + 1) * 12.5 ns
            return (timebase + 1) / 80e6
        if f == "ps6000":
            return 2.0**timebase / 5e9 if timebase < 5 else (timebase - 4) / 156.25e6
        if f == "ps2000":
            if timebase > 18:
                return None
            return 10e-9 * 2.0**timebase
        return 2.0**timebase / 1e9 if timebase < 3 else (timebase - 2) / 125e6

    def memory_samples(self) -> int:
        return 8_000 if self.family == "ps2000" else 1_000_000

    def max_samples(self) -> int:
        n_enabled = max(1, sum(1 for c in self.channels.values() if c.enabled))
        return self.memory_samples() // self.n_segments // n_enabled

    # ------------------------------------------------------------------ capture
    @property
    def n_samples(self) -> int:
        return self.n_pre + self.n_post

    def enabled_indices(self) -> list[int]:
        return [i for i, c in self.channels.items() if c.enabled]

    def analogue(self, n_captures: int) -> np.ndarray:
        """True input voltage [n_captures, n_channels, n_samples] (float64)."""
        n = self.n_samples
        k = np.arange(n, dtype=np.float64)
        shape = np.where(k >= self.n_pre, np.exp(-(k - self.n_pre) / self.tau_samples), 0.0)
        out = np.zeros((n_captures, self.n_channels, n))
        if not self.pulse:
            return out
        seg_scale = 1.0 + 0.25 * np.arange(n_captures)
        for i in range(self.n_channels):
            amp = self.amplitude_v.get("ABCDEFGH"[i], 0.1)
            out[:, i, :] = amp * seg_scale[:, None] * shape[None, :]
        return out

    def digitise(self, volts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw codes and per-capture overflow bitmask, like the ADC does it."""
        raw = np.zeros(volts.shape, dtype=np.int16)
        overflow = np.zeros(volts.shape[0], dtype=np.int16)
        step = 2 ** (16 - self.resolution_bits) if self.family in ("ps2000", "ps2000a", "ps3000a", "ps5000a", "ps6000") else 1
        for i, ch in self.channels.items():
            if not ch.enabled:
                continue
            r = self.range_v(ch.range_index)
            x = (volts[:, i, :] + ch.offset_v) / r * self.max_adc
            over = np.any(np.abs(volts[:, i, :] + ch.offset_v) > r, axis=1)
            code = np.round(x / step) * step
            raw[:, i, :] = np.clip(code, -self.max_adc, self.max_adc).astype(np.int16)
            overflow |= np.where(over, np.int16(1 << i), np.int16(0)).astype(np.int16)
        return raw, overflow

    def start_run(self) -> None:
        self.runs += 1
        self.running = True
        self.polls_left = self.polls_before_ready
        volts = self.analogue(self.n_captures)
        self.captured, self.overflow = self.digitise(volts)

    def trigger_offset(self, segment: int, dt: float) -> float:
        """Sub-sample trigger time offset of ``segment`` in seconds, in (-dt, 0]."""
        return -self.trigger_offset_fraction * dt / (1 + segment)
