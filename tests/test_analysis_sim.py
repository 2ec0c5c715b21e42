"""End to end: simulated scope (muon source) -> BufferManager -> AnalysisRunner -> pulse filter,
started from configs/muon_lifetime.yaml as a user would (only pacing, seed, lifetime changed)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from picodaq_ioc.analysis.lifetime import fit_lifetime
from picodaq_ioc.analysis.runner import AnalysisRunner
from picodaq_ioc.config.convert import scope_settings
from picodaq_ioc.config.loader import load_config
from picodaq_ioc.daq.buffer_manager import BufferManager
from picodaq_ioc.scope.sim.scope import SimScope

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "muon_lifetime.yaml"


def _setup(tmp_path, *, seed: int, lifetime: float, keep_truth: bool = False):
    cfg = load_config(CONFIG)
    src = cfg.simulation.sources[0].model_copy(update={"lifetime": lifetime})
    # unpaced and without host time on the sim clock: deterministic for a given seed
    sim = cfg.simulation.model_copy(update={"realtime": False, "count_host_time": False, "seed": seed,
                                            "sources": [src]})
    scope = SimScope(sim, cfg.device, keep_truth=keep_truth)
    scope.open()
    bm = BufferManager(scope, n_buffers=cfg.buffer.n_buffers)
    ch, tb, trg, sg = scope_settings(cfg)
    bm.configure(ch, replace(tb, n_segments=32), trg, sg)
    runner = AnalysisRunner(bm, cfg.analysis, output_dir=tmp_path)
    return scope, bm, runner


def _run(bm, runner, n_events: int) -> None:
    runner.begin_run()
    bm.start(max_events=n_events)
    assert bm.wait_stopped(120.0)
    summary = bm.stop()
    assert summary.events == n_events and summary.processed == n_events  # nothing lost
    runner.end_run()


@pytest.mark.parametrize("lifetime, seed", [(1.0e-6, 1), (2.197e-6, 2), (5.0e-6, 3)])
def test_lifetime_recovered_from_simulation(tmp_path, lifetime: float, seed: int) -> None:
    """With decay_fraction 0.5, 13 000 triggers give >= 5000 found decays. The fitted
    lifetime must agree with the simulated one within 3 x the quoted error (the pull width
    of the fit is checked on toys in test_analysis_lifetime.py). The error must shrink like
    1/sqrt(n): refitting the first half of the delays gives sqrt(2) = 1.41 times the error
    (accepted 1.2-1.7: the error estimate itself fluctuates by a few %, and the background
    fraction of a half sample differs a little)."""
    scope, bm, runner = _setup(tmp_path, seed=seed, lifetime=lifetime)
    _run(bm, runner, 13_000)
    r = runner.results("pulse")
    assert r["DoublePulses_RBV"] >= 5000
    tau, err = r["Lifetime_RBV"], r["LifetimeErr_RBV"]
    assert abs(tau - lifetime) < 3 * err
    # profile-likelihood errors: close to the Hessian error at this size (within 25 %: with
    # almost no background the fit sits at the f bound, where the Hessian error is too large)
    for side in ("LifetimeErrLow_RBV", "LifetimeErrHigh_RBV"):
        assert 0.75 * err < r[side] < 1.25 * err
    delays = runner.modules["pulse"].delays()
    half = fit_lifetime(delays[: len(delays) // 2], r["FitMin_RBV"], r["FitMax_RBV"])
    assert 1.2 < half.tau_err / err < 1.7
    assert r["DecayTimes_RBV"].sum() <= r["DoublePulses_RBV"]
    assert runner.status()["pulse"] == "OK"
    bm.close()


def test_decay_delays_match_truth(tmp_path) -> None:
    """Every double pulse the filter reports is a simulated decay: matched to the truth
    pulse list, the measured delay equals the true delay within 4 ns (one sample; the
    timing error at 50-200 mV over 1 mV noise is < 1 ns), and >= 97 % of the simulated
    decays of validated muons with a delay in the fit window are found (losses: decay
    pulses below the 50 mV threshold -- the amplitude spread is 35 % around 200 mV, i.e.
    P(A < 50 mV) ~ 1 % -- and pile-up)."""
    scope, bm, runner = _setup(tmp_path, seed=7, lifetime=2.197e-6, keep_truth=True)
    _run(bm, runner, 3000)
    s = runner.summaries["pulse"]
    acc = np.genfromtxt(s["accepted_file"], delimiter=",", names=True)
    dbl = np.genfromtxt(s["doubles_file"], delimiter=",", names=True)
    pulses = scope.truth.all_pulses()
    prim = np.sort(pulses["t"][pulses["aux"] == 0])
    dec = np.sort(pulses["t"][pulses["aux"] == 1])
    t_evt = dict(zip(acc["event"].astype(int), acc["t_trigger_s"] + acc["t_event_s"], strict=True))
    # t_trigger is the trigger instant; t_event_s the fitted pulse start relative to the trigger
    # sample: the sum is the muon pulse start on the simulation clock (within a sample).
    start = np.array([t_evt[int(e)] for e in dbl["event"]])
    i_p = np.clip(np.searchsorted(prim, start), 1, len(prim) - 1)
    near_p = np.where(np.abs(prim[i_p] - start) < np.abs(prim[i_p - 1] - start), prim[i_p], prim[i_p - 1])
    assert np.all(np.abs(near_p - start) < 8e-9)
    t2 = start + dbl["delay_s"]
    i_d = np.clip(np.searchsorted(dec, t2), 1, len(dec) - 1)
    near_d = np.where(np.abs(dec[i_d] - t2) < np.abs(dec[i_d - 1] - t2), dec[i_d], dec[i_d - 1])
    assert np.all(np.abs((near_d - near_p) - dbl["delay_s"]) < 4e-9)
    # efficiency: true decays of the accepted muons inside the fit window
    starts = np.array(list(t_evt.values()))
    j = np.clip(np.searchsorted(dec, starts), 0, len(dec) - 1)
    true_delay = dec[j] - starts
    lo, hi = s["lifetime"]["t_min"], s["lifetime"]["t_max"]
    expected = np.sum((true_delay > lo) & (true_delay < hi))
    found = np.sum((dbl["delay_s"] > lo) & (dbl["delay_s"] < hi))
    assert found >= 0.97 * expected and found <= expected
    bm.close()


def test_accidental_coincidences_from_simulation(tmp_path) -> None:
    """Independent muon sources on A (triggering, 500 Hz) and B (R2 = 200 kHz of short
    pulses). A 2-fold coincidence within +-tau = 100 ns can only be accidental, so the
    accepted fraction of validated triggers must be p = 1 - exp(-2 tau R2) = 0.0392 (the
    rate 2 R1 R2 tau over R1, R1 = validated trigger rate). 12 000 triggers: binomial
    tolerance 4 sqrt(n p (1-p)) ~ 85 around ~470. B pulses are 45 ns long, so B pile-up
    (2 x 45 ns x 200 kHz = 1.8 %) barely matters."""
    from picodaq_ioc.config.schema import Config

    cfg = Config.model_validate({
        "channels": {"A": {"range": 0.2, "coupling": "DC"}, "B": {"range": 0.2, "coupling": "DC"}},
        "timebase": {"sample_interval": 4e-9, "samples": 1000, "pretrigger": 0.25},
        "trigger": {"source": "A", "level": -0.02, "direction": "Falling", "auto_timeout": 1.0},
        "simulation": {"seed": 11, "realtime": False, "count_host_time": False, "noise_rms": 1e-3, "sources": [
            {"kind": "muon", "channels": ["A"], "rate": 500.0, "amplitude": -0.06, "amplitude_spread": 0.1},
            {"kind": "muon", "channels": ["B"], "rate": 2e5, "amplitude": -0.06, "amplitude_spread": 0.1,
             "rise": 5e-9, "flat": 0.0, "fall": 40e-9}]},
        "analysis": [{"module": "pulse", "pulseShape": [
            {"taur": 20e-9, "tauon": 12e-9, "tauf": 128e-9, "pheight": -0.06},
            {"taur": 5e-9, "tauon": 0.0, "tauf": 40e-9, "pheight": -0.06}],
            "threshold": 0.5, "coincidence_window": 100e-9, "NminCoincidence": 2, "doublePulse": False}],
    })
    scope = SimScope(cfg.simulation, cfg.device)
    scope.open()
    bm = BufferManager(scope, n_buffers=256)
    ch, tb, trg, sg = scope_settings(cfg)
    bm.configure(ch, replace(tb, n_segments=64), trg, sg)
    runner = AnalysisRunner(bm, cfg.analysis, output_dir=tmp_path)
    _run(bm, runner, 12_000)
    r = runner.results("pulse")
    n = r["Validated_RBV"]
    assert n >= 0.99 * 12_000
    p = 1 - np.exp(-2 * 100e-9 * 2e5)
    assert abs(r["Accepted_RBV"] - n * p) < 4 * np.sqrt(n * p * (1 - p))
    assert r["Coincidences_RBV"][1] == r["Accepted_RBV"]  # all accepted events are 2-fold
    bm.close()


@pytest.mark.slow
def test_lifetime_pulls_over_simulation_seeds(tmp_path) -> None:
    """The quoted error matches the spread over repeated simulations: 8 seeds x ~2000
    found decays (tau = 2.197 us). Pulls (tau_hat - tau) / err must look standard normal:
    sum of squares within the 0.1 %..99.9 % quantiles of chi2(8) = [1.34, 26.1] and no
    |pull| > 3.5 (P = 8 x 4.7e-4 = 0.4 % for a correct error)."""
    from scipy.stats import chi2

    tau = 2.197e-6
    pulls = []
    for seed in range(101, 109):
        scope, bm, runner = _setup(tmp_path / str(seed), seed=seed, lifetime=tau)
        _run(bm, runner, 4500)
        r = runner.results("pulse")
        assert r["DoublePulses_RBV"] > 1800
        pulls.append((r["Lifetime_RBV"] - tau) / r["LifetimeErr_RBV"])
        bm.close()
    pulls = np.asarray(pulls)
    assert chi2.ppf(0.001, 8) < np.sum(pulls**2) < chi2.ppf(0.999, 8)
    assert np.max(np.abs(pulls)) < 3.5
