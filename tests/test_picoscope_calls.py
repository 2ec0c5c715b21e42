"""PicoScope backend: driver call sequences and argument values per family.

The real pico-python code and our backend run against the fake C library in
``tests/fake_picosdk`` (patched ``ctypes.cdll.LoadLibrary``); every C call is
recorded with its ctypes arguments.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from fake_picosdk import fake_backend
from fake_picosdk.device import RANGES_1, RANGES_PS2000

from picodaq_ioc.scope import models
from picodaq_ioc.scope.errors import InvalidConfig
from picodaq_ioc.scope.types import (
    ChannelConfig,
    Coupling,
    Direction,
    SigGenConfig,
    TimebaseConfig,
    TriggerConfig,
    WaveType,
)

# lib, offset the family allows, true max ADC (header / MaximumValue), has MaximumValue()
FAMILIES = [
    ("ps2000a", 0.05, 32512, True),
    ("ps4000", 0.0, 32764, False),
    ("ps5000a", 0.05, 32512, True),
]


def _pico_python_threshold(level: float, offset: float, rng: float) -> int:
    """What pico-python's setSimpleTrigger would send (it scales with MAX_VALUE = 32764)."""
    return int((level + offset) / (rng / 32764))


@pytest.mark.parametrize("lib,_off,true_max,has_fn", FAMILIES)
def test_open_reports_unit_and_true_max_adc(lib, _off, true_max, has_fn):
    with fake_backend(lib, serial="AB123/0042") as (b, sdk, unit):
        info = b.open()
        assert info.model == unit.variant
        assert info.serial == "AB123/0042"
        assert info.driver == lib
        assert info.channels == ("A", "B")  # 2206B / 4224 / 5242D are 2-channel units
        assert b.max_adc == true_max
        assert bool(sdk.calls_to("MaximumValue")) == has_fn
        opens = sdk.calls_to("OpenUnit")
        assert len(opens) == 1 and opens[0].values[1] is None  # first unit found: NULL serial


def test_5000a_flexres_12_bit_uses_32767_and_sets_resolution():
    with fake_backend("ps5000a", backend_kw={"resolution_bits": 12}) as (b, sdk, unit):
        b.open()
        (res_call,) = sdk.calls_to("SetDeviceResolution")
        assert res_call.values[1] == 1  # PS5000A_DR_12BIT
        assert unit.resolution_bits == 12
        assert b.max_adc == 32767  # pico-python would scale with 32764
        a = b.configure({"A": ChannelConfig(range_v=0.5)}, TimebaseConfig(16e-9, 64, 0.25),
                        TriggerConfig(source="A", threshold_v=0.1))
        assert a.resolution_bits == 12 and a.max_adc == 32767
        (trig,) = sdk.calls_to("SetSimpleTrigger")
        assert trig.values[3] == round(0.1 / 0.5 * 32767)


@pytest.mark.parametrize("lib,off,true_max,_fn", FAMILIES)
def test_configure_and_arm_call_arguments(lib, off, true_max, _fn):
    with fake_backend(lib) as (b, sdk, unit):
        b.open()
        sdk.calls.clear()
        chans = {"A": ChannelConfig(range_v=0.15, coupling=Coupling.DC, offset_v=off),
                 "B": ChannelConfig(enabled=False, range_v=1.0, coupling=Coupling.AC)}
        tb = TimebaseConfig(sample_interval_s=16e-9, n_samples=1000, pretrigger_fraction=0.2)
        trig = TriggerConfig(source="A", threshold_v=-0.03, direction=Direction.FALLING, delay_samples=3,
                             auto_trigger_s=0.25)
        a = b.configure(chans, tb, trig)

        set_ch = sdk.calls_to("SetChannel")
        assert [c.values[1] for c in set_ch] == [0, 1]
        a_call, b_call = set_ch
        assert type(a_call.args[1]) is ctypes.c_int32 and type(a_call.args[5]) is ctypes.c_float
        assert a_call.values[2:5] == (1, 1, RANGES_1.index(0.2))  # enabled, DC, snapped ±200 mV
        assert a_call.values[5] == pytest.approx(off, abs=1e-7)
        assert b_call.values[2:5] == (0, 0, RANGES_1.index(1.0))  # disabled, AC, ±1 V
        assert a.channels["A"].range_v == 0.2 and not a.channels["B"].enabled

        # segments: block mode is rapid block with one segment
        assert sdk.calls_to("MemorySegments")[0].values[1] == 1
        assert sdk.calls_to("SetNoOfCaptures")[0].values[1] == 1

        # timebase index from the shared model tables, actual interval from the driver
        idx, dt_tab = models.quantise_interval(b.info.family, 16e-9, variant=unit.variant, n_channels=1)
        (gtb,) = sdk.calls_to("GetTimebase2")
        assert gtb.values[1] == idx and gtb.values[2] == 1000
        assert a.sample_interval_s == pytest.approx(unit.dt(idx)) == pytest.approx(dt_tab)

        # trigger: threshold in ADC counts with the TRUE max code, auto-trigger in ms
        (st,) = sdk.calls_to("SetSimpleTrigger")
        expected = round((-0.03 + off) / 0.2 * true_max)
        assert type(st.args[3]) is ctypes.c_int16 and type(st.args[6]) is ctypes.c_int16
        assert st.values[1:] == (1, 0, expected, 3, 3, 250)  # on, A, counts, FALLING, delay, ms
        if true_max != 32764:  # the fix matters: pico-python would have sent another code
            assert expected != _pico_python_threshold(-0.03, off, 0.2)

        assert a.n_samples == 1000 and a.n_pre == 200 and a.n_segments == 1
        assert a.max_adc == true_max and a.config_generation == 1

        sdk.calls.clear()
        b.arm()
        (rb,) = sdk.calls_to("RunBlock")
        assert rb.values[1:4] == (200, 800, idx)
        seg_pos = 5 if lib == "ps5000a" else 6
        assert rb.values[seg_pos] == 0
        assert unit.n_pre == 200 and unit.n_post == 800


