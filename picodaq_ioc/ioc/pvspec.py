"""Factories for the IOC's PVs: one place that gives every PV its metadata.

Every PV of the IOC is made here, so each one carries a description (``doc`` -> DESC),
units, precision, display and control limits, enum strings, an EPICS record type
(``record`` -> ``.RTYP``/``.DESC`` fields and the ``db/`` generator) and **its own alarm**
(caproto shares one alarm per group unless ``alarm_group`` differs).

Conventions: settings are a writable setpoint ``Name`` plus a read-only ``Name_RBV``
showing what the device applied. Control limits are enforced by caproto on put (out of
range, NaN and inf are refused with a CA error); putters add the device checks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from caproto import AlarmSeverity, AlarmStatus, ChannelType
from caproto.server import pvproperty

#: display scales of rates and times (one definition, shared with the analysis results)
from ..analysis.base import RATE_SCALE_HZ as RATE_SCALE_HZ  # noqa: E402
from ..analysis.base import TIME_SCALE_S as TIME_SCALE_S  # noqa: E402

#: Subscription backlog of waveform PVs (research notes §0 finding 4): bounded memory.
WAVEFORM_BACKLOG = 5


def _limits(low: float | None, high: float | None, ctrl: bool) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if low is not None and high is not None:
        kw["lower_disp_limit"] = low
        kw["upper_disp_limit"] = high
        if ctrl:
            kw["lower_ctrl_limit"] = low
            kw["upper_ctrl_limit"] = high
    return kw


def float_pv(name: str, doc: str, *, value: float = 0.0, units: str = "", precision: int = 3,
             low: float | None = None, high: float | None = None, read_only: bool = False,
             **extra: Any) -> pvproperty:
    """A double scalar (``ao`` when writable, ``ai`` when read-only)."""
    return pvproperty(
        name=name, value=float(value), dtype=float, doc=doc, read_only=read_only,
        record="ai" if read_only else "ao", alarm_group=name, units=units, precision=precision,
        **_limits(low, high, ctrl=not read_only), **extra)


def int_pv(name: str, doc: str, *, value: int = 0, units: str = "", low: int | None = None,
           high: int | None = None, read_only: bool = False, **extra: Any) -> pvproperty:
    """A 32-bit integer scalar (``longout`` / ``longin``)."""
    return pvproperty(
        name=name, value=int(value), dtype=int, doc=doc, read_only=read_only,
        record="longin" if read_only else "longout", alarm_group=name, units=units,
        **_limits(low, high, ctrl=not read_only), **extra)


def enum_pv(name: str, doc: str, strings: Sequence[str], *, value: str | int = 0,
            read_only: bool = False, **extra: Any) -> pvproperty:
    """An enum (``bo``/``bi`` for two states, ``mbbo``/``mbbi`` otherwise)."""
    strings = tuple(str(s) for s in strings)
    if isinstance(value, int):
        value = strings[value]
    if len(strings) == 2:
        record = "bi" if read_only else "bo"
    else:
        record = "mbbi" if read_only else "mbbo"
    return pvproperty(name=name, value=value, dtype=ChannelType.ENUM, enum_strings=strings,
                      doc=doc, read_only=read_only, record=record, alarm_group=name, **extra)


def string_pv(name: str, doc: str, *, value: str = "", read_only: bool = True, **extra: Any) -> pvproperty:
    """A classic 40-character string (``stringin``)."""
    return pvproperty(name=name, value=value, dtype=ChannelType.STRING, doc=doc,
                      read_only=read_only, record="stringin" if read_only else "stringout",
                      alarm_group=name, **extra)


def long_string_pv(name: str, doc: str, *, value: str = "", max_length: int = 256,
                   read_only: bool = True) -> pvproperty:
    """A long string as a CHAR waveform (areaDetector ``StatusMessage_RBV``, ``FilePath``;
    ``caget -S`` / ``caput -S``)."""
    return pvproperty(name=name, value=value, dtype=ChannelType.CHAR, max_length=max_length,
                      doc=doc, read_only=read_only, record="waveform", alarm_group=name, string_encoding="utf-8")


def waveform_pv(name: str, doc: str, *, max_length: int, dtype: ChannelType = ChannelType.FLOAT,
                units: str = "", precision: int = 4, low: float | None = None,
                high: float | None = None, backlog: int = WAVEFORM_BACKLOG) -> pvproperty:
    """A read-only array (``waveform``) with a small subscription backlog."""
    np_dtype = {ChannelType.FLOAT: np.float32, ChannelType.DOUBLE: np.float64,
                ChannelType.LONG: np.int32, ChannelType.INT: np.int16}[dtype]
    extra: dict[str, Any] = {}
    if dtype in (ChannelType.FLOAT, ChannelType.DOUBLE):
        extra["precision"] = precision
    return pvproperty(name=name, value=np.zeros(0, dtype=np_dtype), dtype=dtype, max_length=max_length,
                      doc=doc, read_only=True, record="waveform", alarm_group=name, units=units,
                      max_subscription_backlog=backlog, **extra, **_limits(low, high, ctrl=False))


def pair(factory, name: str, doc: str, **kw: Any) -> tuple[pvproperty, pvproperty]:
    """Setpoint ``name`` + read-only readback ``name_RBV`` with the same metadata."""
    sp = factory(name, doc, **kw)
    kw_rb = dict(kw)
    kw_rb["read_only"] = True
    rb = factory(name + "_RBV", doc + " (applied)", **kw_rb)
    return sp, rb


# ------------------------------------------------------------------------------------
# alarms and safe writes
# ------------------------------------------------------------------------------------

async def set_alarm(pv, severity: AlarmSeverity, status: AlarmStatus = AlarmStatus.NO_ALARM) -> None:
    """Set ``pv``'s own alarm if it differs (each PV has its own alarm group)."""
    if severity == AlarmSeverity.NO_ALARM:
        status = AlarmStatus.NO_ALARM
    if pv.alarm.severity != severity or pv.alarm.status != status:
        await pv.alarm.write(status=status, severity=severity)


