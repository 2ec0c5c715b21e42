"""Unit tests of the isolated CA server (picodaq_ioc.ioc.ca_server), no network.

Each test first shows the caproto 1.3.0 behaviour the subclass exists for, then the fix.
"""

from __future__ import annotations

import asyncio
import collections

import caproto as ca
import caproto.asyncio.server as aserver
import caproto.server.common as common
import numpy as np
import pytest
from caproto._utils import ArrayFilter, ChannelFilter

from picodaq_ioc.ioc import ca_server


class _Sub:
    """What the fan-out touches of a caproto ``Subscription``."""

    def __init__(self, name: str, circuit, sid: int, arr=None) -> None:
        self.name = name
        self.circuit = circuit
        self.subscriptionid = sid
        self.channel = type("Chan", (), {"name": name,
                                         "channel_filter": ChannelFilter(ts=None, dbnd=None, arr=arr,
                                                                         sync=None)})()


class _Spec(collections.namedtuple("_Spec", "name channel_filter")):
    pass


class _Circuit:
    """Records offers; connecting/leaving clients mutate the context's subscriptions meanwhile."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.offered: list[str] = []
        self.failed: list[str] = []
        self.events_on = asyncio.Event()
        self.events_on.set()
        self.subscriptions_to_resend: dict = {}

    def offer(self, sub, metadata, values, payload=None) -> None:
        self.offered.append(sub.name)
        subs = self.ctx.subscriptions[SPEC]
        if sub.name == "sub1":
            subs.append(_Sub("new-client", self, 9))  # a client connects meanwhile
        if sub.name == "sub2":
            subs.remove(next(s for s in subs if s.name == "sub3"))  # and another one leaves

    def subscription_failed(self, sub, ex) -> None:
        self.failed.append(f"{sub.name}: {type(ex).__name__}")


SPEC = _Spec("spec", ChannelFilter(ts=None, dbnd=None, arr=None, sync=None))


def _context():
    ctx = ca_server.IsolatedContext.__new__(ca_server.IsolatedContext)  # no sockets needed
    ctx.subscriptions = collections.defaultdict(collections.deque)
    ctx.last_dead_band = {}
    return ctx


def test_caproto_fan_out_dies_when_clients_come_and_go():
    """caproto iterates the live deque across ``await``: RuntimeError ends the task that
    serves every monitor of the IOC."""

    class Ctx:
        subscriptions = collections.defaultdict(collections.deque)

        async def _subscription_queue_send(self, sub_spec, sub, **kw):
            await asyncio.sleep(0)
            self.subscriptions[sub_spec].append("new-client")

    ctx = Ctx()
    ctx.subscriptions["spec"].extend(["sub1", "sub2"])
    with pytest.raises(RuntimeError, match="deque mutated during iteration"):
        asyncio.run(common.Context._subscription_queue_iteration(ctx, ("spec",), None, None, 0, None))


def test_isolated_fan_out_serves_a_snapshot_and_never_awaits_a_client():
    ctx = _context()
    circ = _Circuit(ctx)
    ctx.subscriptions[SPEC].extend(_Sub(n, circ, i) for i, n in enumerate(["sub1", "sub2", "sub3"]))
    asyncio.run(ctx._subscription_queue_iteration((SPEC,), None, [1.0], 0, None))
    assert circ.offered == ["sub1", "sub2", "sub3"]  # the subscribers present when the update came
    assert [s.name for s in ctx.subscriptions[SPEC]] == ["sub1", "sub2", "new-client"]


def test_one_failing_subscription_is_contained_to_its_client():
    ctx = _context()
    good, bad = _Circuit(ctx), _Circuit(ctx)

    def explode(sub, metadata, values, payload=None):
        raise ValueError("slice step cannot be zero")

    bad.offer = explode
    ctx.subscriptions[SPEC].extend([_Sub("x", bad, 1), _Sub("y", good, 2)])
    asyncio.run(ctx._subscription_queue_iteration((SPEC,), None, [1.0], 0, None))
    assert bad.failed == ["x: ValueError"] and good.offered == ["y"]


def test_array_filter_increment_zero_means_one_as_in_epics_base():
    chan = _Sub("wf", None, 1, arr=ArrayFilter(s=0, i=0, e=-1)).channel
    with pytest.raises(ValueError, match="slice step cannot be zero"):  # caproto as is
        ca.apply_arr_filter(chan.channel_filter.arr, list(range(5)))
    ca_server.safe_filter(chan)
    assert ca.apply_arr_filter(chan.channel_filter.arr, list(range(5))) == [0, 1, 2, 3, 4]
    chan.channel_filter = chan.channel_filter._replace(arr=ArrayFilter(s=0, i=-2, e=-1))
    ca_server.safe_filter(chan)
    assert chan.channel_filter.arr.i == 1  # not reversed


def test_latest_update_wins_per_subscription_in_first_come_order():
    circ = ca_server.IsolatedCircuit.__new__(ca_server.IsolatedCircuit)
    circ._pending = {}
    circ._wake = asyncio.Event()
    circ.updates_replaced = 0
    a, b = _Sub("a", circ, 1), _Sub("b", circ, 2)
    for i in range(1000):  # a client that cannot keep up: memory stays one update per subscription
        circ.offer(a, None, [i])
        if i % 100 == 0:
            circ.offer(b, None, [i])
    assert list(circ._pending) == [1, 2]  # a keeps its place: b is not starved by a fast a
    assert circ._pending[1][2] == [999] and circ._pending[2][2] == [900]
    assert circ.updates_replaced == 999 + 9


def test_disconnect_from_the_subscription_task_itself_completes():
    """caproto's asyncio circuit cancels and awaits its subscription task on disconnect; when
    the disconnect is detected *in* that task it cancels itself ("await wasn't used with
    future") and the circuit is never dropped. The isolated circuit's completes."""

    class _Client:
        closed = False

        def close(self):
            self.closed = True

    async def scenario(method):
        from caproto.asyncio.utils import _TaskHandler

        circ = ca_server.IsolatedCircuit.__new__(ca_server.IsolatedCircuit)
        circ.connected = True
        circ.subscriptions = {}
        circ._pending = {}
        circ.client = _Client()
        circ.context = type("Ctx", (), {"subscription_queue": None, "subscriptions": {}})()

        async def sub_task_body():
            await asyncio.sleep(0)
            await method(circ)  # disconnect detected inside the subscription task

        circ.tasks = _TaskHandler()
        circ._sub_task = circ.tasks.create(sub_task_body())
        await circ._sub_task
        return circ

    circ = asyncio.run(scenario(ca_server.IsolatedCircuit._on_disconnect))
    assert circ.client.closed and circ._sub_task is None and circ.connected is False
    with pytest.raises((RuntimeError, asyncio.CancelledError)):
        asyncio.run(scenario(aserver.VirtualCircuit._on_disconnect))


def test_payload_bytes_of_a_waveform():
    chan = type("C", (), {"max_length": 4000, "data_type": ca.ChannelType.FLOAT})()
    assert ca_server.payload_bytes(chan) == 16000


@pytest.mark.parametrize("dtype,native", [(ca.ChannelType.TIME_FLOAT, "f4"), (ca.ChannelType.TIME_DOUBLE, "f8"),
                                          (ca.ChannelType.FLOAT, "f4"), (ca.ChannelType.TIME_INT, "i2"),
                                          (ca.ChannelType.TIME_LONG, "i4")])
def test_shared_wire_bytes_give_the_same_message_as_caproto(dtype, native):
    """The bytes converted once and shared by all subscribers make exactly the message caproto
    builds from the array for each subscriber."""
    values = np.random.default_rng(1).normal(0, 100, 4000).astype(native)
    md = ca.DBR_TYPES[dtype]() if int(dtype) >= 7 else None
    ours = ca.EventAddResponse(ca_server._wire_bytes(values, dtype), dtype, len(values), 1, 7, metadata=md)
    theirs = ca.EventAddResponse(values, dtype, len(values), 1, 7, metadata=md)
    assert bytes(ours) == bytes(theirs)
    assert ca_server._wire_bytes(values, ca.ChannelType.STRING) is None
