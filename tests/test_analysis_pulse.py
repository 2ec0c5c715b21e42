"""Pulse filter accuracy on seeded toy waveforms (exact truth, fast).

Toys: trapezoid pulses (the filter's own shape family) at random sub-sample times plus
white Gaussian noise, digitised to int16 codes with a fine LSB (0.05 V / 32512 = 1.5 uV,
far below the noise), so the tests measure the filter, not the ADC.
"""

from __future__ import annotations

import numpy as np
import pytest

from picodaq_ioc.analysis.base import AnalysisConfigError, RunInfo
from picodaq_ioc.analysis.pulse_filter import PulseFilter
from picodaq_ioc.analysis.templates import PulseShape, shape_values
from picodaq_ioc.analysis.toys import make_applied, make_batch, trapezoids

SIG = 1e-3  # noise RMS, V
DT = 4e-9
NS = 1000
NPRE = 100
RISE, FLAT, FALL = 20e-9, 12e-9, 128e-9


def _filter(tmp_path, applied, **kw) -> PulseFilter:
    kw.setdefault("write_files", False)
    pf = PulseFilter(**kw)
    pf.start(applied, RunInfo(1.0e9, str(tmp_path)))
    return pf


def _events(rng, k, amp, *, nch=1, t0=None, extra=None):
    """Volts [k, nch, NS]: channel 0 gets a pulse of ``amp`` starting 2-3 samples before
    the trigger sample (or at ``t0``); ``extra`` = (t0 [k, m], amp [k, m]) per channel."""
    out = rng.normal(0.0, SIG, (k, nch, NS))
    if t0 is None:
        t0 = NPRE * DT - 8e-9 - rng.uniform(0, DT, k)
    if amp != 0:
        out[:, 0, :] += trapezoids(NS, DT, t0[:, None], np.full((k, 1), amp), RISE, FLAT, FALL)
    for ch, (tt, aa) in (extra or {}).items():
        out[:, ch, :] += trapezoids(NS, DT, tt, aa, RISE, FLAT, FALL)
    return out, t0


def _analyse(pf, applied, volts, chunk=256):
    res = []
    for i in range(0, len(volts), chunk):
        res.append(pf.analyse(make_batch(applied, volts[i:i + chunk], first_event=i + 1)))
    return res


@pytest.mark.parametrize("offset_subtraction", [True, False])
def test_efficiency_and_fake_rate_at_5_sigma(tmp_path, offset_subtraction: bool) -> None:
    """Pulses of exactly 5 x noise RMS, template height 5 sigma, threshold 0.5.

    Expected: the fitted-amplitude noise is sigma/sqrt(sum k^2) = 0.5 sigma (mean-subtracted
    41-sample template) or 0.29 sigma (raw template), so the threshold (2.5 sigma) sits >= 5
    amplitude-sigmas from both 0 and the pulse height: inefficiency and per-position fake
    probability ~ 3e-7. Requirements: efficiency >= 99 % (10 000 pulses: the binomial error
    at 99 % is 0.1 %, far below the expected margin), fake validations <= 0.1 % of 10 000
    noise-only events (<= 10), fake second pulses <= 0.1 % of the pulse events (<= 10).
    """
    rng = np.random.default_rng(11 if offset_subtraction else 12)
    a = make_applied(dt=DT, n_samples=NS, n_pre=NPRE, range_v=0.05)
    kw = dict(pulseShape=[dict(taur=RISE, tauon=FLAT, tauf=FALL, pheight=-5 * SIG,
                               OffsetSubtraction=offset_subtraction)], threshold=0.5)
    n = 10_000
    v, _ = _events(rng, n, -5 * SIG)
    pf = _filter(tmp_path, a, **kw)
    res = _analyse(pf, a, v)
    validated = sum(int(r.validated.sum()) for r in res)
    doubles = sum(len(r.doubles) for r in res)
    assert validated / n >= 0.99
    assert doubles <= n * 1e-3
    noise, _ = _events(rng, n, 0.0)
    res = _analyse(pf, a, noise)
    fakes = sum(int(r.validated.sum()) for r in res)
    assert fakes <= n * 1e-3