async def write_if_changed(pv, value, **kw: Any) -> None:
    """Write a scalar only when it changed (keeps monitors quiet)."""
    old = pv.value
    if isinstance(value, float) and isinstance(old, float):
        if old == value or (math.isnan(old) and math.isnan(value)):
            return
    elif old == value:
        return
    await pv.write(value, **kw)


def plain(value: Any) -> Any:
    """numpy scalars as plain Python values (for messages)."""
    if hasattr(value, "item") and getattr(value, "size", 2) == 1:
        return value.item()
    return value


def finite(value: Any, what: str) -> float:
    """``float(value)`` or ValueError naming ``what`` for NaN / inf / junk."""
    try:
        v = float(value)
    except (TypeError, ValueError) as ex:
        raise ValueError(f"{what}: {plain(value)!r} is not a number") from ex
    if not math.isfinite(v):
        raise ValueError(f"{what}: {plain(value)!r} is not a finite number")
    return v


async def fill_record_fields(pvdb: dict) -> int:
    """Copy units and control limits into the record fields caproto does not link
    (``PV.EGU``, ``PV.DRVH``, ``PV.DRVL``), so ``caget PICO:A:Range.EGU`` answers like an
    EPICS record. Returns the number of fields written."""
    n = 0
    for data in pvdb.values():
        fields = getattr(data, "field_inst", None)
        if fields is None:
            continue
        units = getattr(data, "units", "")
        egu = getattr(fields, "engineering_units", None)
        if egu is not None and units:
            await egu.write(str(units)[:15], verify_value=False)
            n += 1
        lo, hi = getattr(data, "lower_ctrl_limit", None), getattr(data, "upper_ctrl_limit", None)
        drvh, drvl = getattr(fields, "drive_high_limit", None), getattr(fields, "drive_low_limit", None)
        if drvh is not None and drvl is not None and lo is not None and hi is not None and lo != hi:
            await drvh.write(float(hi), verify_value=False)
            await drvl.write(float(lo), verify_value=False)
            n += 2
    return n


# ------------------------------------------------------------------------------------
# introspection for db/ and docs generation
# ------------------------------------------------------------------------------------

#: record types the generators emit (others, e.g. StatusHelper's ``sub``, are mapped to these)
RECORD_TYPES = ("ai", "ao", "bi", "bo", "mbbi", "mbbo", "longin", "longout", "stringin", "stringout",
                "waveform")


@dataclass(frozen=True)
class PVInfo:
    """Everything the generators need to know about one PV."""

    name: str  # without prefix
    record: str
    ftype: str  # DOUBLE, FLOAT, LONG, ENUM, STRING, CHAR
    doc: str
    writable: bool
    units: str
    precision: int | None
    disp_low: float | None
    disp_high: float | None
    ctrl_low: float | None
    ctrl_high: float | None
    warn_high: float | None
    alarm_high: float | None
    enum_strings: tuple[str, ...]
    max_length: int


def describe(pvdb: dict, prefix: str) -> list[PVInfo]:
    """PVInfo for every PV of ``pvdb`` (names relative to ``prefix``), in pvdb order."""
    out: list[PVInfo] = []
    for full, data in pvdb.items():
        spec = getattr(data, "pvspec", None)
        name = full[len(prefix):] if full.startswith(prefix) else full
        ftype = ChannelType(data.data_type).name
        record = spec.record if spec is not None and spec.record else None
        if record not in RECORD_TYPES:
            record = _guess_record(data)
        lo_d = getattr(data, "lower_disp_limit", None)
        hi_d = getattr(data, "upper_disp_limit", None)
        lo_c = getattr(data, "lower_ctrl_limit", None)
        hi_c = getattr(data, "upper_ctrl_limit", None)
        warn = getattr(data, "upper_warning_limit", None)
        alarm = getattr(data, "upper_alarm_limit", None)

        def _opt(lo, hi):
            return (None, None) if lo is None or hi is None or lo == hi else (float(lo), float(hi))

        lo_d, hi_d = _opt(lo_d, hi_d)
        lo_c, hi_c = _opt(lo_c, hi_c)
        doc = (spec.doc if spec is not None else None) or (data.__doc__ or "")
        doc = " ".join(str(doc).split())
        read_only = bool(spec.read_only) if spec is not None else False
        out.append(PVInfo(
            name=name, record=record, ftype=ftype, doc=doc, writable=not read_only,
            units=str(getattr(data, "units", "") or ""),
            precision=getattr(data, "precision", None) if ftype in ("DOUBLE", "FLOAT") else None,
            disp_low=lo_d, disp_high=hi_d, ctrl_low=lo_c, ctrl_high=hi_c,
            warn_high=float(warn) if warn else None, alarm_high=float(alarm) if alarm else None,
            enum_strings=tuple(getattr(data, "enum_strings", ()) or ()),
            max_length=int(data.max_length or 1)))
    return out


def _guess_record(data) -> str:
    ftype = ChannelType(data.data_type)
    if (data.max_length or 1) > 1:
        return "waveform"
    if ftype == ChannelType.ENUM:
        return "bi" if len(getattr(data, "enum_strings", ())) == 2 else "mbbi"
    if ftype == ChannelType.STRING:
        return "stringin"
    if ftype in (ChannelType.LONG, ChannelType.INT):
        return "longin"
    return "ai"
