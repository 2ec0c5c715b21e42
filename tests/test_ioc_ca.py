"""The IOC over real Channel Access (subprocess IOC on its own port, 127.0.0.1 only),
exercised with the EPICS base tools (caget/caput/camonitor) and pyepics."""

from __future__ import annotations

import json
import math
import subprocess
import time

import numpy as np
import pytest
from ca_tools import caget, caget_float, caput, popen_tool, run_tool
from conftest import Monitor, wait_for

pytestmark = pytest.mark.ca

#: 2000a simulator: muon pulses on A at 300 Hz (real-time paced), B enabled
SIM_CONFIG = {
    "device": {"backend": "sim", "model": "2000a"},
    "channels": {"A": {"range": 0.2, "coupling": "DC"}, "B": {"range": 0.5, "coupling": "DC"}},
    "timebase": {"sample_interval": 4.0e-9, "samples": 1000, "pretrigger": 0.1},
    "trigger": {"enabled": True, "source": "A", "level": -0.02, "direction": "Falling", "auto_timeout": 0.2},
    "buffer": {"n_buffers": 16},
    "simulation": {"seed": 3, "realtime": True,
                   "sources": [{"kind": "muon", "channels": ["A"], "rate": 300.0, "amplitude": -0.08}]},
}


@pytest.fixture(scope="module")
def ioc(module_ioc_factory, tmp_path_factory):
    summary = tmp_path_factory.mktemp("summary") / "runs.jsonl"
    h = module_ioc_factory(SIM_CONFIG, ["--summary", str(summary), "--max-rate", "20", "--no-autosave",
                                        "--max-ring-mb", "64"])
    h.summary = summary
    return h


def put_ok(ioc, name: str, value, timeout: float = 10.0) -> None:
    r = caput(ioc.env, ioc.pv(name), value, callback=True, timeout=timeout)
    assert r.returncode == 0, f"caput {name} {value}: {r.stdout} {r.stderr}\n{ioc.log()[-3000:]}"


def get(ioc, name: str, *opts: str) -> str:
    return caget(ioc.env, ioc.pv(name), *opts)


def getf(ioc, name: str) -> float:
    return caget_float(ioc.env, ioc.pv(name))


def get_array(ioc, name: str) -> np.ndarray:
    """The current elements of an array PV (pyepics asks for the actual length; caget would
    pad to the capacity NELM)."""
    epics = ioc.use_pyepics()
    value = epics.caget(ioc.pv(name), timeout=5, use_monitor=False)
    assert value is not None, name
    return np.atleast_1d(np.asarray(value, dtype=float))


def stop_run(ioc) -> None:
    put_ok(ioc, "Acquire", "Stop")
    assert get(ioc, "State_RBV") in ("Stopped", "Idle")


def test_identity_and_initial_readbacks(ioc):
    assert "2000a" in get(ioc, "Model_RBV")
    assert get(ioc, "Backend_RBV") == "sim"
    assert get(ioc, "Serial_RBV")
    assert get(ioc, "State_RBV") == "Idle"
    assert int(get(ioc, "NumSamples_RBV")) == 1000
    assert getf(ioc, "A:Range_RBV") == pytest.approx(0.2)
    assert get(ioc, "Trigger:Source_RBV") == "A"
    t_axis = get_array(ioc, "TimeAxis_RBV")
    assert len(t_axis) == 1000
    dt = getf(ioc, "SampleInterval_RBV")
    n_pre = int(get(ioc, "PreTriggerSamples_RBV"))
    assert t_axis[n_pre] == pytest.approx(0.0, abs=dt * 1e-6)
    assert np.allclose(np.diff(t_axis), dt, rtol=1e-9)
    # the heartbeat ticks
    hb = int(get(ioc, "IOC:HEARTBEAT"))
    wait_for(lambda: int(get(ioc, "IOC:HEARTBEAT")) > hb, 5, 0.2, "IOC:HEARTBEAT to tick")
    # metadata: units, precision and limits over CA (DBR_CTRL)
    r = run_tool("cainfo", [ioc.pv("A:Range")], ioc.env)
    assert "DBF_DOUBLE" in r.stdout
    # the record fields answer like an EPICS record's
    assert get(ioc, "A:Range.EGU") == "V"
    assert float(get(ioc, "A:Range.DRVH")) == 20.0 and float(get(ioc, "A:Range.DRVL")) == 0.02
    assert get(ioc, "A:Range.DESC").startswith("Channel A input range")
    assert get(ioc, "State_RBV.ZRST") == "Idle"