def test_heights_and_times_unbiased(tmp_path) -> None:
    """Heights and times from the least-squares sub-sample refinement.

    At 40 sigma (muon-like) the mean height must equal the true amplitude within 3
    standard errors of the mean (SE = std/sqrt(n)); same for the pulse start time.
    At 5 sigma the position fit has the known selection bias of order
    sigma_h^2 / A (~1 % of A); it must stay below 0.2 of the per-pulse error sigma_h.
    """
    rng = np.random.default_rng(5)
    a = make_applied(dt=DT, n_samples=NS, n_pre=NPRE, range_v=0.1)
    n = 8000
    for amp, strict in ((40 * SIG, True), (5 * SIG, False)):
        v, t0 = _events(rng, n, -amp)
        pf = _filter(tmp_path, a, pulseShape=[dict(pheight=-amp)], threshold=0.5)
        res = _analyse(pf, a, v)
        h = np.concatenate([r.height[:, 0] for r in res])
        t = np.concatenate([r.pos[:, 0] for r in res]) * DT
        se_h = h.std() / np.sqrt(n)
        if strict:
            assert abs(h.mean() - amp) < 3 * se_h
            dtm = t - t0
            assert abs(dtm.mean()) < 3 * dtm.std() / np.sqrt(n)
            assert dtm.std() < 0.25 * DT  # sub-sample timing at 40 sigma
        else:
            assert abs(h.mean() - amp) < 0.2 * h.std()


def test_accidental_coincidence_rate(tmp_path) -> None:
    """Independent pulses on B (Poisson, R2 = 100 kHz) around triggers on A.

    An A pulse is accepted when a B pulse starts within +-tau = 200 ns of it, so the
    expected accepted fraction is p = 1 - exp(-2 tau R2) = 0.0392 (the accidental rate
    2 R1 R2 tau divided by R1). With n = 12 000 triggers the count is binomial:
    tolerance 4 sqrt(n p (1 - p)) = 85 around n p = 470.
    Event by event the filter must agree with the truth (a B pulse start within tau):
    disagreements come only from B pile-up (two B pulses within a pulse length, ~3 %
    of the coincidences at this rate) and pulses at the window edge, so <= 5 % of the
    true coincidences may disagree.
    """
    rng = np.random.default_rng(21)
    a = make_applied(("A", "B"), dt=DT, n_samples=NS, n_pre=NPRE, range_v=0.1)
    n, r2, tau = 12_000, 1e5, 200e-9
    t_rec = (NS - 60) * DT  # B pulses start anywhere a whole pulse fits
    counts = rng.poisson(r2 * t_rec, n)
    m = max(int(counts.max()), 1)
    tb = np.full((n, m), np.nan)
    for i, c in enumerate(counts):  # toy generation only
        tb[i, :c] = rng.uniform(0, t_rec, c)
    v, t0 = _events(rng, n, -0.02, nch=2, extra={1: (tb, np.full((n, m), -0.02))})
    pf = _filter(tmp_path, a, pulseShape=[dict(pheight=-0.02)], threshold=0.5, coincidence_window=tau,
                 NminCoincidence=2)
    res = _analyse(pf, a, v)
    accepted = np.concatenate([r.accepted for r in res])
    acc = int(accepted.sum())
    p = 1 - np.exp(-2 * tau * r2)
    assert abs(acc - n * p) < 4 * np.sqrt(n * p * (1 - p))
    assert sum(int(r.validated.sum()) for r in res) == n
    d = np.abs(tb - t0[:, None])
    truth = np.nanmin(np.where(np.isnan(d), np.inf, d), axis=1) <= tau
    assert np.sum(truth != accepted) <= 0.05 * truth.sum()


def test_delayed_coincidences_and_patterns(tmp_path) -> None:
    """B always fires 100 ns after A, C never: with delays [0, 100 ns, 0] every event is a
    2-fold coincidence; the same events fail a [1,1,1] pattern and pass [1,1,0]; without
    the delay (window 8 ns) nothing is accepted (no accidentals: B has no other pulses)."""
    rng = np.random.default_rng(3)
    a = make_applied(("A", "B", "C"), dt=DT, n_samples=NS, n_pre=NPRE, range_v=0.1)
    n = 512
    t0 = NPRE * DT - 8e-9 - rng.uniform(0, DT, n)
    v, _ = _events(rng, n, -0.03, nch=3, t0=t0, extra={1: (t0[:, None] + 100e-9, np.full((n, 1), -0.03))})
    shape = [dict(pheight=-0.03)]
    pf = _filter(tmp_path, a, pulseShape=shape, threshold=0.5, delay=[0, 100e-9, 0])
    res = _analyse(pf, a, v)
    assert sum(int(r.accepted.sum()) for r in res) == n
    assert all(r.hits[:, 1].all() and not r.hits[:, 2].any() for r in res)
    pf3 = _filter(tmp_path, a, pulseShape=shape, threshold=0.5, delay=[0, 100e-9, 0],
                  acceptPattern=[[1, 1, 1]])
    assert sum(int(r.accepted.sum()) for r in _analyse(pf3, a, v)) == 0
    pf2 = _filter(tmp_path, a, pulseShape=shape, threshold=0.5, delay=[0, 100e-9, 0],
                  acceptPattern=[[1, 1, 1], [1, 1, 0]])
    assert sum(int(r.accepted.sum()) for r in _analyse(pf2, a, v)) == n
    pf0 = _filter(tmp_path, a, pulseShape=shape, threshold=0.5)
    assert sum(int(r.accepted.sum()) for r in _analyse(pf0, a, v)) == 0


