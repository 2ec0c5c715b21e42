"""Model tables: snapping and quantisation as the PicoScope drivers do it."""

from __future__ import annotations

import math

import pytest

from picodaq_ioc.scope import models
from picodaq_ioc.scope.errors import InvalidConfig
from picodaq_ioc.scope.types import Coupling, SigGenConfig, WaveType

FAMILY_KEYS = ("2000", "2000a", "3000a", "4000", "4000a", "5000a", "6000")


def test_all_families_present_and_consistent():
    assert tuple(models.FAMILIES) == FAMILY_KEYS
    for key, m in models.FAMILIES.items():
        assert m.family == key
        assert m.default_bits in m.resolutions_bits
        for b in m.resolutions_bits:
            assert b in m.timebases and b in m.max_adc_by_bits
        # ranges are a sorted subset of the 1-2-5 sequence
        assert list(m.ranges_v) == sorted(m.ranges_v)
        assert set(m.ranges_v) <= set(models.ALL_RANGES_V)
        assert m.max_segments >= 1 and m.memory_samples > 0


@pytest.mark.parametrize(("family", "bits", "expected"), [
    ("2000a", 8, 32512), ("3000a", 8, 32512), ("5000a", 8, 32512),
    ("5000a", 12, 32767), ("5000a", 16, 32767),
    ("4000", 12, 32764), ("4000a", 12, 32764), ("6000", 8, 32512),
])
def test_true_max_adc(family, bits, expected):
    assert models.max_adc(family, bits) == expected


def test_max_adc_rejects_unavailable_resolution():
    with pytest.raises(InvalidConfig) as ei:
        models.max_adc("2000a", 12)
    assert ei.value.field == "resolution_bits" and "8" in ei.value.allowed


@pytest.mark.parametrize(("family", "req", "snapped"), [
    ("2000a", 0.15, 0.2), ("2000a", 0.2, 0.2), ("2000a", 0.0001, 0.02), ("2000a", 0.21, 0.5),
    ("2000a", 3.0, 5.0), ("5000a", 0.009, 0.01), ("4000a", 30.0, 50.0), ("6000", 0.03, 0.05),
])
def test_snap_range_next_larger(family, req, snapped):
    assert models.snap_range(family, req) == snapped


def test_snap_range_above_max_names_field_and_allowed():
    with pytest.raises(InvalidConfig) as ei:
        models.snap_range("2000a", 25.0, channel="B")
    e = ei.value
    assert e.field == "range"
    assert "±20 V" in e.allowed and "±20 mV" in e.allowed
    assert "channel B" in str(e)
    with pytest.raises(InvalidConfig):
        models.snap_range("2000a", -1.0)


@pytest.mark.parametrize(("family", "req", "kw", "index", "dt"), [
    # Kamiokanne: 16 us / 3500 samples = 4.57 ns -> 4 ns (timebase 1) on a 500 MS/s 2000A
    ("2000a", 16e-6 / 3500, {}, 1, 4e-9),
    ("2000a", 16e-6 / 3999.9, {}, 1, 4e-9),
    ("2000a", 2e-9, {}, 0, 2e-9),
    ("2000a", 1e-9, {}, 0, 2e-9),  # never faster than 500 MS/s
    ("2000a", 1e-9, {"n_channels": 2}, 1, 4e-9),  # 2 channels share the ADC: 250 MS/s
    ("2000a", 1e-9, {"n_channels": 4}, 2, 8e-9),
    ("2000a", 20e-9, {}, 3, 16e-9),  # (n-2)/62.5 MHz: 16 ns, 32 ns
    ("2000a", 50e-9, {}, 5, 48e-9),
    ("2000a", 1e-6, {}, 64, 992e-9),
    ("2000a", 1e-9, {"variant": "2208B"}, 0, 1e-9),  # 1 GS/s variant
    ("2000a", 10e-9, {"variant": "2208B"}, 3, 8e-9),
    ("2000", 30e-9, {}, 1, 20e-9),  # 2^n * 10 ns
    ("3000a", 1e-6, {}, 127, 1e-6),
    ("4000", 60e-9, {}, 2, 50e-9),
    ("4000", 160e-9, {}, 4, 150e-9),  # (n-1)/20 MHz
    ("4000a", 30e-9, {}, 1, 25e-9),  # (n+1) * 12.5 ns
    ("5000a", 1e-9, {"bits": 8}, 0, 1e-9),
    ("5000a", 1e-9, {"bits": 12}, 1, 2e-9),
    ("5000a", 1e-9, {"bits": 14}, 3, 8e-9),
    ("5000a", 1e-9, {"bits": 16}, 4, 16e-9),
    ("5000a", 20e-9, {"bits": 12}, 4, 16e-9),
    ("6000", 1e-9, {}, 2, 0.8e-9),
    ("6000", 10e-9, {}, 5, 6.4e-9),
])
def test_quantise_interval(family, req, kw, index, dt):
    n, got = models.quantise_interval(family, req, **kw)
    assert n == index
    assert math.isclose(got, dt, rel_tol=1e-12)
    assert got <= req * (1 + 1e-9) or n == models.timebase_formula(
        family, variant=kw.get("variant"), bits=kw.get("bits")).min_index(kw.get("n_channels", 1))


