"""DBR_CTRL_* / DBR_GR_* / DBR_STS_* reads of every PV answered as RSRV answers them.

caproto 1.3.0 converts a PV to the type a client asks for with ``backend.convert_values``
and fills the limits of a ``DBR_GR_*``/``DBR_CTRL_*`` answer by converting them from the
PV's own type. For a string PV (``Model_RBV``) asked for as a number
(``caget -d DBR_CTRL_DOUBLE``) both steps raise ``CaprotoConversionError``; the server turns
any exception into an ``ECA_INTERNAL`` error, which EPICS base's libca treats as *fatal*:
``caget`` prints "Channel Access Internal Failure ... CaprotoConversionError" and aborts
(docs/caproto_ctrl.md has a plain-caproto reproduction). RSRV, the C server, converts the
string with ``epicsParseFloat`` -- "12.5" reads as 12.5 -- and when that cannot work it
answers the read with the status ``ECA_GETFAIL`` (a *warning*, "Channel read request
failed") and a zeroed value, to that client only.

This module does the same:

- :class:`CtrlReadMixin` (mixed into every ``ChannelData`` class the IOC's groups build,
  through :data:`TYPE_MAP` / :data:`TYPE_MAP_READ_ONLY`) converts a string PV to a number
  by parsing it, leaves its limits at 0 (as RSRV: a string has none), formats float arrays
  as strings with the PV's precision, and raises :class:`ReadFailed` when a conversion
  cannot work.
- ``DBR_GR_STRING``/``DBR_CTRL_STRING`` are answered with the ``dbr_sts_string`` layout of
  EPICS base (caproto sends ``dbr_time_string``: clients showed 8 bytes of time stamp as
  the start of the string).
- a waveform's ``.NORD`` field follows the number of elements written (caproto: always 0).
- :func:`apply` makes the server answer :class:`ReadFailed` as RSRV does: a read-notify
  response carrying ``ECA_GETFAIL`` (the status of a read response is set by the circuit,
  not by the channel, so this one hook sits on caproto's base ``_process_command``; every
  circuit class derived from it inherits it).
"""

from __future__ import annotations

import contextvars
import functools
import logging
from typing import Any

import caproto as ca
import caproto.server.common as _common
import numpy as np
from caproto import ChannelType
from caproto._backend import backend
from caproto._dbr import DBR_TYPES, native_type, native_types
from caproto._utils import CaprotoConversionError, ConversionDirection
from caproto.server.server import pvspec_type_map, pvspec_type_map_read_only

log = logging.getLogger("picodaq_ioc.ioc.caproto_ctrl")

_FLOATS = (ChannelType.FLOAT, ChannelType.DOUBLE)
_NUMERIC = (ChannelType.DOUBLE, ChannelType.FLOAT, ChannelType.LONG, ChannelType.INT,
            ChannelType.CHAR, ChannelType.ENUM)


class ReadFailed(Exception):
    """A read whose conversion cannot work (answered with ``ECA_GETFAIL``)."""


#: True while the server answers a client's read request: a conversion that cannot work
#: raises :class:`ReadFailed` then. Elsewhere (monitor updates sent while the IOC writes
#: the PV, whose status caproto cannot set) it gives a zeroed value, so the IOC's own write
#: never fails because of one client's requested type.
_STRICT = contextvars.ContextVar("caproto_ctrl_strict", default=False)


def parse_number(text: str) -> float:
    """``text`` as a number the way RSRV's ``getStringDouble`` does: blank is 0, else the
    whole (stripped) string must be a number (:class:`ReadFailed` otherwise, or 0 outside a
    client's read request)."""
    t = text.strip()
    if not t:
        return 0.0
    try:
        return float(t)
    except ValueError:
        if _STRICT.get():
            raise ReadFailed(f"{text!r} is not a number") from None
        return 0.0