@pytest.mark.parametrize("lib,off,true_max,_fn", FAMILIES)
def test_volts_within_half_lsb_of_the_input(lib, off, true_max, _fn):
    amp = 0.19 - off  # input + offset close to full scale of ±200 mV, where a wrong max code shows most
    with fake_backend(lib, amplitude_v={"A": amp}) as (b, sdk, unit):
        b.open()
        a = b.configure({"A": ChannelConfig(range_v=0.2, offset_v=off)}, TimebaseConfig(16e-9, 200, 0.1),
                        TriggerConfig(source="A", threshold_v=0.05, auto_trigger_s=0.1))
        b.arm()
        assert b.wait(2.0)
        cap = b.read()
        truth = unit.analogue(1)[0, 0]
        volts = a.to_volts("A", cap.raw[0, 0], dtype=np.float64)
        step = 256 if lib != "ps4000" else 1  # raw-code step of one ADC count (8 bit: 2^8)
        half_lsb = 0.5 * step * 0.2 / true_max
        assert np.max(np.abs(volts - truth)) <= half_lsb * (1 + 1e-9)
        if true_max != 32764:
            # negative control: pico-python's scaling (32764) is off by more than 1/2 LSB near full scale
            pico_volts = cap.raw[0, 0] * (0.2 / 32764) - off
            assert np.max(np.abs(pico_volts - truth)) > half_lsb


def test_range_snapping_and_out_of_table_range_refused_before_any_driver_call():
    with fake_backend("ps2000a") as (b, sdk, _unit):
        b.open()
        tb, trig = TimebaseConfig(16e-9, 100, 0.1), TriggerConfig(source="A", threshold_v=0.0)
        for req, snapped in [(0.15, 0.2), (0.021, 0.05), (0.005, 0.02), (20.0, 20.0)]:
            a = b.configure({"A": ChannelConfig(range_v=req)}, tb, trig)
            assert a.channels["A"].range_v == snapped
            assert sdk.calls_to("SetChannel")[-2].values[4] == RANGES_1.index(snapped)
        sdk.calls.clear()
        with pytest.raises(InvalidConfig) as ei:
            b.configure({"A": ChannelConfig(range_v=30.0)}, tb, trig)
        assert ei.value.field == "channels.A.range" and "20 V" in ei.value.allowed
        assert sdk.calls == []


