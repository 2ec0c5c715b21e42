"""Trigger honesty (research §4.3.6): trigger sample at the pre-trigger index, crossing in the
configured direction on the ADC codes, sub-sample offset in (-dt, 0], auto-trigger only after
the timeout, delay, signal-generator loopback."""

from __future__ import annotations

import numpy as np
import pytest
from sim_helpers import sim_scope, take

from picodaq_ioc.config.schema import SourceSection
from picodaq_ioc.scope.types import (
    ChannelConfig,
    Direction,
    SigGenConfig,
    TimebaseConfig,
    TriggerConfig,
    WaveType,
)


def _level_code(ap, ch):
    c = ap.channels[ch]
    return int(round((ap.trigger.threshold_v + c.offset_v) * ap.max_adc / c.range_v))


def _edges(x, level, hyst, rising):
    """Indices j where x crosses the level in the direction, re-armed by the hysteresis."""
    out = []
    armed = False
    for j, v in enumerate(x):
        if rising:
            if v < level - hyst:
                armed = True
            elif v >= level and armed:
                out.append(j)
                armed = False
        else:
            if v > level + hyst:
                armed = True
            elif v <= level and armed:
                out.append(j)
                armed = False
    return out


CASES = [
    # (direction, pulse amplitudes, level, model, bits)
    (Direction.FALLING, [-0.08], -0.03, "2000a", None),
    (Direction.RISING, [0.08], 0.03, "2000a", None),
    (Direction.RISING, [0.08], 0.03, "5000a", 12),
    # RiseOrFall at +30 mV: positive pulses fire on their leading edge (negative ones never cross)
    (Direction.RISE_OR_FALL, [0.08, -0.08], 0.03, "2000a", None),
    # a rising trigger below the baseline fires on the trailing edge of negative pulses
    (Direction.RISING, [-0.08], -0.03, "2000a", None),
]


@pytest.mark.parametrize(("direction", "amps", "level", "model", "bits"), CASES)
def test_trigger_sample_at_pretrigger_index(direction, amps, level, model, bits):
    srcs = [SourceSection(kind="muon", channels=["A"], rate=300.0, amplitude=a, amplitude_spread=0.1)
            for a in amps]
    sc = sim_scope(srcs, model=model, bits=bits, seed=21)
    ap = sc.configure({"A": ChannelConfig(range_v=0.2)}, TimebaseConfig(4e-9, 250, 0.2, 200),
                      TriggerConfig(source="A", threshold_v=level, direction=direction))
    caps = take(sc, 2, timeout=1000.0)
    dt = ap.sample_interval_s
    lc = _level_code(ap, "A")
    hyst = sc.model.trigger_hysteresis_lsb * (1 << (16 - ap.resolution_bits))
    n_pre = ap.n_pre
    assert n_pre == 50
    for cap in caps:
        assert not cap.auto_triggered.any()
        assert np.all(cap.trigger_time_offset_s > -dt) and np.all(cap.trigger_time_offset_s <= 0)
        x = cap.raw[:, 0, :].astype(np.int64)
        up = (x[:, n_pre] >= lc) & (x[:, n_pre - 1] < lc)
        down = (x[:, n_pre] <= lc) & (x[:, n_pre - 1] > lc)
        if direction is Direction.RISING:
            assert up.all()
        elif direction is Direction.FALLING:
            assert down.all()
        else:
            assert (up | down).all()
        # no earlier re-armed crossing inside the pre-trigger samples
        for row in x:
            for rising in ((True,) if direction is Direction.RISING else (False,) if
                           direction is Direction.FALLING else (True, False)):
                e = _edges(row[: n_pre + 1], lc, hyst, rising)
                assert all(j >= n_pre for j in e)
    # the trigger follows a true pulse: an analytic crossing within two samples (truth)
    t_exact = sc.truth.all_trigger_times()
    cands = sc.truth.all_candidate_times()
    k = np.searchsorted(cands, t_exact)
    near = np.minimum(np.abs(cands[np.clip(k, 0, cands.size - 1)] - t_exact),
                      np.abs(cands[np.clip(k - 1, 0, cands.size - 1)] - t_exact))
    assert np.all(near < 2 * dt)


