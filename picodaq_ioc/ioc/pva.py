"""PV Access next to Channel Access: the IOC's PVs served by p4p (PVXS), plus one ``Frame`` PV.

Design
------
The caproto ``pvdb`` stays the one model of the IOC. :class:`PvaMirror` serves every PV of it
over PV Access with the normative type that fits (``NTScalar`` with display/control/valueAlarm,
``NTEnum``, ``NTScalarArray``; long CHAR strings as ``NTScalar`` string) and follows it:

- **Reads/monitors**: each ``ChannelData.publish`` (called by caproto after every value, alarm
  or metadata change) is wrapped to also ``post`` the PV's complete state to its p4p
  ``SharedPV``. PVXS's C++ threads then serve any number of PVA clients; the IOC's event loop
  only builds one structure per change, however many clients there are.
- **Writes**: a PVA put is turned into exactly what a CA put is: ``ChannelData.auth_write`` on
  the IOC's event loop (p4p's asyncio ``SharedPV`` runs the handler there). So the client value
  checks (``caproto_fixes``), control limits, the putters and the settings pipeline behind
  them, access security (``check_access``, host = the client's IP address, user = the PVA
  account) and the put log (with :data:`picodaq_ioc.ioc.putlog.PROTOCOL` = ``"PVA"``) apply
  unchanged. A put completes (``op.done()``) when ``auth_write`` returns, i.e. with the same
  put-completion semantics as a CA put-callback (``Acquire``).
- **Frame**: ``<prefix>Frame`` is an NTNDArray (areaDetector style, ``float32``, shape
  ``[channels, samples]``) extended with ``channels``, ``timeAxis``, ``eventNumber`` and
  ``triggerTime`` fields, posted once per published event. One monitor update holds all
  channels of one event, so a client never combines channels of different events.

The server honours the ``EPICS_PVAS_*`` environment (``EPICS_PVAS_SERVER_PORT``,
``EPICS_PVAS_BROADCAST_PORT``, ``EPICS_PVAS_INTF_ADDR_LIST`` ...); the IOC's CLI forces the
interface and beacon lists to 127.0.0.1 unless ``--serve-network`` (see :mod:`.env`).

p4p is the optional extra ``pva``; this module imports it lazily (:func:`available`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from caproto import AlarmSeverity, AlarmStatus, ChannelType

from . import putlog

log = logging.getLogger("picodaq_ioc.ioc.pva")

__all__ = ["FRAME_PV", "PvaMirror", "available", "frame_type", "nt_code"]

#: name of the per-event structure PV (after the prefix)
FRAME_PV = "Frame"

#: PVA scalar type code of each CA type
_CODES = {ChannelType.DOUBLE: "d", ChannelType.FLOAT: "f", ChannelType.LONG: "i", ChannelType.INT: "h",
          ChannelType.CHAR: "B", ChannelType.STRING: "s", ChannelType.ENUM: "i"}
#: CA type of a client value (what ``auth_write`` is told the client sent)
_WIRE = {"d": ChannelType.DOUBLE, "f": ChannelType.FLOAT, "i": ChannelType.LONG, "h": ChannelType.INT,
         "B": ChannelType.CHAR, "s": ChannelType.STRING}


#: ``display.form`` choices of NTScalar (as PVXS QSRV serves them)
_FORMS = ["Default", "String", "Binary", "Decimal", "Hex", "Exponential", "Engineering"]


def available() -> bool:
    """True when p4p (the ``pva`` extra) can be imported."""
    try:
        import p4p.server  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def nt_code(chan: Any) -> tuple[str, str]:
    """``(kind, code)`` of a caproto channel: kind ``enum``, ``scalar`` or ``array``; ``code``
    the PVA type code of the value (``"s"`` for strings, including long CHAR strings)."""
    ftype = ChannelType(chan.data_type)
    if ftype == ChannelType.ENUM:
        return "enum", "i"
    if ftype == ChannelType.CHAR and isinstance(chan.value, str):
        return "scalar", "s"
    if (chan.max_length or 1) > 1:
        return "array", "a" + _CODES[ftype]
    return "scalar", _CODES[ftype]


def _nt_type(kind: str, code: str):
    from p4p.nt import NTEnum, NTScalar  # noqa: PLC0415

    if kind == "enum":
        return NTEnum.buildType(extra=[("display", ("S", None, [("description", "s")]))])
    numeric = code[-1] != "s"
    scalar_numeric = numeric and kind == "scalar"
    return NTScalar.buildType(code, display=True, control=scalar_numeric, valueAlarm=scalar_numeric,
                              form=numeric)


def frame_type():
    """The ``Frame`` structure: NTNDArray plus the event's own fields."""
    from p4p import Type  # noqa: PLC0415
    from p4p.nt import NTNDArray  # noqa: PLC0415

    # NTNDArray.buildType(extra=...) fails in p4p 4.3 (aspy() is a tuple): extend it here
    _s, type_id, fields = NTNDArray._default_type.aspy()
    return Type(list(fields) + [("channels", "as"), ("timeAxis", "ad"), ("eventNumber", "l"),
                                ("triggerTime", "d")], id=type_id)


