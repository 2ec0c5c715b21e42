"""Digitiser honesty: ADC code steps, max code, clipping <=> overflow flag (research §4.3.5)."""

from __future__ import annotations

import numpy as np
import pytest

from picodaq_ioc.config.schema import DeviceSection, SimulationSection, SourceSection
from picodaq_ioc.scope.sim import SimScope
from picodaq_ioc.scope.types import ChannelConfig, Direction, TimebaseConfig, TriggerConfig


def _scope(model, bits, sources, noise=0.5e-3, seed=11):
    sim = SimulationSection(seed=seed, realtime=False, count_host_time=False, noise_rms=noise,
                            sources=sources)
    sc = SimScope(sim, DeviceSection(model=model, resolution_bits=bits), keep_truth=True)
    sc.open()
    return sc


@pytest.mark.parametrize(("model", "bits", "max_adc"), [
    ("2000a", 8, 32512), ("5000a", 8, 32512), ("5000a", 12, 32767), ("5000a", 16, 32767),
    ("4000a", 12, 32764), ("6000", 8, 32512),
])
def test_codes_steps_clipping_and_overflow(model, bits, max_adc):
    # Pulses of -0.15 V with a 40 % log-normal spread on the ±0.2 V range: about a quarter exceed
    # the range (ln(0.2/0.15)/0.4 = 0.72 sigma), so clipped and unclipped segments both occur.
    chans = ["A"] if bits == 16 else ["A", "B"]  # 16 bit: one channel only (the model table)
    src = SourceSection(kind="muon", channels=chans, rate=500.0, amplitude=-0.15, amplitude_spread=0.4)
    sc = _scope(model, bits, [src])
    ap = sc.configure({c: ChannelConfig(range_v=0.2) for c in chans},
                      TimebaseConfig(10e-9, 300, 0.2, 200),
                      TriggerConfig(source="A", threshold_v=-0.05, direction=Direction.FALLING))
    assert ap.max_adc == max_adc and ap.resolution_bits == bits
    step = 1 << (16 - bits)
    clip = (max_adc // step) * step
    caps = []
    for _ in range(3):
        sc.arm()
        assert sc.wait(100.0)
        caps.append(sc.read())
    raw = np.concatenate([c.raw for c in caps]).astype(np.int64)
    ovf = np.concatenate([c.overflow for c in caps])
    peak = np.concatenate(sc.truth.peak_code)  # max |unclipped code| per segment and channel
    assert raw.dtype == np.int64 and caps[0].raw.dtype == np.int16
    assert np.all(raw % step == 0)
    assert np.all(np.abs(raw) <= max_adc)
    # overflow flag <=> the unclipped signal left the code range (i.e. clipping happened)
    assert np.array_equal(ovf, peak > max_adc // step)
    at_clip = (np.abs(raw) == clip).any(axis=2)
    assert np.all(at_clip[ovf])  # clipped segments sit at the largest code
    assert np.all(peak[~ovf] <= max_adc // step)
    assert 0.05 < ovf[:, 0].mean() < 0.6  # both cases were exercised


def test_offset_shifts_codes_and_volts_undo_it():
    # With offset +0.1 V a -0.15 V pulse sits at -0.05 V on the ADC; volts() gives back -0.15 V.
    src = SourceSection(kind="muon", channels=["A"], rate=100.0, amplitude=-0.15, amplitude_spread=0.0,
                        rise=20e-9, flat=200e-9, fall=100e-9)
    sc = _scope("2000a", 8, [src], noise=0.0)
    ap = sc.configure({"A": ChannelConfig(range_v=0.2, offset_v=0.1)}, TimebaseConfig(4e-9, 400, 0.1, 20),
                      TriggerConfig(source="A", threshold_v=-0.1, direction=Direction.FALLING))
    sc.arm()
    assert sc.wait(100.0)
    cap = sc.read()
    lsb = ap.volts_per_count("A") * 256
    v = ap.to_volts("A", cap.raw[:, 0], dtype=np.float64)
    # the trigger (-0.1 V) is 2/3 up the 20 ns rise; the 200 ns flat top spans samples +2 .. +51
    flat = v[:, ap.n_pre + 5: ap.n_pre + 45]
    assert np.all(np.abs(flat + 0.15) <= 0.5 * lsb + 1e-9)
    base = v[:, : ap.n_pre - 5]
    assert np.all(np.abs(base) <= 0.5 * lsb + 1e-9)
    assert not cap.overflow.any()
