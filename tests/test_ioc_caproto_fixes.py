"""Unit tests of the caproto 1.3.0 workarounds (no network)."""

from __future__ import annotations

import asyncio
import collections
import logging

import pytest

from picodaq_ioc.ioc import caproto_fixes


class _FakeContext:
    """Just what ``_subscription_queue_iteration`` touches: a deque of subscriptions per spec
    and a send coroutine; a client (dis)connects while a send is in progress."""

    def __init__(self) -> None:
        self.subscriptions = collections.defaultdict(collections.deque)
        self.subscriptions["spec"].extend(["sub1", "sub2", "sub3"])
        self.sent: list[str] = []

    async def _subscription_queue_send(self, sub_spec, sub, *, metadata, values, flags):
        self.sent.append(sub)
        await asyncio.sleep(0)
        if sub == "sub1":
            self.subscriptions[sub_spec].append("new-client")  # a client connects meanwhile
        if sub == "sub2":
            self.subscriptions[sub_spec].remove("sub3")  # and another one leaves


def _iterate(method) -> _FakeContext:
    ctx = _FakeContext()
    asyncio.run(method(ctx, ("spec",), None, None, 0, None))
    return ctx


def test_original_caproto_iteration_dies_when_clients_come_and_go():
    # documents the bug the patch exists for: without it every monitor of the IOC stops
    with pytest.raises(RuntimeError, match="deque mutated during iteration"):
        _iterate(caproto_fixes._ORIGINAL_ITERATION)


def test_patched_iteration_survives_and_serves_the_snapshot():
    ctx = _iterate(caproto_fixes._subscription_queue_iteration)
    assert ctx.sent == ["sub1", "sub2", "sub3"]  # the subscribers present when the update was queued
    assert list(ctx.subscriptions["spec"]) == ["sub1", "sub2", "new-client"]


def test_apply_installs_and_is_idempotent():
    import caproto.server.common as common

    caproto_fixes.apply()
    caproto_fixes.apply()
    assert caproto_fixes.is_applied()
    assert common.Context._subscription_queue_iteration is caproto_fixes._subscription_queue_iteration


def test_refused_put_is_logged_with_pv_name(caplog):
    from caproto.server import PVGroup, pvproperty

    caproto_fixes.apply()

    class G(PVGroup):
        x = pvproperty(name="X", value=1.0, lower_ctrl_limit=0.0, upper_ctrl_limit=2.0, alarm_group="x")

    g = G(prefix="UNIT:")
    seen = []
    caproto_fixes.on_refused = lambda pv, reason: seen.append((pv, reason))
    try:
        with caplog.at_level(logging.WARNING, logger="picodaq_ioc.ioc.puts"):
            with pytest.raises(Exception, match="Limits"):
                asyncio.run(g.x.write(float("nan")))
    finally:
        caproto_fixes.on_refused = None
    assert g.x.value == 1.0
    assert any("UNIT:X" in r.getMessage() and "not finite" in r.getMessage() for r in caplog.records)
    assert seen and seen[0][0] == "UNIT:X"


def test_disconnect_from_the_subscription_task_itself_does_not_raise():
    """caproto's asyncio circuit cancels and awaits its subscription task on disconnect; when
    the disconnect is detected *in* that task, the original cancels itself (in the IOC:
    "RuntimeError: await wasn't used with future") and the circuit is never dropped from
    the server. The patched method completes."""
    import caproto.server.common as common

    class _Client:
        closed = False

        def close(self):
            self.closed = True

    import caproto.asyncio.server as aserver

    class _Circuit(aserver.VirtualCircuit):
        def __init__(self):  # only what _on_disconnect touches
            self.connected = True
            self.subscriptions = {}

    async def scenario(method):
        circ = _Circuit()
        circ.client = _Client()
        circ.context = type("Ctx", (), {"subscription_queue": None, "subscriptions": {}})()

        async def sub_task_body():
            await asyncio.sleep(0)
            await method(circ)  # disconnect detected inside the subscription task

        from caproto.asyncio.utils import _TaskHandler

        circ.tasks = _TaskHandler()
        circ._sub_task = circ.tasks.create(sub_task_body())
        await circ._sub_task
        return circ

    circ = asyncio.run(scenario(caproto_fixes._on_disconnect))
    assert circ.client.closed and circ._sub_task is None and circ.connected is False
    # the original cancels the running task itself: the disconnect handling never completes
    with pytest.raises((RuntimeError, asyncio.CancelledError)):
        asyncio.run(scenario(caproto_fixes._ORIGINAL_ON_DISCONNECT))
    assert common.VirtualCircuit._on_disconnect is not None


def test_a_failing_startup_is_reported_not_fatal():
    """caproto shuts the server down when a startup hook raises (research notes §0 finding 9):
    the IOC's hook catches, logs, and shows the failure with a MAJOR alarm."""
    from caproto import AlarmSeverity

    from picodaq_ioc.ioc.app import build_ioc_class
    from picodaq_ioc.ioc.publisher import WaveformPublisher
    from picodaq_ioc.scope import models

    class _BrokenCtl:
        listeners: list = []
        run_listeners: list = []

        @property
        def info(self):
            raise RuntimeError("scope vanished while starting")

    group = build_ioc_class(models.scope_info("2000a"))(prefix="UNIT:")
    group.attach(_BrokenCtl(), WaveformPublisher(bm=None), "sim")
    try:
        asyncio.run(group.__ainit__(None))  # returns instead of raising
    finally:
        caproto_fixes.on_refused = None
    status = group.device.status
    assert "Startup failed" in str(status.value) and "scope vanished" in str(status.value)
    assert status.alarm.severity == AlarmSeverity.MAJOR_ALARM
    assert group.acq.state.value == "Error"