def _alarm(chan: Any) -> dict[str, Any]:
    sev = int(chan.alarm.severity)
    stat = AlarmStatus(int(chan.alarm.status))
    # PVA alarm.status: 0 NONE, 3 RECORD; the CA condition goes to the message (as QSRV does)
    return {"severity": sev, "status": 0 if sev == AlarmSeverity.NO_ALARM else 3,
            "message": "" if stat == AlarmStatus.NO_ALARM else stat.name}


def _stamp(t: float) -> dict[str, Any]:
    sec = math.floor(t)
    return {"secondsPastEpoch": int(sec), "nanoseconds": int((t - sec) * 1e9)}


def _num(x: Any) -> float:
    return 0.0 if x is None else float(x)


def _description(chan: Any) -> str:
    spec = getattr(chan, "pvspec", None)
    doc = (getattr(spec, "doc", None) if spec is not None else None) or ""
    return " ".join(str(doc).split())


def state_of(chan: Any, kind: str, code: str) -> dict[str, Any]:
    """The complete PVA structure (as a dict) for the caproto channel's current state."""
    value = chan.value
    d: dict[str, Any] = {"alarm": _alarm(chan), "timeStamp": _stamp(float(chan.timestamp))}
    desc = _description(chan)
    if kind == "enum":
        strings = list(getattr(chan, "enum_strings", ()) or ())
        index = strings.index(value) if isinstance(value, str) and value in strings else int(
            value if not isinstance(value, str) else 0)
        d["value"] = {"index": index, "choices": strings}
        d["display"] = {"description": desc}
        return d
    if code == "s":
        d["value"] = value if isinstance(value, str) else str(value)
        d["display"] = {"description": desc, "units": str(getattr(chan, "units", "") or "")}
        return d
    d["value"] = np.asarray(value) if kind == "array" else value
    d["display"] = {"limitLow": _num(chan.lower_disp_limit), "limitHigh": _num(chan.upper_disp_limit),
                    "description": desc, "units": str(getattr(chan, "units", "") or ""),
                    "precision": int(getattr(chan, "precision", 0) or 0),
                    "form": {"index": 0, "choices": _FORMS}}
    if kind == "scalar":
        d["control"] = {"limitLow": _num(chan.lower_ctrl_limit), "limitHigh": _num(chan.upper_ctrl_limit),
                        "minStep": 0}
        d["valueAlarm"] = {
            "active": bool(chan.upper_alarm_limit or chan.lower_alarm_limit or chan.upper_warning_limit
                           or chan.lower_warning_limit),
            "lowAlarmLimit": _num(chan.lower_alarm_limit), "lowWarningLimit": _num(chan.lower_warning_limit),
            "highWarningLimit": _num(chan.upper_warning_limit),
            "highAlarmLimit": _num(chan.upper_alarm_limit),
            "lowAlarmSeverity": int(AlarmSeverity.MAJOR_ALARM),
            "lowWarningSeverity": int(AlarmSeverity.MINOR_ALARM),
            "highWarningSeverity": int(AlarmSeverity.MINOR_ALARM),
            "highAlarmSeverity": int(AlarmSeverity.MAJOR_ALARM), "hysteresis": 0.0}
    return d


