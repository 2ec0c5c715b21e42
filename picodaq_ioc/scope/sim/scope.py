"""``SimScope``: the simulated PicoScope backend (see research/driver_layer.md §4.2).

Time runs on a simulated clock (float64 seconds). ``arm()`` computes the whole (rapid-block)
capture at once from explicit pulse streams: the trigger is found on the digitised codes of
the trigger channel, pulses that arrive while the scope is not armed are lost, and the clock
moves on by the readout dead time after ``read()`` (plus, optionally, the host's own time
between ``read()`` and the next ``arm()``).

Trigger modes
-------------
* *event mode* (the usual case: the level is far from the quiet baseline): candidate trigger
  times are the analytic crossing times of the pulses on the trigger channel; a chain over
  the sorted candidates applies the dead time (re-arm, pre-trigger fill, window), and the
  exact trigger sample is then found on the digitised data around each candidate.
* *scan mode* (the baseline itself can reach the level: signal generator on the trigger
  channel, noise within 7 sigma of the level, or a level trigger already satisfied): the
  trigger channel is rendered and scanned chunk by chunk from the moment the trigger is
  enabled.

Pulse generation
----------------
Pulses that can fire the trigger (event mode: pulses on the trigger channel that reach the
level; SiPM dark counts with at least ``n_lo`` fired cells) are generated explicitly on the
timeline, so that dead time, losses and ground truth are exact. All other pulses of Poisson
sources are generated per sample window (thinning a Poisson process by an independent mark
gives independent Poisson processes), which keeps high-rate background cheap. Geiger tubes
(tube dead time: not Poisson) are always explicit.

Known simplifications: pile-up of several sub-threshold pulses never fires the trigger in
event mode; windowed pulses of overlapping extended windows (gaps shorter than a pulse) are
drawn independently; AC coupling only removes the generator's DC level; ``truth.pulses``
holds the explicit pulses only.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from .. import models, resolve
from ..errors import Busy, DeviceDisconnected, DeviceNotFound, InvalidConfig, ScopeError
from ..types import (
    CHANNEL_NAMES,
    Applied,
    Capture,
    ChannelConfig,
    Coupling,
    Direction,
    ScopeInfo,
    SigGenConfig,
    TimebaseConfig,
    TriggerConfig,
    WaveType,
)
from .params import DeviceParams, SimDevice, SimulationParams, SourceSection
from .render import add_noise, add_pulse_rows, add_pulses, digitise
from .siggen import SigGen
from .sources import PulseStream, make_stream
from .trigger import candidate_times, find_trigger, time_offset

SKIP_IDLE_S = 1.0  # idle gaps longer than this are skipped, not generated pulse by pulse
MARGIN = 16  # samples searched either side of a candidate for the digitised crossing
MAX_DELAY_FACTOR = 16  # trigger delay limited to this many record lengths (memory bound)
_IDLE, _ARMED, _READY = "idle", "armed", "ready"


@dataclass
class SimTruth:
    """Hidden ground truth of the simulation, for tests only.

    Counters cover the simulated time consumed by completed (read) captures.
    """

    keep: bool = False
    n_primaries: int = 0  # true primary events of all pulse sources (incl. Geiger tube losses)
    n_primaries_by_source: list[int] = field(default_factory=list)
    n_candidates: int = 0  # pulses on the trigger channel able to fire the trigger
    n_lost_dead: int = 0  # candidates that arrived while the trigger was not enabled
    n_missed: int = 0  # candidates during live time that did not fire (noise, pile-up)
    n_triggers: int = 0  # segments triggered by a threshold crossing
    n_auto: int = 0  # auto-triggered segments
    n_free: int = 0  # free-running segments (trigger disabled)
    n_segments: int = 0
    n_captures: int = 0
    live_time_s: float = 0.0
    t_consumed: float = 0.0
    skipped_time_s: float = 0.0  # idle gaps (> 1 s) whose pulses were counted, not generated
    # keep=True only:
    trigger_times: list[np.ndarray] = field(default_factory=list)  # exact crossing times
    candidate_times: list[np.ndarray] = field(default_factory=list)
    pulses: list[np.ndarray] = field(default_factory=list)  # structured (t, amp, ch, aux, source)
    peak_code: list[np.ndarray] = field(default_factory=list)  # [S, C] max |unclipped code|

    def all_trigger_times(self) -> np.ndarray:
        return np.concatenate(self.trigger_times) if self.trigger_times else np.empty(0)

    def all_candidate_times(self) -> np.ndarray:
        return np.concatenate(self.candidate_times) if self.candidate_times else np.empty(0)

    def all_pulses(self) -> np.ndarray:
        return np.concatenate(self.pulses) if self.pulses else np.empty(0, dtype=PULSE_DTYPE)


PULSE_DTYPE = np.dtype([("t", "f8"), ("amp", "f8"), ("ch", "i2"), ("aux", "i4"), ("source", "i2")])


def _rng(seed: int, key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(key,))))


def _gather(arr: np.ndarray, w0: np.ndarray, n: int) -> np.ndarray:
    """``arr[j, :, w0[j]:w0[j]+n]`` for every row j (rows grouped by their shift)."""
    out = np.empty((w0.size, arr.shape[1], n), dtype=arr.dtype)
    shifts, inv = np.unique(w0, return_inverse=True)
    if shifts.size == 1:
        w = int(shifts[0])
        out[...] = arr[: w0.size, :, w:w + n]
        return out
    for i, w in enumerate(shifts):
        rows = np.flatnonzero(inv == i)
        out[rows] = arr[rows, :, int(w):int(w) + n]
    return out


def _next_valid(excl: np.ndarray) -> np.ndarray:
    """``out[i]`` = the smallest index >= i that is not excluded (``excl.size`` if none)."""
    n = excl.size
    idx = np.where(~excl, np.arange(n), n)
    out = np.empty(n + 1, dtype=np.int64)
    out[n] = n
    out[:n] = np.minimum.accumulate(idx[::-1])[::-1] if n else idx
    return out


@dataclass
class _Batch:
    """A computed capture waiting for its time to come."""

    raw: np.ndarray
    overflow: np.ndarray
    t_trigger: np.ndarray
    offset: np.ndarray
    auto: np.ndarray
    live: float
    t_armed: float
    t_ready: float
    applied: Applied
    trig_exact: np.ndarray
    n_triggered: int
    n_auto: int
    n_free: int
    n_live_cands: int
    peak: np.ndarray | None


class SimScope:
    """Simulated PicoScope implementing :class:`~picodaq_ioc.scope.types.ScopeBackend`.

    Parameters
    ----------
    simulation : SimulationParams
        Seed, pacing, noise, dead times and sources (the configuration's ``simulation``
        section; see :mod:`picodaq_ioc.scope.sim.params`).
    device : DeviceParams, optional
        Model family/variant, serial and resolution (the ``device`` section). Default: a 2000a.
    keep_truth : bool
        Keep arrays of true trigger, candidate and pulse times in :attr:`truth`.
    power_fault : bool
        ``open()`` fails like a unit without its external power supply.
    """

    def __init__(self, simulation: SimulationParams, device: DeviceParams | None = None,
                 *, keep_truth: bool = False, power_fault: bool = False):
        self.sim = simulation
        self.dev = device if device is not None else SimDevice()
        self.family = models.get_family(self.dev.model).family
        self.variant = self.dev.variant
        self.model = models.get_model(self.family, self.variant)
        self.bits = models.validate_resolution(
            self.family, self.dev.resolution_bits or self.model.default_bits, variant=self.variant)
        self.serial = self.dev.serial or "SIM0001"
        seed = int(self.sim.seed)
        self._rng_noise = _rng(seed, 0)
        self._rng_misc = _rng(seed, 1)
        self._rng_siggen = _rng(seed, 2)
        self.streams: list[PulseStream] = []
        self._noise_sources: list[SourceSection] = []
        self._siggen_channels: set[int] = set()
        if self.sim.siggen_channel is not None:
            self._siggen_channels.add(CHANNEL_NAMES.index(self.sim.siggen_channel))
        for i, src in enumerate(self.sim.sources):
            st = make_stream(src, _rng(seed, 100 + i), i)
            if st is not None:
                st.keep_truth = keep_truth
                self.streams.append(st)
            elif src.kind == "noise":
                self._noise_sources.append(src)
            elif src.kind == "siggen":
                self._siggen_channels.update(CHANNEL_NAMES.index(c) for c in src.channels)
        self.truth = SimTruth(keep=keep_truth, n_primaries_by_source=[0] * len(self.sim.sources))
        self._cond = threading.Condition(threading.RLock())
        self._opened = False
        self._unplugged = False
        self._replug_pending = False
        self._busy = 0
        self._stall = 0
        self._power_fault = bool(power_fault)
        self._t = 0.0
        self._t_free = 0.0
        self._t_read_wall: float | None = None
        self._wall0 = time.monotonic()
        self._sim0 = 0.0
        self._state = _IDLE
        self._arm_id = 0
        self._batch: _Batch | None = None
        self._sequence = 0
        self._generation = 0
        self._applied: Applied | None = None
        self._siggen_cfg = SigGenConfig()
        self._siggen = SigGen(self._siggen_cfg, 0.0, self._rng_siggen)
        self._last_request: tuple | None = None
        self._last_cands = np.empty(0)
        self._t_skip = 0.0

    # ------------------------------------------------------------------ fault injection
    def unplug(self) -> None:
        """Pull the USB cable: every later call raises ``DeviceDisconnected`` until ``replug()``."""
        with self._cond:
            self._unplugged = True
            self._state = _IDLE
            self._batch = None
            self._arm_id += 1
            self._cond.notify_all()

    def replug(self) -> None:
        """Reconnect: the unit powers up in defaults and needs ``open()`` and ``configure()``."""
        with self._cond:
            self._unplugged = False
            self._opened = False
            self._replug_pending = True

    def busy(self, n: int = 1) -> None:
        """The next ``n`` calls of configure/arm/wait/read raise ``Busy`` (PICO_DRIVER_FUNCTION)."""
        self._busy = int(n)

    def stall(self, n: int = 1) -> None:
        """The next ``n`` ``wait()`` calls time out (return False), like a USB timeout."""
        self._stall = int(n)

    def power_fault(self, on: bool = True) -> None:
        """``open()`` fails with PICO_POWER_SUPPLY_NOT_CONNECTED while set."""
        self._power_fault = bool(on)

    def _check(self, busy: bool = True) -> None:
        if self._unplugged:
            raise DeviceDisconnected("PICO_NOT_RESPONDING: the simulated scope was unplugged")
        if not self._opened:
            if self._replug_pending:
                raise DeviceDisconnected("PICO_INVALID_HANDLE: the unit was reconnected; call open()")
            raise ScopeError("the scope is not open; call open() first")
        if busy and self._busy > 0:
            self._busy -= 1
            raise Busy("PICO_DRIVER_FUNCTION: another driver call is in progress (simulated)")

    # ------------------------------------------------------------------ clock
    def _sim_from_wall(self) -> float:
        return self._sim0 + (time.monotonic() - self._wall0)

    def clock(self) -> float:
        """Simulated time in seconds (follows the wall clock while armed when paced).

        Paced, the clock is read without the lock: ``arm()`` holds it while it computes a
        capture (seconds when no pulse reaches the trigger level), and the buffer manager's
        statistics (other threads) must not wait for that."""
        if self.sim.realtime and self._opened:
            t = self._sim_from_wall()
            batch = self._batch
            if self._state == _ARMED and batch is not None:
                t = min(t, batch.t_ready)
            return max(self._t, t)
        with self._cond:
            if self.sim.count_host_time and self._t_read_wall is not None and self._state == _IDLE:
                # unpaced: host time since read()/stop() is already passing on the sim clock
                # (arm() adds it); show it now so a pause between read() and arm() is measurable
                return max(self._t, self._t_free) + max(0.0, time.monotonic() - self._t_read_wall)
            return self._t

    @property
    def applied(self) -> Applied | None:
        """The configuration in force (``None`` before ``configure()``)."""
        return self._applied

    def readout_time(self, applied: Applied | None = None) -> float:
        """Dead time (s) to transfer one (rapid-block) capture to the host."""
        a = applied or self._applied
        if self.sim.readout_overhead is not None:
            return float(self.sim.readout_overhead)
        if a is None:
            return 0.0
        nch = len(a.enabled_channels)
        return 0.4e-3 + 0.13e-3 * nch + 2.0 * a.n_samples * nch * a.n_segments / 30e6

    # ------------------------------------------------------------------ open / close
    def open(self, serial: str | None = None) -> ScopeInfo:
        with self._cond:
            if self._unplugged:
                raise DeviceNotFound("PICO_NOT_FOUND: no simulated scope connected (unplugged)")
            if self._power_fault:
                raise DeviceNotFound(
                    "PICO_POWER_SUPPLY_NOT_CONNECTED: the scope needs its external power supply "
                    "(simulated fault)")
            if serial is not None and serial != self.serial:
                raise DeviceNotFound(f"PICO_NOT_FOUND: no scope with serial {serial!r} "
                                     f"(the simulated unit is {self.serial!r})")
            if not self._opened:
                self._opened = True
                self._replug_pending = False
                self._wall0 = time.monotonic()
                self._sim0 = self._t
                self._applied = None
                self._state = _IDLE
                self._batch = None
            return self.info()

    def info(self) -> ScopeInfo:
        return models.scope_info(self.family, self.variant, serial=self.serial, driver="sim",
                                 bits=self.bits)

    def close(self) -> None:
        with self._cond:
            self._opened = False
            self._state = _IDLE
            self._batch = None
            self._arm_id += 1
            self._cond.notify_all()

    def ping(self) -> bool:
        return self._opened and not self._unplugged

    # ------------------------------------------------------------------ configuration
    def set_resolution(self, bits: int) -> int:
        """Select the ADC resolution (FlexRes); re-applies the last configuration."""
        with self._cond:
            self._check()
            self.bits = models.validate_resolution(self.family, bits, variant=self.variant)
            if self._last_request is not None:
                self.configure(*self._last_request)
            return self.bits

    def configure(self, channels: Mapping[str, ChannelConfig], timebase: TimebaseConfig,
                  trigger: TriggerConfig, siggen: SigGenConfig | None = None) -> Applied:
        """Validate against the model tables and apply atomically; cancels an armed capture."""
        with self._cond:
            self._check()
            applied = self._validate(channels, timebase, trigger, siggen)
            self._cancel()
            self._generation += 1
            applied = replace(applied, config_generation=self._generation)
            self._applied = applied
            self._last_request = (channels, timebase, trigger, siggen)
            if siggen is not None and siggen != self._siggen_cfg:
                self._siggen_cfg = applied.siggen
                self._siggen = SigGen(applied.siggen, self._t, self._rng_siggen)
            self._prepare()
            return applied

    def configure_siggen(self, cfg: SigGenConfig | None) -> SigGenConfig:
        """Change only the signal generator (``None`` = off)."""
        with self._cond:
            self._check()
            cfg = cfg if cfg is not None else SigGenConfig(enabled=False)
            models.validate_siggen(self.family, cfg, variant=self.variant)
            self._siggen_cfg = cfg
            self._siggen = SigGen(cfg, self._t, self._rng_siggen)
            if self._applied is not None:
                self._cancel()
                self._generation += 1
                self._applied = replace(self._applied, siggen=cfg, config_generation=self._generation)
                self._prepare()
            return cfg

    def _validate(self, channels, timebase, trigger, siggen) -> Applied:
        fam, var = self.family, self.variant
        m = self.model
        out: dict[str, ChannelConfig] = {}
        for name in channels:
            models.validate_channel_name(fam, name, variant=var, field="channels")
        for name in m.channels:
            req = channels.get(name) or channels.get(name.lower())
            if req is None:
                out[name] = ChannelConfig(enabled=False)
                continue
            if not req.enabled:
                out[name] = req
                continue
            out[name] = resolve.channel(fam, name, req, variant=var)
        enabled = [c for c, v in out.items() if v.enabled]
        if not enabled:
            raise InvalidConfig("no channel is enabled", field="channels",
                                allowed=f"at least one of {', '.join(m.channels)}")
        tb = timebase
        # the rulebook (shared with the PicoScope backend and --check), then the simulator's own limits
        n = resolve.n_samples(tb.n_samples)
        nseg = resolve.n_segments(m, tb.n_segments)
        n_pre = resolve.pre_trigger_samples(m, n, tb.pretrigger_fraction)
        if n * nseg * len(enabled) > m.memory_samples:
            raise InvalidConfig(
                f"{n} samples x {nseg} segments x {len(enabled)} channels exceed the memory of the {fam}",
                field="timebase.samples",
                allowed=f"samples x segments x channels <= {m.memory_samples}")
        try:
            _, dt = models.quantise_interval(fam, tb.sample_interval_s, variant=var, bits=self.bits,
                                             n_channels=len(enabled))
        except InvalidConfig as e:
            raise InvalidConfig(str(e), field=f"timebase.{e.field}" if e.field != "channels" else "channels",
                                allowed=e.allowed) from None
        tr = trigger
        if tr.enabled:
            src = resolve.trigger_source(fam, tr.source, out, variant=var)
            try:
                Direction(tr.direction)
            except ValueError:
                raise InvalidConfig(f"trigger direction {tr.direction!r} unknown", field="trigger.direction",
                                    allowed=", ".join(d.value for d in Direction)) from None
            resolve.trigger_code(tr.threshold_v, out[src], models.max_adc(fam, self.bits, variant=var), name=src)
            if tr.delay_samples < 0 or tr.delay_samples > MAX_DELAY_FACTOR * n:
                raise InvalidConfig(f"trigger delay {tr.delay_samples} samples out of range",
                                    field="trigger.delay",
                                    allowed=f"0 .. {MAX_DELAY_FACTOR * n} samples (simulator limit)")
            if tr.auto_trigger_s is not None and tr.auto_trigger_s < 0:
                raise InvalidConfig("auto-trigger timeout must be >= 0", field="trigger.auto_timeout",
                                    allowed=">= 0 s (0 = wait forever)")
            tr = replace(tr, source=src, direction=Direction(tr.direction))
        sg = self._siggen_cfg if siggen is None else siggen
        models.validate_siggen(fam, sg, variant=var)
        return Applied(
            channels=out, sample_interval_s=dt, n_samples=n, n_pre=n_pre, n_segments=nseg,
            max_adc=models.max_adc(fam, self.bits, variant=var), resolution_bits=self.bits,
            trigger=tr, siggen=sg, config_generation=self._generation)

    def _prepare(self) -> None:
        """Precompute per-configuration arrays."""
        a = self._applied
        assert a is not None
        self._enabled = a.enabled_channels
        self._slot = np.full(len(CHANNEL_NAMES), -1, dtype=np.int64)
        for i, c in enumerate(self._enabled):
            self._slot[CHANNEL_NAMES.index(c)] = i
        cfgs = [a.channels[c] for c in self._enabled]
        self._range = np.array([c.range_v for c in cfgs])
        self._offset = np.array([c.offset_v for c in cfgs])
        self._ac = np.array([c.coupling is Coupling.AC for c in cfgs])
        rms2 = np.full(len(cfgs), float(self.sim.noise_rms) ** 2)
        for src in self._noise_sources:
            r = src.rms if src.rms is not None else abs(src.amplitude)
            for ch in src.channels:
                if ch in self._enabled:
                    rms2[self._enabled.index(ch)] += r * r
        self._rms = np.sqrt(rms2)
        self._sg_slots = [int(self._slot[c]) for c in sorted(self._siggen_channels) if self._slot[c] >= 0]
        self._step = 1 << (16 - a.resolution_bits)
        self._qmax = a.max_adc // self._step
        tr = a.trigger
        self._trig_on = bool(tr.enabled)
        self._auto = math.inf if (tr.auto_trigger_s is None or tr.auto_trigger_s == 0) else float(tr.auto_trigger_s)
        if self._trig_on:
            ch = CHANNEL_NAMES.index(tr.source)
            self._tch = ch
            self._tslot = int(self._slot[ch])
            rng_v = a.channels[tr.source].range_v
            self._level = resolve.trigger_code(tr.threshold_v, a.channels[tr.source], a.max_adc)
            self._hyst = self.model.trigger_hysteresis_lsb * self._step
            hyst_v = self._hyst * rng_v / a.max_adc
            self._hyst_v = hyst_v
            sigma = float(self._rms[self._tslot])
            # noise alone reaches the level with P < 1e-12 per sample beyond 7 sigma (+1/2 LSB rounding)
            band = 7.0 * sigma + 0.5 * rng_v / a.max_adc * self._step
            base = 0.0
            sg_on_trig = self._siggen.active and self._tslot in self._sg_slots
            lvl = tr.threshold_v
            scan = abs(lvl - base) <= band
            if sg_on_trig:
                lo, hi = self._siggen.extremes(ac=bool(self._ac[self._tslot]))
                base = 0.5 * (lo + hi)
                scan = scan or (lo - band <= lvl <= hi + band)
            d = tr.direction
            if (d is Direction.ABOVE and lvl <= base) or (d is Direction.BELOW and lvl >= base):
                scan = True
            self._base = base
            self._scan = scan
            self._sg_near = self._siggen_near_set(band) if (scan and sg_on_trig) else None
        else:
            self._scan = False
            self._sg_near = None
        self._set_splits()
        self._trig_streams = [s for s in self.streams if self._trig_on and not self._scan
                              and self._tch in s.channels and s.rate > 0]
        self._dur_max = max((s.shape.duration for s in self.streams), default=0.0)
        self._quiet_flag = self._quiet()
        vol = np.zeros((1, len(self._enabled), 1), dtype=np.float32)
        self._const = digitise(vol, self._offset, self._range, a.max_adc, a.resolution_bits)

    def _siggen_near_set(self, band: float):
        """Phase cells (of 4096 per period) where the generator output can reach the trigger
        level, so that scan mode can jump over the rest; None if not applicable (sweep, noise
        waveform, pulses on the trigger channel)."""
        cfg = self._siggen.cfg
        if (cfg.stop_frequency_hz is not None and cfg.dwell_time_s) or self._siggen.wave is WaveType.WHITE_NOISE:
            return None
        if any(self._tch in st.channels for st in self.streams) or cfg.frequency_hz <= 0:
            return None
        n = 4096
        ph = np.arange(n) / n
        t = self._siggen.t0 + ph / cfg.frequency_hz
        v = self._siggen(t, ac=bool(self._ac[self._tslot]))
        # cell k spans phases [k, k+1)/n: near if the level +- (band + hysteresis) lies between
        # its end values, widened by the largest change over a cell of the smooth parts
        v1 = np.roll(v, -1)
        lo, hi = np.minimum(v, v1), np.maximum(v, v1)
        d = np.abs(v1 - v)
        smooth = float(np.median(d)) * 4.0
        lvl = self._applied.trigger.threshold_v
        w = band + self._hyst_v + smooth
        near = (lo - w <= lvl) & (lvl <= hi + w)
        near |= np.roll(near, 1)  # and the cell before (the crossing can sit at a cell edge)
        if near.all():
            return None
        idx = np.flatnonzero(near)
        nxt = np.full(n, -1, dtype=np.int64)  # cells to the next near cell (cyclic), -1 if none
        if idx.size:
            ext = np.concatenate([idx, idx + n])
            pos = np.searchsorted(ext, np.arange(n))
            nxt = ext[pos] - np.arange(n)
        return {"n": n, "next": nxt, "v": v, "f": float(cfg.frequency_hz)}

    def _siggen_skip(self, t_a: float):
        """(seconds until the generator next nears the level or inf, armed state there)."""
        near = self._sg_near
        n, f = near["n"], near["f"]
        x = (t_a - self._siggen.t0) * f
        ph = (x - math.floor(x)) * n
        k = int(ph) % n
        d = int(near["next"][k])
        if d < 0:
            return math.inf, None
        if d == 0:
            return 0.0, None
        dt_skip = (k + d - ph) / n / f
        v_far = float(near["v"][(k + d - 1) % n])
        lvl, h = self._applied.trigger.threshold_v, self._hyst_v
        return dt_skip, np.array([[v_far < lvl - h, v_far > lvl + h]])

    def _set_splits(self) -> None:
        """Generate explicitly (on the timeline) only pulses that can fire the trigger.

        In event mode those are the pulses on the trigger channel big enough to reach the
        level; everything else is generated per sample window (a Poisson process thinned by
        an independent mark splits into independent Poisson processes). Geiger tubes (not
        Poisson: tube dead time) are always explicit.
        """
        event = self._trig_on and not self._scan
        tr = self._applied.trigger
        for st in self.streams:
            on = event and self._tch in st.channels
            if st.kind == "muon":
                st.set_split(on, self._t)
            elif st.kind == "sipm":
                n_lo = None
                if on:
                    a0 = float(st.src.amplitude)
                    probe = candidate_times(np.zeros(1), np.array([a0 * 1e3]), st.shape, tr.threshold_v,
                                            self._hyst_v, self._base, tr.direction)
                    if np.isfinite(probe[0]):
                        need = abs(tr.threshold_v - self._base)
                        g = float(st.src.gain_spread)
                        for k in range(1, 201):
                            if abs(a0) * (k + 5.0 * g * math.sqrt(k)) >= need:
                                n_lo = k
                                break
                st.set_split(n_lo, self._t)

    # ------------------------------------------------------------------ acquisition
    def _cancel(self) -> None:
        if self._state != _IDLE:
            self._state = _IDLE
            self._batch = None
            self._arm_id += 1
            self._cond.notify_all()

    def arm(self) -> None:
        """Start a (rapid) block capture; computes it on the simulated clock."""
        with self._cond:
            self._check()
            if self._applied is None:
                raise InvalidConfig("arm() before configure()", field="configure",
                                    allowed="call configure() first")
            t = max(self._t, self._t_free)
            if self.sim.count_host_time:
                if self.sim.realtime:
                    t = max(t, self._sim_from_wall())
                elif self._t_read_wall is not None:
                    t += max(0.0, time.monotonic() - self._t_read_wall)
            self._t_read_wall = None
            self._t = t
            idle = t - max(self.truth.t_consumed, self._t_skip)
            if idle > SKIP_IDLE_S and self.streams:
                # a long idle gap (host paused): nothing in it can be recorded; do not generate it
                to = t - max(self._dur_max, 1e-3) - 1e-3
                for st in self.streams:
                    st.skip_to(to)
                self.truth.skipped_time_s += to - max(self.truth.t_consumed, self._t_skip)
                self._t_skip = to
            self._batch = self._simulate(t)
            self._state = _ARMED
            self._arm_id += 1

    def wait(self, timeout_s: float) -> bool:
        """True when the capture is complete; False on timeout (still armed) or if stopped."""
        with self._cond:
            self._check()
            if self._state == _READY:
                return True
            if self._state != _ARMED or self._batch is None:
                return False
            timeout_s = max(0.0, float(timeout_s))
            if self._stall > 0:
                self._stall -= 1
                if self.sim.realtime:
                    self._cond.wait(timeout_s)
                    if self._unplugged:
                        raise DeviceDisconnected("PICO_NOT_RESPONDING: the simulated scope was unplugged")
                else:
                    self._t = min(self._t + timeout_s, max(self._t, self._batch.t_ready))
                return False
            b = self._batch
            if not self.sim.realtime:
                if b.t_ready <= self._t + timeout_s:
                    self._t = max(self._t, b.t_ready)
                    self._state = _READY
                    return True
                self._t += timeout_s
                return False
            my_id = self._arm_id
            deadline = time.monotonic() + timeout_s
            while True:
                if self._unplugged:
                    raise DeviceDisconnected("PICO_NOT_RESPONDING: the simulated scope was unplugged")
                if self._arm_id != my_id or self._state != _ARMED:
                    return self._state == _READY
                now = time.monotonic()
                wall_ready = self._wall0 + (b.t_ready - self._sim0)
                if now >= wall_ready:
                    self._t = max(self._t, b.t_ready)
                    self._state = _READY
                    return True
                rem = deadline - now
                if rem <= 0:
                    self._t = max(self._t, min(self._sim_from_wall(), b.t_ready))
                    return False
                self._cond.wait(min(rem, wall_ready - now))

    def stop(self) -> None:
        """Abort a capture in flight (its data are discarded)."""
        with self._cond:
            if self._state == _ARMED:
                if self.sim.realtime:
                    b = self._batch
                    self._t = max(self._t, min(self._sim_from_wall(), b.t_ready if b else math.inf))
                self._state = _IDLE
                self._batch = None
                self._arm_id += 1
                self._t_read_wall = time.monotonic()
                self._cond.notify_all()

    def read(self) -> Capture:
        """The completed capture; the clock moves on by the readout dead time."""
        with self._cond:
            self._check()
            if self._state != _READY or self._batch is None:
                raise ScopeError("no capture ready: call arm() and wait until it returns True")
            b = self._batch
            self._commit_truth(b)
            self._sequence += 1
            self._t = max(self._t, b.t_ready) + self.readout_time(b.applied)
            self._t_free = self._t
            self._state = _IDLE
            self._batch = None
            self._t_read_wall = time.monotonic()
            return Capture(
                channels=self._enabled if b.applied is self._applied else b.applied.enabled_channels, raw=b.raw, overflow=b.overflow,
                t_trigger=b.t_trigger, trigger_time_offset_s=b.offset, auto_triggered=b.auto,
                live_time_s=b.live, t_armed=b.t_armed, t_ready=b.t_ready, applied=b.applied,
                sequence=self._sequence)

    # ------------------------------------------------------------------ truth
    def _commit_truth(self, b: _Batch) -> None:
        tr = self.truth
        a, z = tr.t_consumed, b.t_ready
        if not math.isfinite(z):
            return
        for s in self.streams:
            n = s.count_primaries(a, z)
            if s.window_rate > 0:  # the windowed part exists only statistically between windows
                n += int(s.rng.poisson(s.window_rate * max(1, len(s.channels) if s.kind == "sipm" else 1)
                                       * (z - a)))
            n += s.n_primaries_extra  # Geiger tube losses, skipped idle time
            s.n_primaries_extra = 0
            tr.n_primaries_by_source[s.index] += n
            tr.n_primaries += n
        if self._trig_on and not self._scan:
            cands = self._last_cands
            cands = cands[np.searchsorted(cands, a):np.searchsorted(cands, z)]
            tr.n_candidates += cands.size
            tr.n_lost_dead += cands.size - b.n_live_cands
            tr.n_missed += b.n_live_cands - b.n_triggered
            if tr.keep:
                tr.candidate_times.append(cands)
        tr.n_triggers += b.n_triggered
        tr.n_auto += b.n_auto
        tr.n_free += b.n_free
        tr.n_segments += b.raw.shape[0]
        tr.n_captures += 1
        tr.live_time_s += b.live
        if tr.keep:
            tr.trigger_times.append(b.trig_exact)
            if b.peak is not None:
                tr.peak_code.append(b.peak)
            for s in self.streams:
                i0, i1 = s.window(a, z)
                rec = np.empty(i1 - i0, dtype=PULSE_DTYPE)
                rec["t"], rec["amp"], rec["ch"] = s.t[i0:i1], s.amp[i0:i1], s.ch[i0:i1]
                rec["aux"], rec["source"] = s.aux[i0:i1], s.index
                tr.pulses.append(rec)
        tr.t_consumed = z
        keep = z - self._dur_max - 1e-6
        for s in self.streams:
            s.trim(keep)

    # ------------------------------------------------------------------ simulation core
    def _candidates(self, a: float, z: float) -> np.ndarray:
        """Sorted analytic trigger-crossing times in [a, z) of all pulses on the trigger channel."""
        tr = self._applied.trigger
        out = []
        for s in self._trig_streams:
            s.ensure(z)
            i0, i1 = s.window(a - s.shape.duration, z)
            sel = s.ch[i0:i1] == self._tch
            t0 = s.t[i0:i1][sel]
            amp = s.amp[i0:i1][sel]
            ct = candidate_times(t0, amp, s.shape, tr.threshold_v, self._hyst_v, self._base, tr.direction)
            ct = ct[np.isfinite(ct) & (ct >= a) & (ct < z)]
            out.append(ct)
        if not out:
            return np.empty(0)
        c = np.concatenate(out)
        c.sort()
        return c

    def _geometry(self):
        a = self._applied
        dt = a.sample_interval_s
        d = int(a.trigger.delay_samples) if self._trig_on else 0
        p = max(a.n_pre - d, 0)  # pre-trigger samples to collect before the trigger is enabled
        post = (a.n_samples - a.n_pre + d) * dt  # trigger sample -> end of window
        return dt, d, p, post

    def _quiet_batch(self, t_arm: float) -> _Batch | None:
        """Fast path: no pulses, no noise, no generator -> constant codes; None if N/A."""
        a = self._applied
        nseg, n = a.n_segments, a.n_samples
        dt, d, p, post = self._geometry()
        rearm = float(self.sim.rearm_time)
        k = np.arange(nseg)
        if not self._trig_on:
            s = t_arm + k * (n * dt + rearm)
            t_trig = s + a.n_pre * dt
            live = n * dt * nseg
            t_end = float(s[-1] + n * dt)
            auto = np.zeros(nseg, bool)
        elif not self._scan:
            if not math.isfinite(self._auto):
                return None  # never triggers; the general path reports it
            wait = max(self._auto, p * dt)
            s = t_arm + k * (wait + post + rearm)
            t_trig = s + wait
            live = (wait - p * dt) * nseg
            t_end = float(t_trig[-1] + post)
            auto = np.ones(nseg, bool)
        else:
            return None
        raw1, q1 = self._const
        raw = np.empty((nseg, raw1.shape[1], n), dtype=np.int16)
        raw[...] = raw1
        ovf = np.abs(q1[0, :, 0]) > self._qmax
        n_auto = int(nseg) if self._trig_on else 0
        return _Batch(raw=raw, overflow=np.repeat(ovf[None, :], nseg, axis=0), t_trigger=t_trig,
                      offset=np.zeros(nseg), auto=auto, live=float(live), t_armed=t_arm, t_ready=t_end,
                      applied=a, trig_exact=t_trig, n_triggered=0, n_auto=n_auto,
                      n_free=0 if self._trig_on else int(nseg), n_live_cands=0,
                      peak=np.broadcast_to(np.abs(q1[0, :, 0]), (nseg, ovf.size)).copy()
                      if self.truth.keep else None)

    def _simulate(self, t_arm: float) -> _Batch:
        a = self._applied
        nseg = a.n_segments
        if self._quiet_flag:
            b = self._quiet_batch(t_arm)
            if b is not None:
                self._last_cands = np.empty(0)
                return b
        if not self._trig_on:
            segs = self._free_batch(t_arm, nseg)
        elif self._scan:
            segs = self._scan_batch(t_arm, nseg)
        else:
            segs = self._event_batch(t_arm, nseg)
        raw, q, t_trig, offset, auto, live, t_end, kind, n_live = segs
        if q is None:
            overflow = np.zeros(raw.shape[:2], bool)
            peak = None
        else:
            pk = np.abs(q).max(axis=2)
            overflow = np.broadcast_to(pk > self._qmax, raw.shape[:2]).copy()
            peak = np.broadcast_to(pk, raw.shape[:2]).copy() if self.truth.keep else None
        n_auto = int(np.sum(auto))
        return _Batch(
            raw=raw, overflow=overflow, t_trigger=t_trig, offset=offset, auto=auto,
            live=float(np.sum(live)), t_armed=t_arm, t_ready=t_end, applied=a,
            trig_exact=t_trig + offset if kind != "free" else t_trig,
            n_triggered=int(raw.shape[0] - n_auto) if kind != "free" else 0,
            n_auto=n_auto, n_free=int(raw.shape[0]) if kind == "free" else 0,
            n_live_cands=n_live, peak=peak)

    # -- rendering ---------------------------------------------------------------------------
    def _quiet(self) -> bool:
        return not self.streams and not np.any(self._rms > 0) and not (self._siggen.active and self._sg_slots)

    def _render(self, t0: np.ndarray, length: int, slots: list[int] | None = None,
                skip_noise_slot: int | None = None) -> np.ndarray:
        """Volts ``[S, C, length]`` of the enabled channels (or only ``slots``); sample 0 at t0."""
        dt = self._applied.sample_interval_s
        if slots is None:
            slots = list(range(len(self._enabled)))
        rms = np.array([0.0 if sl == skip_noise_slot else float(self._rms[sl]) for sl in slots])
        shape = (t0.size, len(slots), length)
        if rms.size and rms[0] > 0 and np.all(rms == rms[0]):  # noise straight into the buffer
            buf = self._rng_noise.standard_normal(shape, dtype=np.float32)
            buf *= np.float32(rms[0])
            rms = None
        else:
            buf = np.zeros(shape, dtype=np.float32)
        slot_map = np.full(len(CHANNEL_NAMES), -1, dtype=np.int64)
        for j, sl in enumerate(slots):
            slot_map[CHANNEL_NAMES.index(self._enabled[sl])] = j
        span = length * dt
        for s in self.streams:
            if s.rate > 0 or s.t.size:
                s.ensure(float(t0.max()) + span)
                add_pulses(buf, t0, dt, s, slot_map)
            if s.window_rate > 0:
                row, t, amp, ch = s.window_records(t0, span)
                add_pulse_rows(buf, t0, dt, row, t, amp, ch, s.shape, slot_map)
        if self._siggen.active:
            for j, sl in enumerate(slots):
                if sl in self._sg_slots:
                    tt = t0[:, None] + np.arange(length)[None, :] * dt
                    buf[:, j, :] += self._siggen(tt, ac=bool(self._ac[sl])).astype(np.float32)
        if rms is not None:
            add_noise(buf, rms, self._rng_noise)
        return buf

    def _digitise(self, volts: np.ndarray, slots: list[int] | None = None):
        a = self._applied
        sl = slice(None) if slots is None else slots
        return digitise(volts, self._offset[sl], self._range[sl], a.max_adc, a.resolution_bits)

    def _constant(self, nseg: int, length: int):
        a = self._applied
        vol = np.zeros((1, len(self._enabled), 1), dtype=np.float32)
        raw1, q1 = digitise(vol, self._offset, self._range, a.max_adc, a.resolution_bits)
        raw = np.empty((nseg, len(self._enabled), length), dtype=np.int16)
        raw[...] = raw1
        return raw, q1  # q1 [1, C, 1]: the same for every sample

    # -- free running --------------------------------------------------------------------------
    def _free_batch(self, t_arm: float, nseg: int):
        a = self._applied
        dt = a.sample_interval_s
        n = a.n_samples
        period = n * dt + self.sim.rearm_time
        s = t_arm + np.arange(nseg) * period
        if self._quiet():
            raw, q = self._constant(nseg, n)
        else:
            raw, q = self._digitise(self._render(s, n))
        t_trig = s + a.n_pre * dt
        live = np.full(nseg, n * dt)
        t_end = float(s[-1] + n * dt)
        return (raw, q, t_trig, np.zeros(nseg), np.zeros(nseg, bool), live, t_end, "free", 0)

    # -- event mode ----------------------------------------------------------------------------
    def _event_batch(self, t_arm: float, nseg: int):
        """Event mode: dead-time chain over analytic candidates, exact trigger on the codes.

        After rendering, the chain is validated with the actual trigger samples; a candidate
        that did not fire on the digitised data (noise, pile-up) is excluded and the chain is
        recomputed from there. Rows whose candidate is unchanged are not rendered again.
        """
        dt, d, p, post = self._geometry()
        rearm = float(self.sim.rearm_time)
        auto = self._auto
        a = self._applied
        n = a.n_samples
        pre_t = p * dt
        span = post + rearm
        total_rate = sum(st.rate * len(st.channels) for st in self._trig_streams)
        # without auto-trigger, a level no pulse reaches is searched for at most 1e6 source pulses
        # (or 60 s) ahead, then the capture never completes (as on the scope); more would cost
        # seconds of CPU and GBs under the simulator's lock (2e7 pulses: 2.6 GB, seen in the CA fuzz)
        cap = max(60.0, 1e6 / total_rate) if total_rate > 0 else 0.0
        t_c = min(self.truth.t_consumed, t_arm)
        horizon = t_arm + nseg * (span + pre_t) + (4.0 * nseg + 4.0) / max(total_rate, 1e-300)
        if math.isfinite(auto):
            horizon = min(horizon, t_arm + nseg * (span + pre_t + auto))
        if total_rate <= 0:
            horizon = t_arm
        cands = self._candidates(t_c, horizon) if total_rate > 0 else np.empty(0)
        excl = np.zeros(cands.size, dtype=bool)

        def extend(s_from: float, m: int):
            nonlocal horizon, cands, excl
            span_h = max(horizon - s_from, m * (span + pre_t), 1e-3)
            new_h = s_from + 2 * span_h + (auto if math.isfinite(auto) else 0.0)
            if not math.isfinite(auto) and new_h - t_arm > cap:
                return False
            horizon = new_h
            new = self._candidates(t_c, horizon)  # same prefix: indices stay valid
            excl = np.concatenate([excl, np.zeros(new.size - cands.size, dtype=bool)])
            cands = new
            return True

        def chain(s: float, m: int, sync: dict[int, int] | None):
            """Up to m segments from re-arm time s; stops early when a candidate of ``sync``
            (old cidx -> old position) is reached. Returns lists and the synced old position."""
            while True:
                res = self._chain(s, m, cands, excl, horizon, pre_t, span, auto, sync)
                if res is not None:
                    return res
                if not extend(s, m):
                    return None

        # positions 0..nseg-1
        first = chain(t_arm, nseg, None)
        if first is None:
            return self._never(t_arm, nseg, [])
        t_est, is_auto, cidx, _ = first
        rows = self._render_event(t_est, is_auto, t_arm, pre_t, span)
        k = 0
        s = t_arm
        while True:
            raw_ext, q_ext, c, fail, t_samp, offs = rows
            # ---- validate from position k with the actual re-arm times
            s_act = np.empty(nseg - k)
            s_act[0] = s
            s_act[1:] = t_samp[k:-1] + span
            en_act = s_act + pre_t
            bad = fail[k:].copy()
            if nseg - k > 1 and cands.size:
                fa = np.searchsorted(cands, en_act[1:], side="right")
                ne = np.concatenate([[0], np.cumsum(~excl)])  # non-excluded count before index
                nxt_idx = _next_valid(excl)
                fav = nxt_idx[np.minimum(fa, cands.size)]
                has = fav < cands.size
                nxt = np.where(has, cands[np.minimum(fav, cands.size - 1)], np.inf)
                ci = cidx[k + 1:]
                ok_auto = nxt - s_act[1:] > auto
                ok_trig = ((ci >= fa) & (ne[np.maximum(ci, 0)] - ne[np.minimum(fa, cands.size)] == 0)
                           & (nxt - s_act[1:] <= auto) & (t_samp[k + 1:] >= en_act[1:] - 1e-15))
                bad[1:] |= ~np.where(is_auto[k + 1:], ok_auto, ok_trig)
            elif nseg - k > 1:
                bad[1:] |= ~is_auto[k + 1:]
            if not bad.any():
                break
            j = k + int(np.argmax(bad))
            s = float(s_act[j - k])
            if fail[j]:
                excl[cidx[j]] = True  # did not fire on the digitised data
            old = {int(ci): pos for pos, ci in enumerate(cidx[j:], start=j)
                   if ci >= 0 and not fail[pos] and pos > j}
            res = chain(s, nseg - j, old)
            if res is None:
                return self._never(t_arm, nseg, [])
            nt, na, nc, q_old = res
            # new positions: the fresh part, then the old rows from q_old on, then an extension
            src = np.full(nseg, -1, dtype=np.int64)  # old row reused at each position
            src[:j] = np.arange(j)
            L = nt.size
            new_t = np.empty(nseg)
            new_a = np.zeros(nseg, dtype=bool)
            new_c = np.full(nseg, -1, dtype=np.int64)
            new_t[:j], new_a[:j], new_c[:j] = t_est[:j], is_auto[:j], cidx[:j]
            end = min(nseg, j + L)
            new_t[j:end], new_a[j:end], new_c[j:end] = nt[: end - j], na[: end - j], nc[: end - j]
            pos = end
            if q_old is not None and pos < nseg:
                take = min(nseg - pos, nseg - q_old)
                src[pos:pos + take] = np.arange(q_old, q_old + take)
                new_t[pos:pos + take] = t_est[q_old:q_old + take]
                new_a[pos:pos + take] = is_auto[q_old:q_old + take]
                new_c[pos:pos + take] = cidx[q_old:q_old + take]
                pos += take
            if pos < nseg:  # extend the chain after the last known segment
                last_s = new_t[pos - 1] + span
                ext = chain(last_s, nseg - pos, None)
                if ext is None:
                    return self._never(t_arm, nseg, [])
                new_t[pos:], new_a[pos:], new_c[pos:] = ext[0], ext[1], ext[2]
            need = np.flatnonzero(src < 0)
            # fresh rows need the actual re-arm/enable times: compute them from the neighbours
            part = self._render_event(new_t[need], new_a[need], None, pre_t, span,
                                      prev_t=np.where(need > 0, new_t[np.maximum(need - 1, 0)], np.nan),
                                      s_first=s if j in need else None, first_pos=need, j=j)
            rows = self._merge_rows(rows, part, src, need)
            t_est, is_auto, cidx = new_t, new_a, new_c
            k = j
        raw_ext, q_ext, c, fail, t_samp, offs = rows
        w0 = c + d - a.n_pre
        raw_w = _gather(raw_ext, w0, n)
        if self.truth.keep or np.any(np.abs(q_ext) > self._qmax):
            q_w = _gather(q_ext, w0, n)
        else:  # nothing clipped anywhere: no overflow
            q_w = np.zeros((1, raw_w.shape[1], 1), np.float32)
        s_act = np.concatenate([[t_arm], t_samp[:-1] + span])
        live = t_samp - (s_act + pre_t)
        # candidates that arrived while the trigger was enabled (the accepted one included)
        t_hi = np.where(is_auto, t_samp, np.maximum(t_samp, cands[np.maximum(cidx, 0)] if cands.size else t_samp))
        lo = np.searchsorted(cands, s_act + pre_t, side="right")
        hi = np.searchsorted(cands, t_hi, side="right")
        n_live = int(np.sum(np.maximum(hi - lo, 0)))
        self._last_cands = cands
        out = [(raw_w, q_w, t_samp, offs, is_auto.copy(), live, n_live)]
        return self._collect(out, float(t_samp[-1] + post), "event")

    def _render_event(self, t_est, is_auto, s0, pre_t, span, prev_t=None, s_first=None, first_pos=None,
                      j=None):
        """Render extended buffers centred on each trigger estimate and find the trigger sample.

        The enable time of a row is its re-arm time (previous trigger + span, or ``s0``/
        ``s_first`` for the first) plus the pre-trigger fill.
        """
        a = self._applied
        dt, d, p, post = self._geometry()
        n = a.n_samples
        r = t_est.size
        if prev_t is None:
            s_arr = np.concatenate([[s0], t_est[:-1] + span])
        else:
            s_arr = prev_t + span
            if s_first is not None:
                s_arr[first_pos == j] = s_first
        en_arr = s_arr + pre_t
        c0 = p + MARGIN
        big = c0 + MARGIN + max(n - a.n_pre + d, 1)
        u = np.where(is_auto, 0.0, self._rng_misc.random(r))
        bs = t_est - (c0 + u) * dt
        volts = self._render(bs, big)
        raw_ext, q_ext = self._digitise(volts)
        codes = raw_ext[:, self._tslot, :]
        lo_col = max(c0 - MARGIN, 1) - 1
        hi_col = c0 + MARGIN + 1
        en_idx = np.ceil((en_arr - bs) / dt - 1e-9)
        en_idx = np.where(np.isfinite(en_idx), en_idx, 0).astype(np.int64)
        start = np.maximum(np.maximum(en_idx, c0 - MARGIN), 1) - lo_col
        stop = np.full(r, hi_col - lo_col)
        c = np.full(r, c0, dtype=np.int64)
        trig_rows = np.flatnonzero(~is_auto)
        if trig_rows.size:
            sub = codes[trig_rows, lo_col:hi_col]
            f, _ = find_trigger(sub, self._level, self._hyst, a.trigger.direction,
                                np.minimum(start[trig_rows], stop[trig_rows]), stop[trig_rows])
            c[trig_rows] = np.where(f >= 0, f + lo_col, -1)
        fail = c < 0
        cc = np.where(fail, c0, c)
        t_samp = bs + cc * dt
        offs = np.where(is_auto, 0.0, time_offset(codes, cc, self._level, dt))
        return raw_ext, q_ext, cc, fail, t_samp, offs

    @staticmethod
    def _merge_rows(rows, part, src, need):
        out = []
        for old, new in zip(rows, part, strict=True):
            shape = (src.size,) + old.shape[1:]
            arr = np.empty(shape, dtype=old.dtype)
            keep = src >= 0
            arr[keep] = old[src[keep]]
            arr[need] = new
            out.append(arr)
        return tuple(out)

    def _chain(self, s0: float, m: int, cands: np.ndarray, excl: np.ndarray, horizon: float,
               pre_t: float, span: float, auto: float, sync: dict[int, int] | None):
        """Non-paralysable dead-time chain over sorted candidates (skipping excluded ones).

        Returns ``(t_est, is_auto, cidx, synced_old_position)``, or None when the horizon of
        the candidates is too short. With ``sync``, stops after the first segment whose
        candidate is in ``sync`` (the old chain continues identically from there).
        """
        t_est = []
        is_auto = []
        cidx = []
        nc = cands.size
        s = s0
        i = int(np.searchsorted(cands, s0 + pre_t, side="right"))
        for _ in range(m):
            en = s + pre_t
            if i < nc and cands[i] <= en:
                i = int(np.searchsorted(cands, en, side="right"))
            while i < nc and excl[i]:
                i += 1
            if i < nc and cands[i] - s <= auto:
                if sync is not None and i in sync:
                    return (np.asarray(t_est), np.asarray(is_auto, dtype=bool),
                            np.asarray(cidx, dtype=np.int64), sync[i])
                t = float(cands[i])
                cidx.append(i)
                is_auto.append(False)
                i += 1
            elif i < nc or s + auto <= horizon:
                t = max(s + auto, en)
                cidx.append(-1)
                is_auto.append(True)
            else:
                return None
            t_est.append(t)
            s = t + span
        return np.asarray(t_est), np.asarray(is_auto, dtype=bool), np.asarray(cidx, dtype=np.int64), None

    def _never(self, t_arm: float, nseg: int, out: list):
        a = self._applied
        raw = np.zeros((0, len(self._enabled), a.n_samples), np.int16)
        return (raw, None, np.empty(0), np.empty(0), np.zeros(0, bool), np.empty(0), math.inf, "event", 0)

    def _collect(self, out: list, t_end: float, kind: str):
        raw = np.concatenate([o[0] for o in out]) if len(out) > 1 else out[0][0]
        qs = [o[1] for o in out]
        if len(out) == 1:
            q = qs[0]
        elif all(x.shape[2] == 1 for x in qs):  # per-piece constants: keep them per segment
            q = np.concatenate([np.broadcast_to(x, (o[0].shape[0], x.shape[1], 1)) for x, o in zip(qs, out, strict=True)])
        else:
            q = np.concatenate([np.broadcast_to(x, (o[0].shape[0], x.shape[1], x.shape[2] if x.shape[2] > 1
                                                   else o[0].shape[2])) for x, o in zip(qs, out, strict=True)])
        def cat(i: int) -> np.ndarray:
            return np.concatenate([o[i] for o in out])

        return (np.ascontiguousarray(raw), q, cat(2), cat(3), cat(4), cat(5), float(t_end), kind,
                int(sum(o[6] for o in out)))

    # -- scan mode -----------------------------------------------------------------------------
    def _scan_batch(self, t_arm: float, nseg: int):
        dt, d, p, post = self._geometry()
        rearm = float(self.sim.rearm_time)
        out = []
        s = t_arm
        for _ in range(nseg):
            res = self._scan_segment(s, dt, d, p)
            if res is None:  # nothing fires the trigger and no auto-trigger: wait forever
                return self._never(t_arm, nseg, out)
            raw_w, q_w, t_samp, off, is_auto = res
            live = np.array([t_samp - (s + p * dt)])
            out.append((raw_w, q_w, np.array([t_samp]), np.array([off]), np.array([is_auto]), live,
                        0 if is_auto else 1))
            s = t_samp + post + rearm
        return self._collect(out, s - rearm, "scan")

    def _scan_segment(self, s: float, dt: float, d: int, p: int):
        a = self._applied
        n = a.n_samples
        ts = self._tslot
        g0 = s + self._rng_misc.random() * dt  # sample 0 of this segment's grid
        auto_idx = math.inf if not math.isfinite(self._auto) else max(
            int(math.ceil((s + self._auto - g0) / dt)), p)
        chunk = max(1024, 2 * n)
        kept: list[np.ndarray] = []  # trigger-channel volts, contiguous from kept_start
        kept_start = 0
        i_a = 0
        armed = np.zeros((1, 2), dtype=bool)
        found = -1
        is_auto = False
        limit = 50_000_000  # samples scanned before giving up (auto None and nothing fires)
        armed_next = None
        while found < 0:
            if self._sg_near is not None:  # jump over stretches where the generator is far off
                wait_s, arm_state = self._siggen_skip(g0 + i_a * dt)
                jump = int(wait_s / dt) - 2 if math.isfinite(wait_s) else (
                    int(auto_idx) - i_a if math.isfinite(auto_idx) else -1)
                if not math.isfinite(wait_s) and not math.isfinite(auto_idx):
                    return None  # the generator never reaches the level, no auto-trigger
                if jump > chunk:
                    i_a += jump
                    kept, kept_start = [], i_a
                    armed_next = arm_state
                    if math.isfinite(auto_idx) and i_a >= auto_idx:
                        found, is_auto = int(auto_idx), True
                        break
            v = self._render(np.array([g0 + i_a * dt]), chunk, slots=[ts])[:, 0, :]
            raw, _ = self._digitise(v[:, None, :], slots=[ts])
            codes = raw[:, 0, :]
            prev = kept[-1][:, -1:] if kept else None
            kept.append(v)
            if prev is not None:
                prev_raw, _ = self._digitise(prev[:, None, :], slots=[ts])
                codes = np.concatenate([prev_raw[:, 0, :], codes], axis=1)
                base = i_a - 1
            else:
                base = i_a
            st = max(max(p, 1, i_a) - base, 1)
            sp = codes.shape[1]
            if math.isfinite(auto_idx):
                sp = min(sp, int(auto_idx) - base + 1)
            if st < sp:
                a0 = armed_next if armed_next is not None else (armed if i_a > p else None)
                armed_next = None
                f, armed = find_trigger(codes, self._level, self._hyst, a.trigger.direction,
                                        np.array([st]), np.array([sp]), a0)
                if f[0] >= 0:
                    found = int(f[0]) + base
                    break
            if math.isfinite(auto_idx) and i_a + chunk > auto_idx:
                found = int(auto_idx)
                is_auto = True
                break
            i_a += chunk
            chunk = min(chunk * 2, 1 << 20)
            # keep only what a window could still need
            need_from = i_a - (a.n_pre + 2)
            while len(kept) > 1 and kept_start + kept[0].shape[1] <= need_from:
                kept_start += kept[0].shape[1]
                kept.pop(0)
            if i_a > limit and not math.isfinite(auto_idx):
                return None
        w0 = found + d - a.n_pre
        w1 = w0 + n
        have_end = kept_start + sum(x.shape[1] for x in kept)
        if w1 > have_end:
            extra = self._render(np.array([g0 + have_end * dt]), w1 - have_end, slots=[ts])[:, 0, :]
            kept.append(extra)
        trig_v = np.concatenate(kept, axis=1) if kept else np.zeros((1, 0), np.float32)
        seg_t0 = g0 + w0 * dt
        vol = self._render(np.array([seg_t0]), n, skip_noise_slot=ts)
        lo = w0 - kept_start
        if lo >= 0:
            vol[0, ts, :] = trig_v[0, lo:lo + n]
        else:  # the window starts before the kept history (jump, auto-trigger): fresh samples
            nf = min(-lo, n)
            fresh = self._render(np.array([seg_t0]), nf, slots=[ts])[0, 0]
            vol[0, ts, :] = np.concatenate([fresh, trig_v[0, : n - nf]])
        raw_w, q_w = self._digitise(vol)
        t_samp = g0 + found * dt
        if is_auto:
            off = 0.0
        else:
            idx = a.n_pre - d
            if 1 <= idx < n:
                off = float(time_offset(raw_w[:, ts, :], np.array([idx]), self._level, dt)[0])
            else:
                off = 0.0
        return raw_w, q_w, t_samp, off, is_auto


__all__ = ["PULSE_DTYPE", "SimScope", "SimTruth"]
