"""``PicoScopeBackend``: the hardware backend on pico-python, with our fixes.

Threading: one single-thread executor owns the pico-python object and its handle;
every driver call runs there (the C drivers are blocking and not re-entrant).  The
public methods submit to it and wait.  ``wait()`` polls ``IsReady`` from the
caller's thread, one submitted call per poll, sleeping on an ``Event`` between
polls, so ``stop()`` from another thread both interrupts the wait and reaches the
driver thread between two polls.

What comes from pico-python: loading the library, ``OpenUnit`` (incl. its
power-source handling), ``GetUnitInfo``, ``SetChannel`` (range enum lookup),
``MemorySegments``/``SetNoOfCaptures``, ``GetTimebase2``, ``SetSimpleTrigger`` (low
level, with *our* threshold code), ``RunBlock``, block ``GetValues``, siggen and
resolution.  What is ours (see :mod:`.calls`): true max ADC, timebase index from the
shared model tables, rapid-block reads for every family, signed trigger time
offsets, ``IsReady`` polling with a deadline, error mapping (:mod:`.status`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np

from .. import models, resolve
from ..errors import DeviceDisconnected, InvalidConfig, ScopeError
from ..types import (
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
from . import calls
from .drivers import PS2000_TRIGGER_NONE, DriverSpec, channels_of_variant, get_driver
from .loader import construct
from .status import CODE_FIELDS, map_error

T = TypeVar("T")

_AUTO_MS_MAX = 32767  # the auto-trigger time is an int16 number of ms in every simple-trigger API


class PicoScopeBackend:
    """ScopeBackend for PicoScope 2000/2000A/3000A/4000/4000A/5000A/6000 units via pico-python.

    Parameters
    ----------
    model : model family (``"2000"``, ``"2000a"``, ``"3000a"``, ``"4000"``, ``"4000a"``,
        ``"5000a"``, ``"6000"``), the driver to use.
    serial : open this unit (``None``: the first one found).
    variant : model number used for the tables until the unit reports its own.
    resolution_bits : ADC resolution on FlexRes models (``None``: the model default).
    poll_interval_s : pause between two ``IsReady`` polls in ``wait()``.
    """

    def __init__(self, model: str = "2000a", serial: str | None = None, variant: str | None = None,
                 resolution_bits: int | None = None, poll_interval_s: float = 1e-3):
        self._spec: DriverSpec = get_driver(model)
        models.get_family(self._spec.family)
        self._serial_req = serial
        self._variant_cfg = variant
        self._bits_req = resolution_bits
        self.poll_interval_s = float(poll_interval_s)
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._ps: Any = None
        self._info: ScopeInfo | None = None
        self._variant: str | None = variant
        self._bits: int | None = None
        self._max_adc: int = 0
        self._generation = 0
        self._last: tuple | None = None
        self._siggen = SigGenConfig()
        self._applied: Applied | None = None
        self._tb_index = 0
        self._armed = False
        self._ready = False
        self._t_armed = 0.0
        self._t_ready = 0.0
        self._indisposed_s = 0.0
        self._sequence = 0
        self._stop_evt = threading.Event()

    # ------------------------------------------------------------------ plumbing
    def _pool(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1,
                                                    thread_name_prefix=f"picoscope-{self._spec.lib}")
            return self._executor

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return self._pool().submit(fn, *args).result()

    @contextlib.contextmanager
    def _guard(self, action: str, asked: str | None = None, field: str | None = None,
               config: bool = False, prefix: str | None = None) -> Iterator[None]:
        """Map anything raised inside to our exceptions.  ``field`` is blamed for an
        InvalidConfig; with ``prefix`` a driver code naming a channel setting
        (range/offset/coupling) selects ``<prefix>.<setting>`` instead."""
        try:
            yield
        except ScopeError:
            raise
        except Exception as exc:
            err = map_error(exc, driver=self._spec.lib, action=action, asked=asked, field=field,
                            config=config)
            if isinstance(err, InvalidConfig):
                sub = CODE_FIELDS.get(err.driver_code or "")
                blame = f"{prefix}.{sub}" if prefix and sub in ("range", "offset", "coupling") else field
                if blame and err.field != blame:
                    err = InvalidConfig(str(err), field=blame, allowed=err.allowed, driver_code=err.driver_code)
            raise err from None

    def _require_open(self) -> Any:
        if self._ps is None:
            raise DeviceDisconnected(f"the PicoScope ({self._spec.lib}) is not open")
        return self._ps

    @staticmethod
    def clock() -> float:
        """Backend clock: host ``time.monotonic()`` seconds."""
        return time.monotonic()

    # ------------------------------------------------------------------ properties
    @property
    def spec(self) -> DriverSpec:
        return self._spec

    @property
    def info(self) -> ScopeInfo | None:
        return self._info

    @property
    def applied(self) -> Applied | None:
        return self._applied

    @property
    def config_generation(self) -> int:
        return self._generation

    @property
    def max_adc(self) -> int:
        """True full-scale code of the open unit at its current resolution."""
        return self._max_adc

    @property
    def is_open(self) -> bool:
        return self._ps is not None

    # ------------------------------------------------------------------ open / close
    def open(self, serial: str | None = None) -> ScopeInfo:
        """Open the unit (``serial`` or the configured one or the first found).

        Safe to call again after ``DeviceDisconnected``: the stale handle is dropped first.

        Raises
        ------
        DriverNotAvailable, DeviceNotFound, InvalidConfig (resolution)
        """
        self._stop_evt.clear()
        return self._call(self._do_open, serial if serial is not None else self._serial_req)

    def _do_open(self, serial: str | None) -> ScopeInfo:
        if self._ps is not None:
            self._do_close_quiet()
        spec = self._spec
        ps = construct(spec, serial)
        self._ps = ps
        try:
            with self._guard("GetUnitInfo"):
                variant = ps.getUnitInfo("VariantInfo") or self._variant_cfg
                unit_serial = ps.getUnitInfo("BatchAndSerial") or (serial or "")
            self._variant = variant
            model = models.get_model(spec.family, variant)
            bits = self._bits_req if self._bits_req is not None else model.default_bits
            try:
                bits = models.validate_resolution(spec.family, bits, variant=variant)
            except InvalidConfig as exc:
                raise resolve.refield(exc, "device") from None
            self._apply_resolution(bits)
            info = models.scope_info(spec.family, variant, serial=unit_serial, driver=spec.lib, bits=bits)
            self._info = replace(info, channels=channels_of_variant(variant, info.channels))
        except BaseException:
            self._do_close_quiet()
            raise
        self._armed = self._ready = False
        return self._info

    def _apply_resolution(self, bits: int) -> None:
        ps, spec = self._ps, self._spec
        model = models.get_model(spec.family, self._variant)
        if len(model.resolutions_bits) > 1 and hasattr(ps, "setResolution"):
            with self._guard("SetDeviceResolution", f"{bits} bit", field="device.resolution_bits", config=True):
                ps.setResolution(str(bits))
        self._bits = bits
        with self._guard("MaximumValue"):
            true_max = calls.max_value(ps, spec)
        if true_max is None:  # header constants (PS4262_MAX_VALUE 32767, PS6000_MAX_VALUE 32512)
            if (self._variant or "").startswith("4262"):
                true_max = 32767
            elif spec.header_max_value is not None:
                true_max = spec.header_max_value
            else:
                true_max = models.max_adc(spec.family, bits, variant=self._variant)
        self._max_adc = int(true_max)

    def set_resolution(self, bits: int) -> int:
        """Change the ADC resolution (FlexRes models); re-applies the last configuration."""
        try:
            b = models.validate_resolution(self._spec.family, bits, variant=self._variant)
        except InvalidConfig as exc:
            raise resolve.refield(exc, "device") from None
        self._bits_req = b
        if self._ps is not None:
            self._call(self._do_set_resolution, b)
        return b

    def _do_set_resolution(self, bits: int) -> None:
        self._do_stop()
        self._apply_resolution(bits)
        if self._last is not None:
            self._do_configure(*self._last)

    def close(self) -> None:
        """Close the unit and the driver thread; idempotent, never raises."""
        self._stop_evt.set()
        with self._executor_lock:
            ex, self._executor = self._executor, None
        if ex is None:
            return
        try:
            ex.submit(self._do_close_quiet).result()
        except Exception:
            pass
        ex.shutdown(wait=True)

    def _do_close_quiet(self) -> None:
        ps, self._ps = self._ps, None
        self._armed = self._ready = False
        if ps is None:
            return
        try:
            ps.stop()
        except Exception:
            pass
        try:
            ps.close()
        except Exception:
            pass
        ps.handle = None

    def reopen(self) -> Applied | None:
        """Re-open after a disconnect and re-apply the full last configuration.

        Resolution, channels, timebase/segments, trigger and signal generator are all set
        again (the unit powers up in its defaults); ``config_generation`` is bumped.
        Returns the new ``Applied`` (``None`` if ``configure()`` was never called).
        """
        self._stop_evt.clear()
        return self._call(self._do_reopen)

    def _do_reopen(self) -> Applied | None:
        self._do_close_quiet()
        self._do_open(self._serial_req if self._info is None else (self._serial_req or self._info.serial))
        if self._last is None:
            return None
        return self._do_configure(*self._last)

    def ping(self) -> bool:
        """Cheap liveness check (``PingUnit`` or ``GetUnitInfo``); False if not open or gone."""
        if self._ps is None:
            return False
        try:
            return self._call(lambda: self._ps is not None and calls.ping(self._ps, self._spec))
        except Exception:
            return False

    # ------------------------------------------------------------------ configure
    def configure(self, channels: Mapping[str, ChannelConfig], timebase: TimebaseConfig,
                  trigger: TriggerConfig, siggen: SigGenConfig | None = None) -> Applied:
        """Validate and apply a full configuration atomically (stops a capture in flight).

        ``siggen=None`` keeps the signal generator as it is.  Raises ``InvalidConfig``
        naming the config field (``channels.A.range``, ``timebase.pretrigger``,
        ``trigger.level`` ...) before any driver call when the tables tell, or with the
        driver code when the unit refuses.
        """
        return self._call(self._do_configure, channels, timebase, trigger, siggen)

    def _plan(self, channels: Mapping[str, ChannelConfig], timebase: TimebaseConfig,
              trigger: TriggerConfig, siggen: SigGenConfig) -> dict[str, Any]:
        """Pure validation against the model tables; returns what to send to the driver."""
        info, spec, fam, var = self._info, self._spec, self._spec.family, self._variant
        assert info is not None
        for ch in channels:
            if ch not in info.channels:
                raise InvalidConfig(f"channel {ch!r} does not exist on this {info.model}",
                                    field=f"channels.{ch}", allowed=", ".join(info.channels))
        chans: dict[str, ChannelConfig] = {}
        for ch in info.channels:
            cfg = channels.get(ch, ChannelConfig(enabled=False))
            if cfg.enabled:
                chans[ch] = resolve.channel(fam, ch, cfg, variant=var)
                continue
            # a disabled channel: the driver still gets a valid range and coupling (driver-specific)
            try:
                rng = models.snap_range(fam, cfg.range_v, variant=var)
            except InvalidConfig:
                rng = info.ranges_v[-1]
            coupling = cfg.coupling if cfg.coupling in info.couplings else Coupling.DC
            chans[ch] = ChannelConfig(enabled=False, coupling=coupling, range_v=rng, offset_v=0.0)
        enabled = [c for c, cfg in chans.items() if cfg.enabled]
        if not enabled:
            raise InvalidConfig("no channel is enabled", field="channels",
                                allowed=f"enable at least one of {', '.join(info.channels)}")

        # the rulebook (shared with the simulator and --check)
        m = models.get_model(fam, var)
        n = resolve.n_samples(timebase.n_samples)
        n_seg = resolve.n_segments(m, timebase.n_segments)
        n_pre = resolve.pre_trigger_samples(m, n, timebase.pretrigger_fraction)
        try:
            tb_index, dt_est = models.quantise_interval(fam, timebase.sample_interval_s, variant=var,
                                                        bits=self._bits, n_channels=len(enabled))
        except InvalidConfig as exc:
            raise resolve.refield(exc, "timebase") if exc.field == "sample_interval" else exc from None

        # trigger
        trig_args: tuple[int, ...]
        thr_adc = 0
        if trigger.enabled:
            src = resolve.trigger_source(fam, trigger.source, chans, variant=var)
            direction = Direction(trigger.direction).value
            if direction not in spec.threshold_directions:
                raise InvalidConfig(f"trigger direction {direction} is not supported by the {spec.lib} driver",
                                    field="trigger.direction", allowed=", ".join(spec.threshold_directions))
            thr_adc = resolve.trigger_code(trigger.threshold_v, chans[src], self._max_adc, name=src)
            auto_s = trigger.auto_trigger_s or 0.0
            auto_ms = int(round(auto_s * 1e3))
            if auto_s < 0 or auto_ms > _AUTO_MS_MAX or (auto_s > 0 and auto_ms == 0):
                raise InvalidConfig(f"auto-trigger time {auto_s:g} s", field="trigger.auto_timeout",
                                    allowed="0 (wait forever) or 0.001 .. 32.767 s")
            delay = int(trigger.delay_samples)
            if delay < 0 or delay > 2**32 - 1 or (spec.old_api and delay != 0):
                raise InvalidConfig(f"trigger delay {delay} samples", field="trigger.delay",
                                    allowed="0" if spec.old_api else "0 .. 4294967295 samples")
            dir_num = self._ps.THRESHOLD_TYPE[direction]
            trig_args = (1, self._ps.CHANNELS[src], thr_adc, dir_num, delay, auto_ms)
        elif spec.old_api:
            trig_args = (0, PS2000_TRIGGER_NONE, 0, 0, 0, 0)
        else:
            trig_args = (0, self._ps.CHANNELS[info.channels[0]], 0, self._ps.THRESHOLD_TYPE["Rising"], 0, 0)

        sg = models.validate_siggen(fam, siggen, variant=var)
        if sg.enabled and WaveType(sg.waveform).value not in getattr(self._ps, "WAVE_TYPES", {}):
            raise InvalidConfig(f"waveform {WaveType(sg.waveform).value} is not supported by the {spec.lib} "
                                "driver", field="siggen.waveform",
                                allowed=", ".join(getattr(self._ps, "WAVE_TYPES", {})))
        return dict(chans=chans, enabled=enabled, n=n, n_seg=n_seg, n_pre=n_pre, tb_index=tb_index,
                    dt_est=dt_est, trig_args=trig_args, siggen=sg)

    def _do_configure(self, channels: Mapping[str, ChannelConfig], timebase: TimebaseConfig,
                      trigger: TriggerConfig, siggen: SigGenConfig | None) -> Applied:
        ps = self._require_open()
        info = self._info
        assert info is not None
        sg_req = self._siggen if siggen is None else siggen
        plan = self._plan(channels, timebase, trigger, sg_req)
        self._do_stop()
        self._applied = None
        chans: dict[str, ChannelConfig] = plan["chans"]
        for ch, c in chans.items():
            asked = f"channel {ch}: {'on' if c.enabled else 'off'}, ±{c.range_v:g} V, {c.coupling.value}, " \
                    f"offset {c.offset_v:g} V"
            with self._guard("SetChannel", asked, field=f"channels.{ch}.range", config=True,
                             prefix=f"channels.{ch}"):
                ps.setChannel(ch, c.coupling.value, VRange=c.range_v, VOffset=c.offset_v,
                              enabled=c.enabled, BWLimited=0)
        n, n_seg = plan["n"], plan["n_seg"]
        if info.supports_rapid_block:
            with self._guard("MemorySegments", f"{n_seg} segments", field="timebase.segments", config=True):
                ps.memorySegments(n_seg)
                ps.setNoOfCaptures(n_seg)
        tb = plan["tb_index"]
        with self._guard("GetTimebase2", f"timebase {tb} (~{plan['dt_est']:g} s), {n} samples",
                         field="timebase.sample_interval", config=True):
            dt, max_samples = ps._lowLevelGetTimebase(tb, n, 0, 0)
        if n > max_samples:
            raise InvalidConfig(f"{n} samples per channel and segment do not fit the memory",
                                field="timebase.samples", allowed=f"<= {max_samples} with this configuration")
        ps.timebase, ps.noSamples, ps.maxSamples, ps.sampleInterval = tb, n, max_samples, dt
        ta = plan["trig_args"]
        with self._guard("SetSimpleTrigger", f"threshold {ta[2]} ADC counts, auto {ta[5]} ms",
                         field="trigger.level", config=True):
            ps._lowLevelSetSimpleTrigger(*ta)
        sg: SigGenConfig = plan["siggen"]
        if info.siggen is not None:
            self._apply_siggen(sg)
        self._siggen = sg
        self._tb_index = tb
        self._generation += 1
        self._last = (dict(channels), timebase, trigger, sg)
        self._applied = Applied(
            channels=chans, sample_interval_s=float(dt), n_samples=n, n_pre=plan["n_pre"], n_segments=n_seg,
            max_adc=self._max_adc, resolution_bits=int(self._bits or 8), trigger=trigger, siggen=sg,
            config_generation=self._generation)
        return self._applied

    def _apply_siggen(self, sg: SigGenConfig) -> None:
        ps = self._ps
        with self._guard("SetSigGenBuiltIn", f"{sg.waveform} {sg.frequency_hz:g} Hz {sg.pk_to_pk_v:g} Vpp",
                         field="siggen", config=True):
            if not sg.enabled:
                ps.setSigGenBuiltInSimple(offsetVoltage=0.0, pkToPk=0.0, waveType="DCVoltage",
                                          frequency=1000.0, shots=0, numSweeps=0)
                return
            sweep = sg.stop_frequency_hz is not None
            ps.setSigGenBuiltInSimple(
                offsetVoltage=sg.offset_v, pkToPk=sg.pk_to_pk_v, waveType=WaveType(sg.waveform).value,
                frequency=sg.frequency_hz, shots=0, triggerType="Rising", triggerSource="None",
                stopFrequency=sg.stop_frequency_hz if sweep else None,
                increment=abs(sg.stop_frequency_hz - sg.frequency_hz) / 100.0 if sweep else 10.0,
                dwellTime=sg.dwell_time_s if sweep else 1e-3,
                sweepType=sg.sweep.value if sweep else "Up", numSweeps=0)

    # ------------------------------------------------------------------ acquisition
    def arm(self) -> None:
        """Start a (rapid) block capture; returns at once."""
        self._stop_evt.clear()
        self._call(self._do_arm)

    def _do_arm(self) -> None:
        ps = self._require_open()
        a = self._applied
        if a is None:
            raise ScopeError("arm() before a successful configure()")
        self._ready = False
        self._t_armed = self.clock()
        with self._guard("RunBlock", f"{a.n_pre} + {a.n_samples - a.n_pre} samples, timebase {self._tb_index}"):
            self._indisposed_s = calls.run_block(ps, self._spec, a.n_pre, a.n_samples - a.n_pre, self._tb_index)
        self._armed = True

    def _poll(self) -> bool:
        ps = self._require_open()
        with self._guard("IsReady"):
            return calls.is_ready(ps, self._spec)

    def wait(self, timeout_s: float) -> bool:
        """Poll ``IsReady`` until ready (True) or ``timeout_s`` passed / ``stop()`` (False).

        Raises ``DeviceDisconnected`` when the unit stops answering.
        """
        if not self._armed:
            return self._ready
        deadline = time.monotonic() + max(0.0, float(timeout_s))
        while True:
            # stop(), close() or a configure() from another thread cancel the capture
            if self._stop_evt.is_set() or not self._armed:
                return False
            try:
                ready = self._call(self._poll)
            except ScopeError:
                if self._stop_evt.is_set():
                    return False
                raise
            if ready:
                self._t_ready = self.clock()
                self._armed = False
                self._ready = True
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._stop_evt.wait(min(self.poll_interval_s, remaining))

    def stop(self) -> None:
        """Abort a capture in flight (also ends a ``wait()`` in another thread)."""
        self._stop_evt.set()
        if self._ps is None:
            return
        self._call(self._do_stop)

    def _do_stop(self) -> None:
        ps = self._ps
        self._armed = self._ready = False
        if ps is None:
            return
        with self._guard("Stop"):
            ps.stop()

    def read(self) -> Capture:
        """Read the capture ``wait()`` reported ready: raw codes, overflow, times, flags."""
        return self._call(self._do_read)

    def _do_read(self) -> Capture:
        ps = self._require_open()
        a = self._applied
        if a is None or not self._ready:
            raise ScopeError("read() needs a capture: call arm() and wait until it returns True")
        spec = self._spec
        chans = a.enabled_channels
        chnums = [int(ps.CHANNELS[c]) for c in chans]
        raw = np.zeros((a.n_segments, len(chans), a.n_samples), dtype=np.int16)
        with self._guard("GetValues", f"{a.n_samples} samples x {a.n_segments} segments"):
            if a.n_segments == 1:
                masks = np.array([calls.read_block(ps, spec, chnums, raw[0])], dtype=np.int64)
            else:
                masks = calls.read_bulk(ps, spec, chnums, raw).astype(np.int64)
            offsets = calls.trigger_offsets(ps, spec, a.n_segments)
        self._ready = False
        overflow = ((masks[:, None] >> np.asarray(chnums, dtype=np.int64)[None, :]) & 1).astype(bool)
        total = max(0.0, self._t_ready - self._t_armed)
        overhead = self._indisposed_s + 0.5 * self.poll_interval_s
        self._sequence += 1
        return Capture(
            channels=chans, raw=raw, overflow=overflow,
            t_trigger=self._t_ready + np.nan_to_num(offsets, nan=0.0),
            trigger_time_offset_s=offsets,
            auto_triggered=self._auto_flags(raw, a, chans),
            live_time_s=max(0.0, total - overhead),
            t_armed=self._t_armed, t_ready=self._t_ready, applied=a, sequence=self._sequence)

    @staticmethod
    def _auto_flags(raw: np.ndarray, a: Applied, chans: tuple[str, ...]) -> np.ndarray:
        """Best effort: a capture counts as auto-triggered when no threshold crossing in the
        configured direction lies within 2 samples of the trigger point."""
        n_seg = raw.shape[0]
        t = a.trigger
        if not t.enabled:
            return np.ones(n_seg, dtype=bool)
        if not t.auto_trigger_s or t.source not in chans:
            return np.zeros(n_seg, dtype=bool)
        c = a.channels[t.source]
        thr = (t.threshold_v + c.offset_v) / c.range_v * a.max_adc
        k = max(0, a.n_pre - int(t.delay_samples))
        lo, hi = max(0, k - 2), min(a.n_samples, k + 3)
        w = raw[:, chans.index(t.source), lo:hi].astype(np.float64)
        prev, nxt = w[:, :-1], w[:, 1:]
        d = Direction(t.direction)
        rising = np.any((prev < thr) & (nxt >= thr), axis=1)
        falling = np.any((prev > thr) & (nxt <= thr), axis=1)
        crossed = {Direction.RISING: rising, Direction.FALLING: falling,
                   Direction.RISE_OR_FALL: rising | falling,
                   Direction.ABOVE: np.any(w >= thr, axis=1),
                   Direction.BELOW: np.any(w <= thr, axis=1)}[d]
        return ~crossed