def test_bipolar_template_finds_bipolar_pulses(tmp_path) -> None:
    """Equal-area bipolar pulses (+20 mV) are validated with a bipolar template and their
    heights measured within 1 % (mean of 1000, per-pulse error ~0.3 mV)."""
    rng = np.random.default_rng(8)
    a = make_applied(dt=DT, n_samples=NS, n_pre=NPRE, range_v=0.1)
    shape = PulseShape(mode=1, taur=20e-9, tauon=12e-9, tauf=60e-9, pheight=0.02)
    n = 1000
    t0 = NPRE * DT - 8e-9 - rng.uniform(0, DT, n)
    t = np.arange(NS) * DT
    v = 0.02 * shape_values(shape, t[None, :] - t0[:, None]) + rng.normal(0, SIG, (n, NS))
    pf = _filter(tmp_path, a, pulseShape=[shape.model_dump()], threshold=0.5)
    res = _analyse(pf, a, v[:, None, :])
    assert sum(int(r.validated.sum()) for r in res) == n
    h = np.concatenate([r.height[:, 0] for r in res])
    assert abs(h.mean() / 0.02 - 1) < 0.01


def test_double_pulses_delays_and_files(tmp_path) -> None:
    """Second pulses at known delays: every one with delay >= 0.3 us is found, the
    measured delay matches within 2 ns (0.5 samples; the timing error at 40 sigma is
    ~0.4 ns), and the CSV/npz files hold exactly these events."""
    rng = np.random.default_rng(9)
    a = make_applied(dt=DT, n_samples=NS, n_pre=NPRE, range_v=0.1)
    n = 600
    t0 = NPRE * DT - 8e-9 - rng.uniform(0, DT, n)
    has2 = np.arange(n) % 3 == 0
    delay = rng.uniform(0.3e-6, 3.0e-6, n)
    tt = np.stack([t0, np.where(has2, t0 + delay, np.nan)], axis=1)
    v = trapezoids(NS, DT, tt, np.full((n, 2), -0.04), RISE, FLAT, FALL) + rng.normal(0, SIG, (n, NS))
    pf = PulseFilter(pulseShape=[dict(pheight=-0.04)], threshold=0.5, fit_window=[0.3e-6, 3.2e-6])
    pf.name = "pulse"
    pf.start(a, RunInfo(1.0e9, str(tmp_path), extra={"stamp": "991231-235959"}))
    for i in range(0, n, 128):
        pf.process(make_batch(a, v[i:i + 128, None, :], first_event=i + 1))
    r = pf.results()
    assert r["Accepted_RBV"] == n and r["DoublePulses_RBV"] == int(has2.sum())
    got = pf.delays()
    assert np.max(np.abs(np.sort(got) - np.sort(delay[has2]))) < 2e-9
    assert r["DecayTimes_RBV"].sum() == has2.sum()
    summary = pf.finish()
    acc = np.genfromtxt(summary["accepted_file"], delimiter=",", names=True)
    assert len(acc) == n and np.array_equal(acc["event"], np.arange(1, n + 1))
    assert np.allclose(acc["height_A_V"], 0.04, atol=0.004)
    dbl = np.genfromtxt(summary["doubles_file"], delimiter=",", names=True)
    assert np.array_equal(dbl["event"].astype(int), np.nonzero(has2)[0] + 1)
    assert np.allclose(dbl["delay_s"], delay[has2], atol=2e-9)
    raw = np.load(summary["doubles_raw_files"][0])
    assert raw["raw"].shape == (has2.sum(), 1, NS) and raw["raw"].dtype == np.int16
    assert np.array_equal(raw["event"], np.nonzero(has2)[0] + 1)
    volts = raw["raw"] * raw["volts_per_count"][None, :, None] - raw["offset_v"][None, :, None]
    assert np.allclose(volts[:, 0], v[has2], atol=1e-4)
    assert "991231-235959_pulse_accepted.csv" in summary["accepted_file"]
    # Reset clears counters and the fit
    pf.command("Reset", 1)
    r = pf.results()
    assert r["Accepted_RBV"] == 0 and r["DecayTimes_RBV"].sum() == 0 and np.isnan(r["Lifetime_RBV"])