def test_range_snaps_up_on_a_2000a(ioc):
    put_ok(ioc, "A:Range", 0.15)
    assert getf(ioc, "A:Range") == pytest.approx(0.15)
    assert getf(ioc, "A:Range_RBV") == pytest.approx(0.2)
    put_ok(ioc, "A:Range", 0.2)


# (pv, value, check of the readback) -- every setting of the contract, on a stopped IOC
SETTINGS = [
    ("B:Range", 1.0, lambda v: float(v) == pytest.approx(1.0)),
    ("B:Coupling", "AC", lambda v: v == "AC"),
    ("B:Coupling", "DC", lambda v: v == "DC"),
    ("B:Offset", 0.5, lambda v: float(v) == pytest.approx(0.5)),
    ("B:Offset", 0.0, lambda v: float(v) == pytest.approx(0.0)),
    ("C:Enable", "On", lambda v: v == "On"),
    ("C:Enable", "Off", lambda v: v == "Off"),
    ("NumSamples", 2000, lambda v: int(v) == 2000),
    ("PreTrigger", 0.25, lambda v: float(v) == pytest.approx(0.25, abs=1e-3)),
    ("NumSegments", 4, lambda v: int(v) == 4),
    ("NumSegments", 1, lambda v: int(v) == 1),
    ("SampleInterval", 8.0e-9, lambda v: 4e-9 <= float(v) <= 16e-9),
    ("Trigger:Level", -0.03, lambda v: float(v) == pytest.approx(-0.03, abs=0.2 / 100)),
    ("Trigger:Direction", "Below", lambda v: v == "Below"),
    ("Trigger:Direction", "Falling", lambda v: v == "Falling"),
    ("Trigger:Delay", 10, lambda v: int(v) == 10),
    ("Trigger:Delay", 0, lambda v: int(v) == 0),
    ("Trigger:AutoTimeout", 0.5, lambda v: float(v) == pytest.approx(0.5)),
    ("Trigger:Source", "B", lambda v: v == "B"),
    ("Trigger:Source", "A", lambda v: v == "A"),
    ("Trigger:Enable", "Off", lambda v: v == "Off"),
    ("Trigger:Enable", "On", lambda v: v == "On"),
    ("SigGen:Waveform", "Square", lambda v: v == "Square"),
    ("SigGen:Frequency", 1000.0, lambda v: float(v) == pytest.approx(1000.0, rel=1e-3)),
    ("SigGen:Amplitude", 0.5, lambda v: float(v) == pytest.approx(0.5, rel=1e-3)),
    ("SigGen:Offset", 0.1, lambda v: float(v) == pytest.approx(0.1, abs=1e-3)),
    ("SigGen:Enable", "On", lambda v: v == "On"),
    ("SigGen:Enable", "Off", lambda v: v == "Off"),
    ("Buffer:Size", 32, lambda v: int(v) == 32),
]


def test_every_setting_is_writable_with_a_truthful_readback(ioc):
    for name, value, check in SETTINGS:
        put_ok(ioc, name, value)
        rbv = get(ioc, name + "_RBV")
        assert check(rbv), f"{name} = {value!r}: readback {rbv!r}"
    # the quantised interval is reported consistently
    dt = getf(ioc, "SampleInterval_RBV")
    assert getf(ioc, "SampleRate_RBV") == pytest.approx(1.0 / dt, rel=1e-6)
    n = int(get(ioc, "NumSamples_RBV"))
    assert len(get_array(ioc, "TimeAxis_RBV")) == n
    put_ok(ioc, "NumSamples", 1000)
    put_ok(ioc, "SampleInterval", 4.0e-9)
    put_ok(ioc, "PreTrigger", 0.1)
    put_ok(ioc, "Trigger:AutoTimeout", 0.2)
    put_ok(ioc, "Trigger:Level", -0.02)
    put_ok(ioc, "B:Range", 0.5)
    put_ok(ioc, "Buffer:Size", 16)
    put_ok(ioc, "Waveform:MaxRate", 20)


