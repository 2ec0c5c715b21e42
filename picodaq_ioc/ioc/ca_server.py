"""caproto's asyncio CA server with per-client isolation and RSRV-like request limits.

caproto 1.3.0 fans every PV update out from ONE context-wide subscription task which
``await``\\ s ``circuit.subscription_queue.put(...)`` for each subscriber. A client that stops
reading (a frozen display, a SIGSTOPped process) fills its bounded queue and that ``await``
never returns: every monitor of every client stops for good, the update queue in front of
the task grows without bound, and an exception raised for one subscription (e.g. the channel
filter ``.{"arr":{"i":0}}``, a zero slice step) ends the task for everyone
(docs/caproto_patches.md has plain-caproto reproductions).

:class:`IsolatedContext` / :class:`IsolatedCircuit` (subclasses, no monkey-patching) change
the fan-out to what RSRV does in spirit:

* **Latest value wins, per subscription.** The shared task only *offers* an update to each
  circuit (a dict store, never an ``await``): a circuit keeps at most ONE pending update per
  subscription, a newer one replaces it in place (its place in the send order is kept, so a
  fast-changing PV cannot starve the others). Memory per client is bounded by its number of
  subscriptions; the EventAddResponse is only built when it is actually sent, so a replaced
  update costs nothing.
* **Each circuit sends at the rate its connection carries**: its own task takes every pending
  update in one batch, writes it and waits for the socket to drain before taking the next.
* **A stalled client is disconnected** when one write does not drain for
  ``stall_timeout`` seconds (the socket is aborted, its buffers freed).
* **Errors stay with their client**: an exception while preparing one subscription's update
  is logged once and that subscription is skipped; the shared task never ends. The array
  filter's increment ``i <= 0`` means 1, as in EPICS base (``arr.c``).
* **Request limits** (RSRV semantics): a message whose payload exceeds the larger of
  ``EPICS_CA_MAX_ARRAY_BYTES`` and the largest PV is refused before it is buffered and the
  client disconnected; host/user names over 512 bytes are refused (disconnect); a rename
  after the first channel was created is ignored; the number of channels per client is
  bounded (``max_channels``; a further CreateChan fails).
* A refused put whose client has already gone no longer raises
  ``KeyError`` in a never-awaited task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import caproto as ca
import caproto.asyncio.server as _aserver
import numpy as np
from caproto._commands import bytes_needed_for_command
from caproto._dbr import native_type
from caproto._utils import apply_deadband_filter
from caproto.server.common import DisconnectedCircuit, host_endian

log = logging.getLogger("picodaq_ioc.ioc.ca")

#: longest host or user name a client may announce (RSRV: 512 bytes)
MAX_NAME_BYTES = 512
#: CA message header (extended form) plus slack: added to the largest PV payload
HEADER_SLACK = 64
#: default seconds one write to a client may wait for its socket to drain
DEFAULT_STALL_TIMEOUT = 30.0
#: default channels one client may hold open
DEFAULT_MAX_CHANNELS = 4096


def safe_filter(chan: Any) -> None:
    """Make ``chan.channel_filter`` safe to apply: an ``arr`` increment <= 0 means 1 (EPICS
    base ``arr`` plugin); caproto would slice with step 0 (``ValueError``) or backwards."""
    flt = getattr(chan, "channel_filter", None)
    arr = getattr(flt, "arr", None)
    if arr is not None and (arr.i is None or arr.i <= 0):
        chan.channel_filter = flt._replace(arr=arr._replace(i=1))


def payload_bytes(chan: Any) -> int:
    """Largest payload a put to ``chan`` can need (elements x element size; strings 40 B)."""
    n = int(getattr(chan, "max_length", 1) or 1)
    size = {ca.ChannelType.DOUBLE: 8, ca.ChannelType.LONG: 4, ca.ChannelType.FLOAT: 4,
            ca.ChannelType.INT: 2, ca.ChannelType.ENUM: 2, ca.ChannelType.CHAR: 1,
            ca.ChannelType.STRING: 40}.get(getattr(chan, "data_type", None), 40)
    return n * size


class IsolatedCircuit(_aserver.VirtualCircuit):
    """One client connection: latest-value-wins updates, stall timeout, request limits."""

    def __init__(self, circuit, client, context, **kwargs: Any) -> None:
        super().__init__(circuit, client, context, **kwargs)
        #: subscriptionid -> (sub, metadata, values, payload): the newest update not yet sent
        self._pending: dict[int, tuple[Any, Any, Any, bytes | None]] = {}
        self._wake = asyncio.Event()
        self.updates_sent = 0
        #: updates replaced by a newer one before they could be sent (the client was slower)
        self.updates_replaced = 0
        self._failed_subs: set[int] = set()
        self._rename_logged = False

    # ----------------------------------------------------------- fan-out side (never awaits)
    def offer(self, sub: Any, metadata: Any, values: Any, payload: bytes | None = None) -> None:
        """Store the newest update of ``sub`` (replacing an unsent older one). ``payload``:
        ``values`` already in wire format (shared by every client of the same update)."""
        sid = sub.subscriptionid
        if sid in self._pending:
            self.updates_replaced += 1
        self._pending[sid] = (sub, metadata, values, payload)
        self._wake.set()

    def subscription_failed(self, sub: Any, ex: BaseException) -> None:
        """An update of ``sub`` could not be prepared: log once per subscription, go on."""
        sid = getattr(sub, "subscriptionid", None)
        if sid in self._failed_subs:
            return
        self._failed_subs.add(sid)
        name = getattr(getattr(sub, "channel", None), "name", "?")
        log.warning("client %s: update of %s (subscription %s) failed and is skipped: %s: %s",
                    self._who(), name, sid, type(ex).__name__, ex)

    # ----------------------------------------------------------- send side (one task per client)
    async def subscription_queue_loop(self) -> None:
        self.events_on.set()
        while True:
            try:
                await self._wake.wait()
            except asyncio.CancelledError:
                break
            self._wake.clear()
            if not self._pending:
                continue
            batch, self._pending = self._pending, {}
            live = {sub.subscriptionid: sub for subs in self.subscriptions.values() for sub in subs}
            commands = []
            for sid, (sub, metadata, values, payload) in batch.items():
                # cancelled after it was offered: never send after the cancel, nor under the
                # id of a newer subscription (clients reuse subscription ids)
                if live.get(sid) is not sub:
                    continue
                try:
                    commands.append(self._event_response(sub, metadata, values, payload))
                except Exception as ex:
                    self.subscription_failed(sub, ex)
            if not commands:
                continue
            try:
                await self.send(*commands)
                self.updates_sent += len(commands)
            except DisconnectedCircuit:
                await self._on_disconnect()
                self.circuit.disconnect()
                await self.context.circuit_disconnected(self)
                break
            except asyncio.CancelledError:
                break

    @staticmethod
    def _event_response(sub: Any, metadata: Any, values: Any, payload: bytes | None = None) -> Any:
        if payload is not None:
            return sub.channel.subscribe(data=payload, metadata=metadata, data_type=sub.data_type,
                                         data_count=len(values), subscriptionid=sub.subscriptionid,
                                         status=1)
        safe_filter(sub.channel)
        values = ca.apply_arr_filter(sub.channel.channel_filter.arr, values)
        data_count = sub.data_count or len(values)
        if data_count != len(values):
            values = values[:data_count]
        return sub.channel.subscribe(data=values, metadata=metadata, data_type=sub.data_type,
                                     data_count=data_count, subscriptionid=sub.subscriptionid,
                                     status=1)

    async def _send_buffers(self, *buffers) -> None:
        """Write and wait for the socket to drain; abort a client that does not drain in time."""
        client = self.client
        timeout = self.context.stall_timeout
        async with client.send_lock:
            client.writer.write(b"".join(buffers))
            try:
                await asyncio.wait_for(client.writer.drain(), timeout if timeout > 0 else None)
            except TimeoutError:
                log.warning("client %s did not read for %.0f s: disconnected (its updates are dropped)",
                            self._who(), timeout)
                self.abort()
                raise ca.CaprotoNetworkError("client stalled") from None

    def abort(self) -> None:
        """Drop the connection now, discarding unsent data (a close would wait for it)."""
        transport = getattr(self.client.writer, "transport", None)
        if transport is not None:
            transport.abort()

    async def _on_disconnect(self) -> None:
        """caproto's asyncio ``_on_disconnect`` without awaiting the running task itself (it is
        often called *from* the subscription task: ``await wasn't used with future``)."""
        await _aserver._VirtualCircuit._on_disconnect(self)
        self._pending.clear()
        self.client.close()
        task, self._sub_task = self._sub_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    # ----------------------------------------------------------- receive side: limits
    async def recv(self) -> None:
        try:
            data = await self.client.recv(4096)
        except OSError:
            data = b""
        try:
            commands, needed = self.circuit.recv(data)
        except ca.RemoteProtocolError as ex:  # garbage on the wire: this client only
            log.warning("client %s broke the protocol: %s: disconnected", self._who(), str(ex).split("\n")[0])
            commands, needed, data = [ca.DISCONNECTED], 0, b""
            self.abort()
        if needed and self._message_too_large():
            commands, data = [ca.DISCONNECTED], b""
        for c in commands:
            try:
                self.command_queue.put_nowait(c)
            except asyncio.QueueFull:  # caproto awaits put() here and never gets QueueFull
                log.warning("client %s sends faster than the IOC can answer: disconnected", self._who())
                self.abort()
                await self._on_disconnect()
                await self.tasks.cancel_all()
                raise DisconnectedCircuit() from None
        if not data:
            await self._on_disconnect()
            raise DisconnectedCircuit()

    def _message_too_large(self) -> bool:
        """True (and the client aborted) when the message being received declares a payload
        over the limit: refused before it is buffered."""
        header, _ = bytes_needed_for_command(self.circuit._data, ca.CLIENT)
        size = int(getattr(header, "payload_size", 0)) if header is not None else 0
        limit = self.context.max_message_bytes
        if size <= limit:
            return False
        log.warning("client %s sent a message of %d bytes (command %s), more than the limit of "
                    "%d (EPICS_CA_MAX_ARRAY_BYTES or the largest PV): disconnected",
                    self._who(), size, getattr(header, "command", "?"), limit)
        self.circuit._data = bytearray()
        self.abort()
        return True

    async def _process_command(self, command):
        if isinstance(command, (ca.HostNameRequest, ca.ClientNameRequest)):
            return await self._name_request(command)
        if isinstance(command, ca.CreateChanRequest):
            limit = self.context.max_channels
            if limit > 0 and len(self.circuit.channels_sid) >= limit:
                log.warning("client %s: already %d channels (the limit), %s refused", self._who(),
                            len(self.circuit.channels_sid), command.name)
                response = [ca.CreateChFailResponse(cid=command.cid)]
            else:
                response = await super()._process_command(command)
            self._forget_failed_channels(keep=command.cid)
            return response
        if isinstance(command, (ca.ReadNotifyRequest, ca.ReadRequest, ca.EventAddRequest)):
            chan = self.circuit.channels_sid.get(command.sid)
            if chan is not None:
                safe_filter(chan)
        return await super()._process_command(command)

    def _forget_failed_channels(self, keep: int) -> None:
        """caproto keeps every channel whose creation failed (unknown name, over the limit)
        for the life of the circuit; drop those already answered so memory stays bounded."""
        chans = self.circuit.channels
        failed = [cid for cid, ch in chans.items()
                  if cid != keep and ch.states[ca.SERVER] is ca.FAILED]
        for cid in failed:
            del chans[cid]

    async def _name_request(self, command) -> list:
        what = "host" if isinstance(command, ca.HostNameRequest) else "user"
        name = command.name
        raw = name.encode("latin-1", "replace") if isinstance(name, str) else bytes(name)
        if len(raw) > MAX_NAME_BYTES:
            log.warning("client %s announced a %s name of %d bytes (limit %d): disconnected",
                        self._who(), what, len(raw), MAX_NAME_BYTES)
            self.abort()  # the reader sees EOF: the circuit's loops end as for any disconnect
            await self._on_disconnect()
            return []
        if self.circuit.channels:  # RSRV: names are fixed once a channel exists
            if not self._rename_logged:
                self._rename_logged = True
                log.warning("client %s: %s name change to %r after creating channels ignored",
                            self._who(), what, name[:80])
            return []
        return await super()._process_command(command)

    async def _start_write_task(self, handle_write) -> None:
        async def guarded() -> None:
            try:
                await handle_write()
            except (KeyError, DisconnectedCircuit, ca.CaprotoNetworkError, OSError) as ex:
                # the client left before its put was answered: nobody to tell
                log.info("client %s left before its put was answered (%s)", self._who(), type(ex).__name__)
            except Exception:
                log.exception("client %s: put handling failed", self._who())

        self.tasks.create(guarded())

    def _who(self) -> str:
        host, port = (tuple(self.circuit.address) + ("?", "?"))[:2]
        return f"{self.client_username or '?'}@{self.client_hostname or host} ({host}:{port})"