def client_value(kind: str, code: str, value: Any) -> tuple[list[Any], ChannelType]:
    """``(data, CA type)`` for ``auth_write`` from the ``value`` field of a client's put."""
    if kind == "enum":
        index = value["index"]
        return [int(index)], ChannelType.ENUM
    if kind == "array":
        arr = np.asarray(value)
        return list(arr) if arr.dtype.kind in "US" else arr, _WIRE[code[-1]]
    if code == "s":
        return [str(value).encode("utf-8")], ChannelType.STRING
    return [value], _WIRE[code]


class _Entry:
    """One mirrored PV: its caproto channel, its PVA type and its SharedPV."""

    __slots__ = ("chan", "code", "kind", "name", "shared", "type")

    def __init__(self, name: str, chan: Any) -> None:
        self.name = name
        self.chan = chan
        self.kind, self.code = nt_code(chan)
        self.type = _nt_type(self.kind, self.code)
        self.shared: Any = None

    def current(self):
        from p4p import Value  # noqa: PLC0415

        return Value(self.type, state_of(self.chan, self.kind, self.code))


class PvaMirror:
    """Serve a caproto ``pvdb`` (and the ``Frame`` PV) over PV Access.

    Create it inside the IOC's running event loop, after access security and the put log are
    installed on ``pvdb``, then :meth:`start`. ``post_frame`` is called by the IOC for each
    published event; :meth:`stop` ends serving.

    Parameters
    ----------
    pvdb : mapping
        ``{pvname: ChannelData}`` of the IOC.
    prefix : str
        The IOC's prefix (``<prefix>Frame``).
    conf : dict, optional
        Extra ``EPICS_PVAS_*`` settings for p4p's ``Server`` (the environment is used too).
    """

    def __init__(self, pvdb: Mapping[str, Any], prefix: str, conf: Mapping[str, str] | None = None) -> None:
        from p4p.server import StaticProvider  # noqa: PLC0415
        from p4p.server.asyncio import SharedPV  # noqa: PLC0415

        self.prefix = prefix
        self.conf = dict(conf or {})
        self.entries: dict[str, _Entry] = {}
        self.provider = StaticProvider("picodaq")
        self.server: Any = None
        self.posts = 0
        self.frames_posted = 0
        self.puts = 0
        for name, chan in pvdb.items():
            entry = _Entry(name, chan)
            entry.shared = SharedPV(initial=entry.current(), handler=_PutHandler(self, entry))
            self.entries[name] = entry
            self._wrap_publish(entry)
            self.provider.add(name, entry.shared)
        self._frame_type = frame_type()
        self.frame_pv = SharedPV(initial=self._empty_frame(), handler=_ReadOnly())
        self.provider.add(prefix + FRAME_PV, self.frame_pv)
        self._axis_key: Any = None
        self._axis: np.ndarray = np.zeros(0)

    # ------------------------------------------------------------------ serving
    def start(self) -> None:
        from p4p.server import Server  # noqa: PLC0415

        self.server = Server(providers=[self.provider], conf=self.conf or None, useenv=True)
        conf = self.server.conf()
        log.info("PV Access: %d PVs on %s, TCP port %s, UDP port %s", len(self.entries) + 1,
                 conf.get("EPICS_PVAS_INTF_ADDR_LIST"), conf.get("EPICS_PVAS_SERVER_PORT"),
                 conf.get("EPICS_PVAS_BROADCAST_PORT"))

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    # ------------------------------------------------------------------ CA -> PVA
    def _wrap_publish(self, entry: _Entry) -> None:
        chan = entry.chan
        original = chan.publish

        async def publish(flags, _orig=original, _entry=entry):
            await _orig(flags)
            self.post(_entry)

        chan.publish = publish

    def post(self, entry: _Entry) -> None:
        """Post the channel's state to its PVA clients (never raises into caproto)."""
        try:
            entry.shared.post(entry.current())
            self.posts += 1
        except Exception:
            log.exception("PVA post of %s failed", entry.name)

    # ------------------------------------------------------------------ Frame
    def _empty_frame(self):
        from p4p import Value  # noqa: PLC0415

        return Value(self._frame_type, {"value": ("floatValue", np.zeros(0, np.float32))})

    def post_frame(self, frame: Any) -> None:
        """Post one event (a :class:`~picodaq_ioc.ioc.publisher.Frame`) as ``<prefix>Frame``."""
        from p4p import Value  # noqa: PLC0415

        try:
            chans = [ch for ch in frame.volts]
            data = np.stack([frame.volts[ch] for ch in chans]) if chans else np.zeros((0, 0), np.float32)
            n_ch, n_s = data.shape
            key = frame.applied.config_generation
            if key != self._axis_key or self._axis.size != n_s:
                self._axis = np.asarray(frame.applied.time_axis(), dtype=np.float64)[:n_s]
                self._axis_key = key
            stamp = _stamp(frame.timestamp)
            number = int(frame.event_number)
            attrs = [{"name": "EventNumber", "value": ("l", number)},
                     {"name": "TriggerTime", "value": ("d", float(frame.t_trigger))},
                     {"name": "Channels", "value": ("s", ",".join(chans))}]
            value = Value(self._frame_type, {
                "value": ("floatValue", data.reshape(-1)),
                "compressedSize": data.nbytes, "uncompressedSize": data.nbytes,
                "uniqueId": number & 0x7FFFFFFF,
                "dataTimeStamp": stamp, "timeStamp": stamp,
                "dimension": [{"size": n_s, "offset": 0, "fullSize": n_s, "binning": 1, "reverse": False},
                              {"size": n_ch, "offset": 0, "fullSize": n_ch, "binning": 1, "reverse": False}],
                "attribute": attrs,
                "channels": chans, "timeAxis": self._axis, "eventNumber": number,
                "triggerTime": float(frame.t_trigger)})
            self.frame_pv.post(value)
            self.frames_posted += 1
        except Exception:
            log.exception("PVA post of the Frame failed")

    # ------------------------------------------------------------------ PVA -> CA put path
    async def put(self, entry: _Entry, op: Any) -> None:
        """A client's put: through ``auth_write`` like a CA put; ``op.done`` with its outcome."""
        peer = str(op.peer() or "")
        host, _, port = peer.rpartition(":")
        host = host or peer
        user = str(op.account() or "")
        token = putlog.PROTOCOL.set("PVA")
        try:
            raw = op.value()
            if not raw.changed("value") and not (entry.kind == "enum" and raw.changed("value.index")):
                raise ValueError("the put carries no 'value' field")
            data, data_type = client_value(entry.kind, entry.code, raw["value"])
            await entry.chan.auth_write(host, user, data, data_type, None,
                                        user_address=(host, int(port) if port.isdigit() else 0))
        except asyncio.CancelledError:
            op.done(error="IOC shutting down")
            raise
        except Exception as ex:
            text = str(ex).strip()
            if type(ex).__name__ == "Forbidden":
                text = f"no write access to {entry.name} for {user}@{host}"
            op.done(error=text or type(ex).__name__)
            return
        finally:
            putlog.PROTOCOL.reset(token)
        self.puts += 1
        op.done()


class _PutHandler:
    """p4p handler of one mirrored PV (the asyncio SharedPV runs ``put`` on the IOC's loop)."""

    def __init__(self, mirror: PvaMirror, entry: _Entry) -> None:
        self.mirror = mirror
        self.entry = entry

    def put(self, pv: Any, op: Any):
        return self.mirror.put(self.entry, op)


class _ReadOnly:
    def put(self, pv: Any, op: Any) -> None:
        op.done(error=f"{FRAME_PV} is read-only")