BAD_PUTS = [
    ("A:Range", "nan"), ("A:Range", "inf"), ("A:Range", "-inf"), ("A:Range", 100.0), ("A:Range", -1.0),
    ("A:Offset", 30.0),  # beyond every offset limit
    ("A:Offset", 2.0),  # inside the PV limits, beyond the 2000a's +/-0.25 V on the 0.2 V range
    ("A:Coupling", 5),  # enum index out of range
    ("Trigger:Source", 9),
    ("NumSamples", "abc"),  # wrong type
    ("NumSamples", 1),
    ("NumSegments", 0),
    ("SigGen:Frequency", 5.0e6),
    ("Waveform:MaxRate", -1),
    ("Buffer:Size", 1),
    ("Buffer:Size", 65536),  # 65536 slots x 2 channels x 1000 samples x 2 B > --max-ring-mb 64
    ("Pause", "Pause"),  # forbidden while no run is in progress
]


def test_bad_puts_are_refused_logged_and_the_ioc_stays_consistent(ioc):
    for name, value in BAD_PUTS:
        before = get(ioc, name)
        r = caput(ioc.env, ioc.pv(name), value, callback=True)
        assert r.returncode != 0, f"{name} = {value!r} was accepted: {r.stdout}"
        assert get(ioc, name) == before, f"{name} changed after a refused put"
    assert getf(ioc, "A:Range_RBV") == pytest.approx(0.2)
    assert getf(ioc, "A:Offset_RBV") == pytest.approx(0.0)
    assert get(ioc, "State_RBV") in ("Idle", "Stopped")
    log = ioc.log()
    for name in ("A:Range", "A:Offset", "NumSamples", "Pause", "Buffer:Size"):
        assert f"put refused: {ioc.pv(name)}" in log, name
    status = caget(ioc.env, ioc.pv("StatusMessage_RBV"), "-S")
    assert status.startswith("Put refused")
    assert ioc.alive()
    # still fully functional
    put_ok(ioc, "A:Range", 0.5)
    assert getf(ioc, "A:Range_RBV") == pytest.approx(0.5)
    put_ok(ioc, "A:Range", 0.2)


def _last_summary(ioc, event: str) -> dict:
    def find():
        if not ioc.summary.exists():
            return None
        recs = [json.loads(line) for line in ioc.summary.read_text().splitlines() if line.strip()]
        recs = [r for r in recs if r.get("event") == event]
        return recs[-1] if recs else None
    return wait_for(find, 10, 0.1, f"a {event!r} record in the summary file")


def test_acquire_with_numevents_completes_after_the_events_and_stats_match(ioc):
    n_before = len(ioc.summary.read_text().splitlines()) if ioc.summary.exists() else 0
    put_ok(ioc, "NumEvents", 100)
    put_ok(ioc, "Acquire", "Start", timeout=60)  # caput -c: returns when 100 events were processed
    assert int(get(ioc, "Stats:Events_RBV")) == 100
    assert int(get(ioc, "Stats:Processed_RBV")) == 100
    triggers = int(get(ioc, "Stats:Triggers_RBV"))
    assert triggers >= 100
    wait_for(lambda: get(ioc, "State_RBV") == "Stopped", 10, 0.1, "State_RBV = Stopped")
    assert get(ioc, "Acquire") == "Stop"
    # the buffer manager's own end-of-run accounting, as written to --summary
    rec = wait_for(lambda: (r := _last_summary(ioc, "run_end")) and
                   len(ioc.summary.read_text().splitlines()) > n_before and r, 10, 0.1, "run summary")
    assert rec["events"] == 100
    assert rec["triggers"] == triggers
    run_time, live_time = getf(ioc, "Stats:RunTime_RBV"), getf(ioc, "Stats:LiveTime_RBV")
    assert run_time == pytest.approx(rec["run_time"], rel=1e-6, abs=1e-6)
    assert live_time == pytest.approx(rec["live_time"], rel=1e-6, abs=1e-6)
    assert getf(ioc, "Stats:LiveFraction_RBV") == pytest.approx(100.0 * rec["live_fraction"], abs=1e-4)
    assert getf(ioc, "Stats:DeadTime_RBV") == pytest.approx(run_time - live_time, abs=1e-5)
    assert getf(ioc, "Stats:MeanTriggerRate_RBV") == pytest.approx(rec["mean_trigger_rate"], rel=1e-4)
    assert 0.0 < rec["live_fraction"] <= 1.0
    # Stats:Reset zeroes the shown counters
    put_ok(ioc, "Stats:Reset", "Reset")
    assert int(get(ioc, "Stats:Events_RBV")) == 0
    assert getf(ioc, "Stats:RunTime_RBV") == 0.0
    put_ok(ioc, "NumEvents", 0)


