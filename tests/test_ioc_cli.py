"""The picodaq-ioc command line: --check, --list-pvs, clear errors, SIGTERM with run summary,
and analysis modules published as PVs (a dummy module loaded by import path)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest
from ca_tools import caget, caput
from conftest import REPO, ioc_env, wait_for

pytestmark = pytest.mark.ca

CONTRACT = ["Model_RBV", "Backend_RBV", "Serial_RBV", "StatusMessage_RBV", "Acquire", "NumEvents", "Pause",
            "State_RBV", "SampleInterval", "NumSamples_RBV", "PreTrigger", "NumSegments", "TimeAxis_RBV",
            "A:Enable", "A:Range", "A:Range_RBV", "A:Coupling", "A:Offset", "A:Waveform_RBV", "A:Overflow_RBV",
            "Trigger:Level", "Trigger:AutoTimeout_RBV", "SigGen:Frequency", "Buffer:Size", "Buffer:FillLevel_RBV",
            "Stats:LiveFraction_RBV", "Stats:Reset", "Waveform:MaxRate", "Waveform:Rate_RBV", "ArrayCounter_RBV",
            "IOC:HEARTBEAT"]


def run_cli(args: list[str], cwd=None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = ioc_env(5064)  # loopback environment; these invocations never serve
    return subprocess.run([sys.executable, "-m", "picodaq_ioc", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd or REPO)


def test_list_pvs_has_the_contract_with_the_prefix():
    r = run_cli(["--list-pvs", "--prefix", "LAB1:"])
    assert r.returncode == 0, r.stderr
    names = set(r.stdout.split())
    for n in CONTRACT:
        assert "LAB1:" + n in names, n
    assert all(n.startswith("LAB1:") for n in names)


def test_list_pvs_is_the_same_for_both_backends():
    sim = run_cli(["--list-pvs", "--config", str(REPO / "configs" / "demo.yaml")])
    hw = run_cli(["--list-pvs", "--config", str(REPO / "configs" / "demo.yaml"), "--backend", "picoscope"])
    assert sim.returncode == 0 and hw.returncode == 0, sim.stderr + hw.stderr
    assert sim.stdout == hw.stdout


def test_check_prints_the_applied_settings():
    r = run_cli(["--check", "--config", str(REPO / "configs" / "demo.yaml")])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


def test_check_rejects_a_bad_config_in_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("channels:\n  A: {range: fast}\n")
    r = run_cli(["--check", "--config", str(bad)])
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "range" in r.stderr and "bad.yaml" in r.stderr


def test_bad_config_at_start_is_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trigger:\n  source: Z\n")
    r = run_cli(["--config", str(bad)])
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "source" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_missing_pico_sdk_is_one_clear_line(tmp_path):
    r = run_cli(["--backend", "picoscope"], cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if "picodaq-ioc:" in ln]
    assert len(lines) == 1 and "driver" in lines[0].lower(), r.stderr


def test_network_interfaces_need_an_explicit_opt_in():
    r = run_cli(["--interfaces", "192.0.2.1"])
    assert r.returncode == 2 and "--serve-network" in r.stderr


def test_sigterm_stops_the_run_and_writes_the_summary(ioc_factory, tmp_path):
    summary = tmp_path / "summary.jsonl"
    ioc = ioc_factory(None, ["--summary", str(summary), "--no-autosave"])
    r = caput(ioc.env, ioc.pv("Acquire"), "Start", callback=True)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: int(caget(ioc.env, ioc.pv("Stats:Events_RBV"))) > 0, 20, 0.1, "events")
    assert ioc.stop(signal.SIGTERM) == 0
    recs = [json.loads(ln) for ln in summary.read_text().splitlines()]
    final = [r for r in recs if r["event"] == "shutdown"]
    assert final and final[-1]["stopped_run"] is True
    assert final[-1]["events"] > 0 and final[-1]["state"] == "Stopped"
    assert "Traceback" not in ioc.log()


DUMMY = textwrap.dedent('''
    import threading
    import numpy as np
    from picodaq_ioc.analysis.base import AnalysisModule, ResultSpec

    class Dummy(AnalysisModule):
        """Counts events; a histogram of the event numbers mod 8; a Reset command."""
        prefix = "Dummy"
        specs = (
            ResultSpec("Count_RBV", "int", "events seen"),
            ResultSpec("LastEvent_RBV", "float", "last event number", units="", precision=0),
            ResultSpec("Hist_RBV", "int_array", "event number mod 8", max_length=8),
            ResultSpec("Label_RBV", "string", "a label"),
            ResultSpec("Reset", "command", "zero the counters"),
        )

        def __init__(self, **params):
            super().__init__(**params)
            self.count = 0
            self.last = 0
            self.hist = np.zeros(8, np.int64)

        def start(self, applied, run):
            pass

        def process(self, batch):
            with self.lock:
                self.count += len(batch)
                self.last = int(batch.event_number[-1])
                np.add.at(self.hist, batch.event_number % 8, 1)

        def results(self):
            with self.lock:
                return {"Count_RBV": self.count, "LastEvent_RBV": float(self.last),
                        "Hist_RBV": self.hist.copy(), "Label_RBV": "dummy ok"}

        def command(self, name, value):
            if name == "Reset" and value:
                with self.lock:
                    self.count = 0
                    self.hist[:] = 0
''')


def test_analysis_module_results_and_commands_as_pvs(ioc_factory, tmp_path):
    # the IOC runs with cwd = tmp_path, so the module is importable by its path
    (tmp_path / "picodaq_test_dummy.py").write_text(DUMMY)
    cfg = {"device": {"backend": "sim", "model": "2000a"},
           "channels": {"A": {"range": 0.2}},
           "timebase": {"sample_interval": 4.0e-9, "samples": 500},
           "trigger": {"source": "A", "level": -0.02, "direction": "Falling", "auto_timeout": 0.1},
           "simulation": {"seed": 5, "sources": [{"kind": "muon", "channels": ["A"], "rate": 300.0,
                                                  "amplitude": -0.08}]},
           "analysis": [{"module": "picodaq_test_dummy:Dummy", "name": "dummy"}]}
    ioc = ioc_factory(cfg, ["--no-autosave"])
    env = ioc.env
    assert caput(env, ioc.pv("NumEvents"), 60, callback=True).returncode == 0
    assert caput(env, ioc.pv("Acquire"), "Start", callback=True, timeout=60).returncode == 0
    # every event was processed by the module before the put completed; its PVs follow at 2 Hz
    wait_for(lambda: int(caget(env, ioc.pv("Dummy:Count_RBV"))) == 60, 10, 0.1, "Dummy:Count_RBV = 60")
    assert float(caget(env, ioc.pv("Dummy:LastEvent_RBV"))) == 60.0
    hist = [int(x) for x in caget(env, ioc.pv("Dummy:Hist_RBV")).split()[1:]]
    assert sum(hist) == 60 and len(hist) == 8
    assert caget(env, ioc.pv("Dummy:Label_RBV")) == "dummy ok"
    assert caget(env, ioc.pv("Dummy:ModuleStatus_RBV"), "-S") == "OK"
    assert caput(env, ioc.pv("Dummy:Reset"), 1, callback=True).returncode == 0
    wait_for(lambda: int(caget(env, ioc.pv("Dummy:Count_RBV"))) == 0, 10, 0.1, "Dummy:Count_RBV reset")
    assert caput(env, ioc.pv("Dummy:Reset"), "nan", callback=True).returncode != 0
    assert ioc.alive()


@pytest.mark.parametrize("entry, words", [({"module": "nosuchmodule"}, ["nosuchmodule", "allowed"]),
                                          ({"module": "pulse", "prefix": "Trigger"}, ["Trigger", "already used"])])
def test_bad_analysis_entry_is_one_line_without_traceback(tmp_path, entry, words):
    cfg = tmp_path / "an.yaml"
    cfg.write_text(json.dumps({"analysis": [entry]}))
    r = run_cli(["--config", str(cfg), "--no-autosave"], cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    # the error is one line; INFO lines before it are the configuration's notices (here:
    # the file has no simulation sources, so the simulator would make only noise)
    err = [ln for ln in r.stderr.strip().splitlines() if " INFO " not in ln]
    assert len(err) == 1 and all(w in err[0] for w in words), r.stderr


def test_interfaces_default_to_loopback_and_network_needs_the_opt_in(monkeypatch):
    from picodaq_ioc.ioc import cli, env

    parse = cli.build_parser().parse_args
    assert cli.resolve_interfaces(parse([])) == ["127.0.0.1"]
    monkeypatch.setenv("EPICS_CAS_INTF_ADDR_LIST", "192.0.2.7")
    assert cli.resolve_interfaces(parse([])) == ["127.0.0.1"]  # the environment alone does not open it
    assert cli.resolve_interfaces(parse(["--serve-network"])) == ["192.0.2.7"]
    monkeypatch.delenv("EPICS_CAS_INTF_ADDR_LIST")
    with pytest.raises(cli.UserError, match="EPICS_CAS_INTF_ADDR_LIST"):
        cli.resolve_interfaces(parse(["--serve-network"]))
    fake: dict[str, str] = {"EPICS_CAS_BEACON_ADDR_LIST": "192.0.2.255"}
    env.apply_loopback_env(fake)
    assert fake["EPICS_CAS_BEACON_ADDR_LIST"] == "127.0.0.1" and fake["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] == "NO"
    assert all(v in ("127.0.0.1", "NO") for v in fake.values())
