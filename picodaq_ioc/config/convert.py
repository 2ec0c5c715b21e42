"""Conversion of a validated :class:`~picodaq_ioc.config.schema.Config` to scope-layer types.

The backend's ``configure()`` takes the dataclasses of :mod:`picodaq_ioc.scope.types`;
this module is the one place that maps the configuration model onto them.
"""

from __future__ import annotations

from ..scope import models
from ..scope.errors import InvalidConfig
from ..scope.types import CHANNEL_NAMES, ChannelConfig, SigGenConfig, TimebaseConfig, TriggerConfig
from .schema import Config


def family_channels(family: str, variant: str | None = None) -> tuple[str, ...]:
    """Channel names of a model family/variant (from :mod:`picodaq_ioc.scope.models`)."""
    try:
        return tuple(models.get_model(family, variant).channels)
    except InvalidConfig:
        return CHANNEL_NAMES[:4]


def record_samples(cfg: Config) -> int:
    """Samples per channel the device will record.

    ``timebase.samples`` when the interval is given; when the record is given as a
    ``duration`` (picoDAQ's ``sampleTime``) the device keeps the duration and takes
    ``round(duration / dt)`` samples at the quantised interval ``dt`` — as pico-python's
    ``setSamplingInterval`` does (16 µs / 3500 requested -> 4 ns x 4000 samples).
    """
    tb = cfg.timebase
    if tb.duration is None:
        return int(tb.samples)
    n_ch = sum(1 for s in cfg.channels.values() if s.enabled) or 1
    try:
        _, dt = models.quantise_interval(cfg.device.model, tb.sample_interval, variant=cfg.device.variant,
                                         bits=cfg.device.resolution_bits, n_channels=n_ch)
    except InvalidConfig:
        return int(tb.samples)
    return max(2, int(round(tb.duration / dt)))


def scope_settings(
    cfg: Config,
) -> tuple[dict[str, ChannelConfig], TimebaseConfig, TriggerConfig, SigGenConfig]:
    """Translate a :class:`Config` into the arguments of ``ScopeBackend.configure``.

    Parameters
    ----------
    cfg : Config
        A validated configuration.

    Returns
    -------
    channels : dict[str, ChannelConfig]
        One entry per channel of the model family, in channel order; channels that the
        configuration does not list are present but disabled.  Ranges are the requested
        values; the backend snaps them (see ``Applied``).
    timebase : TimebaseConfig
        Requested sample interval (derived from ``duration``/``samples`` when only those
        are given), samples (see :func:`record_samples`), pre-trigger fraction, segments.
    trigger : TriggerConfig
        ``auto_timeout`` 0 is mapped to ``auto_trigger_s=None`` (wait forever).
    siggen : SigGenConfig
        Disabled when ``enabled`` is false or the frequency is 0 (picoDAQ's ``frqSG: 0``).
    """
    names = list(family_channels(cfg.device.model, cfg.device.variant))
    for ch in cfg.channels:  # a channel beyond the family is caught by validation; keep it visible
        if ch not in names:
            names.append(ch)
    channels: dict[str, ChannelConfig] = {}
    for ch in names:
        sec = cfg.channels.get(ch)
        if sec is None:
            channels[ch] = ChannelConfig(enabled=False)
        else:
            channels[ch] = ChannelConfig(
                enabled=bool(sec.enabled),
                coupling=sec.coupling,
                range_v=float(sec.range),
                offset_v=float(sec.offset),
            )
    tb = cfg.timebase
    interval = tb.sample_interval
    if interval is None:  # the schema fills it; keep the same rule as a guard
        duration = tb.duration if tb.duration is not None else 10e-6
        interval = duration / (tb.samples - 0.1)
    timebase = TimebaseConfig(
        sample_interval_s=float(interval),
        n_samples=record_samples(cfg),
        pretrigger_fraction=float(tb.pretrigger),
        n_segments=int(tb.segments),
    )
    tr = cfg.trigger
    trigger = TriggerConfig(
        enabled=bool(tr.enabled),
        source=str(tr.source),
        threshold_v=float(tr.level),
        direction=tr.direction,
        delay_samples=int(tr.delay),
        auto_trigger_s=None if tr.auto_timeout == 0 else float(tr.auto_timeout),
    )
    sg = cfg.siggen
    sg_on = bool(sg.enabled) and sg.frequency > 0
    siggen = SigGenConfig(
        enabled=sg_on,
        waveform=sg.waveform,
        frequency_hz=float(sg.frequency),
        pk_to_pk_v=float(sg.amplitude),
        offset_v=float(sg.offset),
        sweep=sg.sweep,
        stop_frequency_hz=None if sg.stop_frequency is None else float(sg.stop_frequency),
        dwell_time_s=None if sg.dwell_time is None else float(sg.dwell_time),
    )
    return channels, timebase, trigger, siggen


def config_dump(cfg: Config) -> dict:
    """``cfg`` as plain JSON data that validates back to the same configuration (stored in
    HDF5 files). Simulation sources keep only their set keys (the others are rejected for
    sources of another kind)."""
    data = cfg.model_dump(mode="json")
    data["simulation"]["sources"] = [s.model_dump(mode="json", exclude_unset=True) for s in cfg.simulation.sources]
    return data


__all__ = ["config_dump", "family_channels", "record_samples", "scope_settings"]