def test_acquire_reads_start_while_a_numevents_run_is_pending(ioc):
    put_ok(ioc, "NumEvents", 400)
    p = popen_tool("caput", ["-c", "-w", "60", ioc.pv("Acquire"), "Start"], ioc.env, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE)
    try:
        wait_for(lambda: get(ioc, "Acquire_RBV") == "Acquiring", 20, 0.02, "Acquire_RBV = Acquiring")
        if p.poll() is None:  # still waiting for the 400 events
            assert get(ioc, "Acquire") == "Start"
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert get(ioc, "Acquire") == "Stop" and int(get(ioc, "Stats:Events_RBV")) == 400
    finally:
        if p.poll() is None:
            p.terminate()
            p.wait(5)
        put_ok(ioc, "NumEvents", 0)


def test_run_control_pause_resume_and_rates(ioc):
    put_ok(ioc, "NumEvents", 0)
    put_ok(ioc, "Acquire", "Start")
    try:
        wait_for(lambda: int(get(ioc, "Stats:Events_RBV")) > 30, 20, 0.1, "events")
        assert get(ioc, "State_RBV") == "Running" and get(ioc, "Acquire_RBV") == "Acquiring"
        put_ok(ioc, "Pause", "Pause")
        assert get(ioc, "State_RBV") == "Paused" and get(ioc, "Pause_RBV") == "Pause"
        put_ok(ioc, "Pause", "Run")
        assert get(ioc, "State_RBV") == "Running"
        wait_for(lambda: getf(ioc, "Stats:TriggerRate_RBV") > 0, 10, 0.1, "a trigger rate")
        # waveforms are published, with the event number and the counter
        wait_for(lambda: int(get(ioc, "ArrayCounter_RBV")) > 3, 10, 0.1, "published waveforms")
        wf = get_array(ioc, "A:Waveform_RBV")
        assert len(wf) == int(get(ioc, "NumSamples_RBV"))
        assert np.all(np.abs(wf) <= 0.2 + 1e-6)  # volts, within the range
        # the publish rate is bounded by Waveform:MaxRate
        put_ok(ioc, "Waveform:MaxRate", 5)
        c0, t0 = int(get(ioc, "ArrayCounter_RBV")), time.monotonic()
        time.sleep(2.0)  # measuring interval for the bound below (not a wait for a condition)
        c1, t1 = int(get(ioc, "ArrayCounter_RBV")), time.monotonic()
        assert c1 - c0 <= 5 * (t1 - t0) + 2
    finally:
        put_ok(ioc, "Waveform:MaxRate", 20)
        stop_run(ioc)


