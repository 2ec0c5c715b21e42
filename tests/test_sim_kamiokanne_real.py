"""configs/kamiokanne_real.yaml reproduces the figures of a real 18.8-day Kamiokanne run
(recorded with picoCosmo; issue 12) within 15 %, and a lifetime run on such data recovers
the lifetime of the simulated mu+/mu- mixture.

Two unpaced runs of the configuration as shipped (only pacing changed):

* **as is** (3000 events): accepted rate, noise RMS, pulse-height quantiles and the pulse
  shape (rise 10-90 %, FWHM, fall 90-10 %) from the raw waveforms of the first 1000
  accepted events;
* **time-compressed** (12 000 events): every rate of the muon source (muons, stopping
  fraction, after-pulse probability) times K = 1000, so that the figures per accepted event
  that scale with these rates (double pulses) are K times larger while their ratios (the
  flat fraction of the delays, second/first height) keep their values. Pile-up of a second
  muon inside a 16 us record becomes 6 % instead of 6e-5 %; its effect on the figures is
  part of what the 15 % must absorb.

Real figures (issue 12): noise RMS 2.21 mV; peak height p10/median/p90 0.072/0.189/0.377 V;
pulse rise 12 ns, FWHM 64 ns, fall 152 ns; median second-pulse height / median first-pulse
height 0.69; double pulses per accepted event 1.7e-4 (1081 in 18.8 days at ~4 Hz); flat
fraction of the delays in 1.5-15 us 0.52. Accepted rate 3.83 Hz (picoCosmo's short Kanne run
pFilt_Kanne.dat: 8579 accepted in 2240.7 s of active time).

Statistical precision (stated per figure below) is well inside 15 % except where noted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sim_helpers import run_config

from picodaq_ioc.analysis.lifetime import fit_lifetime
from picodaq_ioc.config.loader import load_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "kamiokanne_real.yaml"
REAL = {"rate_hz": 3.83, "noise_v": 2.21e-3, "p10_v": 0.072, "median_v": 0.189, "p90_v": 0.377,
        "rise_s": 12e-9, "fwhm_s": 64e-9, "fall_s": 152e-9, "second_over_first": 0.69,
        "doubles_per_event": 1.7e-4, "flat_fraction": 0.52}
K = 1000.0


def _run(tmp_path: Path, *, k: float, n_events: int, raw_accepted: int = 0):
    cfg = load_config(CONFIG)
    s0 = cfg.simulation.sources[0]
    src = s0.model_copy(update={"rate": s0.rate * k, "decay_fraction": s0.decay_fraction * k,
                                "afterpulse_probability": s0.afterpulse_probability * k})
    pulse = [a.model_copy(update={"raw_accepted": raw_accepted}) for a in cfg.analysis if a.module == "pulse"]
    scope, summary, runner = run_config(cfg, tmp_path, n_events, sources=[src], analysis=pulse)
    return scope, summary, runner.results("pulse"), runner.summaries["pulse"]


def _crossing(w: np.ndarray, level: float, rising: bool) -> float:
    """Linear-interpolated sample index where ``w`` crosses ``level`` before (rising) or after
    its maximum."""
    i = int(np.argmax(w))
    if rising:
        j = int(np.flatnonzero(w[: i + 1] < level)[-1])
    else:
        j = i + int(np.flatnonzero(w[i:] < level)[0]) - 1
    return j + (level - w[j]) / (w[j + 1] - w[j])


def _near(value: float, real: float, tol: float = 0.15) -> bool:
    return abs(value / real - 1.0) <= tol


@pytest.fixture(scope="module")
def as_is(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("kam1"), k=1.0, n_events=3000, raw_accepted=1000)


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("kamK"), k=K, n_events=12_000)


def test_rate_noise_heights_and_shape(as_is) -> None:
    """Rate: 3000 events, Poisson error 1.8 %. Noise: median of 1000 per-event RMS of 180
    pre-trigger samples (error < 1 %). Height quantiles of 1000 peaks: binomial error of
    the p10/p90 position ~3-4 %, of the median ~2 %. Widths: medians over ~600 pulses of
    150-450 mV (sample-interpolated crossings, error < 2 %)."""
    _, summary, r, s = as_is
    figures = {"rate_hz": r["Accepted_RBV"] / summary.run_time}
    raw = np.load(s["accepted_raw_files"][0])
    n_pre = int(raw["n_pre"])
    dt = float(raw["sample_interval_s"])
    v = raw["raw"][:, 0, :] * raw["volts_per_count"][0] - raw["offset_v"][0]
    figures["noise_v"] = float(np.median(v[:, : n_pre - 20].std(axis=1)))
    peak = -v[:, n_pre - 10: n_pre + 40].min(axis=1)
    figures["p10_v"], figures["median_v"], figures["p90_v"] = np.quantile(peak, [0.1, 0.5, 0.9])
    widths = []
    for w in -v[(peak > 0.15) & (peak < 0.45)]:
        w = w - np.median(w[: n_pre - 20])
        seg = w[n_pre - 20: n_pre + 120]
        pk = seg.max()
        widths.append([_crossing(seg, 0.9 * pk, True) - _crossing(seg, 0.1 * pk, True),
                       _crossing(seg, 0.5 * pk, False) - _crossing(seg, 0.5 * pk, True),
                       _crossing(seg, 0.1 * pk, False) - _crossing(seg, 0.9 * pk, False)])
    assert len(widths) > 300
    figures["rise_s"], figures["fwhm_s"], figures["fall_s"] = np.median(widths, axis=0) * dt
    print({k: f"{v:.4g} (real {REAL[k]:.4g})" for k, v in figures.items()})
    for key, value in figures.items():
        assert _near(value, REAL[key]), (key, value, REAL[key])


def test_double_pulses_background_and_decay_heights(compressed) -> None:
    """~2000 double pulses (K = 1000): their rate per accepted event has a Poisson error of
    2.3 %; the fitted flat fraction of ~1100 delays in 1.5-15 us has an error of ~0.03
    (6 %: the 15 % bound is 2.5 of its errors); the median height ratio ~2 %."""
    scope, summary, r, s = compressed
    figures = {"doubles_per_event": r["DoublePulses_RBV"] / r["Accepted_RBV"] / K}
    acc = np.genfromtxt(s["accepted_file"], delimiter=",", names=True)
    dbl = np.genfromtxt(s["doubles_file"], delimiter=",", names=True)
    figures["second_over_first"] = float(np.median(dbl["height2_A_V"]) / np.median(acc["height_A_V"]))
    fit = fit_lifetime(dbl["delay_s"], 1.5e-6, 15e-6)
    figures["flat_fraction"] = fit.background_fraction
    print({k: f"{v:.4g} (real {REAL[k]:.4g})" for k, v in figures.items()})
    for key, value in figures.items():
        assert _near(value, REAL[key]), (key, value, REAL[key])


def test_lifetime_of_the_mu_plus_mu_minus_mixture(compressed) -> None:
    """The run's live lifetime fit (default window 1.5-15 us, exp + flat) must recover,
    within 2 of its errors, the lifetime a single exponential takes for the simulated
    mixture: mu+ (2.197 us) and the mu- that decay (1.795 us) in the proportion the
    simulation generated (truth), fitted the same way to 2 million delays drawn from that
    mixture (statistical error of this reference ~0.002 us, negligible). With capture and
    after-pulses on, this checks that neither after-pulses nor accidentals bias the fit."""
    scope, summary, r, s = compressed
    src = scope.sim.sources[0]
    kinds = np.concatenate(scope.streams[0].decay_kinds)
    share_plus = float(np.mean(kinds == 1))
    expected_share = src.mu_ratio / (src.mu_ratio + src.lifetime_minus / src.lifetime)
    assert abs(share_plus - expected_share) < 4 * np.sqrt(expected_share * (1 - expected_share) / kinds.size)
    rng = np.random.default_rng(5)
    n = 2_000_000
    plus = rng.random(n) < share_plus
    mix = np.where(plus, rng.exponential(src.lifetime, n), rng.exponential(src.lifetime_minus, n))
    ref = fit_lifetime(mix, 1.5e-6, 15e-6, profile=False)
    tau, err = r["Lifetime_RBV"], r["LifetimeErr_RBV"]
    print(f"fit {tau:.4g} +- {err:.2g} s, mixture reference {ref.tau:.4g} s, mu+ share {share_plus:.3f}")
    assert r["FitMin_RBV"] == pytest.approx(1.5e-6) and r["FitMax_RBV"] == pytest.approx(15e-6, rel=0.01)
    assert abs(tau - ref.tau) < 2 * err
    assert ref.tau < src.lifetime - 0.1e-6  # the mixture really is faster than mu+ alone
