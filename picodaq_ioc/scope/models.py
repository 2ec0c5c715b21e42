"""PicoScope model tables as data, shared by every backend.

One frozen :class:`FamilyModel` per driver family (``FAMILIES``), optionally refined by a
variant (a model number such as ``"2206B"`` or ``"5444D"``) through ``VARIANTS``. The pure
functions below snap requested values the way the drivers do:

* :func:`snap_range` - the next larger input range (``PICO_INVALID_VOLTAGE_RANGE`` above
  the largest one);
* :func:`quantise_interval` - the fastest timebase whose interval is ``<=`` the request
  (pico-python's ``floor`` rule), never faster than the model allows for the resolution
  and the number of enabled channels;
* :func:`max_adc`, :func:`offset_limit`, :func:`siggen_caps`, :func:`scope_info` and
  ``validate_*`` helpers that raise :class:`~picodaq_ioc.scope.errors.InvalidConfig`
  naming the field and the allowed values.

Sources (see ``/work/shared/research/driver_layer.md`` §1.5, §3): ranges and couplings
from the pico-python/picosdk enums restricted to what the units accept; max ADC codes
from the C headers (32512 for 8-bit 2000A/3000A/5000A, 32767 for 5000A at >= 12 bit,
32764 for 4000/4000A, 32512 for the 8-bit 6000); timebase formulas from the programmer's
guides as coded in pico-python; analogue offset limits from the API constants.
Figures marked "[recalled]" in the research notes (memory sizes, segment limits,
siggen output swing) are plausible defaults, not datasheet-verified.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from .errors import InvalidConfig
from .types import Coupling, ScopeInfo, SigGenCaps, SigGenConfig, WaveType

# The 1-2-5 sequence of PicoScope input ranges (± full scale, volts).
ALL_RANGES_V: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)


def _ranges(lo: float, hi: float) -> tuple[float, ...]:
    return tuple(r for r in ALL_RANGES_V if lo - 1e-12 <= r <= hi + 1e-12)


@dataclass(frozen=True)
class TimebaseFormula:
    """Sample interval as a function of the timebase index ``n``.

    ``dt(n) = 2**(n - exp_shift) / exp_hz`` for ``n < n_exp`` (the power-of-two part) and
    ``dt(n) = (n - lin_offset) / lin_hz`` for ``n >= n_exp``. ``min_index_by_channels``
    lists ``(max_enabled_channels, fastest_index)`` pairs in increasing channel count: the
    ADCs are shared, so more enabled channels means a slower fastest timebase. A channel
    count above the last pair is not possible at this resolution.
    """

    exp_hz: float
    n_exp: int
    lin_hz: float
    lin_offset: float
    max_index: int = 2**32 - 1
    exp_shift: int = 0
    min_index_by_channels: tuple[tuple[int, int], ...] = ((64, 0),)

    def dt(self, n: int) -> float:
        """Sample interval (s) of timebase index ``n``."""
        if n < self.n_exp:
            return 2.0 ** (n - self.exp_shift) / self.exp_hz
        return (n - self.lin_offset) / self.lin_hz

    def min_index(self, n_channels: int) -> int | None:
        """Fastest index for ``n_channels`` enabled channels, ``None`` if not possible."""
        for max_ch, idx in self.min_index_by_channels:
            if n_channels <= max_ch:
                return idx
        return None

    def max_channels(self) -> int:
        return self.min_index_by_channels[-1][0]


@dataclass(frozen=True)
class FamilyModel:
    """Static capabilities of one PicoScope driver family (or a variant of it)."""

    family: str
    description: str
    channels: tuple[str, ...]
    resolutions_bits: tuple[int, ...]
    default_bits: int
    max_adc_by_bits: Mapping[int, int]
    ranges_v: tuple[float, ...]
    couplings: tuple[Coupling, ...]
    timebases: Mapping[int, TimebaseFormula]  # keyed by resolution bits
    memory_samples: int  # total, shared by the enabled channels
    max_segments: int
    supports_pretrigger: bool
    supports_rapid_block: bool
    siggen: SigGenCaps | None
    # (largest range this applies to, ± offset limit) in increasing range; [] = no offset
    offset_limits: tuple[tuple[float, float], ...]
    dc50_max_range_v: float | None = None  # DC50 coupling only up to this range
    trigger_hysteresis_lsb: int = 2  # in ADC codes of the model's resolution (sim only)

    @property
    def max_bits(self) -> int:
        return max(self.resolutions_bits)

    def max_sample_rate_hz(self, bits: int | None = None) -> float:
        """Fastest sample rate (one channel enabled) at ``bits`` (default resolution)."""
        tb = self.timebases[self._bits(bits)]
        n = tb.min_index(1)
        return 1.0 / tb.dt(0 if n is None else n)

    def _bits(self, bits: int | None) -> int:
        return self.default_bits if bits is None else int(bits)


_ALL_WAVES: tuple[WaveType, ...] = tuple(WaveType)
_BASIC_WAVES: tuple[WaveType, ...] = (
    WaveType.SINE,
    WaveType.SQUARE,
    WaveType.TRIANGLE,
    WaveType.RAMP_UP,
    WaveType.RAMP_DOWN,
    WaveType.DC_VOLTAGE,
)

# --- timebase formulas (programmer's guides, as coded in pico-python) -----------------------
# 2000A 500 MS/s units (2206*, 2405A): 2^n/500 MHz (n<3), (n-2)/62.5 MHz.
_TB_500M = TimebaseFormula(5e8, 3, 62.5e6, 2.0, min_index_by_channels=((1, 0), (2, 1), (4, 2)))
# 1 GS/s units (2207*/2208*, 3000A 4-ch, 5000A 8 bit): 2^n/1 GHz (n<3), (n-2)/125 MHz.
_TB_1G = TimebaseFormula(1e9, 3, 125e6, 2.0, min_index_by_channels=((1, 0), (2, 1), (4, 2)))
_OFFSETS_A = ((0.2, 0.25), (2.0, 2.5), (50.0, 20.0))  # 2000A/3000A/5000A
_OFFSETS_4000A = ((0.2, 0.25), (2.0, 2.5), (5.0, 20.0), (50.0, 25.0))
_OFFSETS_6000 = ((0.2, 0.5), (2.0, 2.5), (50.0, 20.0))

FAMILIES: dict[str, FamilyModel] = {
    "2000": FamilyModel(
        family="2000",
        description="PicoScope 2204A/2205A (ps2000 driver)",
        channels=("A", "B"),
        resolutions_bits=(8,),
        default_bits=8,
        max_adc_by_bits={8: 32767},  # PS2000_MAX_VALUE
        ranges_v=_ranges(0.02, 20.0),
        couplings=(Coupling.AC, Coupling.DC),
        # ps2000: dt = 2^n * 10 ns, n = 0..19 (pico-python getTimestepFromTimebase); shared ADC
        timebases={8: TimebaseFormula(1e8, 20, 1e8, 0.0, max_index=19,
                                      min_index_by_channels=((1, 0), (2, 1)))},
        memory_samples=8192,  # 2204A 8 kS [recalled]
        max_segments=1,
        supports_pretrigger=False,  # pico-python runBlock raises for pre-trigger on ps2000
        supports_rapid_block=False,
        siggen=SigGenCaps(_BASIC_WAVES, 0.03, 1e6, 4.0, 2.0),
        offset_limits=(),  # no analogue offset on the ps2000 API
    ),
    "2000a": FamilyModel(
        family="2000a",
        description="PicoScope 2000A/B, 500 MS/s class (2206B) by default",
        channels=("A", "B", "C", "D"),
        resolutions_bits=(8,),
        default_bits=8,
        max_adc_by_bits={8: 32512},
        ranges_v=_ranges(0.02, 20.0),
        couplings=(Coupling.AC, Coupling.DC),
        timebases={8: _TB_500M},
        memory_samples=32 * 2**20,  # 2206B 32 MS [recalled]
        max_segments=32768,  # [recalled]
        supports_pretrigger=True,
        supports_rapid_block=True,
        siggen=SigGenCaps(_ALL_WAVES, 0.03, 1e6, 4.0, 2.0),
        offset_limits=_OFFSETS_A,
    ),
    "3000a": FamilyModel(
        family="3000a",
        description="PicoScope 3000A/B/D, 1 GS/s 4-channel class by default",
        channels=("A", "B", "C", "D"),
        resolutions_bits=(8,),
        default_bits=8,
        max_adc_by_bits={8: 32512},
        ranges_v=_ranges(0.02, 20.0),
        couplings=(Coupling.AC, Coupling.DC),
        timebases={8: _TB_1G},
        memory_samples=128 * 2**20,  # [recalled]
        max_segments=250_000,  # [recalled]
        supports_pretrigger=True,
        supports_rapid_block=True,
        siggen=SigGenCaps(_ALL_WAVES, 0.03, 1e6, 4.0, 2.0),
        offset_limits=_OFFSETS_A,
    ),
    "4000": FamilyModel(
        family="4000",
        description="PicoScope 4224/4424 (ps4000 driver), 12 bit 80 MS/s",
        channels=("A", "B", "C", "D"),
        resolutions_bits=(12,),
        default_bits=12,
        max_adc_by_bits={12: 32764},  # PS4000_MAX_VALUE
        ranges_v=_ranges(0.05, 50.0),
        couplings=(Coupling.AC, Coupling.DC, Coupling.DC50),
        # 4224/4424: 2^n/80 MHz (n<3), (n-1)/20 MHz
        timebases={12: TimebaseFormula(80e6, 3, 20e6, 1.0)},
        memory_samples=32 * 2**20,  # [recalled]
        max_segments=8192,  # [recalled]
        supports_pretrigger=True,
        supports_rapid_block=True,
        siggen=SigGenCaps(_BASIC_WAVES, 0.03, 100e3, 4.0, 2.0),  # MAX_SIG_GEN_FREQ 100 kHz
        offset_limits=(),  # ps4000 has no analogue offset
        dc50_max_range_v=5.0,
    ),
    "4000a": FamilyModel(
        family="4000a",
        description="PicoScope 4824 (ps4000a driver), 8 channels, 12 bit 80 MS/s",
        channels=("A", "B", "C", "D", "E", "F", "G", "H"),
        resolutions_bits=(12,),
        default_bits=12,
        max_adc_by_bits={12: 32764, 14: 32764},
        ranges_v=_ranges(0.01, 50.0),
        couplings=(Coupling.AC, Coupling.DC, Coupling.DC50),
        # 4824: (n+1) * 12.5 ns
        timebases={12: TimebaseFormula(80e6, 0, 80e6, -1.0, min_index_by_channels=((8, 0),))},
        memory_samples=256 * 2**20,  # [recalled]
        max_segments=250_000,  # [recalled]
        supports_pretrigger=True,
        supports_rapid_block=True,
        siggen=SigGenCaps(_ALL_WAVES, 0.03, 1e6, 4.0, 2.0),
        offset_limits=_OFFSETS_4000A,
        dc50_max_range_v=5.0,
    ),
    "5000a": FamilyModel(
        family="5000a",
        description="PicoScope 5000A/B/D FlexRes (ps5000a driver)",
        channels=("A", "B", "C", "D"),
        resolutions_bits=(8, 12, 14, 15, 16),
        default_bits=8,
        max_adc_by_bits={8: 32512, 12: 32767, 14: 32767, 15: 32767, 16: 32767},
        ranges_v=_ranges(0.01, 20.0),
        couplings=(Coupling.AC, Coupling.DC),
        timebases={
            8: _TB_1G,
            # 12 bit: 2^(n-1)/500 MHz (n=1..3), (n-3)/62.5 MHz
            12: TimebaseFormula(5e8, 4, 62.5e6, 3.0, exp_shift=1,
                                min_index_by_channels=((1, 1), (2, 2), (4, 3))),
            # 14/15 bit: (n-2)/125 MHz from n=3 (8 ns); 15 bit only with <= 2 channels
            14: TimebaseFormula(125e6, 3, 125e6, 2.0, min_index_by_channels=((4, 3),)),
            15: TimebaseFormula(125e6, 3, 125e6, 2.0, min_index_by_channels=((2, 3),)),
            # 16 bit: (n-3)/62.5 MHz from n=4 (16 ns), one channel only
            16: TimebaseFormula(62.5e6, 4, 62.5e6, 3.0, min_index_by_channels=((1, 4),)),
        },
        memory_samples=128 * 2**20,  # [recalled]
        max_segments=250_000,  # [recalled]
        supports_pretrigger=True,
        supports_rapid_block=True,
        siggen=SigGenCaps(_ALL_WAVES, 0.03, 20e6, 4.0, 2.0),
        offset_limits=_OFFSETS_A,
    ),
    "6000": FamilyModel(
        family="6000",
        description="PicoScope 6000 A-D (ps6000 driver), 5 GS/s",
        channels=("A", "B", "C", "D"),
        resolutions_bits=(8,),
        default_bits=8,
        max_adc_by_bits={8: 32512},  # PS6000_MAX_VALUE (pico-python scales with 32764: wrong)
        ranges_v=_ranges(0.05, 20.0),
        couplings=(Coupling.AC, Coupling.DC, Coupling.DC50),
        # 2^n/5 GHz (n<5), (n-4)/156.25 MHz
        timebases={8: TimebaseFormula(5e9, 5, 156.25e6, 4.0,
                                      min_index_by_channels=((1, 0), (2, 1), (4, 2)))},
        memory_samples=1024 * 2**20,  # [recalled]
        max_segments=1_000_000,  # MAX_WAVEFORMS_PER_SECOND-class rapid block
        supports_pretrigger=True,
        supports_rapid_block=True,
        siggen=SigGenCaps(_ALL_WAVES, 0.03, 20e6, 4.0, 2.0),
        offset_limits=_OFFSETS_6000,
        dc50_max_range_v=5.0,
    ),
}

# Variants: model-number prefix -> field overrides of the family entry.
VARIANTS: dict[str, dict[str, dict]] = {
    "2000": {
        "2205A": {"description": "PicoScope 2205A, 200 MS/s",
                  "timebases": {8: TimebaseFormula(2e8, 20, 2e8, 0.0, max_index=19,
                                                   min_index_by_channels=((1, 0), (2, 1)))},
                  "memory_samples": 16384},
        "2204A": {"ranges_v": _ranges(0.05, 20.0)},
    },
    "2000a": {
        "2206": {"description": "PicoScope 2206/2206A/2206B, 500 MS/s"},
        "2405A": {"description": "PicoScope 2405A, 500 MS/s"},
        "2207": {"description": "PicoScope 2207A/B, 1 GS/s", "timebases": {8: _TB_1G}},
        "2208": {"description": "PicoScope 2208A/B, 1 GS/s", "timebases": {8: _TB_1G}},
        "2406B": {"description": "PicoScope 2406B, 1 GS/s", "timebases": {8: _TB_1G}},
        "2407B": {"description": "PicoScope 2407B, 1 GS/s", "timebases": {8: _TB_1G}},
        "2408B": {"description": "PicoScope 2408B, 1 GS/s", "timebases": {8: _TB_1G}},
    },
    "3000a": {
        # 2-channel 3000A units: 500 MS/s
        "3204": {"channels": ("A", "B"), "timebases": {8: _TB_500M}},
        "3205": {"channels": ("A", "B"), "timebases": {8: _TB_500M}},
        "3206": {"channels": ("A", "B"), "timebases": {8: _TB_500M}},
    },
    "4000a": {
        "4444": {"description": "PicoScope 4444, 12/14 bit, 400 MS/s", "channels": ("A", "B", "C", "D"),
                 "resolutions_bits": (12, 14),
                 "timebases": {12: TimebaseFormula(4e8, 3, 50e6, 2.0, min_index_by_channels=((4, 0),)),
                               14: TimebaseFormula(4e8, 3, 50e6, 2.0, min_index_by_channels=((4, 3),))}},
    },
}


def get_family(family: str) -> FamilyModel:
    """The table entry of ``family`` (``InvalidConfig(field="model")`` if unknown)."""
    key = str(family).lower()
    try:
        return FAMILIES[key]
    except KeyError:
        raise InvalidConfig(
            f"unknown PicoScope model family {family!r}", field="model",
            allowed=", ".join(FAMILIES)) from None


def get_model(family: str, variant: str | None = None) -> FamilyModel:
    """The family entry refined by a variant (longest matching model-number prefix).

    An unknown variant is not an error: the family defaults apply (the real backend
    queries the unit anyway).
    """
    fam = get_family(family)
    if not variant:
        return fam
    table = VARIANTS.get(fam.family, {})
    v = str(variant).upper()
    best = max((k for k in table if v.startswith(k.upper())), key=len, default=None)
    if best is None:
        return fam
    return replace(fam, **table[best])


# --- pure functions ---------------------------------------------------------------------------


def _fmt_v(v: float) -> str:
    return f"{v * 1e3:g} mV" if abs(v) < 1 else f"{v:g} V"


def _fmt_ranges(ranges: tuple[float, ...]) -> str:
    return ", ".join("±" + _fmt_v(r) for r in ranges)


def snap_range(family: str, requested_v: float, *, variant: str | None = None,
               channel: str | None = None) -> float:
    """The smallest input range of the model that is ``>= |requested_v|``.

    Raises
    ------
    InvalidConfig
        ``field="range"`` when the request exceeds the largest range or is not positive.
    """
    m = get_model(family, variant)
    where = f" on channel {channel}" if channel else ""
    try:
        req = float(requested_v)
    except (TypeError, ValueError):
        req = math.nan
    if not math.isfinite(req) or req <= 0:
        raise InvalidConfig(f"input range{where} must be a positive number of volts, got {requested_v!r}",
                            field="range", allowed=_fmt_ranges(m.ranges_v))
    for r in m.ranges_v:
        if r >= req * (1 - 1e-9):
            return r
    raise InvalidConfig(
        f"input range ±{req:g} V{where} exceeds the largest range of the {m.family} ({_fmt_v(m.ranges_v[-1])})",
        field="range", allowed=_fmt_ranges(m.ranges_v))


def timebase_formula(family: str, *, variant: str | None = None,
                     bits: int | None = None) -> TimebaseFormula:
    m = get_model(family, variant)
    b = validate_resolution(family, m.default_bits if bits is None else bits, variant=variant)
    return m.timebases[b]


def quantise_interval(family: str, requested_s: float, *, variant: str | None = None,
                      bits: int | None = None, n_channels: int = 1) -> tuple[int, float]:
    """Timebase index and interval for a requested sample interval.

    The slowest interval that is ``<= requested_s`` (pico-python's ``floor``); a request
    faster than the model allows gives the fastest timebase for ``n_channels`` at ``bits``;
    a request beyond the slowest timebase gives the slowest.

    Returns
    -------
    (timebase_index, dt_s)
    """
    m = get_model(family, variant)
    tb = timebase_formula(family, variant=variant, bits=bits)
    b = m._bits(bits)
    try:
        req = float(requested_s)
    except (TypeError, ValueError):
        req = math.nan
    if not math.isfinite(req) or req <= 0:
        raise InvalidConfig(f"sample interval must be a positive number of seconds, got {requested_s!r}",
                            field="sample_interval", allowed="> 0 s")
    n_min = tb.min_index(int(n_channels))
    if n_min is None:
        raise InvalidConfig(
            f"{n_channels} enabled channels are not possible on the {m.family} at {b} bit",
            field="channels", allowed=f"at most {tb.max_channels()} enabled channels at {b} bit")
    req_eps = req * (1 + 1e-9)  # a request equal to a timebase picks it despite rounding
    best = n_min
    # linear part: largest n with (n - off)/f <= req
    n_lin = math.floor(req_eps * tb.lin_hz + tb.lin_offset)
    n_lin = min(n_lin, tb.max_index)
    while n_lin >= tb.n_exp and tb.dt(n_lin) > req_eps:  # guard against float rounding
        n_lin -= 1
    if n_lin >= max(tb.n_exp, n_min):
        best = n_lin
    else:
        # power-of-two part
        for n in range(min(tb.n_exp, tb.max_index + 1) - 1, n_min - 1, -1):
            if tb.dt(n) <= req_eps:
                best = n
                break
    best = max(best, n_min)
    return int(best), float(tb.dt(best))


def max_adc(family: str, bits: int | None = None, *, variant: str | None = None) -> int:
    """Positive full-scale raw code at ``bits`` (the true driver value, not pico-python's)."""
    m = get_model(family, variant)
    b = validate_resolution(family, m._bits(bits), variant=variant)
    return int(m.max_adc_by_bits[b])


def code_step(bits: int) -> int:
    """Raw int16 step of one ADC code: ``2**(16 - bits)``."""
    return 1 << (16 - int(bits))


def clip_code(family: str, bits: int | None = None, *, variant: str | None = None) -> int:
    """Largest raw value reachable: ``max_adc`` rounded down to a multiple of the code step."""
    m = get_model(family, variant)
    b = m._bits(bits)
    step = code_step(b)
    return (max_adc(family, b, variant=variant) // step) * step


def offset_limit(family: str, range_v: float, *, variant: str | None = None) -> float:
    """± analogue offset limit (V) on the range ``range_v`` (0 if the family has none)."""
    m = get_model(family, variant)
    for max_r, lim in m.offset_limits:
        if range_v <= max_r * (1 + 1e-9):
            return lim
    return 0.0


def siggen_caps(family: str, *, variant: str | None = None) -> SigGenCaps | None:
    """Signal-generator capabilities, ``None`` if the model has none."""
    return get_model(family, variant).siggen


def scope_info(family: str, variant: str | None = None, serial: str = "SIM0001",
               driver: str = "sim", bits: int | None = None) -> ScopeInfo:
    """A :class:`ScopeInfo` filled from the tables."""
    m = get_model(family, variant)
    model = variant if variant else f"{m.family} (simulated)" if driver == "sim" else m.family
    return ScopeInfo(
        model=str(model),
        family=m.family,
        serial=serial,
        driver=driver,
        channels=m.channels,
        ranges_v=m.ranges_v,
        couplings=m.couplings,
        resolutions_bits=m.resolutions_bits,
        max_sample_rate_hz=m.max_sample_rate_hz(bits),
        memory_samples=m.memory_samples,
        max_segments=m.max_segments,
        supports_pretrigger=m.supports_pretrigger,
        supports_rapid_block=m.supports_rapid_block,
        siggen=m.siggen,
    )


# --- validation helpers -----------------------------------------------------------------------


def validate_channel_name(family: str, channel: str, *, variant: str | None = None,
                          field: str = "channel") -> str:
    m = get_model(family, variant)
    ch = str(channel).upper()
    if ch not in m.channels:
        raise InvalidConfig(f"channel {channel!r} does not exist on the {m.family}",
                            field=field, allowed=", ".join(m.channels))
    return ch


def validate_trigger_source(family: str, source: str, *, variant: str | None = None) -> str:
    m = get_model(family, variant)
    s = str(source).upper()
    if s not in m.channels:
        raise InvalidConfig(f"trigger source {source!r} is not a channel of the {m.family}"
                            + (" (EXT trigger is not supported by this backend)" if s == "EXT" else ""),
                            field="trigger.source", allowed=", ".join(m.channels))
    return s


def validate_resolution(family: str, bits: int, *, variant: str | None = None) -> int:
    m = get_model(family, variant)
    try:
        b = int(bits)
    except (TypeError, ValueError):
        b = -1
    if b not in m.resolutions_bits:
        raise InvalidConfig(f"resolution {bits!r} bit is not available on the {m.family}",
                            field="resolution_bits", allowed=", ".join(str(x) for x in m.resolutions_bits))
    return b


def validate_coupling(family: str, coupling: Coupling | str, range_v: float | None = None, *,
                      variant: str | None = None, channel: str | None = None) -> Coupling:
    m = get_model(family, variant)
    where = f" on channel {channel}" if channel else ""
    allowed = ", ".join(c.value for c in m.couplings)
    try:
        c = Coupling(coupling)
    except ValueError:
        raise InvalidConfig(f"coupling {coupling!r}{where} is unknown", field="coupling",
                            allowed=allowed) from None
    if c not in m.couplings:
        raise InvalidConfig(f"coupling {c.value}{where} is not available on the {m.family}",
                            field="coupling", allowed=allowed)
    if c is Coupling.DC50 and range_v is not None and m.dc50_max_range_v is not None \
            and range_v > m.dc50_max_range_v * (1 + 1e-9):
        raise InvalidConfig(
            f"DC50 coupling{where} allows ranges up to ±{m.dc50_max_range_v:g} V, got ±{range_v:g} V",
            field="range", allowed=_fmt_ranges(tuple(r for r in m.ranges_v if r <= m.dc50_max_range_v)))
    return c


def validate_offset(family: str, range_v: float, offset_v: float, *, variant: str | None = None,
                    channel: str | None = None) -> float:
    """Check an analogue offset against the limit of ``range_v`` (already snapped)."""
    lim = offset_limit(family, range_v, variant=variant)
    where = f" on channel {channel}" if channel else ""
    try:
        off = float(offset_v)
    except (TypeError, ValueError):
        off = math.nan
    if not math.isfinite(off) or abs(off) > lim * (1 + 1e-9) + 1e-15:
        allowed = f"±{lim:g} V on the ±{_fmt_v(range_v)} range" if lim > 0 else \
            f"0 V (the {get_family(family).family} has no analogue offset)"
        raise InvalidConfig(f"analogue offset {offset_v!r} V{where} is out of range", field="offset",
                            allowed=allowed)
    return off


def validate_siggen(family: str, cfg: SigGenConfig, *, variant: str | None = None) -> SigGenConfig:
    """Check a signal-generator setting against :func:`siggen_caps` (disabled passes)."""
    if not cfg.enabled:
        return cfg
    caps = siggen_caps(family, variant=variant)
    if caps is None:
        raise InvalidConfig(f"the {family} has no signal generator", field="siggen.enabled",
                            allowed="false")
    try:
        wave = WaveType(cfg.waveform)
    except ValueError:
        wave = None
    if wave not in caps.waveforms:
        raise InvalidConfig(f"waveform {cfg.waveform!r} is not available", field="siggen.waveform",
                            allowed=", ".join(w.value for w in caps.waveforms))
    frange = f"{caps.min_frequency_hz:g} .. {caps.max_frequency_hz:g} Hz"
    freqs = [("siggen.frequency", cfg.frequency_hz)]
    if cfg.stop_frequency_hz is not None:
        freqs.append(("siggen.stop_frequency", cfg.stop_frequency_hz))
    if wave is not WaveType.DC_VOLTAGE:
        for name, f in freqs:
            if not (caps.min_frequency_hz <= f <= caps.max_frequency_hz):
                raise InvalidConfig(f"signal-generator frequency {f:g} Hz is out of range", field=name,
                                    allowed=frange)
    if not (0.0 <= cfg.pk_to_pk_v <= caps.max_pk_to_pk_v):
        raise InvalidConfig(f"signal-generator amplitude {cfg.pk_to_pk_v:g} V pk-pk is out of range",
                            field="siggen.amplitude", allowed=f"0 .. {caps.max_pk_to_pk_v:g} V pk-pk")
    swing = cfg.pk_to_pk_v / 2 + abs(cfg.offset_v)
    if abs(cfg.offset_v) > caps.max_offset_v or swing > caps.max_pk_to_pk_v / 2 * (1 + 1e-9):
        raise InvalidConfig(
            f"signal-generator offset {cfg.offset_v:g} V with {cfg.pk_to_pk_v:g} V pk-pk exceeds the output swing",
            field="siggen.offset",
            allowed=f"|offset| + pk-pk/2 <= {caps.max_pk_to_pk_v / 2:g} V")
    if cfg.stop_frequency_hz is not None and (cfg.dwell_time_s is None or cfg.dwell_time_s <= 0):
        raise InvalidConfig("a frequency sweep needs a positive dwell time", field="siggen.dwell_time",
                            allowed="> 0 s")
    return cfg


__all__ = [
    "ALL_RANGES_V",
    "FAMILIES",
    "VARIANTS",
    "FamilyModel",
    "TimebaseFormula",
    "clip_code",
    "code_step",
    "get_family",
    "get_model",
    "max_adc",
    "offset_limit",
    "quantise_interval",
    "scope_info",
    "siggen_caps",
    "snap_range",
    "timebase_formula",
    "validate_channel_name",
    "validate_coupling",
    "validate_offset",
    "validate_resolution",
    "validate_siggen",
    "validate_trigger_source",
]