class IsolatedContext(_aserver.Context):
    """caproto's asyncio ``Context`` whose shared subscription task never waits for a client.

    Parameters
    ----------
    pvdb, interfaces
        As for caproto's ``Context``.
    stall_timeout : float
        Seconds a client's socket may stay full before it is disconnected (0: never).
    max_channels : int
        Channels per client (0: unlimited).
    max_array_bytes : int or None
        ``EPICS_CA_MAX_ARRAY_BYTES`` (default from the environment, 16384); the message limit
        is the larger of this and the largest PV's payload.
    """

    CircuitClass = IsolatedCircuit

    def __init__(self, pvdb, interfaces=None, *, stall_timeout: float = DEFAULT_STALL_TIMEOUT,
                 max_channels: int = DEFAULT_MAX_CHANNELS, max_array_bytes: int | None = None) -> None:
        super().__init__(pvdb, interfaces)
        self.stall_timeout = float(stall_timeout)
        self.max_channels = int(max_channels)
        if max_array_bytes is None:
            max_array_bytes = int(self.environ.get("EPICS_CA_MAX_ARRAY_BYTES", 16384))
        largest = max((payload_bytes(c) for c in self.pvdb_with_fields.values()), default=0)
        self.max_message_bytes = max(int(max_array_bytes), largest + HEADER_SLACK)
        self._loop_errors = 0
        self._last_error_log = 0.0

    async def subscription_queue_loop(self) -> None:
        while True:
            item = await self.subscription_queue.get()
            try:
                await self._subscription_queue_iteration(*item)
            except Exception:  # never ends: every client's monitors depend on this task
                self._loop_errors += 1
                if time.monotonic() - self._last_error_log > 10.0:
                    self._last_error_log = time.monotonic()
                    log.exception("subscription fan-out failed (%d so far); continuing", self._loop_errors)

    async def _subscription_queue_iteration(self, sub_specs, metadata, values, flags, sub) -> None:
        if sub is None:
            targets = [(spec, s) for spec in sub_specs for s in list(self.subscriptions[spec])]
        else:
            (spec,) = sub_specs
            targets = [(spec, sub)]
        payloads: dict[Any, bytes | None] = {}  # data type -> wire bytes, made once per update
        for spec, s in targets:
            try:
                self._offer(spec, s, metadata, values, flags, payloads)
            except Exception as ex:
                failed = getattr(s.circuit, "subscription_failed", None)
                if failed is None:
                    raise
                failed(s, ex)

    def _offer(self, sub_spec, sub, metadata, values, flags, payloads: dict | None = None) -> None:
        """caproto's ``_subscription_queue_send`` filters, then a non-blocking hand-over.

        An array sent whole (no ``arr`` filter, full count) is converted to wire format once
        and the bytes shared by all its subscribers (caproto converts it for each one)."""
        circuit = sub.circuit
        if not circuit.events_on.is_set():  # EventsOff: resend when the client turns events on
            resend = circuit.subscriptions_to_resend.setdefault(sub_spec, [])
            if sub not in resend:
                resend.append(sub)
            return
        flt = sub_spec.channel_filter
        if flt.dbnd is not None:
            safe_filter(sub.channel)
            tracked = apply_deadband_filter(previous_value=self.last_dead_band.get(sub),
                                            new_value=ca.apply_arr_filter(sub.channel.channel_filter.arr, values),
                                            sub=sub, flags=flags, host_endian=host_endian)
            if tracked is None:
                return
            self.last_dead_band[sub] = tracked
        if flt.sync is not None:
            command = circuit._event_response(sub, metadata, values)
            last = self.last_sync_edge_update[sub][flt.sync.s].get(flt.sync.m)
            if last and last == command:
                return
            self.last_sync_edge_update[sub][flt.sync.s][flt.sync.m] = command
        payload = None
        if (payloads is not None and isinstance(values, np.ndarray) and values.size > 1
                and flt.arr is None and sub.data_count in (0, len(values))):
            if sub.data_type not in payloads:
                payloads[sub.data_type] = _wire_bytes(values, sub.data_type)
            payload = payloads[sub.data_type]
        circuit.offer(sub, metadata, values, payload)


def _wire_bytes(values: np.ndarray, data_type: Any) -> bytes | None:
    """``values`` as caproto puts them on the wire for ``data_type`` (big-endian), or None for
    types caproto converts differently (strings)."""
    try:
        wire = native_type(ca.ChannelType(int(data_type)))
    except ValueError:  # long-string pseudo types
        return None
    if wire in (ca.ChannelType.STRING, ca.ChannelType.CHAR):
        return None
    return ca.backend.python_to_epics(wire, values, byteswap=True).tobytes()