def test_quantise_interval_is_floor_over_a_sweep():
    # For every request the returned dt is <= request, and the next slower timebase is > request.
    for fam in FAMILY_KEYS:
        tb = models.timebase_formula(fam)
        for k in range(200):
            req = 10 ** (-9 + 6 * k / 199)
            n, dt = models.quantise_interval(fam, req)
            if n > tb.min_index(1):
                assert dt <= req * (1 + 1e-9)
            if n < tb.max_index:
                assert tb.dt(n + 1) > req * (1 - 1e-9), (fam, req, n)


def test_quantise_interval_errors():
    with pytest.raises(InvalidConfig) as ei:
        models.quantise_interval("5000a", 1e-6, bits=16, n_channels=2)
    assert ei.value.field == "channels"
    with pytest.raises(InvalidConfig) as ei:
        models.quantise_interval("2000a", 0.0)
    assert ei.value.field == "sample_interval"


def test_offset_limits():
    assert models.offset_limit("2000a", 0.05) == 0.25
    assert models.offset_limit("2000a", 0.2) == 0.25
    assert models.offset_limit("2000a", 0.5) == 2.5
    assert models.offset_limit("2000a", 20.0) == 20.0
    assert models.offset_limit("4000a", 20.0) == 25.0
    assert models.offset_limit("6000", 0.1) == 0.5
    assert models.offset_limit("2000", 1.0) == 0.0
    assert models.validate_offset("2000a", 0.5, 0.4) == 0.4
    with pytest.raises(InvalidConfig) as ei:
        models.validate_offset("2000a", 0.2, 0.4, channel="A")
    assert ei.value.field == "offset" and "0.25" in ei.value.allowed


def test_coupling_and_channel_validation():
    assert models.validate_coupling("6000", "DC50", 1.0) is Coupling.DC50
    with pytest.raises(InvalidConfig) as ei:
        models.validate_coupling("2000a", "DC50")
    assert ei.value.field == "coupling" and ei.value.allowed == "AC, DC"
    with pytest.raises(InvalidConfig) as ei:
        models.validate_coupling("6000", "DC50", 10.0)
    assert ei.value.field == "range"
    assert models.validate_channel_name("4000a", "h") == "H"
    with pytest.raises(InvalidConfig) as ei:
        models.validate_channel_name("2000", "C")
    assert ei.value.allowed == "A, B"


def test_feature_flags_and_info():
    assert not models.get_family("2000").supports_pretrigger
    assert not models.get_family("2000").supports_rapid_block
    info = models.scope_info("2000a")
    assert info.family == "2000a" and info.driver == "sim" and info.serial == "SIM0001"
    assert info.channels == ("A", "B", "C", "D")
    assert math.isclose(info.max_sample_rate_hz, 5e8)
    assert math.isclose(models.scope_info("2000a", "2208B").max_sample_rate_hz, 1e9)
    assert models.scope_info("5000a").resolutions_bits == (8, 12, 14, 15, 16)
    with pytest.raises(InvalidConfig) as ei:
        models.get_family("7000")
    assert ei.value.field == "model"


def test_siggen_validation():
    caps = models.siggen_caps("2000a")
    assert caps is not None and caps.max_frequency_hz == 1e6
    ok = SigGenConfig(enabled=True, waveform=WaveType.SQUARE, frequency_hz=1e3, pk_to_pk_v=2.0)
    assert models.validate_siggen("2000a", ok) is ok
    with pytest.raises(InvalidConfig) as ei:
        models.validate_siggen("2000a", SigGenConfig(enabled=True, frequency_hz=5e6))
    assert ei.value.field == "siggen.frequency"
    with pytest.raises(InvalidConfig) as ei:
        models.validate_siggen("2000a", SigGenConfig(enabled=True, pk_to_pk_v=3.0, offset_v=1.0))
    assert ei.value.field == "siggen.offset"
    with pytest.raises(InvalidConfig) as ei:
        models.validate_siggen("2000", SigGenConfig(enabled=True, waveform=WaveType.SINC))
    assert ei.value.field == "siggen.waveform"
