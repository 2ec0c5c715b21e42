"""Recorded event files: the project's HDF5 layout and picoCosmo raw files (reading side).

This module is the one description of the file layout written by
:class:`picodaq_ioc.analysis.hdf5_writer.Hdf5Writer` and the one reader used by the replay
backend (:mod:`picodaq_ioc.scope.replay`) and ``picodaq-analyze``. It lives in the ``scope``
layer (the lowest) because the replay backend needs it; it knows nothing of EPICS,
configuration files or analysis.

HDF5 layout (``FORMAT = "picodaq-ioc-events"``, version 1)
----------------------------------------------------------
``/`` attributes
    ``format``, ``format_version``, ``ioc_version``, ``created`` (ISO time), ``applied``
    (JSON of the device configuration in force, see :func:`applied_to_dict`), ``config``
    (JSON of the IOC configuration, optional), ``event_filter``, ``compression``,
    ``run_start_time`` (epoch s of the run the first event belongs to), and after the file
    was closed cleanly ``complete = True`` and ``num_captured``.
``/raw`` int16 ``[event, channel, sample]``, one chunk per event
    attributes ``channels``, ``volts_per_count``, ``offset_v`` (per channel:
    ``volts = raw * volts_per_count - offset_v``), ``sample_interval_s``, ``n_pre`` and
    ``time_axis_s`` (sample times relative to the trigger sample).
``/events`` one row per event, a compound table (:data:`EVENT_DTYPE`; one dataset so that
    a batch is one write: seven separate datasets cost ~4 ms per single-event batch)
    ``event_number`` int64 (1-based within the run), ``t_trigger`` float64 (s since the run
    start, backend clock), ``timestamp`` float64 (epoch s: run start + ``t_trigger``),
    ``trigger_time_offset`` float64 (sub-sample, s), ``overflow`` uint8 (bit i = channel
    i clipped), ``auto_triggered`` bool, ``live_time`` float64 (the run's live time up to and
    including the event's capture, s). Read a column with ``f["events"]["event_number"]``.
``/analysis/<module>/``
    the analysis results of the run at the time the file was closed (attributes for
    scalars, datasets for arrays).

picoCosmo raw files
-------------------
picoCosmo's ``PulseFilter`` writes raw waveforms of double pulses as one YAML document:
``--- #raw waveforms``, ``OscConf: {...}`` (the applied scope configuration: ``Channels``,
``NSamples``, ``TSampling``, ``pretrig``, ``CRanges``, ``ChanOffsets``, ``trgChan``,
``trgActive``, ``trgThr``, ``trgTyp`` ...), ``pFConf: {...}`` and ``data:`` with one list of
per-channel voltage lists per event (rounded to 5 decimals), ended by ``---``. Such files
are read plain or from inside a ``.zip`` (the first member holding that document). The
volts are converted back to int16 codes with pico-python's ``MAX_VALUE`` (32764), which
recovers the recorded codes whenever the range is coarse enough for 5 decimals; event
numbers are 1..N and trigger times are unknown (NaN).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ScopeError
from .types import (
    Applied,
    ChannelConfig,
    Coupling,
    Direction,
    SigGenConfig,
    SweepType,
    TriggerConfig,
    WaveType,
)

FORMAT = "picodaq-ioc-events"
FORMAT_VERSION = 1
#: pico-python's MAX_VALUE, used by picoDAQ/picoCosmo to convert codes to volts
PICOCOSMO_MAX_ADC = 32764

#: the row type of ``/events``
EVENT_DTYPE = np.dtype([("event_number", "<i8"), ("t_trigger", "<f8"), ("timestamp", "<f8"),
                        ("trigger_time_offset", "<f8"), ("overflow", "u1"), ("auto_triggered", "?"),
                        ("live_time", "<f8")])

__all__ = ["EVENT_DTYPE", "FORMAT", "FORMAT_VERSION", "PICOCOSMO_MAX_ADC", "EventChunk", "RecordingError", "Recording",
           "applied_from_dict", "applied_to_dict", "open_recording"]


class RecordingError(ScopeError):
    """A recorded file is missing, unreadable or not in a known format."""


# ------------------------------------------------------------------------------ Applied <-> dict

def applied_to_dict(applied: Applied) -> dict[str, Any]:
    """Plain-JSON form of an :class:`Applied` (enums as their values)."""
    d = dataclasses.asdict(applied)
    d["channels"] = {ch: dataclasses.asdict(c) for ch, c in applied.channels.items()}

    def plain(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: plain(v) for k, v in o.items()}
        return o.value if isinstance(o, Enum) else o

    return plain(d)


def applied_from_dict(d: dict[str, Any]) -> Applied:
    """Inverse of :func:`applied_to_dict`."""
    chans = {ch: ChannelConfig(enabled=bool(c["enabled"]), coupling=Coupling(c["coupling"]),
                               range_v=float(c["range_v"]), offset_v=float(c["offset_v"]))
             for ch, c in d["channels"].items()}
    t = d["trigger"]
    trig = TriggerConfig(enabled=bool(t["enabled"]), source=str(t["source"]), threshold_v=float(t["threshold_v"]),
                         direction=Direction(t["direction"]), delay_samples=int(t["delay_samples"]),
                         auto_trigger_s=None if t.get("auto_trigger_s") is None else float(t["auto_trigger_s"]))
    s = d.get("siggen") or {}
    sg = SigGenConfig(enabled=bool(s.get("enabled", False)), waveform=WaveType(s.get("waveform", "Sine")),
                      frequency_hz=float(s.get("frequency_hz", 1e5)), pk_to_pk_v=float(s.get("pk_to_pk_v", 0.4)),
                      offset_v=float(s.get("offset_v", 0.0)), sweep=SweepType(s.get("sweep", "UpDown")),
                      stop_frequency_hz=s.get("stop_frequency_hz"), dwell_time_s=s.get("dwell_time_s"))
    return Applied(channels=chans, sample_interval_s=float(d["sample_interval_s"]), n_samples=int(d["n_samples"]),
                   n_pre=int(d["n_pre"]), n_segments=int(d.get("n_segments", 1)), max_adc=int(d["max_adc"]),
                   resolution_bits=int(d.get("resolution_bits", 8)), trigger=trig, siggen=sg,
                   config_generation=int(d.get("config_generation", 1)))


# ------------------------------------------------------------------------------ reading

@dataclass
class EventChunk:
    """Consecutive recorded events (arrays of equal length ``k``)."""

    raw: np.ndarray  # int16 [k, n_channels, n_samples]
    event_number: np.ndarray  # int64 [k]
    t_trigger: np.ndarray  # float64 [k], s since the run start (NaN: unknown)
    trigger_time_offset_s: np.ndarray  # float64 [k]
    overflow: np.ndarray  # bool [k, n_channels]
    auto_triggered: np.ndarray  # bool [k]
    live_time: np.ndarray  # float64 [k], cumulative live time (NaN: unknown)

    def __len__(self) -> int:
        return int(self.raw.shape[0])


@dataclass
class Recording:
    """A recorded file opened for reading (see :func:`open_recording`).

    Attributes
    ----------
    path : str
    kind : str
        ``"hdf5"`` or ``"picocosmo"``.
    applied : Applied
        The device configuration the events were taken with.
    channels : tuple of str
        Enabled channels, the order of axis 1 of ``raw``.
    n_events : int
    config : dict or None
        The IOC configuration stored with the file (HDF5) or ``{"OscConf":, "pFConf":}``
        (picoCosmo).
    attrs : dict
        Other file-level metadata (IOC version, run start time ...).
    """

    path: str
    kind: str
    applied: Applied
    channels: tuple[str, ...]
    n_events: int
    config: dict[str, Any] | None
    attrs: dict[str, Any]
    _chunks: Any = None

    def chunks(self, size: int = 256) -> Iterator[EventChunk]:
        """The events in order, ``size`` at a time (the last chunk may be shorter)."""
        return self._chunks(size)


def open_recording(path: str | Path) -> Recording:
    """Open an HDF5 file of this project or a picoCosmo raw file (plain or zipped).

    Raises
    ------
    RecordingError
        One line naming the file and what is wrong with it.
    """
    p = Path(path)
    if not p.exists():
        raise RecordingError(f"{p}: no such file")
    if not p.is_file():
        raise RecordingError(f"{p}: not a file")
    try:
        with open(p, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise RecordingError(f"{p}: cannot read: {exc.strerror or exc}") from None
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return _open_hdf5(p)
    if head.startswith(b"PK"):
        return _open_zip(p)
    return _open_picocosmo_text(p, p.read_text(encoding="utf-8", errors="replace"))


def _open_hdf5(p: Path) -> Recording:
    import h5py

    try:
        f = h5py.File(p, "r", swmr=True, locking=False)
    except Exception as exc:  # OSError, RuntimeError (bad superblock) ...
        raise RecordingError(f"{p}: not a readable HDF5 file: {exc}") from None
    try:
        if f.attrs.get("format") != FORMAT:
            raise RecordingError(f"{p}: HDF5 file is not a picodaq-ioc event file (attribute format="
                                 f"{f.attrs.get('format')!r}, expected {FORMAT!r})")
        applied = applied_from_dict(json.loads(f.attrs["applied"]))
        raw = f["raw"]
        channels = tuple(str(c) for c in raw.attrs["channels"])
        n = int(raw.shape[0])
        cfg_text = f.attrs.get("config")
        config = json.loads(cfg_text) if cfg_text else None
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()
                 if k not in ("applied", "config")}
    except RecordingError:
        f.close()
        raise
    except (KeyError, ValueError, TypeError) as exc:
        f.close()
        raise RecordingError(f"{p}: corrupt picodaq-ioc event file: {type(exc).__name__}: {exc}") from None
    f.close()

    def chunks(size: int) -> Iterator[EventChunk]:
        with h5py.File(p, "r", swmr=True, locking=False) as fh:
            ev = fh["events"]
            nch = len(channels)
            for i in range(0, n, size):
                j = min(n, i + size)
                e = ev[i:j]
                bits = e["overflow"].astype(np.uint16)
                ovf = ((bits[:, None] >> np.arange(nch, dtype=np.uint16)[None, :]) & 1).astype(bool)
                yield EventChunk(fh["raw"][i:j], e["event_number"], e["t_trigger"], e["trigger_time_offset"], ovf,
                                 e["auto_triggered"], e["live_time"])

    return Recording(str(p), "hdf5", applied, channels, n, config, attrs, chunks)


def _open_zip(p: Path) -> Recording:
    try:
        with zipfile.ZipFile(p) as z:
            for info in z.infolist():
                if info.is_dir():
                    continue
                with z.open(info) as fh:
                    head = fh.read(4096).decode("utf-8", errors="replace")
                if "OscConf" in head:
                    text = z.read(info).decode("utf-8", errors="replace")
                    return _open_picocosmo_text(p, text, member=info.filename)
    except zipfile.BadZipFile as exc:
        raise RecordingError(f"{p}: corrupt zip file: {exc}") from None
    raise RecordingError(f"{p}: the zip file holds no picoCosmo raw-waveform file (no member with OscConf)")


class _TolerantLoader(__import__("yaml").SafeLoader):
    """SafeLoader that reads python-tagged scalars/sequences (yaml.dump of numpy values) as plain data."""


def _tolerant(loader, tag_suffix, node):  # noqa: ARG001
    import yaml

    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


__import__("yaml").add_multi_constructor("tag:yaml.org,2002:python/", _tolerant, Loader=_TolerantLoader)


def _open_picocosmo_text(p: Path, text: str, member: str | None = None) -> Recording:
    import yaml

    where = f"{p}" + (f" ({member})" if member else "")
    try:
        doc = next(iter(yaml.load_all(io.StringIO(text), Loader=_TolerantLoader)), None)
    except yaml.YAMLError as exc:
        raise RecordingError(f"{where}: not a picoCosmo raw file (YAML error: {str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict) or "OscConf" not in doc:
        raise RecordingError(f"{where}: unknown file format (neither picodaq-ioc HDF5 nor a picoCosmo raw "
                             "file with OscConf and data)")
    osc = doc["OscConf"] or {}
    data = doc.get("data") or []
    try:
        chans = [str(c) for c in osc["Channels"]]
        ns = int(osc["NSamples"])
        ranges = [float(x) for x in osc["CRanges"]]
        offsets = [float(x) for x in (osc.get("ChanOffsets") or [0.0] * len(chans))]
        dt = float(osc["TSampling"])
        pretrig = float(osc.get("pretrig", 0.0) or 0.0)
        vol = np.asarray(data, dtype=np.float64).reshape(len(data), len(chans), ns) if data else \
            np.zeros((0, len(chans), ns))
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordingError(f"{where}: corrupt picoCosmo raw file: {type(exc).__name__}: {exc}") from None
    mx = PICOCOSMO_MAX_ADC
    rng = np.asarray(ranges)[None, :, None]
    off = np.asarray(offsets)[None, :, None]
    raw = np.clip(np.rint((vol + off) * mx / rng), -32767, 32767).astype(np.int16)
    channels = {c: ChannelConfig(enabled=True, coupling=Coupling.DC, range_v=r, offset_v=o)
                for c, r, o in zip(chans, ranges, offsets, strict=True)}
    thr = osc.get("trgThr")
    trig = TriggerConfig(enabled=bool(osc.get("trgActive", True)), source=str(osc.get("trgChan", chans[0])),
                         threshold_v=float(thr) if thr is not None else 0.0,
                         direction=_direction(osc.get("trgTyp", "Rising")), delay_samples=0, auto_trigger_s=None)
    applied = Applied(channels=channels, sample_interval_s=dt, n_samples=ns, n_pre=int(round(ns * pretrig)),
                      n_segments=1, max_adc=mx, resolution_bits=8, trigger=trig, siggen=SigGenConfig(),
                      config_generation=1)
    n = raw.shape[0]
    ovf_all = np.abs(raw.astype(np.int32)) >= 32767

    def chunks(size: int) -> Iterator[EventChunk]:
        for i in range(0, n, size):
            j = min(n, i + size)
            k = j - i
            yield EventChunk(raw[i:j], np.arange(i + 1, j + 1, dtype=np.int64), np.full(k, math.nan),
                             np.zeros(k), ovf_all[i:j].any(axis=2), np.zeros(k, dtype=bool), np.full(k, math.nan))

    config = {"OscConf": osc, "pFConf": doc.get("pFConf")}
    return Recording(str(p), "picocosmo", applied, tuple(chans), n, config, {"member": member}, chunks)


def _direction(v: Any) -> Direction:
    s = str(v).strip().lower()
    for d in Direction:
        if s == d.value.lower():
            return d
    return Direction.RISING
