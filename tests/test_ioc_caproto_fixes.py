"""Unit tests of the caproto 1.3.0 workarounds (no network)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from picodaq_ioc.ioc import caproto_fixes


def test_apply_installs_and_is_idempotent():
    caproto_fixes.apply()
    caproto_fixes.apply()
    assert caproto_fixes.is_applied()


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
        run_end_listeners: list = []

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