def test_trigger_delay_moves_the_window():
    src = SourceSection(kind="muon", channels=["A"], rate=300.0, amplitude=-0.08, amplitude_spread=0.1)
    sc = sim_scope([src], seed=21)
    ap = sc.configure({"A": ChannelConfig(range_v=0.2)}, TimebaseConfig(4e-9, 250, 0.4, 50),
                      TriggerConfig(source="A", threshold_v=-0.03, direction=Direction.FALLING,
                                    delay_samples=60))
    cap = take(sc, 1, timeout=1000.0)[0]
    j = ap.n_pre - 60  # the trigger sample sits `delay` samples before the pre-trigger index
    lc = _level_code(ap, "A")
    x = cap.raw[:, 0, :].astype(np.int64)
    assert np.all((x[:, j] <= lc) & (x[:, j - 1] > lc))


def test_auto_trigger_only_after_timeout_and_without_crossing():
    # 2 Hz of pulses, 0.1 s auto-trigger: P(no pulse in 0.1 s) = exp(-0.2) = 0.82 -> mostly auto
    src = SourceSection(kind="muon", channels=["A"], rate=2.0, amplitude=-0.08, amplitude_spread=0.1)
    sc = sim_scope([src], readout_overhead=1e-3, seed=21)
    ap = sc.configure({"A": ChannelConfig(range_v=0.2)}, TimebaseConfig(4e-9, 250, 0.2, 50),
                      TriggerConfig(source="A", threshold_v=-0.03, direction=Direction.FALLING,
                                    auto_trigger_s=0.1))
    cap = take(sc, 1, timeout=1000.0)[0]
    dt = ap.sample_interval_s
    post = (ap.n_samples - ap.n_pre) * dt
    starts = np.concatenate([[cap.t_armed], cap.t_trigger[:-1] + post + sc.sim.rearm_time])
    waited = cap.t_trigger - starts
    auto = cap.auto_triggered
    assert 0.5 < auto.mean() < 1.0
    assert np.allclose(waited[auto], 0.1)
    assert np.all(waited[~auto] < 0.1)
    lc = _level_code(ap, "A")
    x = cap.raw[auto, 0, : ap.n_pre + 1].astype(np.int64)
    assert np.all(x > lc)  # no threshold crossing before the auto-trigger point
    assert np.all(cap.trigger_time_offset_s[auto] == 0)
    assert cap.live_time_s == pytest.approx(np.sum(waited - ap.n_pre * dt))


def test_siggen_loopback_trigger_on_square_wave():
    # the picoDAQ demo: generator on channel B, trigger on B
    sc = sim_scope([], noise=1e-3, siggen_channel="B", seed=21)
    ap = sc.configure({"A": ChannelConfig(range_v=0.5), "B": ChannelConfig(range_v=0.5)},
                      TimebaseConfig(50e-9, 500, 0.25, 20),
                      TriggerConfig(source="B", threshold_v=0.0, direction=Direction.RISING),
                      SigGenConfig(enabled=True, waveform=WaveType.SQUARE, frequency_hz=10e3, pk_to_pk_v=0.4))
    cap = take(sc, 1, timeout=1000.0)[0]
    dt = ap.sample_interval_s
    n_pre = ap.n_pre
    vb = ap.to_volts("B", cap.raw[:, 1], dtype=np.float64)
    assert np.all(vb[:, n_pre - 3: n_pre] < -0.15) and np.all(vb[:, n_pre: n_pre + 3] > 0.15)
    # the square wave edges come once per period: trigger spacing is a multiple of 100 us
    cycles = np.diff(cap.t_trigger + cap.trigger_time_offset_s) / 1e-4
    assert np.all(np.abs(cycles - np.round(cycles)) * 1e-4 < 2 * dt)
    assert np.abs(ap.to_volts("A", cap.raw[:, 0], dtype=np.float64)).max() < 0.01  # A is quiet


