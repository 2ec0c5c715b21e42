"""HDF5 writer (obligatory consumer, no EPICS): exact content, SWMR, filters, errors, no loss."""

from __future__ import annotations

import json
import threading

import h5py
import numpy as np
import pytest
from ca_tools import wait_for
from fakes import FakeScope, decode_serials

from picodaq_ioc.analysis.hdf5_writer import Hdf5Writer, PulseSelector, WriterError, WriterSettings
from picodaq_ioc.config.schema import Config
from picodaq_ioc.scope.recorded import open_recording
from picodaq_ioc.session import DaqSession

T_WAIT = 60.0


def sim_cfg(seed: int = 3, rate: float = 2000.0, decay: float = 0.0) -> Config:
    return Config.model_validate({
        "channels": {"A": {"range": 0.2}, "B": {"range": 0.5, "offset": 0.1}},
        "timebase": {"sample_interval": 4e-9, "samples": 500, "pretrigger": 0.1},
        "trigger": {"source": "A", "level": -0.02, "direction": "Falling", "auto_timeout": 0.01},
        "buffer": {"n_buffers": 8},
        "simulation": {"seed": seed, "realtime": False,
                       "sources": [{"kind": "muon", "channels": ["A", "B"], "rate": rate,
                                    "decay_fraction": decay}]},
    })


class Recorder:
    """A second obligatory consumer keeping copies of everything delivered."""

    def __init__(self) -> None:
        self.raw: list[np.ndarray] = []
        self.ev: list[np.ndarray] = []
        self.t: list[np.ndarray] = []
        self.live: list[np.ndarray] = []

    def __call__(self, b) -> None:
        self.raw.append(np.array(b.raw))
        self.ev.append(np.array(b.event_number))
        self.t.append(np.array(b.t_trigger))
        self.live.append(np.array(b.live_time))

    def cat(self, name: str) -> np.ndarray:
        return np.concatenate(getattr(self, name))


def test_capture_holds_exactly_the_delivered_events_and_the_truth(tmp_path):
    cfg = sim_cfg()
    with DaqSession.from_config(cfg, keep_truth=True) as s:
        rec = Recorder()
        s.attach("rec", rec)
        w = Hdf5Writer(s.bm, WriterSettings(file_path=str(tmp_path), file_name="t", num_capture=300),
                       ioc_version="9.9", config_json=json.dumps({"x": 1}),
                       results_fn=lambda: {"pulse": {"Accepted_RBV": 7, "Heights_RBV": np.arange(3)}})
        path = w.start_capture()
        assert path == f"{tmp_path}/t_001.h5"
        s.start(max_events=400)
        assert s.bm.wait_stopped(T_WAIT)
        summary = s.stop()
        assert w.wait_closed(0, T_WAIT)
        truth = s.backend.truth
    assert summary.events == 400 and summary.discarded == 0
    st = w.status
    assert st.num_captured == 300 and st.ok and not st.capturing and st.file_number == 2
    with h5py.File(path, "r") as f:
        assert f.attrs["complete"] and f.attrs["num_captured"] == 300
        assert f.attrs["ioc_version"] == "9.9" and json.loads(f.attrs["config"]) == {"x": 1}
        raw = f["raw"][()]
        assert raw.dtype == np.int16 and raw.shape == (300, 2, 500)
        assert f["raw"].chunks == (1, 2, 500)
        np.testing.assert_array_equal(f["events"]["event_number"][()], np.arange(1, 301))
        np.testing.assert_array_equal(raw, rec.cat("raw")[:300])
        np.testing.assert_array_equal(f["events"]["t_trigger"][()], rec.cat("t")[:300])
        np.testing.assert_array_equal(f["events"]["live_time"][()], rec.cat("live")[:300])
        assert np.all(np.diff(f["events"]["live_time"][()]) >= 0)
        # trigger times = the simulator's exact threshold crossings (to the sub-sample offset)
        t_true = truth.all_trigger_times()[:300]
        t_file = f["events"]["t_trigger"][()] + f["events"]["trigger_time_offset"][()]
        t0 = t_true[0] - t_file[0]
        assert np.max(np.abs(t_file + t0 - t_true)) < 4e-9
        np.testing.assert_allclose(f["events"]["timestamp"][()] - f["events"]["t_trigger"][()],
                                   f.attrs["run_start_time"])
        a = f["raw"].attrs
        assert list(a["channels"]) == ["A", "B"]
        assert a["offset_v"][1] == pytest.approx(0.1) and a["n_pre"] == 50
        assert a["time_axis_s"].shape == (500,) and a["time_axis_s"][50] == 0.0
        assert f["analysis/pulse"].attrs["Accepted_RBV"] == 7
        np.testing.assert_array_equal(f["analysis/pulse/Heights_RBV"][()], [0, 1, 2])
    r = open_recording(path)
    assert r.n_events == 300 and r.channels == ("A", "B") and r.applied.n_samples == 500
    got = np.concatenate([c.raw for c in r.chunks(64)])
    np.testing.assert_array_equal(got, raw)