def test_reconfiguration_while_running_never_mixes_generations(ioc):
    epics = ioc.use_pyepics()
    lengths: list[int] = []
    mon = Monitor(epics, ioc.pv("A:Waveform_RBV"),
                  lambda value=None, **kw: lengths.append(len(np.atleast_1d(value))))
    gen0 = int(get(ioc, "Stats:ConfigGeneration_RBV"))
    put_ok(ioc, "NumEvents", 0)
    put_ok(ioc, "Acquire", "Start")
    try:
        wait_for(lambda: sum(1 for n in lengths if n == 1000) > 3, 20, 0.1, "waveforms of 1000 samples")
        events_before = int(get(ioc, "Stats:Events_RBV"))
        put_ok(ioc, "NumSamples", 700)
        put_ok(ioc, "A:Range", 0.5)
        assert get(ioc, "State_RBV") == "Running"
        assert int(get(ioc, "Stats:ConfigGeneration_RBV")) >= gen0 + 2
        assert getf(ioc, "A:Range_RBV") == pytest.approx(0.5)
        wait_for(lambda: sum(1 for n in lengths if n == 700) > 3, 20, 0.1, "waveforms of 700 samples")
        assert len(get_array(ioc, "TimeAxis_RBV")) == 700
        wait_for(lambda: int(get(ioc, "Stats:Events_RBV")) > events_before + 10, 20, 0.1, "more events")
        first_new = lengths.index(700)
        assert all(n == 700 for n in lengths[first_new:]), "an old-configuration waveform after the change"
        assert set(lengths) <= {0, 1000, 700}
    finally:
        mon.close()
        stop_run(ioc)
        put_ok(ioc, "NumSamples", 1000)
        put_ok(ioc, "A:Range", 0.2)


def test_overflow_alarm_is_major_and_only_on_its_own_pv(ioc):
    put_ok(ioc, "NumEvents", 0)
    put_ok(ioc, "Trigger:Level", -0.01)  # first: the level must fit the new range
    put_ok(ioc, "A:Range", 0.02)  # muon pulses of -80 mV clip on the +/-20 mV range
    put_ok(ioc, "Acquire", "Start")
    try:
        wait_for(lambda: get(ioc, "A:Overflow_RBV") == "Yes", 20, 0.1, "A:Overflow_RBV = Yes")
        r = run_tool("caget", ["-a", ioc.pv("A:Overflow_RBV"), ioc.pv("A:Range_RBV"), ioc.pv("B:Overflow_RBV")],
                     ioc.env)
        lines = {ln.split()[0]: ln for ln in r.stdout.splitlines() if ln.strip()}
        assert "MAJOR" in lines[ioc.pv("A:Overflow_RBV")]
        assert "MAJOR" not in lines[ioc.pv("A:Range_RBV")]
        assert "MAJOR" not in lines[ioc.pv("B:Overflow_RBV")]
    finally:
        stop_run(ioc)
        put_ok(ioc, "A:Range", 0.2)
        put_ok(ioc, "Trigger:Level", -0.02)
        assert get(ioc, "A:Overflow_RBV") in ("Yes", "No")


