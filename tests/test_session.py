"""DaqSession façade (config -> backend -> buffer manager) and the picodaq-demo command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fakes import FakeScope, decode_serials

from picodaq_ioc import demo
from picodaq_ioc.config.schema import Config
from picodaq_ioc.daq.events import RunState
from picodaq_ioc.scope.errors import DeviceNotFound, InvalidConfig
from picodaq_ioc.scope.types import Direction
from picodaq_ioc.session import DaqSession

REPO = Path(__file__).resolve().parents[1]
T_WAIT = 60.0


def sim_cfg(**over) -> Config:
    data = {
        "channels": {"A": {"range": 0.2}, "B": {"range": 0.5}},
        "timebase": {"sample_interval": 4e-9, "samples": 100, "segments": 10},
        "trigger": {"source": "A", "level": -0.02, "direction": "Falling", "auto_timeout": 0.01},
        "buffer": {"n_buffers": 40},
        "simulation": {"seed": 5, "realtime": False,
                       "sources": [{"kind": "muon", "channels": ["A", "B"], "rate": 5000.0}]},
    }
    data.update(over)
    return Config.model_validate(data)


def test_from_config_opens_configures_and_sizes_the_ring():
    with DaqSession.from_config(sim_cfg()) as s:
        assert s.info.driver == "sim" and "A" in s.info.channels
        a = s.applied
        assert a.enabled_channels == ("A", "B") and a.n_segments == 10
        assert a.channels["B"].range_v == pytest.approx(0.5)
        assert s.bm.n_buffers == 40 and s.bm._raw.shape == (40, 2, a.n_samples)
        assert s.state == RunState.IDLE
        s.start(max_events=500)
        assert s.bm.wait_stopped(T_WAIT)
        summary = s.stop()
        assert summary.events == summary.triggers == 500
        assert s.latest().event_number[0] == 500
        backend = s.backend
    assert not backend.ping()  # closed with the session


def test_update_settings_while_running_is_atomic_and_lossless():
    fake = FakeScope(rate=5000.0)
    cfg = Config.model_validate({"channels": {"A": {"range": 0.2}, "B": {"range": 0.2}},
                                 "timebase": {"sample_interval": 4e-9, "samples": 16, "segments": 4},
                                 "buffer": {"n_buffers": 16}})
    with DaqSession.from_config(cfg, backend=fake) as s:
        gens: list[int] = []
        serials: list[np.ndarray] = []
        s.attach("rec", lambda b: (gens.append(b.applied.config_generation), serials.append(decode_serials(b.raw))))
        s.start()
        g0 = s.applied.config_generation
        assert s.bm.wait_processed(200, T_WAIT)
        a1 = s.update_settings(channels={"A": {"range_v": 0.5}}, trigger={"direction": "falling"})
        assert a1.config_generation == g0 + 1
        assert a1.channels["A"].range_v == 0.5 and a1.trigger.direction == Direction.FALLING
        assert a1.channels["B"].range_v == 0.2  # untouched channel keeps its settings
        assert s.settings[1].n_segments == 4
        # bad values: clear errors, old configuration keeps running
        with pytest.raises(InvalidConfig) as e1:
            s.update_settings(channels={"A": {"range_v": 100.0}})
        assert e1.value.field == "channels.A.range"
        with pytest.raises(InvalidConfig) as e2:
            s.update_settings(timebase={"n_samplez": 10})
        assert e2.value.field == "timebase.n_samplez" and "n_samples" in e2.value.allowed
        with pytest.raises(InvalidConfig) as e3:
            s.update_settings(timebase={"n_samples": "many"})
        assert e3.value.field == "timebase.n_samples" and e3.value.allowed == "an integer"
        with pytest.raises(InvalidConfig) as e4:
            s.update_settings(trigger={"direction": "sideways"})
        assert e4.value.field == "trigger.direction" and "Rising" in e4.value.allowed
        with pytest.raises(InvalidConfig) as e5:
            s.update_settings(channels={"Q": {"range_v": 1.0}})
        assert e5.value.field == "channels" and "A" in e5.value.allowed
        assert s.applied is a1 and s.state == RunState.RUNNING
        n = s.stats().events
        assert s.bm.wait_processed(n + 200, T_WAIT)
        summary = s.stop()
    got = np.concatenate(serials)
    np.testing.assert_array_equal(got, np.arange(1, len(got) + 1))
    assert len(got) == summary.events == summary.triggers
    assert np.all(np.diff(gens) >= 0) and set(gens) == {g0, g0 + 1}


def test_backend_open_error_propagates():
    fake = FakeScope()
    fake.inject("open", DeviceNotFound("PICO_NOT_FOUND"))
    with pytest.raises(DeviceNotFound):
        DaqSession.from_config(sim_cfg(), backend=fake)


def test_invalid_initial_configuration_closes_the_backend():
    fake = FakeScope()
    cfg = Config.model_validate({"channels": {"A": {"range": 50.0}}})
    with pytest.raises(InvalidConfig) as ei:
        DaqSession.from_config(cfg, backend=fake)
    assert ei.value.field == "channels.A.range"
    assert not fake.opened


def test_demo_runs_and_prints_summary(capsys):
    rc = demo.main(["--config", str(REPO / "configs" / "demo.yaml"), "--events", "300", "--unpaced",
                    "--interval", "0.2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "Run Summary" in out and "Nev=300" in out and "lost 0" in out


def test_demo_bad_config_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("channels:\n  A: {range: banana}\n")
    assert demo.main(["--config", str(bad), "--events", "10"]) == 2
    err = capsys.readouterr().err
    assert "channels.A.range" in err and "banana" in err
    assert demo.main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert demo.main(["--events", "0"]) == 2