def test_swmr_reader_follows_the_file_while_it_is_written(tmp_path):
    fake = FakeScope(rate=5000.0)
    cfg = Config.model_validate({"channels": {"A": {"range": 0.2}}, "timebase": {"samples": 64},
                                 "buffer": {"n_buffers": 4}})
    gate = threading.Event()
    seen: list[int] = []
    with DaqSession.from_config(cfg, backend=fake) as s:
        # this consumer holds the run after 100 events until the reader saw them in the file
        def hold(b):
            if b.event_number[-1] >= 100 and not gate.is_set():
                assert gate.wait(T_WAIT)

        s.attach("hold", hold, max_events=10)
        w = Hdf5Writer(s.bm, WriterSettings(file_path=str(tmp_path), file_name="swmr"), output_dir=str(tmp_path))
        path = w.start_capture()
        s.start(max_events=300)
        # the datasets exist (SWMR mode on) once the first events were written
        wait_for(lambda: w.status.num_captured > 0, T_WAIT, 0.002, "first events in the file")
        with h5py.File(path, "r", swmr=True, locking=False) as f:
            ev = f["events"]
            wait_for(lambda: ev.refresh() or ev.shape[0] >= 100, T_WAIT, 0.01, "100 events seen by the reader")
            seen = list(ev["event_number"])
            gate.set()
            assert s.bm.wait_stopped(T_WAIT)
            s.stop()
            w.run_ended()
            assert w.wait_closed(0, T_WAIT)
    assert len(seen) >= 100 and seen == list(range(1, len(seen) + 1))
    with h5py.File(path, "r") as f:
        n = f["raw"].shape[0]
        assert n == 300 and f.attrs["close_reason"] == "end of run"
        np.testing.assert_array_equal(decode_serials(f["raw"][()]), np.arange(1, 301))


def test_stalled_disk_gates_acquisition_and_loses_nothing(tmp_path, monkeypatch):
    """An injected stall of the writer: the ring fills, acquisition waits (dead time),
    and after the stall every delivered event is in the file."""
    fake = FakeScope(rate=5000.0)
    cfg = Config.model_validate({"channels": {"A": {"range": 0.2}}, "timebase": {"samples": 64},
                                 "buffer": {"n_buffers": 4}})
    with DaqSession.from_config(cfg, backend=fake) as s:
        w = Hdf5Writer(s.bm, WriterSettings(file_path=str(tmp_path), file_name="stall"))
        stall = threading.Event()
        stalled = threading.Event()
        orig = Hdf5Writer._append

        def slow_append(self, op, batch):
            if op.n >= 50 and not stall.is_set():
                stalled.set()
                assert stall.wait(T_WAIT)  # the "disk" hangs here until released
            orig(self, op, batch)

        monkeypatch.setattr(Hdf5Writer, "_append", slow_append)
        path = w.start_capture()
        s.start(max_events=500)
        assert stalled.wait(T_WAIT)
        wait_for(lambda: s.stats().filled == 4, T_WAIT, 0.002, "the ring filling up behind the stalled writer")
        st = s.stats()
        assert st.filled == 4 and st.events < 500
        stall.set()
        assert s.bm.wait_stopped(T_WAIT)
        summary = s.stop()
        w.run_ended()
        assert w.wait_closed(0, T_WAIT)
    assert summary.events == summary.triggers == 500 and summary.discarded == 0
    assert summary.ring_wait_time > 0
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(decode_serials(f["raw"][()]), np.arange(1, 501))


