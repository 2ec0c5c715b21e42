"""Translation of the original picoDAQ / picoCosmo configuration files to the native layout.

Three kinds of legacy file are recognised by their keys (all may be combined in one file):

* device file (picoDAQ ``PSconfig``): ``PSmodel, picoChannels, ChanRanges, ChanModes, ChanOffsets,
  sampleTime, Nsamples, trgActive, trgChan, trgThr, trgTyp, trgDelay, trgTO, pretrig, frqSG,
  PkToPkSG, waveTypeSG, offsetVoltageSG, swpSG, stopFreqSG, dwellTimeSG, ChanColors, verbose, mode``;
* buffer-manager file (``BMconfig``): ``NBuffers, BMmodules, LogFile, verbose, logTime``;
* DAQ file (``DAQconfig``, picoCosmo ``*.daq``): ``DeviceFile, BMfile, PFfile, DAQmodules,
  ANAscript, verbose`` — the named files are read relative to the DAQ file's directory.

A legacy file may also carry the native sections ``simulation:``, ``analysis:`` and ``device:``
(the latter for ``backend``/``serial``/``variant``), so a picoDAQ file can drive the simulator.
Defaults are picoDAQ's (``picodaqa/picoConfig.py``), including ``trgThr = ChanRanges[0]/2``,
``stopFreqSG = 9*frqSG`` and ``dwellTimeSG = 10/frqSG``.  ``translate`` returns the native
mapping plus a key map so that validation errors name the original key (``ChanRanges[1]``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import _MISSING, ConfigError, key_repr
from .files import read_mapping

log = logging.getLogger(__name__)

#: keys of picoDAQ/picoCosmo pulse-filter files (to explain a misplaced PF file)
PULSE_FILTER_KEYS: frozenset[str] = frozenset({
    "taur", "tauon", "tauf", "tauf2", "tauoff", "taur2", "pheight", "pulseShape", "trgPulseShape",
    "NminCoincidence", "acceptPattern", "doublePulse", "timingPrecision", "logFile", "logFile2",
    "rawFile", "pictFile", "rawFile1", "Nraw1", "modules", "histograms", "RMeterInterval", "RMeterRate",
})

DEVICE_KEYS: tuple[str, ...] = (
    "PSmodel", "picoChannels", "ChanRanges", "ChanModes", "ChanOffsets", "sampleTime", "Nsamples",
    "trgActive", "trgChan", "trgThr", "trgTyp", "trgDelay", "trgTO", "pretrig", "frqSG", "PkToPkSG",
    "waveTypeSG", "offsetVoltageSG", "swpSG", "stopFreqSG", "dwellTimeSG", "ChanColors", "verbose", "mode",
)  # fmt: skip
BUFFER_KEYS: tuple[str, ...] = ("NBuffers", "BMmodules", "LogFile", "verbose", "logTime")
DAQ_KEYS: tuple[str, ...] = ("DeviceFile", "BMfile", "PFfile", "DAQmodules", "ANAscript", "verbose")
#: native sections a legacy file may carry
NATIVE_IN_LEGACY: tuple[str, ...] = ("simulation", "analysis", "device")

ALL_LEGACY_KEYS: tuple[str, ...] = tuple(dict.fromkeys(DEVICE_KEYS + BUFFER_KEYS + DAQ_KEYS))

#: picoDAQ defaults (picoConfig.py / BufferMan.py); computed ones are filled in translate()
DEVICE_DEFAULTS: dict[str, Any] = {
    "PSmodel": "2000a",
    "picoChannels": ["A", "B"],
    "ChanRanges": [30e-3, 0.35],
    "ChanModes": None,  # 'AC' for every channel
    "ChanOffsets": None,  # 0. for every channel
    "sampleTime": 10e-6,
    "Nsamples": 200,
    "trgActive": True,
    "trgChan": "A",
    "trgThr": None,  # ChanRanges[0]/2
    "trgTyp": "Rising",
    "trgDelay": 0,
    "trgTO": 1000,
    "pretrig": 0.05,
    "frqSG": 100e3,
    "PkToPkSG": 0.4,
    "waveTypeSG": "Sine",
    "offsetVoltageSG": 0.0,
    "swpSG": "UpDown",
    "stopFreqSG": None,  # 9*frqSG
    "dwellTimeSG": None,  # 10/frqSG (none if frqSG == 0)
    "verbose": 1,
}
BUFFER_DEFAULTS: dict[str, Any] = {"NBuffers": 16, "LogFile": None, "verbose": 1, "logTime": 60}

#: built-in analysis module that replaces picoDAQ's pulseFilter / picoCosmo's PulseFilter
PULSE_MODULE = "pulse"
#: pulse-filter keys about displays and output files (not parameters of the analysis)
PF_DISPLAY_KEYS: frozenset[str] = frozenset({
    "logFile", "logFile2", "rawFile", "pictFile", "rawFile1", "Nraw1", "modules", "histograms",
    "RMeterInterval", "RMeterRate", "RMeterTitle", "analysisLevel",
})

#: picoDAQ example analysis scripts whose function is built in (they are never executed)
KNOWN_SCRIPTS: dict[str, str] = {
    "anaDAQ.py": PULSE_MODULE,  # pulse filter (+ rate meter, histograms): built-in module 'pulse'
    "testDAQ.py": "",  # example consumers: replaced by the IOC's PVs and clients
}


@dataclass(frozen=True)
class LegacyKey:
    """Where a native key came from: the legacy key, its raw value, unit scale and file."""

    name: str
    value: Any = _MISSING
    scale: float = 1.0  # native = legacy * scale
    unit: str = ""
    file: str | None = None
    #: how the native value follows from the legacy key when the user did not write it
    #: (a picoDAQ default), added to messages about it
    note: str = ""


#: keys only a pulse-filter file has (``logFile`` etc. are shared with other files)
_PF_ONLY = frozenset({"pulseShape", "trgPulseShape", "NminCoincidence", "acceptPattern", "doublePulse",
                      "timingPrecision", "logFile2", "rawFile1", "Nraw1", "RMeterInterval", "RMeterRate",
                      "taur", "tauon", "tauf", "tauf2", "tauoff", "taur2", "pheight"})


def pulse_filter_key(data: Mapping[str, Any]) -> str | None:
    """The first pulse-filter key if ``data`` is a picoCosmo/picoDAQ pulse-filter file
    (``PF*.yaml``) rather than a DAQ configuration, else None."""
    keys = [str(k) for k in data]
    if not any(k in _PF_ONLY for k in keys):
        return None
    if any(k in DEVICE_KEYS or k in DAQ_KEYS or k in BUFFER_KEYS or k in NATIVE_IN_LEGACY
           for k in keys if k not in PULSE_FILTER_KEYS and k not in ("verbose", "mode")):
        return None
    return next(k for k in keys if k in PULSE_FILTER_KEYS)


def is_legacy(data: Mapping[str, Any]) -> bool:
    """True if the mapping uses any picoDAQ/picoCosmo key."""
    return any(k in ALL_LEGACY_KEYS for k in data)


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


class _Translator:
    def __init__(self, path: str | Path | None) -> None:
        self.path = None if path is None else str(path)
        self.keymap: dict[tuple, LegacyKey] = {}
        self.notices: list[str] = []

    # ---------------------------------------------------------------- helpers
    def err(self, problem: str, key: str, value: Any = _MISSING, allowed: str | None = None,
            file: str | None = None) -> Exception:
        return ConfigError(problem, path=file or self.path, key=key, value=value, allowed=allowed)

    def note(self, text: str) -> None:
        self.notices.append(text)
        log.info(text)

    def map(self, native: tuple, name: str, value: Any = _MISSING, scale: float = 1.0, unit: str = "",
            file: str | None = None, note: str = "") -> None:
        self.keymap[native] = LegacyKey(name, value, scale, unit, file or self.path, note)

    # ---------------------------------------------------------------- entry
    def translate(self, data: Mapping[str, Any]) -> dict[str, Any]:
        self.check_keys(data, ALL_LEGACY_KEYS + NATIVE_IN_LEGACY, self.path)
        native: dict[str, Any] = {}
        dev: dict[str, Any] = {k: data[k] for k in DEVICE_KEYS if k in data and k != "verbose"}
        bm: dict[str, Any] = {k: data[k] for k in BUFFER_KEYS if k in data and k != "verbose"}
        dev_file = bm_file = self.path
        picocosmo = "PFfile" in data
        sections: dict[str, tuple[Any, str | None]] = {
            k: (data[k], self.path) for k in NATIVE_IN_LEGACY if k in data
        }
        verbose: tuple[Any, str | None, str] | None = None
        if "verbose" in data:
            verbose = (data["verbose"], self.path, "verbose")
        if "DeviceFile" in data:
            sub, dev_file = self.read_ref(data, "DeviceFile")
            self.check_keys(sub, DEVICE_KEYS + NATIVE_IN_LEGACY, dev_file)
            for k in DEVICE_KEYS:
                if k in sub and k not in dev and k != "verbose":
                    dev[k] = sub[k]
            if "verbose" in sub and verbose is None:
                verbose = (sub["verbose"], dev_file, "verbose")
            for k in NATIVE_IN_LEGACY:
                if k in sub:
                    if k in sections:
                        raise self.err(f"section '{k}' given both here and in DeviceFile {dev_file}", k)
                    sections[k] = (sub[k], dev_file)
        if "BMfile" in data:
            sub, bm_file = self.read_ref(data, "BMfile")
            self.check_keys(sub, BUFFER_KEYS + ("DAQmodules",), bm_file)
            for k in BUFFER_KEYS:
                if k in sub and k not in bm and k != "verbose":
                    bm[k] = sub[k]
            if "verbose" in sub:
                verbose = (sub["verbose"], bm_file, "verbose")
            if "DAQmodules" in sub:
                self.note(f"{bm_file}: DAQmodules {sub['DAQmodules']!r} noted; displays are CA clients here")
        if picocosmo:  # runCosmoDAQ.py defaults
            dev.setdefault("frqSG", 0)
            dev.setdefault("trgTO", 5000)
        native.update(self.device(dev, dev_file))
        native["buffer"] = self.buffer(bm, bm_file, verbose)
        for k, (val, f) in sections.items():
            if k == "device":
                native["device"] = self.merge_device(native["device"], val, f)
            elif k == "analysis":
                native["analysis"] = list(val) if isinstance(val, list) else val
                self.map(("analysis",), "analysis", file=f)
            else:
                native[k] = val
                self.map((k,), k, file=f)
        self.daq_extras(data, native)
        if "simulation" not in native:
            self.default_simulation(native, (self.path, dev_file, data.get("PFfile")))
        return native

    def default_simulation(self, native: dict[str, Any], names: tuple[Any, ...]) -> None:
        """No ``simulation:`` section: a default detector named by the files, and a notice."""
        from .detectors import DETECTORS, default_simulation, detector_kind

        if (native.get("device") or {}).get("backend", "sim") != "sim":
            return
        kind = detector_kind(names)
        if kind is None:
            return  # the model check says that the simulator makes only noise
        chans = [c for c, v in (native.get("channels") or {}).items() if (v or {}).get("enabled", True)]
        native["simulation"] = default_simulation(kind, chans, (native.get("trigger") or {}).get("source"))
        self.note(f"{self.path}: no 'simulation:' section; the simulated scope uses the default "
                  f"'{kind}' detector ({DETECTORS[kind][1]}); add a 'simulation:' section to change it "
                  "(see configs/kamiokanne_real.yaml and docs/configuration.md)")

    def check_keys(self, data: Mapping[str, Any], allowed: tuple[str, ...], file: str | None) -> None:
        import difflib

        for k in data:
            if k not in allowed:
                sugg = difflib.get_close_matches(str(k), allowed, n=1, cutoff=0.6)
                hint = f" (did you mean {sugg[0]!r}?)" if sugg else ""
                if not sugg and k in PULSE_FILTER_KEYS:
                    hint = (" (this looks like a pulse-filter file: name it as PFfile in a DAQ file, "
                            "or put its keys in an 'analysis:' entry)")
                raise self.err(f"unknown picoDAQ key{hint}", key_repr(k), allowed=", ".join(allowed), file=file)

    def read_ref(self, data: Mapping[str, Any], key: str) -> tuple[dict[str, Any], str]:
        ref = data[key]
        if not isinstance(ref, str) or not ref.strip():
            raise self.err("must be a file name", key, ref, "a path relative to this file")
        base = Path(self.path).parent if self.path else Path.cwd()
        p = Path(ref)
        full = p if p.is_absolute() else base / p
        try:
            return read_mapping(full), str(full)
        except ConfigError as exc:
            raise self.err(f"cannot use referenced file {full}: {exc.problem}", key, ref) from None

    # ---------------------------------------------------------------- device
    def device(self, dev: dict[str, Any], file: str | None) -> dict[str, Any]:
        given = dict(dev)
        d = {**DEVICE_DEFAULTS, **dev}
        for k in ("ChanColors", "mode"):
            if k in given:
                self.note(f"{file}: {k} accepted and ignored ({'colours belong to the display clients' if k == 'ChanColors' else 'legacy display list of picoDAQtest.py'})")
        out: dict[str, Any] = {}
        model = d["PSmodel"]
        out["device"] = {"model": model}
        self.map(("device", "model"), "PSmodel", model, file=file)

        chans = d["picoChannels"]
        if isinstance(chans, str):
            chans = [chans]
        if not isinstance(chans, list) or not chans:
            raise self.err("must be a non-empty list of channel names", "picoChannels", d["picoChannels"],
                           "a list such as [A, B]", file)
        names: list[str] = []
        for i, c in enumerate(chans):
            if not isinstance(c, str):
                raise self.err("channel name must be a letter", f"picoChannels[{i}]", c, "A-H", file)
            if c.upper() in names:
                raise self.err("channel listed twice", f"picoChannels[{i}]", c, "each channel once", file)
            names.append(c.upper())
        n = len(names)

        def per_channel(key: str, default: Any) -> list[Any]:
            val = d[key]
            if val is None:
                return [default] * n
            if not isinstance(val, list):
                if isinstance(val, (str, int, float)) and not isinstance(val, bool):
                    return [val] * n  # a scalar applies to every channel
                raise self.err("must be a list with one value per channel", key, val,
                               f"a list of {n} value(s) (one per entry of picoChannels)", file)
            if len(val) < n:
                raise self.err(f"needs one value per channel of picoChannels ({n})", key, val,
                               f"a list of {n} value(s)", file)
            if len(val) > n and key in given:
                self.note(f"{file}: {key} has {len(val)} values for {n} channel(s); extra values ignored")
            return list(val[:n])

        ranges = per_channel("ChanRanges", 0.2)
        modes = per_channel("ChanModes", "AC")
        offsets = per_channel("ChanOffsets", 0.0)
        channels: dict[str, Any] = {}
        for i, c in enumerate(names):
            channels[c] = {"enabled": True, "range": ranges[i], "coupling": modes[i], "offset": offsets[i]}
            self.map(("channels", c), f"picoChannels[{i}]", chans[i], file=file)
            self.map(("channels", c, "range"), f"ChanRanges[{i}]", ranges[i], file=file)
            self.map(("channels", c, "coupling"), f"ChanModes[{i}]", modes[i], file=file)
            self.map(("channels", c, "offset"), f"ChanOffsets[{i}]", offsets[i], file=file)
        out["channels"] = channels

        pretrig = d["pretrig"]
        if str(model).lower() == "2000" and _num(pretrig) and pretrig != 0:
            self.note(f"{file}: Pretrig sampling disabled on device 2000 (pretrig {pretrig} -> 0)")
            pretrig = 0.0
        out["timebase"] = {"duration": d["sampleTime"], "samples": d["Nsamples"], "pretrigger": pretrig}
        self.map(("timebase", "duration"), "sampleTime", d["sampleTime"], file=file)
        self.map(("timebase", "samples"), "Nsamples", d["Nsamples"], file=file)
        self.map(("timebase", "pretrigger"), "pretrig", d["pretrig"], file=file)
        self.map(("timebase",), "sampleTime", file=file)

        thr = d["trgThr"]
        if thr is None:
            thr = ranges[0] / 2 if _num(ranges[0]) else 0.0
        to = d["trgTO"]
        out["trigger"] = {
            "enabled": d["trgActive"],
            "source": d["trgChan"],
            "level": thr,
            "direction": d["trgTyp"],
            "delay": d["trgDelay"],
            "auto_timeout": to / 1000.0 if _num(to) else to,
        }
        for nk, lk in (("enabled", "trgActive"), ("source", "trgChan"), ("level", "trgThr"),
                       ("direction", "trgTyp"), ("delay", "trgDelay")):
            self.map(("trigger", nk), lk, d[lk], file=file)
        self.map(("trigger", "auto_timeout"), "trgTO", to, scale=1e-3, unit="ms", file=file)
        self.map(("trigger",), "trgChan", d["trgChan"], file=file)

        f = d["frqSG"]
        stop = d["stopFreqSG"]
        implied: dict[str, str] = {}  # native key -> how picoDAQ's default follows from frqSG
        if stop is None and _num(f):
            stop = 9.0 * f
            implied["stop_frequency"] = (f"stopFreqSG is not set, so picoDAQ's default stopFreqSG = 9 x frqSG "
                                         f"= {stop:g} Hz applies; set stopFreqSG, or a lower frqSG")
        dwell = d["dwellTimeSG"]
        if dwell is None and _num(f) and f != 0:
            dwell = 10.0 / f
            implied["dwell_time"] = (f"dwellTimeSG is not set, so picoDAQ's default dwellTimeSG = 10 / frqSG "
                                     f"= {dwell:g} s applies; set dwellTimeSG")
        off = _num(f) and f == 0
        out["siggen"] = {
            "enabled": not off,
            "waveform": d["waveTypeSG"],
            "frequency": f,
            "amplitude": d["PkToPkSG"],
            "offset": d["offsetVoltageSG"],
            "sweep": d["swpSG"],
            "stop_frequency": stop,
            "dwell_time": dwell if not (_num(dwell) and dwell == 0) else None,
        }
        for nk, lk in (("frequency", "frqSG"), ("waveform", "waveTypeSG"), ("amplitude", "PkToPkSG"),
                       ("offset", "offsetVoltageSG"), ("sweep", "swpSG"), ("stop_frequency", "stopFreqSG"),
                       ("dwell_time", "dwellTimeSG")):
            if nk in implied:  # the user wrote frqSG, not this key: name frqSG and say why
                self.map(("siggen", nk), "frqSG", f, file=file, note=implied[nk])
            else:
                self.map(("siggen", nk), lk, d[lk] if d[lk] is not None else _MISSING, file=file)
        self.map(("siggen",), "frqSG", f, file=file)
        return out

    def merge_device(self, dev: dict[str, Any], extra: Any, file: str | None) -> dict[str, Any]:
        if not isinstance(extra, dict):
            raise self.err("must be a mapping", "device", extra, "backend, serial, variant, resolution_bits", file)
        out = dict(dev)
        for k, v in extra.items():
            if k == "model" and str(v).lower() != str(dev.get("model")).lower():
                raise self.err("contradicts PSmodel", "device.model", v, f"{dev.get('model')!r} or leave it out",
                               file)
            out[k] = v
            self.map(("device", k), f"device.{k}", v, file=file)
        return out

    # ---------------------------------------------------------------- buffer
    def buffer(self, bm: dict[str, Any], file: str | None, verbose: tuple[Any, str | None, str] | None
               ) -> dict[str, Any]:
        d = {**BUFFER_DEFAULTS, **bm}
        if "BMmodules" in bm:
            self.note(f"{file}: BMmodules {bm['BMmodules']!r} noted; displays are CA clients here")
        out = {"n_buffers": d["NBuffers"], "log_file": d["LogFile"], "log_time": d["logTime"]}
        self.map(("buffer", "n_buffers"), "NBuffers", d["NBuffers"], file=file)
        self.map(("buffer", "log_file"), "LogFile", d["LogFile"], file=file)
        self.map(("buffer", "log_time"), "logTime", d["logTime"], file=file)
        if verbose is not None:
            out["verbose"] = verbose[0]
            self.map(("buffer", "verbose"), verbose[2], verbose[0], file=verbose[1])
        return out

    # ---------------------------------------------------------------- DAQ file extras
    def daq_extras(self, data: Mapping[str, Any], native: dict[str, Any]) -> None:
        if "DAQmodules" in data:
            self.note(f"{self.path}: DAQmodules {data['DAQmodules']!r} noted; displays are CA clients here")
        analysis = native.get("analysis")
        extra: list[dict[str, Any]] = []
        if "PFfile" in data:
            pf, pf_file = self.read_ref(data, "PFfile")
            chans = list(native.get("channels", {}))
            entry = {"module": PULSE_MODULE, **self.pulse_filter(pf, pf_file, len(chans))}
            extra.append(entry)
            self.note(f"{self.path}: PFfile {pf_file} -> analysis module 'pulse'")
            self.map(("analysis",), "PFfile", data["PFfile"], file=self.path)
        if "ANAscript" in data:
            script = data["ANAscript"]
            name = Path(script).name if isinstance(script, str) else None
            if name not in KNOWN_SCRIPTS:
                raise self.err(
                    "analysis scripts are not executed",
                    "ANAscript",
                    script,
                    "list analysis modules under 'analysis:' instead, e.g. "
                    "'analysis: [{module: pulse}]' or '{module: mypkg.mymod:MyAnalysis}'",
                )
            module = KNOWN_SCRIPTS[name]
            if module and not extra and not (isinstance(analysis, list) and analysis):
                extra.append({"module": module})
            self.note(
                f"{self.path}: ANAscript {script!r} is not executed; "
                + (f"its function is the built-in analysis module {module!r}" if module
                   else "its example consumers are replaced by the IOC's PVs and clients")
            )
        if extra:
            if analysis is None:
                native["analysis"] = extra
            elif isinstance(analysis, list):
                native["analysis"] = list(analysis) + extra


    def pulse_filter(self, pf: Mapping[str, Any], file: str, n_channels: int) -> dict[str, Any]:
        """picoCosmo/picoDAQ pulse-filter keys -> parameters of the built-in ``pulse`` module."""
        out: dict[str, Any] = {}
        shape_keys = {"taur", "tauon", "tauf", "tauf2", "tauoff", "taur2", "pheight", "mode"}
        flat = {k: pf[k] for k in pf if k in shape_keys}
        dropped = [k for k in pf if k in PF_DISPLAY_KEYS]
        for k, v in pf.items():
            if k in shape_keys or k in PF_DISPLAY_KEYS:
                continue
            out[k] = v
        if flat and "pulseShape" not in out:  # picoDAQ's flat pFconfig: one unipolar/bipolar shape
            out["pulseShape"] = [flat]
        elif flat:
            raise self.err("give the pulse shape either as pulseShape or as flat taur/tauon/... keys",
                           sorted(flat)[0], flat[sorted(flat)[0]], "one of the two forms", file)
        trg = out.get("trgPulseShape")
        if isinstance(trg, list) and trg:
            out["trgPulseShape"] = trg[0]  # picoCosmo uses the first entry
        shapes = out.get("pulseShape")
        if isinstance(shapes, list) and shapes and all(isinstance(x, dict) for x in shapes) \
                and any("delay" in x for x in shapes) and "delay" not in out:
            # picoCosmo: per-shape delay in microseconds; channel i uses shape min(i, n-1)
            delays = []
            for i in range(max(n_channels, 1)):
                d = shapes[min(i, len(shapes) - 1)].get("delay", 0.0)
                delays.append(d * 1e-6 if _num(d) else d)
            out["pulseShape"] = [{k: v for k, v in x.items() if k != "delay"} for x in shapes]
            out["delay"] = delays
        if dropped:
            self.note(f"{file}: pulse-filter display/output keys {', '.join(dropped)} noted; the 'pulse' "
                      "module writes its own run files and its displays are CA clients")
        return out


def translate(data: Mapping[str, Any], path: str | Path | None = None
              ) -> tuple[dict[str, Any], dict[tuple, LegacyKey], list[str]]:
    """Translate a legacy mapping to the native layout.

    Returns
    -------
    native : dict
        Mapping in the native layout (to be validated by ``Config.model_validate``).
    keymap : dict[tuple, LegacyKey]
        Native key path -> original legacy key, for error messages.
    notices : list[str]
        Informational messages (ignored keys, forced values, replaced scripts).

    Raises
    ------
    ConfigError
        Unknown keys, malformed lists, unreadable referenced files, ``ANAscript`` of user code.
    """
    t = _Translator(path)
    native = t.translate(data)
    return native, t.keymap, t.notices


__all__ = [
    "ALL_LEGACY_KEYS", "BUFFER_KEYS", "DAQ_KEYS", "DEVICE_KEYS", "LegacyKey", "is_legacy", "translate",
]  # fmt: skip