class CtrlReadMixin:
    """Read conversions of a ``ChannelData`` the way RSRV does them (see the module doc)."""

    async def _read(self, data_type):
        try:
            requested = ChannelType(data_type)
        except ValueError:
            return await super()._read(data_type)
        if requested in (ChannelType.STSACK_STRING, ChannelType.CLASS_NAME):
            return await super()._read(data_type)
        if requested in (ChannelType.GR_STRING, ChannelType.CTRL_STRING):
            # caproto's DBR_TYPES maps these to DBR_TIME_STRING (12 bytes); in EPICS base they
            # are dbr_sts_string (4 bytes): the 8 stamp bytes were read as the string's start
            return await self._read(ChannelType.STS_STRING)
        to = native_type(requested)
        own = ChannelType(self.data_type)
        if own == ChannelType.STRING and to != ChannelType.STRING:
            raw = self._data["value"]
            texts = [raw] if isinstance(raw, (str, bytes)) else list(raw)
            numbers = [parse_number(t.decode(self.string_encoding or "latin-1")
                                    if isinstance(t, bytes) else str(t)) for t in texts]
            values = backend.convert_values(values=numbers, from_dtype=ChannelType.DOUBLE, to_dtype=to,
                                            direction=ConversionDirection.TO_WIRE)
            return await self._with_metadata(requested, values, limits=False)
        if to == ChannelType.STRING and own in _FLOATS:
            prec = max(0, min(int(self._data.get("precision", 0) or 0), 17))
            arr = np.atleast_1d(np.asarray(self._data["value"], dtype=np.float64))
            values = [f"{v:.{prec}f}".encode()[:39] for v in arr]
            return await self._with_metadata(requested, values, limits=True)
        try:
            return await super()._read(data_type)
        except CaprotoConversionError as ex:
            if _STRICT.get():
                raise ReadFailed(f"as {requested.name}: {ex}") from ex
            return await self._with_metadata(requested, _zero_payload(requested, 1), limits=False)

    async def update_fields(self, value):
        """caproto's hook after a value write; also keeps a waveform's ``.NORD`` (number of
        valid elements) equal to the length written, as the waveform record does (caproto
        leaves it at 0, so ``caget PV.NORD`` and clients that size arrays by NORD saw none)."""
        await super().update_fields(value)
        fields = getattr(self, "field_inst", None)
        nord = getattr(fields, "number_elements_read", None)
        if nord is not None and (self.max_length or 1) > 1:
            n = self.calculate_length(value)
            if nord.value != n:
                await nord.write(n, verify_value=False)

    async def _with_metadata(self, requested: ChannelType, values, *, limits: bool):
        """caproto's metadata part of ``_read`` for already converted ``values``; without
        ``limits`` the display/control/alarm limits stay 0 (a string has none)."""
        if requested in native_types:
            return b"", values
        md = DBR_TYPES[requested]()
        if limits:
            self._read_metadata(md)
        else:
            if hasattr(md, "stamp"):
                md.stamp = self.epics_timestamp
        alarm = await self.alarm.read()
        for name, _ in alarm._fields_:
            if hasattr(md, name):
                setattr(md, name, getattr(alarm, name))
        return md, values


@functools.cache
def ctrl_class(cls: type) -> type:
    """``cls`` with :class:`CtrlReadMixin` (one class per base, so ``isinstance`` works)."""
    return type(cls.__name__, (CtrlReadMixin, cls), {"__doc__": cls.__doc__,
                                                     "__module__": cls.__module__})


#: caproto's pvproperty type maps with the RSRV-like reads; a PVGroup sets
#: ``type_map = TYPE_MAP; type_map_read_only = TYPE_MAP_READ_ONLY``
TYPE_MAP: dict[Any, type] = {k: ctrl_class(v) for k, v in pvspec_type_map.items()}
TYPE_MAP_READ_ONLY: dict[Any, type] = {k: ctrl_class(v) for k, v in pvspec_type_map_read_only.items()}


def _zero_payload(data_type: ChannelType, count: int):
    to = native_type(data_type)
    if to == ChannelType.STRING:
        return [b""] * count
    return backend.convert_values(values=[0] * count, from_dtype=ChannelType.LONG
                                  if to != ChannelType.ENUM else ChannelType.INT,
                                  to_dtype=to if to != ChannelType.ENUM else ChannelType.INT,
                                  direction=ConversionDirection.TO_WIRE)


_ORIGINAL_PROCESS = _common.VirtualCircuit._process_command


async def _process_command(self, command):
    """caproto's ``_process_command``; a read that raises :class:`ReadFailed` is answered with
    ``ECA_GETFAIL`` and a zeroed value, as RSRV does (not with a fatal ``ECA_INTERNAL``)."""
    if not isinstance(command, (ca.ReadNotifyRequest, ca.ReadRequest)):
        return await _ORIGINAL_PROCESS(self, command)
    token = _STRICT.set(True)
    try:
        return await _ORIGINAL_PROCESS(self, command)
    except ReadFailed as ex:
        chan, _ = self._get_db_entry_from_command(command)
        log.info("%s: read as %s refused (ECA_GETFAIL): %s", chan.name,
                 ChannelType(command.data_type).name, ex)
        count = max(1, int(command.data_count))
        md = b"" if command.data_type in native_types else DBR_TYPES[command.data_type]()
        return [chan.read(data=_zero_payload(ChannelType(command.data_type), count),
                          data_type=command.data_type, data_count=count,
                          status=ca.CAStatus.ECA_GETFAIL.value.code_with_severity, ioid=command.ioid,
                          metadata=md, notify=isinstance(command, ca.ReadNotifyRequest))]
    finally:
        _STRICT.reset(token)


def apply() -> None:
    """Install the ``ECA_GETFAIL`` answer (idempotent)."""
    _common.VirtualCircuit._process_command = _process_command


def is_applied() -> bool:
    return _common.VirtualCircuit._process_command is _process_command
