"""``picodaq-analyze``: the configured analysis over recorded files, without an IOC."""

from __future__ import annotations

import copy
import json
import math
import zipfile

import h5py
import numpy as np
import pytest
import yaml
from conftest import REPO

from picodaq_ioc import offline
from picodaq_ioc.analysis.hdf5_writer import Hdf5Writer, WriterSettings
from picodaq_ioc.analysis.runner import AnalysisRunner
from picodaq_ioc.config.convert import config_dump
from picodaq_ioc.config.schema import Config
from picodaq_ioc.scope.recorded import PICOCOSMO_MAX_ADC, open_recording
from picodaq_ioc.session import DaqSession

T_WAIT = 120.0


def lifetime_cfg(tmp_path, events_rate: float = 300.0) -> tuple[dict, Config]:
    data = copy.deepcopy(yaml.safe_load((REPO / "configs" / "muon_lifetime.yaml").read_text()))
    data["simulation"].update(realtime=False, seed=5)
    data["simulation"]["sources"][0]["rate"] = events_rate
    data["output_dir"] = str(tmp_path / "live")
    return data, Config.model_validate(data)


def test_offline_analysis_of_a_recorded_run_equals_the_live_run(tmp_path, capsys):
    data, cfg = lifetime_cfg(tmp_path)
    with DaqSession.from_config(cfg) as s:
        runner = AnalysisRunner(s.bm, cfg.analysis, output_dir=cfg.output_dir)
        w = Hdf5Writer(s.bm, WriterSettings(file_path=str(tmp_path), file_name="run"),
                       config_json=json.dumps(config_dump(cfg)))
        path = w.start_capture()
        runner.begin_run()
        s.start(max_events=1500)
        assert s.bm.wait_stopped(T_WAIT)
        s.stop()
        live = runner.end_run()["pulse"]
        w.run_ended()
        assert w.wait_closed(0, T_WAIT)
    assert live["events"] == 1500 and live["double_pulses"] > 50
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(data))
    rc = offline.main(["--config", str(cfg_file), "--input", path, "--output-dir", str(tmp_path / "off")])
    assert rc == 0
    line = capsys.readouterr().out.strip()
    tau, err = live["lifetime"]["tau"], live["lifetime"]["tau_err"]
    assert line == (f"events 1500, accepted {live['accepted']}, double pulses {live['double_pulses']}, "
                    f"lifetime {tau * 1e6:.4f} +- {err * 1e6:.4f} us")
    # the same outputs as the live run: CSV files with the same rows, summary, HDF5 results
    for what in ("accepted", "doubles"):
        (a,) = (tmp_path / "live").glob(f"*_pulse_{what}.csv")
        (b,) = (tmp_path / "off").glob(f"*_pulse_{what}.csv")
        assert a.read_text() == b.read_text()
    (summ,) = (tmp_path / "off").glob("*_analysis_summary.yaml")
    off = yaml.safe_load(summ.read_text())["modules"]["pulse"]
    assert off["accepted"] == live["accepted"] and off["double_pulses"] == live["double_pulses"]
    assert off["lifetime"]["tau"] == pytest.approx(tau, rel=1e-12)
    (res,) = (tmp_path / "off").glob("*_analysis_results.h5")
    with h5py.File(res, "r") as f:
        assert f["analysis/pulse"].attrs["Accepted_RBV"] == live["accepted"]
    # without --config the configuration stored in the file is used
    rc = offline.main(["--input", path, "--output-dir", str(tmp_path / "off2")])
    assert rc == 0 and capsys.readouterr().out.strip() == line


def write_picocosmo_raw(path, osc: dict, pfconf: dict, volts: np.ndarray) -> None:
    """A raw-waveform file as picoCosmo's PulseFilter writes it (YAML: header, data, end)."""
    with open(path, "w") as f:
        print("--- #raw waveforms", file=f)
        yaml.dump({"OscConf": osc}, f)
        yaml.dump({"pFConf": pfconf}, f)
        print("data: ", file=f)
        for ev in volts:
            print(" - " + yaml.dump(np.around(ev, 5).tolist(), default_flow_style=True), file=f)
        print("--- ", file=f)


def test_picocosmo_raw_zip_is_read_completely_with_its_configuration(tmp_path, capsys):
    _, cfg = lifetime_cfg(tmp_path, events_rate=200.0)
    cfg.timebase.samples = 1000  # 4 us records keep the YAML small
    raw, evn = [], []
    with DaqSession.from_config(cfg) as s:
        s.attach("rec", lambda b: (raw.append(np.array(b.raw)), evn.append(np.array(b.event_number))))
        s.start(max_events=60)
        assert s.bm.wait_stopped(T_WAIT)
        s.stop()
        applied = s.applied
    raw = np.concatenate(raw)
    rng, off = applied.channels["A"].range_v, applied.channels["A"].offset_v
    volts = raw * rng / PICOCOSMO_MAX_ADC - off  # pico-python's rawToV
    osc = {"Channels": ["A"], "NChannels": 1, "NSamples": 1000, "TSampling": applied.sample_interval_s,
           "pretrig": 0.05, "CRanges": [rng], "ChanOffsets": [off], "ChanColors": ["darkblue"],
           "trgChan": "A", "trgActive": True, "trgThr": -0.045, "trgTyp": "Falling"}
    pfconf = {"pulseShape": [{"taur": 20e-9, "tauon": 12e-9, "tauf": 128e-9, "pheight": -0.1}],
              "doublePulse": True}
    dat = tmp_path / "rawDP_181028-1200.dat"
    write_picocosmo_raw(dat, osc, pfconf, volts)
    zpath = tmp_path / "Kanne_181028.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("Kanne_181028/README.txt", "run notes")
        z.write(dat, "Kanne_181028/rawDP_181028-1200.dat")
    r = open_recording(zpath)
    assert r.kind == "picocosmo" and r.n_events == 60 and r.channels == ("A",)
    assert r.config["OscConf"] == osc and r.config["pFConf"] == pfconf
    assert r.applied.n_pre == 50 and r.applied.sample_interval_s == applied.sample_interval_s
    assert r.applied.trigger.threshold_v == -0.045 and r.applied.trigger.direction.value == "Falling"
    got = np.concatenate([c.raw for c in r.chunks(16)])
    np.testing.assert_array_equal(got, raw)  # the recorded codes come back exactly
    cfg_file = tmp_path / "cfg.yaml"
    data = config_dump(cfg)
    cfg_file.write_text(yaml.safe_dump(data))
    rc = offline.main(["--config", str(cfg_file), "--input", str(zpath), "--output-dir", str(tmp_path / "o")])
    assert rc == 0
    line = capsys.readouterr().out
    assert line.startswith("events 60, accepted ")
    (summ,) = (tmp_path / "o").glob("*_analysis_summary.yaml")
    assert yaml.safe_load(summ.read_text())["modules"]["pulse"]["events"] == 60


@pytest.mark.parametrize("content", [None, b"not a recording at all\n", b"PK\x03\x04broken zip"])
def test_missing_or_corrupt_input_is_one_line_exit_2(tmp_path, capsys, content):
    path = tmp_path / "input.h5"
    if content is not None:
        path.write_bytes(content)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"analysis": [{"module": "pulse"}]}))
    rc = offline.main(["--config", str(cfg), "--input", str(path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and str(path) in err, err
    assert not math.isnan(rc)
