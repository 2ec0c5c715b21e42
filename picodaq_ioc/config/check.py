"""``python -m picodaq_ioc.config.check FILE``: validate a configuration and show what the device takes.

Prints the applied settings as the model tables give them (ranges snapped to the next
hardware range, sample interval quantised to a timebase, record length, pre-trigger
samples ``n_pre``, trigger level in ADC codes) and exits 0; on a bad configuration prints
one message naming the file, key, value and what is allowed to stderr and exits 2.
The IOC's ``--check`` option calls :func:`check_main`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from ..scope import models, resolve
from .convert import scope_settings
from .loader import ConfigError, load_config
from .schema import Config


def _si(v: float, unit: str) -> str:
    a = abs(v)
    if a == 0:
        return f"0 {unit}"
    for f, p in ((1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p")):
        if a >= f or f == 1e-12:
            return f"{v / f:.6g} {p}{unit}"
    return f"{v:g} {unit}"  # pragma: no cover


def _hz(v: float) -> str:
    for f, p in ((1e6, "M"), (1e3, "k")):
        if abs(v) >= f:
            return f"{v / f:.6g} {p}Hz"
    return f"{v:.6g} Hz"


def applied_settings(cfg: Config) -> dict[str, Any]:
    """The settings as the device would take them, computed from the model tables.

    Returns
    -------
    dict
        ``family, variant, resolution_bits, max_adc, channels{ch: {enabled, coupling,
        range_requested_v, range_v, offset_v}}, timebase_index, sample_interval_requested_s,
        sample_interval_s, n_samples, record_s, n_pre, n_segments, trigger{...}, siggen{...}``.
    """
    dev = cfg.device
    m = models.get_model(dev.model, dev.variant)
    bits = dev.resolution_bits if dev.resolution_bits is not None else m.default_bits
    chans, tb, tr, sg = scope_settings(cfg)
    enabled = [c for c, cc in chans.items() if cc.enabled]
    idx, dt = models.quantise_interval(dev.model, tb.sample_interval_s, variant=dev.variant, bits=bits,
                                       n_channels=max(1, len(enabled)))
    max_code = models.max_adc(dev.model, bits, variant=dev.variant)
    ch_out: dict[str, Any] = {}
    for c, cc in chans.items():
        ch_out[c] = {
            "enabled": cc.enabled,
            "coupling": cc.coupling.value,
            "range_requested_v": cc.range_v,
            "range_v": models.snap_range(dev.model, cc.range_v, variant=dev.variant) if cc.enabled else None,
            "offset_v": cc.offset_v,
        }
    n = tb.n_samples
    n_pre = resolve.pre_trigger_samples(m, n, tb.pretrigger_fraction)  # the backends' rule
    trig: dict[str, Any] = {
        "enabled": tr.enabled,
        "source": tr.source,
        "level_v": tr.threshold_v,
        "direction": tr.direction.value,
        "delay_samples": tr.delay_samples,
        "auto_trigger_s": tr.auto_trigger_s,
    }
    if tr.enabled and tr.source in ch_out and ch_out[tr.source]["range_v"]:
        src = resolve.channel(dev.model, tr.source, chans[tr.source], variant=dev.variant)
        code = resolve.trigger_code(tr.threshold_v, src, max_code, name=tr.source)  # rounded, as applied
        trig["level_adc"] = code
        trig["level_applied_v"] = resolve.trigger_level_v(code, src, max_code)
    return {
        "file": cfg.source_file,
        "backend": dev.backend,
        "family": m.family,
        "description": m.description,
        "variant": dev.variant,
        "resolution_bits": bits,
        "max_adc": max_code,
        "channels": ch_out,
        "timebase_index": idx,
        "sample_interval_requested_s": tb.sample_interval_s,
        "sample_interval_s": dt,
        "n_samples": n,
        "record_s": n * dt,
        "n_pre": n_pre,
        "n_segments": tb.n_segments,
        "trigger": trig,
        "siggen": {
            "enabled": sg.enabled,
            "waveform": sg.waveform.value,
            "frequency_hz": sg.frequency_hz,
            "pk_to_pk_v": sg.pk_to_pk_v,
            "offset_v": sg.offset_v,
            "sweep": sg.sweep.value,
            "stop_frequency_hz": sg.stop_frequency_hz,
            "dwell_time_s": sg.dwell_time_s,
        },
    }


def format_settings(cfg: Config, a: dict[str, Any]) -> str:
    """Human-readable report of :func:`applied_settings`."""
    lines = [f"configuration: {a['file']}  OK"]
    lines.append(f"device:   backend {a['backend']}, {a['family']}" + (f" ({a['variant']})" if a["variant"] else "")
                 + f" - {a['description']}; {a['resolution_bits']} bit, max ADC code {a['max_adc']}")
    for c, ch in a["channels"].items():
        if not ch["enabled"]:
            lines.append(f"  {c}: off")
            continue
        req = ch["range_requested_v"]
        snap = "" if abs(ch["range_v"] - req) < 1e-12 else f" (requested ±{_si(req, 'V')})"
        lines.append(f"  {c}: {ch['coupling']:<4} range ±{_si(ch['range_v'], 'V')}{snap}, offset {_si(ch['offset_v'], 'V')}")
    lines.append(
        f"timebase: interval {_si(a['sample_interval_s'], 's')} (timebase {a['timebase_index']}; requested "
        f"{_si(a['sample_interval_requested_s'], 's')}), {a['n_samples']} samples = {_si(a['record_s'], 's')}, "
        f"n_pre {a['n_pre']}, segments {a['n_segments']}")
    t = a["trigger"]
    if t["enabled"]:
        auto = "never (wait forever)" if t["auto_trigger_s"] is None else _si(t["auto_trigger_s"], "s")
        lines.append(f"trigger:  {t['source']} {t['direction']} {_si(t['level_v'], 'V')}"
                     + (f" (ADC code {t['level_adc']})" if "level_adc" in t else "")
                     + f", delay {t['delay_samples']} samples, auto-trigger after {auto}")
    else:
        lines.append("trigger:  off (free running)")
    s = a["siggen"]
    if s["enabled"]:
        sweep = ""
        if s["stop_frequency_hz"] is not None and s["stop_frequency_hz"] != s["frequency_hz"]:
            sweep = f", sweep {s['sweep']} to {_hz(s['stop_frequency_hz'])}"
            if s["dwell_time_s"]:
                sweep += f" dwell {_si(s['dwell_time_s'], 's')}"
        lines.append(f"siggen:   {s['waveform']} {_hz(s['frequency_hz'])}, {_si(s['pk_to_pk_v'], 'V')} pk-pk, "
                     f"offset {_si(s['offset_v'], 'V')}{sweep}")
    else:
        lines.append("siggen:   off")
    b = cfg.buffer
    lines.append(f"buffer:   {b.n_buffers} slots, log file {b.log_file or '-'}, verbose {b.verbose}, "
                 f"log every {b.log_time:g} s")
    if cfg.device.backend == "sim":
        sim = cfg.simulation
        lines.append(f"simulation: seed {sim.seed}, realtime {sim.realtime}, noise {_si(sim.noise_rms, 'V')} rms"
                     + (f", siggen looped back into {sim.siggen_channel}" if sim.siggen_channel else ""))
        for i, src in enumerate(sim.sources):
            extra = ""
            if src.kind == "muon" and src.decay_fraction:
                extra = f", decays {src.decay_fraction:g} (tau {_si(src.lifetime, 's')})"
            elif src.kind == "sipm":
                extra = f", crosstalk {src.crosstalk:g}"
            elif src.kind == "geiger":
                extra = f", dead time {_si(src.dead_time, 's')}"
            if src.kind == "noise":
                desc = f"rms {_si(src.rms, 'V')}" if src.rms is not None else "rms = noise_rms"
            elif src.kind == "siggen":
                desc = "generator loopback"
            else:
                desc = f"{_hz(src.rate)}, {_si(src.amplitude, 'V')}"
            lines.append(f"  source[{i}] {src.kind} on {','.join(src.channels)}: {desc}{extra}")
    for an in cfg.analysis:
        params = {k: v for k, v in an.model_dump().items() if k not in ("module", "name")}
        lines.append(f"analysis: {an.module}" + (f" ({an.name})" if an.name else "")
                     + (f" {len(params)} parameter(s)" if params else ""))
    for note in cfg.notices:
        lines.append(f"note:     {note}")
    return "\n".join(lines)


def check_file(path: str, *, as_json: bool = False, out: TextIO | None = None) -> int:
    """Check one file; print the report to ``out`` (stdout) or the error to stderr. Returns the exit code."""
    out = out or sys.stdout
    try:
        cfg = load_config(path)
        a = applied_settings(cfg)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # never a traceback for a user
        print(f"error: {path}: cannot check configuration ({exc.__class__.__name__}: {exc})", file=sys.stderr)
        return 3
    if as_json:
        print(json.dumps(a, default=str), file=out)
    else:
        print(format_settings(cfg, a), file=out)
    return 0


def check_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m picodaq_ioc.config.check`` and of the IOC's ``--check``.

    Parameters
    ----------
    argv : sequence of str, optional
        ``[FILE ...] [--json]`` (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 if every file is valid, 2 if one is not (message on stderr).
    """
    p = argparse.ArgumentParser(prog="python -m picodaq_ioc.config.check",
                                description="Validate picodaq-ioc configuration files and show the applied settings.")
    p.add_argument("files", nargs="+", metavar="FILE", help="YAML/JSON configuration (native or picoDAQ)")
    p.add_argument("--json", action="store_true", help="print the applied settings as one JSON line per file")
    try:
        args = p.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # argparse already printed usage
        return int(exc.code or 0) if exc.code in (0, None) else 2
    rc = 0
    for f in args.files:
        rc = max(rc, check_file(f, as_json=args.json))
    return rc


def main() -> None:
    raise SystemExit(check_main())


if __name__ == "__main__":
    main()