def test_rise_or_fall_fires_on_both_edges_of_a_square_wave():
    sc = sim_scope([], noise=1e-3, siggen_channel="A", seed=21)
    ap = sc.configure({"A": ChannelConfig(range_v=0.5)}, TimebaseConfig(100e-9, 200, 0.5, 40),
                      TriggerConfig(source="A", threshold_v=0.0, direction=Direction.RISE_OR_FALL),
                      SigGenConfig(enabled=True, waveform=WaveType.SQUARE, frequency_hz=1e3, pk_to_pk_v=0.4))
    cap = take(sc, 1, timeout=1000.0)[0]
    n_pre = ap.n_pre
    x = cap.raw[:, 0, :].astype(np.int64)
    up = (x[:, n_pre] >= 0) & (x[:, n_pre - 1] < 0)
    down = (x[:, n_pre] <= 0) & (x[:, n_pre - 1] > 0)
    assert (up | down).all() and up.sum() >= 10 and down.sum() >= 10
    # edges come every half period (0.5 ms)
    half = np.diff(cap.t_trigger + cap.trigger_time_offset_s) / 0.5e-3
    assert np.all(np.abs(half - np.round(half)) * 0.5e-3 < 2 * ap.sample_interval_s)


@pytest.mark.parametrize("wave", [WaveType.SQUARE, WaveType.SINE, WaveType.TRIANGLE])
def test_slow_siggen_trigger_lands_on_the_crossing(wave):
    # 10 Hz at 4 ns sampling: 25 M samples per period; the scan jumps to where the generator
    # comes near the level, and the trigger still sits on the true crossing. Without noise the
    # crossing is where the signal first rounds to a code >= the level code 3251, i.e. the
    # code 3328 (13 x 256) from v >= 3200/32512 * 0.5 V = 49.2 mV.
    sc = sim_scope([], noise=0.0, siggen_channel="A", seed=21)
    ap = sc.configure({"A": ChannelConfig(range_v=0.5)}, TimebaseConfig(4e-9, 200, 0.5, 5),
                      TriggerConfig(source="A", threshold_v=0.05, direction=Direction.RISING, auto_trigger_s=1.0),
                      SigGenConfig(enabled=True, waveform=wave, frequency_hz=10.0, pk_to_pk_v=0.4))
    assert sc._sg_near is not None  # the jump-ahead is in use
    cap = take(sc, 1, timeout=1000.0)[0]
    assert not cap.auto_triggered.any()
    lc = _level_code(ap, "A")
    x = cap.raw[:, 0, :].astype(np.int64)
    n_pre = ap.n_pre
    assert np.all((x[:, n_pre] >= lc) & (x[:, n_pre - 1] < lc))
    t = cap.t_trigger  # the trigger sample
    cyc = np.diff(t) / 0.1  # one rising crossing per 100 ms period, the same phase every time
    assert np.all(np.abs(cyc - np.round(cyc)) < 1e-6) and np.all(np.round(cyc) >= 1)
    u = (3200.0 / 32512.0 * 0.5) / 0.2  # the level as a fraction of the 0.2 V amplitude
    expect = {WaveType.SQUARE: 0.0, WaveType.SINE: np.arcsin(u) / (2 * np.pi),
              WaveType.TRIANGLE: 0.5 - (1 - u) / 4}[wave]
    ph = np.mod(t * 10.0, 1.0)
    d = np.abs(ph - expect)
    assert np.all(np.minimum(d, 1 - d) < 1e-6)  # 1e-6 cycles = 100 ns; one sample is 4 ns