def test_ps2000_has_no_pretrigger_capability_and_rejects_it():
    with fake_backend("ps2000") as (b, sdk, unit):
        info = b.open()
        assert info.supports_pretrigger is False and info.supports_rapid_block is False
        chans = {"A": ChannelConfig(range_v=0.2)}
        trig = TriggerConfig(source="A", threshold_v=0.05, auto_trigger_s=0.05)
        sdk.calls.clear()
        with pytest.raises(InvalidConfig) as ei:
            b.configure(chans, TimebaseConfig(20e-9, 100, pretrigger_fraction=0.1), trig)
        assert ei.value.field == "timebase.pretrigger" and ei.value.allowed.startswith("0")
        assert sdk.calls == []  # refused from the tables, nothing sent
        with pytest.raises(InvalidConfig) as ei:
            b.configure(chans, TimebaseConfig(20e-9, 100, 0.0),
                        TriggerConfig(source="A", direction=Direction.ABOVE))
        assert ei.value.field == "trigger.direction" and "Rising" in ei.value.allowed
        with pytest.raises(InvalidConfig) as ei:
            b.configure(chans, TimebaseConfig(20e-9, 100, 0.0, n_segments=4), trig)
        assert ei.value.field == "timebase.segments"

        a = b.configure(chans, TimebaseConfig(20e-9, 100, 0.0), trig)
        assert a.n_pre == 0
        (sc,) = [c for c in sdk.calls_to("ps2000_set_channel") if c.values[1] == 0]
        assert sc.values[1:] == (0, 1, 1, RANGES_PS2000.index(0.2))
        (st,) = sdk.calls_to("ps2000_set_trigger")
        assert st.values[1:] == (0, round(0.05 / 0.2 * 32767), 0, 0, 50)
        b.arm()
        (rb,) = sdk.calls_to("ps2000_run_block")
        assert rb.values[1] == 100
        assert b.wait(2.0)
        cap = b.read()
        assert cap.raw.shape == (1, 1, 100)
        assert np.isnan(cap.trigger_time_offset_s).all()  # the ps2000 driver cannot tell: NaN
        assert cap.t_trigger[0] == cap.t_ready


def test_siggen_arguments_and_switch_off():
    with fake_backend("ps2000a") as (b, sdk, unit):
        b.open()
        chans, tb = {"A": ChannelConfig(range_v=0.5)}, TimebaseConfig(16e-9, 100, 0.1)
        sg = SigGenConfig(enabled=True, waveform=WaveType.SQUARE, frequency_hz=1000.0, pk_to_pk_v=0.5,
                          offset_v=0.1)
        a = b.configure(chans, tb, TriggerConfig(source="A"), sg)
        assert a.siggen == sg
        (call,) = sdk.calls_to("SetSigGenBuiltIn")
        assert call.values[1:5] == (100000, 500000, 1, pytest.approx(1000.0))  # µV, µV, SQUARE, Hz
        # siggen=None keeps the generator as it is
        b.configure(chans, tb, TriggerConfig(source="A"))
        assert sdk.calls_to("SetSigGenBuiltIn")[-1].values[1:4] == (100000, 500000, 1)
        b.configure(chans, tb, TriggerConfig(source="A"), SigGenConfig(enabled=False))
        assert sdk.calls_to("SetSigGenBuiltIn")[-1].values[1:4] == (0, 0, 8)  # DC 0 V = off
        with pytest.raises(InvalidConfig) as ei:
            b.configure(chans, tb, TriggerConfig(source="A"),
                        SigGenConfig(enabled=True, frequency_hz=5e6))
        assert ei.value.field == "siggen.frequency"


def test_trigger_off_and_trigger_validation():
    with fake_backend("ps5000a") as (b, sdk, unit):
        b.open()
        chans, tb = {"A": ChannelConfig(range_v=0.2)}, TimebaseConfig(16e-9, 100, 0.1)
        b.configure(chans, tb, TriggerConfig(enabled=False))
        assert sdk.calls_to("SetSimpleTrigger")[-1].values[1] == 0
        b.arm()
        assert b.wait(2.0)
        assert b.read().auto_triggered.all()  # free-running: nothing triggered it
        n_calls = len(sdk.calls)
        bad = [
            (TriggerConfig(source="A", threshold_v=0.25), "trigger.level"),
            (TriggerConfig(source="B"), "trigger.source"),
            (TriggerConfig(source="A", auto_trigger_s=40.0), "trigger.auto_timeout"),
        ]
        for trig, field in bad:
            with pytest.raises(InvalidConfig) as ei:
                b.configure(chans, tb, trig)
            assert ei.value.field == field and ei.value.allowed
        assert len(sdk.calls) == n_calls  # all refused before touching the unit


def test_factory_from_config_model_and_protocol():
    from fake_picosdk import FakeSDK, installed, make_unit

    from picodaq_ioc.config.schema import Config
    from picodaq_ioc.scope.picoscope import make_picoscope_backend
    from picodaq_ioc.scope.types import ScopeBackend

    cfg = Config(device={"backend": "picoscope", "model": "5000a", "serial": "CD9/02", "resolution_bits": 14})
    b = make_picoscope_backend(cfg)
    assert isinstance(b, ScopeBackend)
    sdk = FakeSDK([make_unit("ps5000a", serial="CD9/01"), make_unit("ps5000a", serial="CD9/02")])
    with installed(sdk):
        try:
            info = b.open()
            assert info.serial == "CD9/02" and sdk.units[1].open and not sdk.units[0].open
            assert sdk.calls_to("OpenUnit")[0].values[1] == ("array", b"CD9/02")
            assert sdk.units[1].resolution_bits == 14 and b.max_adc == 32767
        finally:
            b.close()
    assert not sdk.units[1].open
