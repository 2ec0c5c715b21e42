"""The ophyd device under a real bluesky ``count`` plan against the simulated IOC."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "clients"))

from picodaq_clients.testing import IOCProcess, ca_server, wait_for  # noqa: E402

PREFIX = "TOPH:"
CONFIG = ROOT / "configs" / "muon_lifetime.yaml"
pytestmark = pytest.mark.ca


@pytest.fixture(scope="module")
def ioc_port(tmp_path_factory):
    """The IOC on its own port; ophyd talks to it through caproto's client (control layer
    'caproto'), the test's own reads go through pyepics (libca) - two independent clients."""
    workdir = tmp_path_factory.mktemp("ophyd_ioc")
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    config = workdir / CONFIG.name  # private copy: the IOC's autosave file lands in workdir
    shutil.copy(CONFIG, config)
    proc = IOCProcess([sys.executable, "-m", "picodaq_ioc", "--config", str(config), "--prefix", PREFIX],
                      env=env, log_path=str(workdir / "ioc.log"), cwd=str(workdir)).start()
    try:
        with ca_server(proc.port):
            import epics

            assert wait_for(lambda: epics.caget(PREFIX + "State_RBV", timeout=0.5) is not None, 60), \
                (workdir / "ioc.log").read_text()
            # before ophyd's first import: its pyepics shim would replace pyepics' PV class
            os.environ["OPHYD_CONTROL_LAYER"] = "caproto"
            import ophyd

            assert ophyd.get_cl().name == "caproto"
            # generous CA timeouts: the CI machine is shared and loaded
            ophyd.signal.EpicsSignalBase.set_defaults(connection_timeout=30.0, timeout=30.0)
            yield proc.port
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def daq(ioc_port):
    from picodaq_clients.ophyd_device import PicoDAQ

    dev = PicoDAQ(PREFIX, name="daq")
    dev.wait_for_connection(timeout=60)
    yield dev
    dev.destroy()


def test_count_plan_documents_carry_the_ioc_values(daq):
    import epics
    from bluesky import RunEngine
    from bluesky.plans import count
    n_per_point = 25
    daq.num_events.put(n_per_point, wait=True)

    docs: list[tuple[str, dict]] = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    uids = RE(count([daq], num=3))
    assert len(uids) == 1
    names = [n for n, _ in docs]
    assert names[0] == "start" and names[-1] == "stop" and names.count("event") == 3
    assert docs[-1][1]["exit_status"] == "success"

    descriptor = next(d for n, d in docs if n == "descriptor")
    keys = descriptor["data_keys"]
    for k in ("daq_stats_events", "daq_stats_trigger_rate", "daq_stats_live_time", "daq_stats_live_fraction",
              "daq_pulse_accepted", "daq_pulse_lifetime", "daq_pulse_lifetime_err", "daq_pulse_double_pulses"):
        assert k in keys, k
    assert keys["daq_pulse_lifetime"]["units"] == "s"
    assert keys["daq_stats_events"]["source"] == f"PV:{PREFIX}Stats:Events_RBV"
    config = descriptor["configuration"]["daq"]["data"]
    assert config["daq_num_events"] == n_per_point
    assert config["daq_a_range"] == pytest.approx(epics.caget(PREFIX + "A:Range_RBV"))
    assert config["daq_model"] == epics.caget(PREFIX + "Model_RBV", as_string=True)

    events = [d for n, d in docs if n == "event"]
    # each point is one run of n_per_point events, completed by the put-callback on Acquire
    for ev in events:
        assert ev["data"]["daq_stats_events"] == n_per_point
        # ... and the analysis results read belong to that whole run (published after the put-callback)
        assert ev["data"]["daq_pulse_events"] == n_per_point
        assert 0 < ev["data"]["daq_stats_live_fraction"] <= 100
    # the last event carries what the IOC shows now (nothing ran after the plan)
    last = events[-1]["data"]
    assert epics.caget(PREFIX + "State_RBV", as_string=True) in ("Stopped", "Idle")
    for key, pv in (("daq_stats_events", "Stats:Events_RBV"), ("daq_stats_run_time", "Stats:RunTime_RBV"),
                    ("daq_stats_live_time", "Stats:LiveTime_RBV"), ("daq_pulse_accepted", "Pulse:Accepted_RBV"),
                    ("daq_pulse_double_pulses", "Pulse:DoublePulses_RBV")):
        assert last[key] == pytest.approx(epics.caget(PREFIX + pv), nan_ok=True), key
    tau = epics.caget(PREFIX + "Pulse:Lifetime_RBV")
    assert np.isnan(tau) and np.isnan(last["daq_pulse_lifetime"]) or last["daq_pulse_lifetime"] == pytest.approx(tau)


