"""The IOC's log stays readable for a lab user: no tracebacks for harmless conditions."""

from __future__ import annotations

import socket

from ca_tools import run_tool
from conftest import wait_for


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreceived_beacons_are_reported_once_without_traceback(ioc_factory, monkeypatch):
    # Nobody listens on the beacon port (as on a fresh host without caRepeater): caproto 1.3.0
    # logs a traceback for every refused beacon. The IOC reports it once, in one line.
    monkeypatch.setenv("EPICS_CAS_BEACON_PORT", str(_free_udp_port()))
    h = ioc_factory()
    assert wait_for(lambda: "beacons to" in h.log(), 30)
    # beacons keep being sent (the interval grows from 20 ms); do a few CA round trips meanwhile
    for _ in range(5):
        r = run_tool("caget", [h.pv("State_RBV")], h.env, timeout=10)
        assert r.returncode == 0, r.stderr
    log = h.log()
    assert log.count("beacons to") == 1, log
    assert "Failed to send beacon" not in log, log
    assert "Traceback" not in log, log
