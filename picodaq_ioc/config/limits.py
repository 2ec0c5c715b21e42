"""Checks of a validated :class:`Config` against the scope model tables (impossible values).

pydantic checks types and generic bounds; this module checks what depends on the model
family (``picodaq_ioc.scope.models``): channels of the family, input ranges (snapped up to
the next hardware range, error above the largest), couplings, analogue-offset limits for the
snapped range, resolution, timebase with the number of enabled channels, pre-trigger and
rapid-block support, memory, trigger source/level, and the signal generator's limits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..scope import models
from ..scope.errors import InvalidConfig
from .convert import record_samples
from .errors import _MISSING, ConfigError, _loc_to_key, _rescale_allowed
from .schema import Config


class _Checker:
    def __init__(self, cfg: Config, path: str | None, keymap: Mapping[tuple, Any] | None) -> None:
        self.cfg = cfg
        self.path = path
        self.keymap = keymap or {}
        self.notices: list[str] = []

    def fail(self, loc: tuple, problem: str, value: Any = _MISSING, allowed: str | None = None) -> None:
        key = _loc_to_key(loc)
        path = self.path
        lk = None
        for n in range(len(loc), 0, -1):
            lk = self.keymap.get(tuple(loc[:n]))
            if lk is not None:
                break
        if lk is not None:
            key = lk.name
            path = lk.file or path
            if lk.value is not _MISSING and getattr(lk, "value", _MISSING) is not None and value is not _MISSING:
                value = lk.value
            if lk.scale != 1.0 and allowed:
                allowed = _rescale_allowed(allowed, lk.scale, lk.unit)
            if getattr(lk, "note", ""):
                problem = f"{problem} ({lk.note})"
        raise ConfigError(problem, path=path, key=key, value=value, allowed=allowed)

    def run(self) -> None:
        cfg = self.cfg
        dev = cfg.device
        fam, var = dev.model, dev.variant
        try:
            m = models.get_model(fam, var)
        except InvalidConfig as exc:
            self.fail(("device", "model"), str(exc), fam, exc.allowed)
        bits = dev.resolution_bits
        if bits is not None:
            try:
                models.validate_resolution(fam, bits, variant=var)
            except InvalidConfig as exc:
                self.fail(("device", "resolution_bits"), f"not available on the {m.family}", bits, exc.allowed)
        bits = bits if bits is not None else m.default_bits

        # channels ---------------------------------------------------------------------------
        snapped: dict[str, float] = {}
        for ch, sec in cfg.channels.items():
            if ch not in m.channels:
                self.fail(("channels", ch), f"channel {ch} does not exist on the {m.family}"
                          + (f" ({var})" if var else ""), ch, ", ".join(m.channels))
            try:
                r = models.snap_range(fam, sec.range, variant=var)
            except InvalidConfig as exc:
                self.fail(("channels", ch, "range"), f"exceeds the largest input range of the {m.family}",
                          sec.range, exc.allowed)
            snapped[ch] = r
            try:
                models.validate_coupling(fam, sec.coupling, r, variant=var)
            except InvalidConfig as exc:
                loc = ("channels", ch, "range") if exc.field == "range" else ("channels", ch, "coupling")
                val = sec.range if exc.field == "range" else sec.coupling.value
                self.fail(loc, str(exc), val, exc.allowed)
            try:
                models.validate_offset(fam, r, sec.offset, variant=var)
            except InvalidConfig as exc:
                self.fail(("channels", ch, "offset"), f"analogue offset beyond the limit for the ±{r:g} V range",
                          sec.offset, exc.allowed)
        enabled = [c for c, s in cfg.channels.items() if s.enabled]
        if not enabled:
            self.fail(("channels",), "no channel is enabled", allowed="at least one channel with enabled: true")

        # timebase ---------------------------------------------------------------------------
        tb = cfg.timebase
        try:
            models.quantise_interval(fam, tb.sample_interval, variant=var, bits=bits, n_channels=len(enabled))
        except InvalidConfig as exc:
            self.fail(("channels",), str(exc), enabled, exc.allowed)
        n_samples = record_samples(cfg)
        if tb.pretrigger > 0 and not m.supports_pretrigger:
            self.fail(("timebase", "pretrigger"), f"the {m.family} has no pre-trigger sampling",
                      tb.pretrigger, "0")
        if tb.segments > 1 and not m.supports_rapid_block:
            self.fail(("timebase", "segments"), f"the {m.family} has no rapid-block mode", tb.segments, "1")
        if tb.segments > m.max_segments:
            self.fail(("timebase", "segments"), f"more segments than the {m.family} supports", tb.segments,
                      f"1 .. {m.max_segments}")
        need = n_samples * len(enabled) * tb.segments
        if need > m.memory_samples:
            loc = ("timebase", "duration") if tb.duration is not None else ("timebase", "samples")
            val = tb.duration if tb.duration is not None else tb.samples
            self.fail(loc, f"{n_samples} samples x {len(enabled)} channel(s) x {tb.segments} segment(s) = "
                      f"{need} exceeds the {m.family} memory", val,
                      f"samples x enabled channels x segments <= {m.memory_samples}")

        # trigger ----------------------------------------------------------------------------
        tr = cfg.trigger
        if tr.enabled:
            if tr.source == "EXT":
                self.fail(("trigger", "source"), "the EXT trigger input is not supported", tr.source,
                          "an enabled channel: " + ", ".join(enabled))
            if tr.source not in enabled:
                self.fail(("trigger", "source"), f"trigger source {tr.source} is not an enabled channel",
                          tr.source, ", ".join(enabled))
            sec = cfg.channels[tr.source]
            r = snapped[tr.source]
            lo, hi = -r - sec.offset, r - sec.offset
            if not (lo - 1e-12 <= tr.level <= hi + 1e-12):
                self.fail(("trigger", "level"), f"outside the ±{r:g} V range of channel {tr.source}"
                          + (f" with offset {sec.offset:g} V" if sec.offset else ""),
                          tr.level, f"{lo:g} .. {hi:g} V")

        # signal generator -------------------------------------------------------------------
        from .convert import scope_settings

        _, _, _, sg = scope_settings(cfg)
        if sg.enabled:
            try:
                models.validate_siggen(fam, sg, variant=var)
            except InvalidConfig as exc:
                field = (exc.field or "siggen").split(".")
                loc = tuple(field) if field[0] == "siggen" else ("siggen", *field)
                sect = cfg.siggen
                val = getattr(sect, loc[1], _MISSING) if len(loc) > 1 else _MISSING
                if hasattr(val, "value"):
                    val = val.value
                self.fail(loc, str(exc), val, exc.allowed)

        # simulation -------------------------------------------------------------------------
        sim = cfg.simulation
        if sim.siggen_channel is not None and sim.siggen_channel not in m.channels:
            self.fail(("simulation", "siggen_channel"), f"channel does not exist on the {m.family}",
                      sim.siggen_channel, ", ".join(m.channels))
        if cfg.device.backend == "sim" and not sim.sources:
            self.notices.append(
                f"simulation: no sources, so the simulated scope makes only noise ({sim.noise_rms * 1e3:g} mV RMS)"
                + (" and the generator loopback" if sim.siggen_channel else "")
                + "; a trigger fires only on noise or by auto-trigger. Add sources under 'simulation:' "
                "(examples: configs/kamiokanne_real.yaml, configs/cosmo_coincidence.yaml, configs/sipm.yaml, "
                "configs/geiger.yaml)")
        for i, src in enumerate(sim.sources):
            for j, ch in enumerate(src.channels):
                if ch not in m.channels:
                    self.fail(("simulation", "sources", i, "channels", j),
                              f"channel does not exist on the {m.family}", ch, ", ".join(m.channels))
            for name in ("amplitude", "rms"):
                v = getattr(src, name)
                if v is not None and name in src.model_fields_set and not math.isfinite(v):
                    self.fail(("simulation", "sources", i, name), "not finite", v, "a finite number")
            idle = [c for c in src.channels if c not in enabled]
            if idle:
                self.notices.append(f"simulation.sources[{i}] ({src.kind}) feeds disabled channel(s) "
                                    + ", ".join(idle))
            if src.kind == "siggen" and not sg.enabled:
                self.notices.append(f"simulation.sources[{i}] loops back the signal generator, which is off")


def check_against_model(cfg: Config, path: str | None, keymap: Mapping[tuple, Any] | None = None) -> list[str]:
    """Raise :class:`~picodaq_ioc.config.loader.ConfigError` for values the model cannot take.

    Returns
    -------
    list[str]
        Notices (harmless oddities such as a source on a disabled channel).
    """
    c = _Checker(cfg, path, keymap)
    c.run()
    return c.notices