def test_trigger_without_num_events_is_refused(daq):
    daq.num_events.put(0, wait=True)
    with pytest.raises(ValueError, match="num_events"):
        daq.trigger()
    assert daq.state.get() in ("Stopped", "Idle")  # nothing was started


def test_set_settings_changes_settings_valid_only_together_atomically(daq):
    """Range 5 V with offset 3 V: the offset alone is refused on the 0.5 V range (allowed
    +-2.5 V), together (Settings:Defer) they are one configuration change."""
    import epics

    # use_monitor=False: the readbacks as the IOC has them when the put completed (a monitor
    # update may still be on its way)
    r0, o0 = daq.a.range.get(use_monitor=False), daq.a.offset.get(use_monitor=False)
    gen0 = epics.caget(PREFIX + "Stats:ConfigGeneration_RBV")
    try:
        daq.set_settings({daq.a.offset: 3.0, daq.a.range: 5.0})
        assert (daq.a.range.get(use_monitor=False), daq.a.offset.get(use_monitor=False)) == (5.0, 3.0)  # the readbacks
        assert epics.caget(PREFIX + "Stats:ConfigGeneration_RBV") == gen0 + 1
        # a combination the device refuses raises (with caproto's client as a timeout of the
        # Settings:Defer put: it ignores the IOC's error answer to a put-callback), and nothing
        # of it is applied
        with pytest.raises(Exception, match="Defer"):
            daq.set_settings({daq.a.range: 0.5, daq.num_samples: 300}, timeout=5)
        assert (daq.a.range.get(use_monitor=False), daq.num_samples.get(use_monitor=False)) == (5.0, 4000)
    finally:
        daq.set_settings({daq.a.offset: o0, daq.a.range: r0})
    assert (daq.a.range.get(use_monitor=False), daq.a.offset.get(use_monitor=False)) == (r0, o0)


def test_count_during_a_foreign_run_raises_instead_of_reading_that_run(daq):
    """A run started by someone else (NumEvents 0: until stopped) is in progress: ``count``
    must fail, not return that run's numbers (issue 10)."""
    import epics
    from bluesky import RunEngine
    from bluesky.plans import count

    assert epics.caput(PREFIX + "NumEvents", 0, wait=True)
    assert epics.caput(PREFIX + "Acquire", "Start", wait=True)
    try:
        assert wait_for(lambda: epics.caget(PREFIX + "State_RBV", as_string=True) == "Running", 30)
        daq.num_events.put(10, wait=True)
        docs: list[tuple[str, dict]] = []
        RE = RunEngine({})
        RE.subscribe(lambda name, doc: docs.append((name, doc)))
        with pytest.raises(Exception) as ei:
            RE(count([daq], num=1))
        assert "already in progress" in str(ei.value) or "Acquire" in str(ei.value), ei.value
        assert [n for n, _ in docs].count("event") == 0  # no reading of the foreign run
        assert epics.caget(PREFIX + "State_RBV", as_string=True) == "Running"  # that run goes on
    finally:
        epics.caput(PREFIX + "Acquire", "Stop", wait=True)
        daq.num_events.put(0, wait=True)
    assert epics.caget(PREFIX + "State_RBV", as_string=True) == "Stopped"