def test_client_churn_at_full_publish_rate_keeps_every_monitor_alive(ioc):
    """Regression for caproto 1.3.0's 'deque mutated during iteration' (research notes §0)."""
    epics = ioc.use_pyepics()
    counts = {"wf": 0, "ev": 0}
    wf = Monitor(epics, ioc.pv("A:Waveform_RBV"), lambda **kw: counts.__setitem__("wf", counts["wf"] + 1))
    ev = Monitor(epics, ioc.pv("Stats:Events_RBV"), lambda **kw: counts.__setitem__("ev", counts["ev"] + 1))
    put_ok(ioc, "Waveform:MaxRate", 1000)
    put_ok(ioc, "NumEvents", 0)
    put_ok(ioc, "Acquire", "Start")
    try:
        wait_for(lambda: counts["wf"] > 10, 20, 0.05, "waveform updates")
        pvs = [ioc.pv(n) for n in ("A:Waveform_RBV", "B:Waveform_RBV", "EventNumber_RBV", "Stats:Events_RBV",
                                   "TimeAxis_RBV")]
        for _cycle in range(30):
            p = popen_tool("camonitor", pvs, ioc.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            line = p.stdout.readline()  # connected and receiving
            assert line, "camonitor got nothing"
            p.terminate()  # disconnect in the middle of publishing
            p.wait(5)
            p.stdout.close()
        mark = dict(counts)
        wait_for(lambda: counts["wf"] > mark["wf"] + 10 and counts["ev"] > mark["ev"] + 2, 10, 0.05,
                 "monitors still updating after the churn")
        # every departed client was dropped by the server: only pyepics' circuit and this caget remain
        wait_for(lambda: int(get(ioc, "IOC:CA_CLNT_CNT")) <= 2, 10, 0.3, "IOC:CA_CLNT_CNT back to <= 2")
        assert int(get(ioc, "IOC:CA_CONN_CNT")) >= 2  # the two monitored channels at least
        # and a new client still gets monitor updates
        p = popen_tool("camonitor", [ioc.pv("EventNumber_RBV")], ioc.env, stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
        try:
            first, second = p.stdout.readline(), p.stdout.readline()
            assert first and second and first != second
        finally:
            p.terminate()
            p.wait(5)
            p.stdout.close()
        assert ioc.alive()
    finally:
        wf.close()
        ev.close()
        put_ok(ioc, "Waveform:MaxRate", 20)
        stop_run(ioc)


def test_numeric_pvs_carry_units_precision_and_limits(ioc):
    epics = ioc.use_pyepics()
    info = epics.PV(ioc.pv("A:Range"), form="ctrl")
    assert info.wait_for_connection(5)
    info.get_ctrlvars()
    assert info.units == "V" and info.precision == 3
    assert info.upper_ctrl_limit == pytest.approx(20.0) and info.lower_ctrl_limit == pytest.approx(0.02)
    enum = epics.PV(ioc.pv("State_RBV"))
    assert enum.wait_for_connection(5)
    enum.get_ctrlvars()
    assert list(enum.enum_strs) == ["Idle", "Running", "Paused", "Stopped", "Error"]
    fill = epics.PV(ioc.pv("Buffer:FillLevel_RBV"), form="ctrl")
    assert fill.wait_for_connection(5)
    cv = fill.get_ctrlvars()
    assert cv["upper_warning_limit"] == 75.0 and cv["upper_alarm_limit"] == 100.0 and fill.units == "%"
    for p in (info, enum, fill):
        p.disconnect()
    assert not math.isnan(getf(ioc, "MaxSampleRate_RBV"))


def test_the_ioc_log_has_no_traceback(ioc):
    """Runs last in this module: nothing above made the IOC log an unexpected exception."""
    put_ok(ioc, "NumEvents", 10)
    put_ok(ioc, "Acquire", "Start", timeout=60)
    log = ioc.log()
    assert "Traceback" not in log, log[log.find("Traceback") - 500: log.find("Traceback") + 3000]
    assert ioc.alive()


def test_acquire_start_during_a_run_is_refused_with_a_clear_message(ioc):
    """A second Start never reports success for a run it did not make (issue 10)."""
    put_ok(ioc, "NumEvents", 0)
    put_ok(ioc, "Acquire", "Start")
    try:
        wait_for(lambda: int(get(ioc, "Stats:Events_RBV")) > 5, 20, 0.1, "events")
        events_before = int(get(ioc, "Stats:Events_RBV"))
        put_ok(ioc, "NumEvents", 100)
        r = run_tool("caput", ["-c", "-w", "60", ioc.pv("Acquire"), "Start"], ioc.env, timeout=80)
        assert r.returncode != 0, r.stdout + r.stderr
        assert "error" in (r.stdout + r.stderr).lower()
        msg = get(ioc, "StatusMessage_RBV", "-S")
        assert "Acquire" in msg and "already in progress" in msg and "Stop" in msg, msg
        # the running run goes on untouched
        assert get(ioc, "State_RBV") == "Running"
        wait_for(lambda: int(get(ioc, "Stats:Events_RBV")) > events_before + 5, 20, 0.1, "more events")
    finally:
        stop_run(ioc)
        put_ok(ioc, "NumEvents", 0)
    # once stopped, Start works again
    put_ok(ioc, "NumEvents", 20)
    put_ok(ioc, "Acquire", "Start", timeout=60)
    assert int(get(ioc, "Stats:Events_RBV")) == 20
    put_ok(ioc, "NumEvents", 0)
