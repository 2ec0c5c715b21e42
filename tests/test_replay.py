"""Replay backend: recorded files played back through the buffer manager, analysis and PVs."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from ca_tools import caget, caput, wait_for
from conftest import REPO, ioc_env

from picodaq_ioc.analysis.hdf5_writer import Hdf5Writer, WriterSettings
from picodaq_ioc.analysis.runner import AnalysisRunner
from picodaq_ioc.config.convert import config_dump, scope_settings
from picodaq_ioc.config.replay import replay_config
from picodaq_ioc.config.schema import Config
from picodaq_ioc.scope.errors import InvalidConfig
from picodaq_ioc.scope.recorded import open_recording
from picodaq_ioc.session import DaqSession

T_WAIT = 120.0
N = 600


def lifetime_data(seed: int = 9) -> dict:
    data = copy.deepcopy(yaml.safe_load((REPO / "configs" / "muon_lifetime.yaml").read_text()))
    data["simulation"].update(realtime=False, count_host_time=False, seed=seed)
    data["simulation"]["sources"][0]["rate"] = 300.0
    data["timebase"]["samples"] = 2500  # 10 us records keep the files small
    return data


def record(tmp_path, data: dict, n: int = N) -> tuple[str, dict, list]:
    """Run the simulator with the pulse analysis and the writer; returns file, live summary, batches."""
    cfg = Config.model_validate({**data, "output_dir": str(tmp_path / "live")})
    seen = []
    with DaqSession.from_config(cfg) as s:
        runner = AnalysisRunner(s.bm, cfg.analysis, output_dir=cfg.output_dir)
        s.attach("rec", lambda b: seen.append((np.array(b.raw), np.array(b.event_number), np.array(b.t_trigger),
                                               np.array(b.live_time))))
        w = Hdf5Writer(s.bm, WriterSettings(file_path=str(tmp_path), file_name="rec"),
                       config_json=json.dumps(config_dump(cfg)))
        path = w.start_capture()
        runner.begin_run()
        s.start(max_events=n)
        assert s.bm.wait_stopped(T_WAIT)
        live_summary = s.stop()
        live = runner.end_run()["pulse"]
        w.run_ended()
        assert w.wait_closed(0, T_WAIT)
    live["run"] = live_summary
    return path, live, seen


@pytest.mark.parametrize("pacing", ["fast", "recorded"])
def test_replay_delivers_the_recorded_events_and_analysis_results(tmp_path, pacing):
    data = lifetime_data()
    path, live, seen = record(tmp_path, data)
    rdata = {**data, "device": {**data["device"], "backend": "replay"},
             "replay": {"input": path, "pacing": pacing}, "output_dir": str(tmp_path / "replay")}
    cfg = replay_config(Config.model_validate(rdata))
    got = []
    with DaqSession.from_config(cfg) as s:
        assert s.info.driver == "replay"
        runner = AnalysisRunner(s.bm, cfg.analysis, output_dir=cfg.output_dir)
        s.attach("rec", lambda b: got.append((np.array(b.raw), np.array(b.event_number), np.array(b.t_trigger),
                                              np.array(b.live_time))))
        runner.begin_run()
        s.start()  # no max_events: the end of the file ends the run
        assert s.bm.wait_stopped(T_WAIT)
        summary = s.stop()
        rep = runner.end_run()["pulse"]
        first = list(got)
        # settings other than the recorded ones are refused, naming the field and the recorded value
        with pytest.raises(InvalidConfig) as ei:
            s.update_settings(channels={"A": {"range_v": 0.2}})
        assert ei.value.field == "A:Range" and "recorded" in str(ei.value) and "0.5" in ei.value.allowed
        # a second run replays the file again from its start
        s.start()
        assert s.bm.wait_stopped(T_WAIT)
        assert s.stop().events == N
    assert summary.events == summary.triggers == N and summary.discarded == 0
    for i in range(4):
        np.testing.assert_array_equal(np.concatenate([g[i] for g in first]), np.concatenate([x[i] for x in seen]))
    # the recorded time axis: same live time as the recorded run
    assert summary.live_time == pytest.approx(live["run"].live_time, rel=1e-12)
    for key in ("events", "validated", "accepted", "double_pulses", "accepted_by_fold"):
        assert rep[key] == live[key], key
    assert rep["mean_rate_hz"] == pytest.approx(live["mean_rate_hz"], rel=1e-12)
    assert rep["lifetime"]["tau"] == pytest.approx(live["lifetime"]["tau"], rel=1e-12)


def test_replay_config_takes_the_recorded_settings(tmp_path):
    data = lifetime_data()
    path, _, _ = record(tmp_path, data, n=20)
    other = {**data, "channels": {"A": {"range": 0.2}, "B": {"range": 1.0}}, "device": {"backend": "replay"},
             "replay": {"input": path}}
    cfg = replay_config(Config.model_validate(other))
    rec = open_recording(path)
    channels, timebase, trigger, _ = scope_settings(cfg)
    assert [c for c, x in channels.items() if x.enabled] == ["A"]
    assert channels["A"].range_v == rec.applied.channels["A"].range_v == 0.5
    assert timebase.n_samples == 2500 and trigger.threshold_v == -0.045
    assert cfg.analysis == Config.model_validate(other).analysis


PULSE_PVS = ("Events_RBV", "Validated_RBV", "Accepted_RBV", "DoublePulses_RBV", "Coincidences_RBV",
             "Heights_RBV", "NoiseHeights_RBV", "DecayTimes_RBV", "Lifetime_RBV", "LifetimeErr_RBV",
             "Background_RBV", "FitEntries_RBV", "MeanRate_RBV")


def _pulse(h) -> dict[str, str]:
    return {pv: caget(h.env, h.pv("Pulse:" + pv), "-f", "15") for pv in PULSE_PVS}


def _differences(got: dict[str, str], expected: dict[str, str]) -> dict[str, tuple[str, str]]:
    out = {}
    for k, v in expected.items():
        a, b = np.array(got[k].split(), dtype=float), np.array(v.split(), dtype=float)
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-9, atol=0.0, equal_nan=True):
            out[k] = (got[k], v)
    return out


@pytest.mark.ca
def test_replay_through_the_ioc_gives_the_live_pulse_results(ioc_factory, tmp_path):
    data = lifetime_data(seed=4)
    live = ioc_factory(data, ["--no-autosave", "--output-dir", str(tmp_path / "live")], name="live")
    for pv, value, opts in (("HDF:FilePath", str(tmp_path), ("-S",)), ("HDF:NumCapture", N, ()),
                            ("NumEvents", N, ())):
        assert caput(live.env, live.pv(pv), value, *opts, callback=True).returncode == 0
    assert caput(live.env, live.pv("HDF:Capture"), 1).returncode == 0
    wait_for(lambda: caget(live.env, live.pv("HDF:Capture_RBV")).split()[-1] == "Capturing", 30)
    r = caput(live.env, live.pv("Acquire"), "Start", callback=True, timeout=120)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: caget(live.env, live.pv("HDF:Capture_RBV")).split()[-1] == "Done", 60)
    expected = _pulse(live)
    assert int(expected["Events_RBV"]) == N and int(expected["DoublePulses_RBV"]) > 20
    path = f"{tmp_path}/picodaq_001.h5"
    assert caget(live.env, live.pv("HDF:FullFileName_RBV"), "-S") == f"{tmp_path}/picodaq_002.h5"  # the next
    live.stop()

    rep = ioc_factory(data, ["--no-autosave", "--backend", "replay", "--input", path, "--replay-pacing", "fast",
                             "--output-dir", str(tmp_path / "replay")], name="replay")
    assert caget(rep.env, rep.pv("Backend_RBV")).split()[-1] == "replay"
    assert caput(rep.env, rep.pv("NumEvents"), 0, callback=True).returncode == 0
    assert caput(rep.env, rep.pv("Acquire"), "Start", callback=True).returncode == 0
    # the end of the file ends the run
    wait_for(lambda: caget(rep.env, rep.pv("State_RBV")).split()[-1] == "Stopped", 120, message="end of file")
    assert int(caget(rep.env, rep.pv("Stats:Events_RBV")).split()[-1]) == N
    # counts and spectra exactly; fitted figures to 1e-9 (the optimiser sums the same delays in
    # another order: ~1e-11 relative)
    wait_for(lambda: _differences(_pulse(rep), expected) == {}, 30, message="Pulse:* equal to the live run")
    # settings show the recording and refuse changes with a message naming the recorded value
    assert float(caget(rep.env, rep.pv("A:Range_RBV")).split()[-1]) == pytest.approx(0.5)
    r = caput(rep.env, rep.pv("A:Range"), 0.2, callback=True)
    assert r.returncode != 0
    msg = caget(rep.env, rep.pv("StatusMessage_RBV"), "-S")
    assert "A:Range" in msg and "recorded" in msg, msg
    assert float(caget(rep.env, rep.pv("A:Range")).split()[-1]) == pytest.approx(0.5)


@pytest.mark.parametrize("content", [None, b"\x89HDF\r\n\x1a\ntruncated", b"junk\n"])
def test_replay_of_a_missing_or_corrupt_file_is_one_line_exit_2(tmp_path, content):
    path = tmp_path / "in.h5"
    if content is not None:
        path.write_bytes(content)
    p = subprocess.run([sys.executable, "-m", "picodaq_ioc", "--backend", "replay", "--input", str(path),
                        "--prefix", "TREPLAY:"], capture_output=True, text=True, timeout=60,
                       env=ioc_env(5064 + 7), cwd=str(tmp_path))
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and lines[0].startswith("picodaq-ioc: error: replay:"), p.stderr