@pytest.mark.parametrize("params, key, fragment", [
    ({"threshold": -1}, "threshold", "greater than 0"),
    ({"NminCoincidence": 0}, "NminCoincidence", "greater than or equal to 1"),
    ({"pulseShape": [{"pheight": 0}]}, "pulseShape.0.pheight", "nonzero"),
    ({"pulseShape": [{"mode": 3}]}, "pulseShape.0.mode", "bipolar"),
    ({"colour": "red"}, "colour", "allowed: "),
    ({"channels": ["Z"]}, "channels", "A-H"),
])
def test_parameter_errors_name_key_value_and_allowed(params, key, fragment) -> None:
    with pytest.raises(AnalysisConfigError) as ei:
        PulseFilter(**params)
    msg = str(ei.value)
    assert f"parameter {key!r}" in msg and fragment in msg
    assert repr(ei.value.value) in msg


def test_start_errors_name_channels(tmp_path) -> None:
    a = make_applied(("A", "B"), dt=DT, n_samples=NS, n_pre=NPRE)
    with pytest.raises(AnalysisConfigError, match=r"'channels' = 'C'.*allowed: A, B"):
        _filter(tmp_path, a, channels=["A", "C"])
    with pytest.raises(AnalysisConfigError, match=r"min_coincidence.*allowed: 1..2"):
        _filter(tmp_path, a, NminCoincidence=3)
    with pytest.raises(AnalysisConfigError, match=r"accept_pattern.*2 entries"):
        _filter(tmp_path, a, acceptPattern=[[1, 1, 0]])
    short = make_applied(dt=DT, n_samples=20, n_pre=2)
    with pytest.raises(AnalysisConfigError, match="longer than the record"):
        _filter(tmp_path, short)


def test_reset_keeps_run_files_raw_accepted_and_rate_history(tmp_path) -> None:
    """Reset clears counters but not the run's files; Nraw1 keeps the first N accepted raw
    events; RateHistory_RBV holds accepted events per closed bin of trigger time."""
    rng = np.random.default_rng(4)
    a = make_applied(dt=DT, n_samples=NS, n_pre=NPRE, range_v=0.1)
    n = 400
    t0 = NPRE * DT - 8e-9 - rng.uniform(0, DT, n)
    tt = np.stack([t0, np.where(np.arange(n) % 2 == 0, t0 + 1e-6, np.nan)], axis=1)
    v = trapezoids(NS, DT, tt, np.full((n, 2), -0.04), RISE, FLAT, FALL) + rng.normal(0, SIG, (n, NS))
    t_trig = 0.0123 * np.arange(1, n + 1)  # 81.3 Hz of trigger time
    pf = PulseFilter(pulseShape=[dict(pheight=-0.04)], threshold=0.5, Nraw1=30, rate_history_interval=1.0,
                     rate_history_length=10)
    pf.name = "pf"
    pf.start(a, RunInfo(1.0e9, str(tmp_path), extra={"stamp": "000101-000000"}))
    for i in range(0, n, 100):
        pf.process(make_batch(a, v[i:i + 100, None, :], first_event=i + 1, t_trigger=t_trig[i:i + 100]))
        if i == 100:
            pf.command("Reset", 1)
    r = pf.results()
    assert r["Accepted_RBV"] == 200 and r["DoublePulses_RBV"] == 100  # after the reset only
    closed = np.isfinite(r["RateHistory_RBV"])
    # every bin that is closed counts the accepted events whose trigger time falls in it
    bins = np.floor(t_trig / 1.0)
    strict = 0
    for rate, start in zip(r["RateHistory_RBV"][closed], r["RateHistoryTime_RBV"][closed], strict=True):
        if start < t_trig[200]:
            continue  # bin begun before the reset: partly counted
        assert rate == np.sum(bins == start) / 1.0
        strict += 1
    assert strict >= 1
    out = pf.finish()
    dbl = np.load(out["doubles_raw_files"][0])
    assert len(dbl["event"]) == 200  # all double pulses of the run, the reset does not touch files
    acc_raw = np.load(out["accepted_raw_files"][0])
    assert np.array_equal(acc_raw["event"], np.arange(1, 31)) and acc_raw["raw"].shape == (30, 1, NS)
    assert len(np.genfromtxt(out["accepted_file"], delimiter=",", names=True)) == n
