"""db/ and docs/pv_reference.md are generated from the IOC's PV definitions, are current,
and a real EPICS softIoc loads db/ and serves the records over CA on 127.0.0.1."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from ca_tools import caget, loopback_env, popen_tool, run_tool
from conftest import REPO, free_port

from picodaq_ioc.ioc import dbgen

pytestmark = pytest.mark.ca


def test_committed_db_and_reference_match_the_generator(tmp_path):
    files = dbgen.generate(tmp_path / "db", tmp_path / "pv_reference.md")
    assert files, "generator produced nothing"
    for path, text in files.items():
        committed = REPO / ("docs" if path.suffix == ".md" else "db") / path.name
        assert committed.exists(), f"{committed} missing: run python -m picodaq_ioc.ioc.dbgen"
        assert committed.read_text() == text, f"{committed} is stale: run python -m picodaq_ioc.ioc.dbgen"


def test_db_covers_the_public_contract():
    text = (REPO / "db" / "picodaq.db").read_text()
    for name in ("Model_RBV", "Backend_RBV", "Serial_RBV", "StatusMessage_RBV", "Acquire", "NumEvents",
                 "Pause", "State_RBV", "SampleInterval", "SampleInterval_RBV", "NumSamples", "PreTrigger",
                 "NumSegments_RBV", "TimeAxis_RBV", "A:Enable", "A:Range_RBV", "A:Coupling", "A:Offset_RBV",
                 "A:Waveform_RBV", "A:Overflow_RBV", "D:Waveform_RBV", "Trigger:Enable", "Trigger:Source",
                 "Trigger:Level_RBV", "Trigger:Direction", "Trigger:Delay", "Trigger:AutoTimeout_RBV",
                 "SigGen:Enable", "SigGen:Waveform", "SigGen:Frequency", "SigGen:Amplitude", "SigGen:Offset",
                 "Buffer:Size_RBV", "Buffer:Filled_RBV", "Buffer:FillLevel_RBV", "Stats:Triggers_RBV",
                 "Stats:Events_RBV", "Stats:TriggerRate_RBV", "Stats:EventRate_RBV", "Stats:RunTime_RBV",
                 "Stats:LiveTime_RBV", "Stats:LiveFraction_RBV", "Stats:Reset", "Waveform:MaxRate",
                 "Waveform:Rate_RBV", "ArrayCounter_RBV", "IOC:HEARTBEAT"):
        assert f'"$(P){name}")' in text, name


def _softioc(port: int, tmp_path: Path) -> subprocess.Popen:
    env = loopback_env(port)
    args = ["-m", "P=SOFT:"]
    for db in sorted((REPO / "db").glob("*.db")):
        args += ["-d", str(db)]
    log = open(tmp_path / "softioc.log", "w")
    return popen_tool("softIoc", args, env, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT)


def test_softioc_loads_db_and_serves_it(tmp_path):
    port = free_port()
    env = loopback_env(port)
    proc = _softioc(port, tmp_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            r = run_tool("caget", ["-w", "0.5", "SOFT:State_RBV"], env)
            if r.returncode == 0:
                break
            assert proc.poll() is None, (tmp_path / "softioc.log").read_text()
            assert time.monotonic() < deadline, "softIoc did not serve SOFT:State_RBV"
            time.sleep(0.1)
        log = (tmp_path / "softioc.log").read_text()
        assert "Error" not in log and "error" not in log, log
        assert caget(env, "SOFT:State_RBV") == "Idle"  # first enum string of the mbbi
        assert caget(env, "SOFT:Acquire") == "Stop"
        assert caget(env, "SOFT:A:Range.EGU") == "V"
        assert float(caget(env, "SOFT:A:Range.DRVH")) == 20.0  # largest 2000a range
        assert caget(env, "SOFT:A:Coupling.ONAM") == "DC"
        assert caget(env, "SOFT:Trigger:Direction.TWST") == "Rising"
        assert float(caget(env, "SOFT:Buffer:FillLevel_RBV.HIGH")) == 75.0
        assert caget(env, "SOFT:Buffer:FillLevel_RBV.HHSV") == "MAJOR"
        assert int(caget(env, "SOFT:A:Waveform_RBV.NELM")) >= 4000
        assert caget(env, "SOFT:A:Waveform_RBV.FTVL") == "FLOAT"
        assert caget(env, "SOFT:Stats:LiveFraction_RBV.DESC") == "Live time / run time"
        r = run_tool("caput", ["-w", "2", "SOFT:A:Range", "0.5"], env)
        assert r.returncode == 0 and float(caget(env, "SOFT:A:Range")) == 0.5
    finally:
        proc.stdin.close()
        proc.terminate()
        proc.wait(10)
