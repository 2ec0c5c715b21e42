"""Alarms over CA: buffer fill (MAJOR at 100 %, cleared when drained) driven by a slow analysis
module, and device errors (unplugged scope -> StatusMessage_RBV MAJOR, cleared on reconnect)."""

from __future__ import annotations

import textwrap

import pytest
from ca_tools import caget, caput, run_tool
from conftest import wait_for

pytestmark = pytest.mark.ca

SLOW = textwrap.dedent('''
    import threading
    from picodaq_ioc.analysis.base import AnalysisModule, ResultSpec

    class Slow(AnalysisModule):
        """Holds its first batch until Release is written: the ring fills up."""
        prefix = "Slow"
        specs = (ResultSpec("Seen_RBV", "int", "events seen"),
                 ResultSpec("Release", "command", "let the module go on"))

        def __init__(self, **params):
            super().__init__(**params)
            self.go = threading.Event()
            self.seen = 0

        def start(self, applied, run):
            pass

        def process(self, batch):
            self.go.wait(60)
            with self.lock:
                self.seen += len(batch)

        def results(self):
            with self.lock:
                return {"Seen_RBV": self.seen}

        def command(self, name, value):
            if name == "Release" and value:
                self.go.set()
''')

BASE = {"device": {"backend": "sim", "model": "2000a"},
        "channels": {"A": {"range": 0.2}},
        "timebase": {"sample_interval": 4.0e-9, "samples": 300},
        "trigger": {"source": "A", "level": -0.02, "direction": "Falling", "auto_timeout": 0.1},
        "buffer": {"n_buffers": 8},
        "simulation": {"seed": 7, "sources": [{"kind": "muon", "channels": ["A"], "rate": 300.0,
                                               "amplitude": -0.08}]}}


def alarm_of(env, pv: str) -> str:
    """'NO_ALARM' or the severity shown by ``caget -a`` (status and severity columns)."""
    r = run_tool("caget", ["-a", "-w", "3", pv], env)
    assert r.returncode == 0, r.stderr
    fields = r.stdout.split()
    for sev in ("MAJOR", "MINOR", "INVALID"):
        if sev in fields:
            return sev
    return "NO_ALARM"


def test_full_ring_raises_a_major_alarm_on_fill_level_only(ioc_factory, tmp_path):
    (tmp_path / "picodaq_test_slow.py").write_text(SLOW)
    cfg = dict(BASE, analysis=[{"module": "picodaq_test_slow:Slow", "name": "slow"}])
    ioc = ioc_factory(cfg, ["--no-autosave"])
    env = ioc.env
    assert caput(env, ioc.pv("Acquire"), "Start", callback=True).returncode == 0
    try:
        wait_for(lambda: float(caget(env, ioc.pv("Buffer:FillLevel_RBV"))) == 100.0, 20, 0.1, "a full ring")
        assert int(caget(env, ioc.pv("Buffer:Filled_RBV"))) == 8
        wait_for(lambda: alarm_of(env, ioc.pv("Buffer:FillLevel_RBV")) == "MAJOR", 5, 0.1, "MAJOR fill alarm")
        assert alarm_of(env, ioc.pv("Buffer:Filled_RBV")) == "NO_ALARM"  # its own alarm, not shared
        assert alarm_of(env, ioc.pv("Buffer:Size_RBV")) == "NO_ALARM"
        assert caput(env, ioc.pv("Slow:Release"), 1, callback=True).returncode == 0
        wait_for(lambda: float(caget(env, ioc.pv("Buffer:FillLevel_RBV"))) < 75.0, 20, 0.1, "the ring to drain")
        wait_for(lambda: alarm_of(env, ioc.pv("Buffer:FillLevel_RBV")) == "NO_ALARM", 5, 0.1, "alarm cleared")
        wait_for(lambda: int(caget(env, ioc.pv("Slow:Seen_RBV"))) > 8, 10, 0.1, "the module to go on")
        # the time the acquisition waited for a free slot is counted as dead time
        wait_for(lambda: float(caget(env, ioc.pv("Buffer:RingWaitTime_RBV"))) > 0, 10, 0.1, "ring wait time")
    finally:
        caput(env, ioc.pv("Slow:Release"), 1, callback=True)
        caput(env, ioc.pv("Acquire"), "Stop", callback=True)


def test_unplugged_scope_sets_a_major_status_and_recovers(ioc_factory):
    ioc = ioc_factory(BASE, ["--no-autosave", "--test-faults"])
    env = ioc.env
    assert caput(env, ioc.pv("Acquire"), "Start", callback=True).returncode == 0
    try:
        wait_for(lambda: int(caget(env, ioc.pv("Stats:Events_RBV"))) > 10, 20, 0.1, "events")
        assert alarm_of(env, ioc.pv("StatusMessage_RBV")) == "NO_ALARM"
        assert caput(env, ioc.pv("Test:Unplug"), 1, callback=True).returncode == 0
        wait_for(lambda: alarm_of(env, ioc.pv("StatusMessage_RBV")) == "MAJOR", 20, 0.1, "MAJOR device status")
        assert "disconnected" in caget(env, ioc.pv("StatusMessage_RBV"), "-S").lower()
        assert alarm_of(env, ioc.pv("A:Range_RBV")) == "NO_ALARM"
        assert caput(env, ioc.pv("Test:Replug"), 1, callback=True).returncode == 0
        wait_for(lambda: alarm_of(env, ioc.pv("StatusMessage_RBV")) == "NO_ALARM", 30, 0.1, "reconnected")
        assert "reconnected" in caget(env, ioc.pv("StatusMessage_RBV"), "-S").lower()
        n = int(caget(env, ioc.pv("Stats:Events_RBV")))
        wait_for(lambda: int(caget(env, ioc.pv("Stats:Events_RBV"))) > n + 5, 20, 0.1, "events after replug")
        assert caget(env, ioc.pv("State_RBV")) == "Running"
    finally:
        caput(env, ioc.pv("Acquire"), "Stop", callback=True)
