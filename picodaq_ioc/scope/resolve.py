"""The rulebook: what a PicoScope model applies for a request, written once.

Both backends (the simulator and the PicoScope driver backend) and the configuration check
(``picodaq-ioc --check``, ``python -m picodaq_ioc.config.check``) call these functions and
add only their driver-specific steps, so they cannot disagree about the device's answer.
Each function returns the applied value or raises :class:`InvalidConfig` naming the field
(as in the configuration file: ``timebase.pretrigger``, ``trigger.level`` ...) and what is
allowed. The model tables themselves are :mod:`picodaq_ioc.scope.models`.

Rules
-----
* Channels: a requested range snaps up to the next range of the model; coupling and analogue
  offset are checked against the model (and the snapped range).
* Record: at least 2 samples; rapid-block segments 1 .. the model's maximum (1 without rapid
  block); pre-trigger fraction 0 .. 1 inclusive (only 0 on models without pre-trigger), giving
  ``n_pre = min(round(n * fraction), n - 1)`` samples (at least one sample after the trigger).
* Trigger level: the ADC code ``round((level + offset) / range * max_adc)`` of the source
  channel; outside ``-max_adc .. max_adc`` it is refused. A level between two codes goes to
  the nearer one (never truncated).
"""

from __future__ import annotations

from collections.abc import Mapping

from . import models
from .errors import InvalidConfig
from .types import ChannelConfig


def refield(exc: InvalidConfig, prefix: str) -> InvalidConfig:
    """The same error with its field put under ``prefix`` (``range`` -> ``channels.A.range``)."""
    field = exc.field or ""
    if not field.startswith(prefix):
        field = f"{prefix}.{field}" if field else prefix
    return InvalidConfig(str(exc), field=field, allowed=exc.allowed, driver_code=exc.driver_code)


def channel(family: str, name: str, req: ChannelConfig, *, variant: str | None = None) -> ChannelConfig:
    """The applied settings of enabled channel ``name`` (snapped range, checked coupling/offset)."""
    try:
        rng = models.snap_range(family, req.range_v, variant=variant, channel=name)
        cpl = models.validate_coupling(family, req.coupling, rng, variant=variant, channel=name)
        off = models.validate_offset(family, rng, req.offset_v, variant=variant, channel=name)
    except InvalidConfig as exc:
        raise refield(exc, f"channels.{name}") from None
    return ChannelConfig(enabled=True, coupling=cpl, range_v=rng, offset_v=off)


def n_samples(n: int) -> int:
    n = int(n)
    if n < 2:
        raise InvalidConfig(f"{n} samples per capture", field="timebase.samples", allowed=">= 2")
    return n


def n_segments(model: models.FamilyModel, n_seg: int) -> int:
    n_seg = int(n_seg)
    if n_seg < 1 or (n_seg > 1 and not model.supports_rapid_block) or n_seg > model.max_segments:
        allowed = f"1 .. {model.max_segments}" if model.supports_rapid_block else "1 (no rapid block on this model)"
        raise InvalidConfig(f"{n_seg} rapid-block segments", field="timebase.segments", allowed=allowed)
    return n_seg


def pre_trigger_samples(model: models.FamilyModel, n: int, fraction: float) -> int:
    """Samples before the trigger for a record of ``n`` samples and a pre-trigger ``fraction``."""
    f = float(fraction)
    if not 0.0 <= f <= 1.0:
        raise InvalidConfig(f"pre-trigger fraction {f:g}", field="timebase.pretrigger", allowed="0 .. 1")
    if f > 0 and not model.supports_pretrigger:
        raise InvalidConfig(f"pre-trigger fraction {f:g}: the {model.family} records only after the trigger",
                            field="timebase.pretrigger", allowed="0 (no pre-trigger on this model)")
    return min(int(round(int(n) * f)), int(n) - 1)


def trigger_source(family: str, source: str, channels: Mapping[str, ChannelConfig], *,
                   variant: str | None = None) -> str:
    """The trigger source, which must be an enabled channel."""
    enabled = [c for c, cc in channels.items() if cc.enabled]
    try:
        src = models.validate_trigger_source(family, source, variant=variant)
    except InvalidConfig as exc:
        raise InvalidConfig(str(exc), field="trigger.source", allowed=", ".join(enabled)) from None
    if src not in enabled:
        raise InvalidConfig(f"trigger source {src} is not an enabled channel", field="trigger.source",
                            allowed=", ".join(enabled))
    return src


def trigger_code(level_v: float, source: ChannelConfig, max_adc: int, *, name: str = "") -> int:
    """ADC code of a trigger level on the (applied) ``source`` channel: the nearer code."""
    code = int(round((float(level_v) + source.offset_v) / source.range_v * int(max_adc)))
    if abs(code) > int(max_adc):
        lo, hi = -source.range_v - source.offset_v, source.range_v - source.offset_v
        raise InvalidConfig(f"trigger level {level_v:g} V is outside the range of channel {name or '?'} "
                            f"(±{source.range_v:g} V, offset {source.offset_v:g} V)", field="trigger.level",
                            allowed=f"{lo:g} .. {hi:g} V")
    return code


def trigger_level_v(code: int, source: ChannelConfig, max_adc: int) -> float:
    """The level (V) an ADC code stands for on ``source``: what the device really compares with."""
    return int(code) * source.range_v / int(max_adc) - source.offset_v


__all__ = ["channel", "refield", "n_samples", "n_segments", "pre_trigger_samples", "trigger_code", "trigger_level_v",
           "trigger_source"]