def test_errors_are_reported_once_and_the_run_goes_on(tmp_path, monkeypatch, caplog):
    fake = FakeScope(rate=5000.0)
    cfg = Config.model_validate({"channels": {"A": {"range": 0.2}}, "timebase": {"samples": 64}})
    seen = []
    with DaqSession.from_config(cfg, backend=fake) as s:
        w = Hdf5Writer(s.bm, WriterSettings(file_path=str(tmp_path / "missing"), file_name="x"),
                       on_status=seen.append)
        with pytest.raises(WriterError, match="does not exist"):
            w.start_capture()
        assert not w.status.ok and "does not exist" in w.status.message
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        w.configure(file_path=str(ro))
        try:
            import os
            if os.geteuid() != 0:  # root ignores the permission bits
                with pytest.raises(WriterError, match="permission"):
                    w.start_capture()
        finally:
            ro.chmod(0o700)
        with pytest.raises(ValueError, match="compression: 'zip' is not valid; allowed: none, lz4, gzip"):
            w.configure(compression="zip")
        with pytest.raises(WriterError, match="event_filter 'accepted' needs a pulse analysis module"):
            w.configure(event_filter="accepted").checked() and w.start_capture()
        w.configure(event_filter="all", file_path=str(tmp_path))

        def full(self, op, batch):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(Hdf5Writer, "_append", full)
        w.start_capture()
        caplog.clear()
        s.start(max_events=200)
        assert s.bm.wait_stopped(T_WAIT)
        summary = s.stop()
    assert summary.events == 200  # acquisition went on
    errors = [r for r in caplog.records if "No space left" in r.getMessage()]
    assert len(errors) == 1
    assert not w.status.ok and "No space left on device" in w.status.message and not w.status.capturing


def test_event_filter_accepted_and_double(tmp_path):
    cfg = sim_cfg(seed=11, rate=500.0, decay=0.3)
    section = {"module": "pulse", "pulse_shapes": [{"height": -0.04}], "min_coincidence": 2}
    judges = {k: PulseSelector(section, k) for k in ("accepted", "double")}
    with DaqSession.from_config(cfg) as s:
        verdicts: list[tuple[np.ndarray, np.ndarray]] = []

        def judge(b):
            acc = judges["accepted"](b)
            dbl = judges["double"](b)
            verdicts.append((np.array(b.event_number)[acc], np.array(b.event_number)[dbl]))

        s.attach("judge", judge)
        writers = {}
        for kind in ("accepted", "double"):
            w = Hdf5Writer(s.bm, WriterSettings(file_path=str(tmp_path), file_name=kind, event_filter=kind),
                           selector_factory=lambda k: PulseSelector(section, k))
            w.start_capture()
            writers[kind] = w
        s.start(max_events=600)
        assert s.bm.wait_stopped(T_WAIT)
        s.stop()
        for w in writers.values():
            w.run_ended()
            assert w.wait_closed(0, T_WAIT)
    acc = np.concatenate([v[0] for v in verdicts])
    dbl = np.concatenate([v[1] for v in verdicts])
    assert 0 < dbl.size < acc.size < 600
    with h5py.File(writers["accepted"].status.last_file, "r") as f:
        np.testing.assert_array_equal(f["events"]["event_number"][()], acc)
    with h5py.File(writers["double"].status.last_file, "r") as f:
        np.testing.assert_array_equal(f["events"]["event_number"][()], dbl)


@pytest.mark.parametrize("compression", ["gzip", "lz4"])
def test_compression_round_trips(tmp_path, compression):
    if compression == "lz4":
        pytest.importorskip("hdf5plugin")
    fake = FakeScope(rate=5000.0)
    cfg = Config.model_validate({"channels": {"A": {"range": 0.2}}, "timebase": {"samples": 64}})
    with DaqSession.from_config(cfg, backend=fake) as s:
        w = Hdf5Writer(s.bm, WriterSettings(file_path=str(tmp_path), file_name="c", compression=compression,
                                            num_capture=100))
        path = w.start_capture()
        s.start(max_events=100)
        assert w.wait_closed(0, T_WAIT)
        s.stop()
    r = open_recording(path)
    raw = np.concatenate([c.raw for c in r.chunks(1000)])
    np.testing.assert_array_equal(decode_serials(raw), np.arange(1, 101))
