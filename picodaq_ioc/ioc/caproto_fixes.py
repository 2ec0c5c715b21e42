"""Workarounds for caproto 1.3.0 server bugs, applied once when the IOC starts.

1. *deque mutated during iteration* (research notes §0 finding 1, §2.6):
   ``Context._subscription_queue_iteration`` iterates the live deque of subscriptions
   across ``await``; a client (dis)connecting meanwhile raises ``RuntimeError`` in the
   subscription task and **every monitor of the IOC stops updating** while ``caget``
   still works. The fix iterates over a snapshot (``list(...)``).
2. A client disconnecting can end its circuit's handler with ``RuntimeError: await wasn't
   used with future`` (``asyncio`` ``VirtualCircuit._on_disconnect`` cancels and awaits the
   subscription task, which may be the running task itself); the circuit is then never
   removed from the server's list. The fix does not await the current task and swallows
   the cancellation of the other.
3. Refused puts are logged by caproto as a full traceback of an anonymous request. We
   log one line naming the PV, the value and the reason instead (``picodaq_ioc.ioc.puts``)
   and shorten caproto's record to one line.

:func:`apply` is idempotent; :func:`is_applied` tells whether the patch is active.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

import caproto.asyncio.server as _aserver
import caproto.server.common as _common
import caproto.server.server as _server
from caproto._data import SkipWrite

log = logging.getLogger("picodaq_ioc.ioc.puts")

#: Optional callback ``on_refused(pvname, reason)`` (the IOC shows it in StatusMessage_RBV).
on_refused = None

_ORIGINAL_ITERATION = _common.Context._subscription_queue_iteration
_ORIGINAL_VERIFY = _server.PvpropertyData.verify_value
_ORIGINAL_ON_DISCONNECT = _aserver.VirtualCircuit._on_disconnect


async def _on_disconnect(self):
    """asyncio ``VirtualCircuit._on_disconnect`` that never awaits the running task."""
    await _common.VirtualCircuit._on_disconnect(self)
    self.client.close()
    task, self._sub_task = self._sub_task, None
    if task is not None and task is not asyncio.current_task():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def _subscription_queue_iteration(self, sub_specs, metadata, values, flags, sub):
    """caproto's method, iterating over a *snapshot* of the subscriptions."""
    if sub is None:
        for sub_spec in sub_specs:
            for s in list(self.subscriptions[sub_spec]):  # snapshot: clients may come and go
                await self._subscription_queue_send(sub_spec, s, metadata=metadata, values=values,
                                                    flags=flags)
    else:
        (sub_spec,) = sub_specs
        await self._subscription_queue_send(sub_spec, sub, metadata=metadata, values=values,
                                            flags=flags)


def _short(value) -> str:
    if hasattr(value, "item") and getattr(value, "size", 2) == 1:
        value = value.item()  # numpy scalar -> plain Python for the log
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


async def _verify_value_logged(self, value):
    """``PvpropertyData.verify_value`` that logs every refusal with the PV name."""
    try:
        return await _ORIGINAL_VERIFY(self, value)
    except SkipWrite:
        raise
    except Exception as ex:
        if isinstance(value, float) and not math.isfinite(value):
            reason = f"{ex} (value is not finite)"
        else:
            reason = str(ex) or type(ex).__name__
        log.warning("put refused: %s = %s: %s", self.pvname, _short(value), reason)
        if on_refused is not None:
            try:
                on_refused(self.pvname, reason)
            except Exception:  # reporting must never change the put's outcome
                log.exception("on_refused callback failed")
        raise


class _OneLineWriteErrors(logging.Filter):
    """Drop the traceback of caproto's 'Invalid write request' (already logged by us)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and str(record.msg).startswith("Invalid write request"):
            ex = record.exc_info[1]
            record.msg = "write request refused (%s): " + type(ex).__name__ + ": " + str(ex).replace("%", "%%")
            record.args = (record.args[1],) if isinstance(record.args, tuple) and len(record.args) > 1 else ()
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.INFO
            record.levelname = "INFO"
        return True


_FILTER = _OneLineWriteErrors()


def apply() -> None:
    """Install the workarounds (idempotent)."""
    _common.Context._subscription_queue_iteration = _subscription_queue_iteration
    _server.PvpropertyData.verify_value = _verify_value_logged
    _aserver.VirtualCircuit._on_disconnect = _on_disconnect
    for name in ("caproto.ctx", "caproto.circ", "caproto"):
        lg = logging.getLogger(name)
        if _FILTER not in lg.filters:
            lg.addFilter(_FILTER)


def revert() -> None:
    """Restore caproto's original methods (tests use this to show the bug)."""
    _common.Context._subscription_queue_iteration = _ORIGINAL_ITERATION
    _server.PvpropertyData.verify_value = _ORIGINAL_VERIFY
    _aserver.VirtualCircuit._on_disconnect = _ORIGINAL_ON_DISCONNECT


def is_applied() -> bool:
    return _common.Context._subscription_queue_iteration is _subscription_queue_iteration
