"""Voltmeter, histogram and rate-history modules; the module registry and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from picodaq_ioc.analysis.base import AnalysisConfigError, RunInfo
from picodaq_ioc.analysis.histograms import Histogram1D, HistogramModule
from picodaq_ioc.analysis.rate_history import RateHistory
from picodaq_ioc.analysis.registry import BUILTINS, create_module, resolve
from picodaq_ioc.analysis.toys import make_applied, make_batch
from picodaq_ioc.analysis.voltmeter import VoltMeter
from picodaq_ioc.config.schema import AnalysisSection

RUN = RunInfo(1.0e9, "unused")


def test_voltmeter_blocks_match_numpy() -> None:
    """Readings over blocks of 3 events spanning batch boundaries equal numpy's figures
    on the digitised volts (float64 accumulation: agreement to 1e-9 V)."""
    a = make_applied(("A", "B"), n_samples=500, range_v=0.2, offset_v=0.05)
    rng = np.random.default_rng(0)
    v = rng.normal(0.01, 0.02, (11, 2, 500))
    v[:, 1] *= 2
    vm = VoltMeter(channels=["A", "B", "C"], n_events=3)
    names = {s.name for s in vm.specs}
    assert {"A:Mean_RBV", "B:PkPk_RBV", "C:RMS_RBV", "Updates_RBV"} <= names
    vm.start(a, RUN)
    full = make_batch(a, v).volts(dtype=np.float64)
    for lo, hi in ((0, 4), (4, 5), (5, 10), (10, 11)):
        vm.process(make_batch(a, v[lo:hi], first_event=lo + 1))
        done = hi // 3
        r = vm.results()
        assert r["Updates_RBV"] == done
        if done:
            x = full[(done - 1) * 3: done * 3]
            for i, c in enumerate("AB"):
                xc = x[:, i]
                assert r[f"{c}:Mean_RBV"] == pytest.approx(xc.mean(), abs=1e-9)
                assert r[f"{c}:Std_RBV"] == pytest.approx(xc.std(), abs=1e-9)
                assert r[f"{c}:RMS_RBV"] == pytest.approx(np.sqrt(np.mean(xc**2)), abs=1e-9)
                assert r[f"{c}:Min_RBV"] == pytest.approx(xc.min(), abs=1e-9)
                assert r[f"{c}:Max_RBV"] == pytest.approx(xc.max(), abs=1e-9)
                assert r[f"{c}:PkPk_RBV"] == pytest.approx(np.ptp(xc), abs=1e-9)
            assert np.isnan(r["C:Mean_RBV"])  # configured but not enabled


def test_histogram_module_and_accumulator() -> None:
    h = Histogram1D(4, 0.0, 1.0)
    h.fill(np.array([-0.1, 0.0, 0.26, 0.5, 0.99, 1.0, np.nan]))
    assert h.counts.tolist() == [1, 1, 1, 1] and h.underflow == 1 and h.overflow == 1 and h.entries == 6
    assert np.allclose(h.centres, [0.125, 0.375, 0.625, 0.875])
    a = make_applied(n_samples=200, range_v=1.0)
    v = np.zeros((50, 1, 200))
    v[:, 0, 100] = np.linspace(0.005, 0.495, 50)  # one spike per event: pkpk = spike height
    m = HistogramModule(channel="a", quantity="pkpk", bins=10, range=[0, 0.5])
    m.start(a, RUN)
    m.process(make_batch(a, v))
    r = m.results()
    expect, _ = np.histogram(make_batch(a, v).volts()[:, 0].max(axis=1), bins=10, range=(0, 0.5))
    assert r["Counts_RBV"].tolist() == expect.tolist() and r["Entries_RBV"] == 50
    m.command("Reset", 1)
    assert m.results()["Entries_RBV"] == 0
    with pytest.raises(AnalysisConfigError, match=r"'channel' = 'B'.*allowed: A"):
        HistogramModule(channel="B").start(a, RUN)


def test_rate_history_bins() -> None:
    """Events at known times: 1 s bins count exactly, empty seconds give 0 Hz, the mean
    rate is events / last trigger time."""
    m = RateHistory(interval=1.0, length=5)
    a = make_applied(n_samples=16)
    m.start(a, RUN)
    t = np.concatenate([np.linspace(0.0, 0.99, 10), np.linspace(1.0, 1.99, 20), [4.5]])
    m.process(make_batch(a, np.zeros((len(t), 1, 16)), t_trigger=t))
    r = m.results()
    assert r["History_RBV"][-4:].tolist() == [10.0, 20.0, 0.0, 0.0]
    assert np.isnan(r["History_RBV"][0])
    assert r["HistoryTime_RBV"][-4:].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert r["Events_RBV"] == 31 and r["MeanRate_RBV"] == pytest.approx(31 / 4.5)


def test_registry_builtins_and_import_paths() -> None:
    assert set(BUILTINS) == {"pulse", "voltmeter", "histogram", "rates"}
    assert resolve("picodaq_ioc.analysis.histograms:HistogramModule") is HistogramModule
    m = create_module(AnalysisSection(module="voltmeter", name="vm2", prefix="VM2", channels=["A"]))
    assert m.name == "vm2" and m.prefix == "VM2" and isinstance(m, VoltMeter)
    p = create_module({"module": "pulse"})
    assert p.prefix == "Pulse" and p.name == "pulse"
    names = {s.name for s in p.specs}
    for required in ("Validated_RBV", "Accepted_RBV", "Rate_RBV", "DoublePulses_RBV", "Heights_RBV",
                     "HeightBins_RBV", "DecayTimes_RBV", "DecayBins_RBV", "Lifetime_RBV", "LifetimeErr_RBV",
                     "Reset"):
        assert required in names


@pytest.mark.parametrize("section, fragments", [
    ({"module": "pulsefilter"}, ["analysis[0]", "'module' = 'pulsefilter'", "allowed: pulse, voltmeter"]),
    ({"module": "os:system"}, ["not a subclass"]),
    ({"module": "os:no_such_thing"}, ["has no attribute 'no_such_thing'"]),
    ({"module": "no_such_pkg.mod:Cls"}, ["cannot import 'no_such_pkg.mod'"]),
    ({"module": "collections:OrderedDict"}, ["not a subclass"]),
    ({"module": "voltmeter", "name": "vm", "n_events": 0}, ["'vm'", "'n_events' = 0", "greater than or equal to 1"]),
    ({"module": "rates", "intervall": 2}, ["'intervall' = 2", "unknown parameter", "allowed: ", "interval"]),
    ({"module": "histogram", "quantity": "area51"}, ["'quantity' = 'area51'", "'pkpk'"]),
    ({"module": "pulse", "prefix": "1bad"}, ["'prefix' = '1bad'"]),
])
def test_registry_errors_are_clear(section, fragments) -> None:
    with pytest.raises(AnalysisConfigError) as ei:
        create_module(section)
    for f in fragments:
        assert f in str(ei.value)
