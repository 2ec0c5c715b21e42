"""SimScope: protocol, configuration, clock, pacing, faults, reproducibility, factory."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

from picodaq_ioc.config.backend import make_backend
from picodaq_ioc.config.schema import Config, DeviceSection, SimulationSection, SourceSection
from picodaq_ioc.scope.errors import (
    Busy,
    DeviceDisconnected,
    DeviceNotFound,
    DriverNotAvailable,
    InvalidConfig,
    ScopeError,
)
from picodaq_ioc.scope.sim import SimScope
from picodaq_ioc.scope.types import (
    ChannelConfig,
    Coupling,
    Direction,
    ScopeBackend,
    SigGenConfig,
    TimebaseConfig,
    TriggerConfig,
    WaveType,
)

MUON_A = SourceSection(kind="muon", channels=["A"], rate=200.0, amplitude=-0.08, amplitude_spread=0.1)
TB = TimebaseConfig(sample_interval_s=4e-9, n_samples=200, pretrigger_fraction=0.1, n_segments=1)
TRIG = TriggerConfig(source="A", threshold_v=-0.03, direction=Direction.FALLING, auto_trigger_s=1.0)


def make(sources=(MUON_A,), seed=1, model="2000a", keep_truth=False, **sim):
    kw = {"seed": seed, "realtime": False, "count_host_time": False, "noise_rms": 0.5e-3}
    kw.update(sim)
    sc = SimScope(SimulationSection(sources=list(sources), **kw), DeviceSection(model=model),
                  keep_truth=keep_truth)
    sc.open()
    return sc


def take(sc, n=1):
    caps = []
    for _ in range(n):
        sc.arm()
        assert sc.wait(100.0)
        caps.append(sc.read())
    return caps


def test_protocol_and_default_construction():
    # the simulation parameters come from the configuration (the scope layer has no defaults
    # of its own); the device defaults to a 2000a
    sc = SimScope(SimulationSection(sources=[SourceSection(kind="muon", channels=["A"], rate=10.0,
                                                           amplitude=-0.04, decay_fraction=0.01)]))
    assert isinstance(sc, ScopeBackend)
    info = sc.open()
    assert info.family == "2000a" and info.driver == "sim"
    assert sc.sim.sources and sc.sim.sources[0].kind == "muon"
    assert sc.ping()
    sc.close()
    sc.close()  # idempotent
    assert not sc.ping()


def test_configure_snaps_and_reports_applied():
    sc = make()
    ap = sc.configure({"A": ChannelConfig(range_v=0.15, offset_v=0.1), "B": ChannelConfig(enabled=False)},
                      TimebaseConfig(16e-6 / 3500, 1000, 0.05, 1), TRIG)
    assert ap.channels["A"].range_v == 0.2
    assert ap.sample_interval_s == pytest.approx(4e-9)
    assert ap.n_pre == 50 and ap.n_samples == 1000
    assert ap.max_adc == 32512 and ap.resolution_bits == 8
    assert ap.enabled_channels == ("A",)
    assert set(ap.channels) == {"A", "B", "C", "D"}
    g1 = ap.config_generation
    ap2 = sc.configure({"A": ChannelConfig(range_v=0.2)}, TB, TRIG)
    assert ap2.config_generation == g1 + 1


@pytest.mark.parametrize(("channels", "tb", "trig", "model", "field"), [
    ({"A": ChannelConfig(range_v=30.0)}, TB, TRIG, "2000a", "channels.A.range"),
    ({"A": ChannelConfig(range_v=0.2, offset_v=0.5)}, TB, TRIG, "2000a", "channels.A.offset"),
    ({"A": ChannelConfig(coupling=Coupling.DC50)}, TB, TRIG, "2000a", "channels.A.coupling"),
    ({"Z": ChannelConfig()}, TB, TRIG, "2000a", "channels"),
    ({"A": ChannelConfig(enabled=False)}, TB, TRIG, "2000a", "channels"),
    ({"A": ChannelConfig()}, TimebaseConfig(10e-9, 200, 0.0, 10), TRIG, "2000", "timebase.segments"),
    ({"A": ChannelConfig()}, TimebaseConfig(4e-9, 200, 0.1, 1), TRIG, "2000", "timebase.pretrigger"),
    ({"A": ChannelConfig()}, TimebaseConfig(4e-9, 200, 0.1, 40000), TRIG, "2000a", "timebase.segments"),
    ({"A": ChannelConfig(), "B": ChannelConfig(enabled=False)}, TB, TriggerConfig(source="B"), "2000a",
     "trigger.source"),
    ({"A": ChannelConfig(range_v=0.2)}, TB, TriggerConfig(source="A", threshold_v=0.3), "2000a", "trigger.level"),
])
def test_configure_rejects_with_field_and_allowed(channels, tb, trig, model, field):
    sc = make(model=model)
    with pytest.raises(InvalidConfig) as ei:
        sc.configure(channels, tb, trig)
    assert ei.value.field == field
    assert ei.value.allowed
    # the scope keeps working after a rejected configuration
    sc.configure({"A": ChannelConfig()}, TimebaseConfig(10e-9, 200, 0.0, 1),
                 TriggerConfig(source="A", threshold_v=-0.03, direction=Direction.FALLING))


def test_siggen_validation_in_configure():
    sc = make()
    with pytest.raises(InvalidConfig) as ei:
        sc.configure({"A": ChannelConfig()}, TB, TRIG, SigGenConfig(enabled=True, frequency_hz=5e6))
    assert ei.value.field == "siggen.frequency"


def test_configure_cancels_armed_capture():
    sc = make()
    sc.configure({"A": ChannelConfig()}, TB, TRIG)
    sc.arm()
    sc.configure({"A": ChannelConfig()}, TB, TRIG)
    assert sc.wait(10.0) is False  # nothing armed any more
    with pytest.raises(ScopeError):
        sc.read()
    cap = take(sc)[0]
    assert cap.applied.config_generation == 2


def test_wait_timeout_keeps_capture_armed_on_sim_clock():
    sc = make(sources=[SourceSection(kind="muon", channels=["A"], rate=1.0, amplitude=-0.08)])
    sc.configure({"A": ChannelConfig()}, TB, replace_auto(TRIG, None))
    sc.arm()
    t0 = sc.clock()
    waited = 0
    while not sc.wait(0.05):
        waited += 1
        assert sc.clock() == pytest.approx(t0 + 0.05 * waited)
    cap = sc.read()
    assert cap.t_ready <= t0 + 0.05 * (waited + 1) + 1e-12
    assert cap.t_ready > t0 + 0.05 * waited - 1e-12


def replace_auto(trig, auto):
    from dataclasses import replace
    return replace(trig, auto_trigger_s=auto)


def test_readout_dead_time_and_host_time_advance_clock():
    sc = make(readout_overhead=2e-3)
    ap = sc.configure({"A": ChannelConfig()}, TB, TRIG)
    cap = take(sc)[0]
    assert sc.clock() == pytest.approx(cap.t_ready + 2e-3)
    sc.arm()
    assert sc.wait(100.0)
    cap2 = sc.read()
    # the next capture was armed right after the readout: no trigger before that
    assert cap2.t_armed == pytest.approx(cap.t_ready + 2e-3)
    assert cap2.t_trigger[0] >= cap2.t_armed + ap.n_pre * ap.sample_interval_s
    # with count_host_time the host's own time between read() and arm() is dead time too
    sh = make(readout_overhead=2e-3, count_host_time=True)
    sh.configure({"A": ChannelConfig()}, TB, TRIG)
    c1 = take(sh)[0]
    t_after_read = sh.clock()
    time.sleep(0.03)  # emulates 30 ms of host processing between read() and arm(); not a wait
    # clock() shows the host time as it passes (so a pause between read() and arm() is measurable)
    t_before_arm = sh.clock()
    assert t_before_arm - t_after_read >= 0.03
    sh.arm()
    assert c1.t_ready + 2e-3 + 0.03 <= t_before_arm <= sh.clock()
    assert sh.wait(100.0)
    c2 = sh.read()
    assert c2.t_armed >= c1.t_ready + 2e-3 + 0.03


def test_free_running_when_trigger_disabled():
    sc = make()
    ap = sc.configure({"A": ChannelConfig()}, TimebaseConfig(4e-9, 200, 0.1, 5), TriggerConfig(enabled=False))
    cap = take(sc)[0]
    dt = ap.sample_interval_s
    assert cap.t_trigger[0] == pytest.approx(cap.t_armed + ap.n_pre * dt)
    assert np.allclose(np.diff(cap.t_trigger), 200 * dt + sc.sim.rearm_time)
    assert not cap.auto_triggered.any()


def test_reproducible_and_seed_dependent():
    def run(seed):
        sc = make(seed=seed)
        sc.configure({"A": ChannelConfig(), "B": ChannelConfig()}, TimebaseConfig(4e-9, 200, 0.1, 20), TRIG)
        caps = take(sc, 3)
        return np.concatenate([c.raw for c in caps]), np.concatenate([c.t_trigger for c in caps])

    r1, t1 = run(5)
    r2, t2 = run(5)
    r3, t3 = run(6)
    assert np.array_equal(r1, r2) and np.array_equal(t1, t2)
    assert not np.array_equal(r1, r3) and not np.array_equal(t1, t3)


def test_adding_a_source_on_another_channel_leaves_the_others_unchanged():
    tb = TimebaseConfig(4e-9, 200, 0.1, 50)
    chans = {"A": ChannelConfig(), "B": ChannelConfig()}
    a = make()
    a.configure(chans, tb, TRIG)
    b = make(sources=[MUON_A, SourceSection(kind="sipm", channels=["B"], rate=1e5, amplitude=-0.01)])
    b.configure(chans, tb, TRIG)
    ca, cb = take(a)[0], take(b)[0]
    assert np.array_equal(ca.t_trigger, cb.t_trigger)
    assert np.array_equal(ca.raw[:, 0], cb.raw[:, 0])
    assert not np.array_equal(ca.raw[:, 1], cb.raw[:, 1])


def test_fault_injection():
    sc = make()
    sc.configure({"A": ChannelConfig()}, TB, TRIG)
    sc.busy(2)
    for _ in range(2):
        with pytest.raises(Busy):
            sc.arm()
    sc.arm()
    sc.stall(2)
    assert sc.wait(10.0) is False
    assert sc.wait(10.0) is False
    assert sc.wait(10.0) is True
    sc.read()
    sc.unplug()
    assert not sc.ping()
    for call in (sc.arm, lambda: sc.wait(1.0), sc.read):
        with pytest.raises(DeviceDisconnected):
            call()
    with pytest.raises(DeviceNotFound):
        sc.open()
    sc.replug()
    with pytest.raises(DeviceDisconnected):
        sc.arm()
    sc.open()
    with pytest.raises(InvalidConfig):  # the unit came back in defaults: configure again
        sc.arm()
    sc.configure({"A": ChannelConfig()}, TB, TRIG)
    assert take(sc)[0].raw.shape == (1, 1, 200)


def test_power_supply_fault_and_serial():
    sc = SimScope(SimulationSection(realtime=False), power_fault=True)
    with pytest.raises(DeviceNotFound, match="POWER_SUPPLY"):
        sc.open()
    sc.power_fault(False)
    with pytest.raises(DeviceNotFound):
        sc.open("XY999")
    assert sc.open("SIM0001").serial == "SIM0001"


def test_paced_wait_follows_wall_clock_and_stop_interrupts():
    sc = SimScope(SimulationSection(seed=1, realtime=True, noise_rms=0.0, sources=[]))
    sc.open()
    sc.configure({"A": ChannelConfig()}, TB, TriggerConfig(source="A", threshold_v=0.1, auto_trigger_s=0.2))
    t0 = time.monotonic()
    sc.arm()
    assert sc.wait(5.0)
    assert time.monotonic() - t0 >= 0.19  # paced: the 0.2 s auto-trigger takes 0.2 s of wall time
    cap = sc.read()
    assert cap.auto_triggered.all()
    # wait forever (no source, no auto-trigger): stop() from another thread ends wait() at once
    sc.configure({"A": ChannelConfig()}, TB, TriggerConfig(source="A", threshold_v=0.1, auto_trigger_s=None))
    sc.arm()
    result = {}
    entered = threading.Event()

    def waiter():
        entered.set()
        result["r"] = sc.wait(30.0)

    th = threading.Thread(target=waiter)
    th.start()
    assert entered.wait(5.0)
    sc.stop()
    th.join(5.0)
    assert not th.is_alive()
    assert result["r"] is False


def test_unpaced_wait_never_ready_without_triggers():
    sc = make(sources=[], noise_rms=0.0)
    sc.configure({"A": ChannelConfig()}, TB, TriggerConfig(source="A", threshold_v=0.1, auto_trigger_s=None))
    sc.arm()
    assert sc.wait(1000.0) is False
    assert sc.clock() == pytest.approx(1000.0)
    sc.stop()


def test_siggen_dc_level_round_trips_within_half_lsb():
    # DC voltage from the generator looped into A: volts(raw) within 1/2 LSB of the true level
    sc = make(sources=[], noise_rms=0.0, siggen_channel="A")
    for level in (0.0123, -0.0871, 0.15):
        ap = sc.configure({"A": ChannelConfig(range_v=0.2, offset_v=0.02)}, TB, TriggerConfig(enabled=False),
                          SigGenConfig(enabled=True, waveform=WaveType.DC_VOLTAGE, frequency_hz=1e3,
                                       pk_to_pk_v=0.0, offset_v=level))
        v = ap.to_volts("A", take(sc)[0].raw[:, 0], dtype=np.float64)
        lsb = ap.volts_per_count("A") * 256
        assert np.all(np.abs(v - level) <= 0.5 * lsb + 1e-9)


def test_factory(monkeypatch):
    be = make_backend(Config())
    assert isinstance(be, SimScope)
    assert be.sim.seed == Config().simulation.seed
    hw = Config.model_validate({"device": {"backend": "picoscope"}})
    # the hardware module missing entirely: a clear DriverNotAvailable, not an ImportError
    monkeypatch.setitem(sys.modules, "picodaq_ioc.scope.picoscope", None)
    with pytest.raises(DriverNotAvailable, match="sim"):
        make_backend(hw)


def test_long_idle_gaps_are_skipped_but_counted():
    # 5 s of readout dead time per capture: the 1e5 Hz dark counts in between cannot be seen,
    # so they are not generated one by one but counted (Poisson) in the truth.
    lam = 1e5
    sc = make(sources=[SourceSection(kind="sipm", channels=["A"], rate=lam, amplitude=-0.01)],
              readout_overhead=5.0, keep_truth=True)
    sc.configure({"A": ChannelConfig(range_v=0.1)}, TB,
                 TriggerConfig(source="A", threshold_v=-0.005, direction=Direction.FALLING))
    caps = take(sc, 20)
    tr = sc.truth
    assert tr.skipped_time_s > 90.0
    assert np.all(np.diff([c.t_armed for c in caps]) > 5.0)
    # all dark counts from 0 to the end of the last capture: Poisson, 4 sigma
    expected = lam * tr.t_consumed
    assert abs(tr.n_primaries - expected) < 4 * np.sqrt(expected)
    assert tr.n_triggers == 20


@pytest.mark.parametrize("wave", [WaveType.SINE, WaveType.TRIANGLE, WaveType.SQUARE, WaveType.RAMP_UP])
def test_siggen_loopback_frequency_and_amplitude(wave):
    sc = make(sources=[], noise_rms=0.0, siggen_channel="B")
    ap = sc.configure({"A": ChannelConfig(), "B": ChannelConfig(range_v=0.5)},
                      TimebaseConfig(1e-6, 5000, 0.0, 1), TriggerConfig(enabled=False),
                      SigGenConfig(enabled=True, waveform=wave, frequency_hz=2e3, pk_to_pk_v=0.6, offset_v=0.05))
    v = ap.to_volts("B", take(sc)[0].raw[0, 1], dtype=np.float64)
    lsb = ap.volts_per_count("B") * 256
    assert v.max() == pytest.approx(0.35, abs=lsb) and v.min() == pytest.approx(-0.25, abs=lsb)
    # 5 ms of a 2 kHz wave: 10 periods -> 10 upward passes through the mid level (one less if
    # the record starts right on one)
    mid = 0.05
    up = np.sum((v[1:] >= mid) & (v[:-1] < mid))
    assert up in (9, 10)
    spec = np.abs(np.fft.rfft(v - v.mean()))
    f = np.fft.rfftfreq(v.size, ap.sample_interval_s)
    assert f[np.argmax(spec)] == pytest.approx(2e3, rel=0.01)


def test_siggen_sweep_changes_frequency():
    sc = make(sources=[], noise_rms=0.0, siggen_channel="A")
    ap = sc.configure({"A": ChannelConfig(range_v=0.5)}, TimebaseConfig(1e-6, 2000, 0.0, 1),
                      TriggerConfig(enabled=False),
                      SigGenConfig(enabled=True, waveform=WaveType.SINE, frequency_hz=5e3, pk_to_pk_v=0.4,
                                   stop_frequency_hz=50e3, dwell_time_s=1e-3))
    freqs = []
    for _ in range(3):
        v = ap.to_volts("A", take(sc)[0].raw[0, 0], dtype=np.float64)
        spec = np.abs(np.fft.rfft(v - v.mean()))
        freqs.append(np.fft.rfftfreq(v.size, ap.sample_interval_s)[np.argmax(spec)])
    assert len({round(f, -2) for f in freqs}) == 3  # the frequency moved between captures
    assert all(4e3 <= f <= 51e3 for f in freqs)
