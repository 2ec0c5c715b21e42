"""HDF5 writer over Channel Access: ``caput -c HDF:Capture 1`` + ``caput -c Acquire Start``.

The IOC runs the simulator without host-time dead time (``count_host_time: false``), so the
event stream depends on the seed only: the test re-creates it in-process (unpaced) and
compares the file with it event by event (event numbers, raw samples) and with the
simulator's hidden truth (trigger times). A plain-h5py SWMR reader follows the file while
the IOC writes it.
"""

from __future__ import annotations

import copy
import json

import h5py
import numpy as np
import pytest
from ca_tools import caget, caput, popen_tool, wait_for

from picodaq_ioc.config.schema import Config
from picodaq_ioc.session import DaqSession

pytestmark = pytest.mark.ca

N = 1000
CONFIG = {
    "device": {"backend": "sim", "model": "2000a"},
    "channels": {"A": {"range": 0.5, "coupling": "AC", "offset": 0.4}},
    "timebase": {"sample_interval": 4e-9, "samples": 1000, "pretrigger": 0.05},
    "trigger": {"source": "A", "level": -0.045, "direction": "Falling", "auto_timeout": 5.0},
    "buffer": {"n_buffers": 16},
    "simulation": {"seed": 7, "realtime": True, "count_host_time": False, "noise_rms": 1e-3,
                   "sources": [{"kind": "muon", "channels": ["A"], "rate": 400.0, "amplitude": -0.2,
                                "decay_fraction": 0.05}]},
    "analysis": [{"module": "pulse", "pulse_shapes": [{"height": -0.1}], "min_coincidence": 1}],
}


def _expected(n: int):
    """The first ``n`` events of the configured simulator, unpaced, with its truth."""
    cfg = copy.deepcopy(CONFIG)
    cfg["simulation"]["realtime"] = False
    raw, ev = [], []
    with DaqSession.from_config(Config.model_validate(cfg), keep_truth=True) as s:
        s.attach("rec", lambda b: (raw.append(np.array(b.raw)), ev.append(np.array(b.event_number))))
        s.start(max_events=n)
        assert s.bm.wait_stopped(120)
        s.stop()
        t_true = s.backend.truth.all_trigger_times()[:n]
    return np.concatenate(raw), np.concatenate(ev), t_true


def test_capture_over_ca_holds_exactly_the_delivered_events(ioc_factory, tmp_path):
    h = ioc_factory(CONFIG, ["--no-autosave", "--output-dir", str(tmp_path / "out")])
    env = h.env
    data = tmp_path / "data"
    data.mkdir()
    for pv, value, opts in (("HDF:FilePath", str(data), ("-S",)), ("HDF:FileName", "muons", ("-S",)),
                            ("HDF:NumCapture", N, ()), ("NumEvents", N, ())):
        r = caput(env, h.pv(pv), value, *opts, callback=True)
        assert r.returncode == 0, r.stdout + r.stderr
    full = f"{data}/muons_001.h5"
    assert caget(env, h.pv("HDF:FullFileName_RBV"), "-S").split()[-1] == full
    capture = popen_tool("caput", ["-c", "-w", "120", h.pv("HDF:Capture"), "1"], env)
    try:
        wait_for(lambda: caget(env, h.pv("HDF:Capture_RBV")).split()[-1] == "Capturing", 30,
                 message="HDF:Capture_RBV Capturing")
        acquire = popen_tool("caput", ["-c", "-w", "120", h.pv("Acquire"), "Start"], env)
        # a plain h5py SWMR reader follows the file while the IOC writes it
        wait_for(lambda: int(caget(env, h.pv("HDF:NumCaptured_RBV")).split()[-1]) > 0, 60,
                 message="first events written")
        sizes = []
        with h5py.File(full, "r", swmr=True, locking=False) as f:
            ds = f["events"]

            def grown() -> bool:
                ds.refresh()
                sizes.append(ds.shape[0])
                return ds.shape[0] >= N

            wait_for(grown, 120, 0.02, "the reader to see all events")
            partial = sorted({s for s in sizes if 0 < s < N})
            np.testing.assert_array_equal(ds["event_number"], np.arange(1, N + 1))
        assert len(partial) >= 2, f"the reader saw no file growing: {sizes[:10]}"
        assert capture.wait(120) == 0 and acquire.wait(120) == 0
    finally:
        for p in (capture,):
            if p.poll() is None:
                p.terminate()
    # put-completion of Capture means the file is closed and complete
    assert caget(env, h.pv("HDF:WriteStatus_RBV")).split()[-1] == "OK"
    assert int(caget(env, h.pv("HDF:NumCaptured_RBV")).split()[-1]) == N
    assert int(caget(env, h.pv("HDF:FileNumber")).split()[-1]) == 2
    assert int(caget(env, h.pv("Stats:Events_RBV")).split()[-1]) == N
    raw, ev, t_true = _expected(N)
    with h5py.File(full, "r") as f:
        assert f.attrs["complete"] and f.attrs["num_captured"] == N
        np.testing.assert_array_equal(f["events"]["event_number"][()], ev)
        np.testing.assert_array_equal(f["raw"][()], raw)
        t = f["events"]["t_trigger"][()] + f["events"]["trigger_time_offset"][()]
        assert np.max(np.abs(t - (t_true - t_true[0] + t[0]))) < 4e-9
        applied = json.loads(f.attrs["applied"])
        assert applied["channels"]["A"]["offset_v"] == pytest.approx(0.4)
        assert json.loads(f.attrs["config"])["simulation"]["seed"] == 7
        assert f["analysis/pulse"].attrs["Events_RBV"] == N
    # run files (analysis CSV/summary) went to --output-dir
    assert any((tmp_path / "out").glob("*_pulse_accepted.csv"))


def test_write_errors_show_in_pvs_and_the_ioc_goes_on(ioc_factory, tmp_path):
    h = ioc_factory(CONFIG, ["--no-autosave"])
    env = h.env
    r = caput(env, h.pv("HDF:FilePath"), str(tmp_path / "nowhere"), "-S", callback=True)
    assert r.returncode == 0
    r = caput(env, h.pv("HDF:Capture"), 1, callback=True)
    assert r.returncode != 0  # refused: no such directory
    msg = caget(env, h.pv("HDF:WriteMessage_RBV"), "-S")
    assert "does not exist" in msg, msg
    st = caget(env, h.pv("HDF:WriteStatus_RBV"), "-a")
    assert "MAJOR" in st, st
    assert caget(env, h.pv("HDF:Capture_RBV")).split()[-1] == "Done"
    r = caput(env, h.pv("HDF:FileTemplate"), "%d%d", "-S", callback=True)
    assert r.returncode != 0
    assert h.proc.poll() is None
    assert caget(env, h.pv("State_RBV")).split()[-1] in ("Idle", "Stopped")
