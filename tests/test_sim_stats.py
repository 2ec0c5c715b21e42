"""Statistical honesty of the simulated scope (research §4.3), with fixed seeds.

Each tolerance is derived in a comment next to its assertion. A fixed seed makes every test
deterministic; the tolerances say how unlikely a failure would be for a correct simulator.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sim_helpers import sim_scope, take

from picodaq_ioc.config.schema import SourceSection
from picodaq_ioc.scope.sim.sources import MuonStream
from picodaq_ioc.scope.types import ChannelConfig, Direction, TimebaseConfig, TriggerConfig


def _falling_edges(x, level):
    """[rows, cols] mask of samples where x falls through level (previous sample above)."""
    e = np.zeros(x.shape, dtype=bool)
    e[:, 1:] = (x[:, 1:] <= level) & (x[:, :-1] > level)
    return e


def test_block_mode_rate_intervals_and_dead_time():
    lam = 200.0  # Hz, true muon rate
    sc = sim_scope([SourceSection(kind="muon", channels=["A"], rate=lam, amplitude=-0.08, amplitude_spread=0.1)],
                seed=101, readout_overhead=1e-3)
    ap = sc.configure({"A": ChannelConfig(range_v=0.2)}, TimebaseConfig(4e-9, 200, 0.1, 1),
                      TriggerConfig(source="A", threshold_v=-0.03, direction=Direction.FALLING))
    caps = take(sc, 5000, timeout=1e6)
    t_samp = np.array([c.t_trigger[0] for c in caps])
    t_exact = t_samp + np.array([c.trigger_time_offset_s[0] for c in caps])
    # Non-paralysable dead time per trigger: rest of the window after the trigger sample, the
    # readout, and the pre-trigger fill after re-arming = n_samples*dt + readout.
    dead = ap.n_samples * ap.sample_interval_s + 1e-3
    dts = np.diff(t_samp)
    assert dts.min() >= dead * (1 - 1e-12)  # nothing can trigger inside the dead time
    assert dts.min() < dead + 1e-4  # ... and right after it, triggers do come (P(Exp<0.1 ms)=2 %)
    # Rate: intervals are dead + Exp(lam), so the expected count in T is T/(dead + 1/lam) =
    # T*lam/(1+lam*dead). The count of a renewal process has variance N/(1+lam*dead)^2 < N, so
    # 4*sqrt(N) is a conservative 4-sigma band (two-sided p < 6e-5).
    big_t = t_exact[-1] - t_exact[0]
    n = t_exact.size - 1
    n_exp = big_t * lam / (1 + lam * dead)
    assert abs(n - n_exp) < 4 * np.sqrt(n_exp)
    # Dead-time correction m/(1 - m*dead) recovers the true rate: sigma(lam_hat) ~ lam*(1+lam*dead)/sqrt(n)
    m = n / big_t
    lam_hat = m / (1 - m * dead)
    assert abs(lam_hat - lam) < 4 * lam * (1 + lam * dead) / np.sqrt(n)
    # KS: the intervals follow the exponential shifted by the dead time (p > 1 %), and clearly
    # not an unshifted exponential of the same mean (D ~ 1-exp(-lam*dead) = 0.18 -> p ~ 0).
    d_ex = np.diff(t_exact)
    assert stats.kstest(d_ex, "expon", args=(dead, 1 / lam)).pvalue > 0.01
    assert stats.kstest(d_ex, "expon", args=(0.0, d_ex.mean())).pvalue < 1e-6
    # Counting statistics in live time: the waiting times (trigger enabled -> trigger) are
    # Exp(lam) by memorylessness, so triggers form a Poisson process on the live-time axis.
    # Counts in 100 equal live-time bins: dispersion sum (c - mean)^2/mean ~ chi2(99); the
    # fixed seed must give a two-sided p-value in (0.001, 0.999).
    live_axis = np.cumsum([c.live_time_s for c in caps])
    counts, _ = np.histogram(live_axis, bins=100, range=(0.0, live_axis[-1]))
    disp = np.sum((counts - counts.mean()) ** 2) / counts.mean()
    p_chi2 = stats.chi2.cdf(disp, 99)
    assert 0.001 < p_chi2 < 0.999
    assert abs(len(caps) / live_axis[-1] - lam) < 4 * lam / np.sqrt(len(caps))  # rate in live time
    # Ground truth: candidates lost while dead ~ Poisson(lam * total dead time), 4 sigma.
    tr = sc.truth
    assert tr.n_triggers == len(caps) and tr.n_auto == 0
    lost_exp = lam * dead * len(caps)
    assert abs(tr.n_lost_dead - lost_exp) < 4 * np.sqrt(lost_exp)
    assert tr.n_candidates == tr.n_triggers + tr.n_lost_dead + tr.n_missed
    assert tr.n_missed <= 3  # only pulses hidden by noise could fail; with 6-sigma margins: none
    assert sum(c.live_time_s for c in caps) == np.float64(tr.live_time_s)


def test_rapid_block_segments_rearm_and_intervals():
    lam = 1e5  # Hz: a fast source, so the microsecond re-arm time matters
    sc = sim_scope([SourceSection(kind="muon", channels=["A"], rate=lam, amplitude=-0.08, amplitude_spread=0.1)],
                seed=202)
    ap = sc.configure({"A": ChannelConfig(range_v=0.2)}, TimebaseConfig(4e-9, 200, 0.1, 1000),
                      TriggerConfig(source="A", threshold_v=-0.03, direction=Direction.FALLING))
    caps = take(sc, 20, timeout=1e6)
    rearm = sc.sim.rearm_time
    shift = ap.n_samples * ap.sample_interval_s + rearm  # window + re-arm between segments
    within = []
    for c in caps:
        assert c.raw.shape == (1000, 1, 200) and c.n_segments == 1000
        assert np.all(np.diff(c.t_trigger) >= shift * (1 - 1e-9))  # strictly increasing, >= re-arm
        within.append(np.diff(c.t_trigger + c.trigger_time_offset_s))
    d = np.concatenate(within)
    # shifted exponential with the microsecond re-arm shift (KS p > 1 %), not the unshifted one
    # (KS distance ~ 1-exp(-lam*shift) = 0.16 with 2e4 intervals -> p ~ 0)
    assert stats.kstest(d, "expon", args=(shift, 1 / lam)).pvalue > 0.01
    assert stats.kstest(d, "expon", args=(0.0, d.mean())).pvalue < 1e-6
    # the readout dead time (ms) applies only between batches, not between segments
    gaps = np.array([caps[i + 1].t_armed - caps[i].t_ready for i in range(len(caps) - 1)])
    assert np.allclose(gaps, sc.readout_time(ap))
    assert gaps.min() > 100 * shift


def test_muon_decay_delays_follow_the_lifetime():
    tau = 2.1969811e-6
    src = SourceSection(kind="muon", channels=["A"], rate=20.0, amplitude=-0.1, amplitude_spread=0.1,
                        decay_fraction=0.5, lifetime=tau)
    sc = sim_scope([src], seed=303)
    # Kamiokanne geometry: 4000 samples over 16 us (4 ns), 5 % pre-trigger
    ap = sc.configure({"A": ChannelConfig(range_v=0.2)}, TimebaseConfig(16e-6 / 3999.9, 4000, 0.05, 100),
                      TriggerConfig(source="A", threshold_v=-0.04, direction=Direction.FALLING))
    dt, n_pre = ap.sample_interval_s, ap.n_pre
    assert dt == 4e-9 and n_pre == 200
    lc = int(round(-0.04 * ap.max_adc / 0.2))
    delays = []
    for c in take(sc, 30, timeout=1e6):
        e = _falling_edges(c.raw[:, 0, :].astype(np.int32), lc)
        e[:, : n_pre + 45] = False  # the trigger pulse itself (160 ns = 40 samples) is over
        has = e.any(axis=1)
        delays.append((e.argmax(axis=1)[has] - n_pre) * dt)
    d = np.concatenate(delays)
    a, b = 0.5e-6, 15e-6  # fit range as in picoCosmo: pulses separated, inside the window
    d = d[(d >= a) & (d <= b)]
    # expected count ~ 3000 triggers * 0.5 * (e^-a/tau - e^-b/tau) = 1200; require a real sample
    assert d.size > 900

    def trunc_cdf(t, tt):
        return (np.exp(-a / tt) - np.exp(-t / tt)) / (np.exp(-a / tt) - np.exp(-b / tt))

    # KS against the truncated Exp(tau): p > 1 %; a 30 % longer lifetime must be rejected
    # (KS distance ~ 0.1 with n ~ 1200 -> p < 1e-8).
    assert stats.kstest(d, lambda t: trunc_cdf(t, tau)).pvalue > 0.01
    assert stats.kstest(d, lambda t: trunc_cdf(t, 1.3 * tau)).pvalue < 1e-4
    # truth: the generated decay delays are exponential with the lifetime too
    dd = np.concatenate(sc.streams[0].decay_delays)
    assert stats.kstest(dd, "expon", args=(0.0, tau)).pvalue > 0.01


def test_sipm_crosstalk_ratio_and_peaks():
    p_ct, a1 = 0.15, -0.01
    src = SourceSection(kind="sipm", channels=["A"], rate=1e4, amplitude=a1, crosstalk=p_ct, gain_spread=0.05,
                        rise=1e-9, flat=4e-9, fall=30e-9)
    sc = sim_scope([src], seed=404, noise=0.3e-3)
    ap = sc.configure({"A": ChannelConfig(range_v=0.1)}, TimebaseConfig(2e-9, 100, 0.2, 1000),
                      TriggerConfig(source="A", threshold_v=-0.005, direction=Direction.FALLING))
    caps = take(sc, 20, timeout=1e6)
    v = np.concatenate([ap.to_volts("A", c.raw[:, 0], dtype=np.float64) for c in caps])
    n_pre = ap.n_pre
    peak = -v[:, n_pre: n_pre + 3].min(axis=1)  # the pulse is at its flat top right after the trigger
    npe = np.rint(peak / -a1).astype(int)
    n = npe.size
    assert n == 20000 and npe.min() >= 1
    # P(n>=2 | n>=1) = p for the geometric crosstalk model; binomial sigma = sqrt(p(1-p)/n) =
    # 0.0025; 4 sigma.
    ratio = np.mean(npe >= 2)
    assert abs(ratio - p_ct) < 4 * np.sqrt(p_ct * (1 - p_ct) / n)
    # P(n>=3)/P(n>=2) = p as well (fewer events: ~3000, sigma 0.0065)
    r32 = np.mean(npe >= 3) / np.mean(npe >= 2)
    assert abs(r32 - p_ct) < 4 * np.sqrt(p_ct * (1 - p_ct) / np.sum(npe >= 2))
    # finger spectrum: peaks at k * A1 (width: gain spread 5 % * sqrt(k), noise, 1 LSB = 0.8 mV)
    for k in (1, 2):
        assert abs(peak[npe == k].mean() - k * abs(a1)) < 0.1 * abs(a1)


def test_geiger_dead_time_rate_and_constant_amplitude():
    n_true, tau_gm = 5000.0, 100e-6
    src = SourceSection(kind="geiger", channels=["A"], rate=n_true, amplitude=1.0, rise=0.1e-6, flat=0.0,
                        fall=20e-6, dead_time=tau_gm)
    sc = sim_scope([src], seed=505, noise=1e-3)
    ap = sc.configure({"A": ChannelConfig(range_v=2.0)}, TimebaseConfig(1e-6, 2000, 0.0, 100),
                      TriggerConfig(enabled=False))  # free running: unbiased time samples
    dt = ap.sample_interval_s
    caps = take(sc, 30, timeout=1e6)
    x = np.concatenate([c.raw[:, 0, :] for c in caps]).astype(np.int32)
    lc = int(round(0.5 * ap.max_adc / 2.0))
    edge = np.zeros(x.shape, dtype=bool)
    edge[:, 1:] = (x[:, 1:] >= lc) & (x[:, :-1] < lc)
    rows, cols = np.nonzero(edge)
    same = rows[1:] == rows[:-1]
    gaps = (cols[1:] - cols[:-1])[same] * dt
    # no second pulse within the tube dead time (edges are sampled: allow one sample), and
    # intervals just above it do occur (P(Exp(n) < 5 us) = 2.5 % of ~1.7e4 intervals)
    assert gaps.min() >= tau_gm - dt
    assert gaps.min() < tau_gm + 5 * dt
    # measured rate m = n/(1 + n*tau) (non-paralysable); count variance <= mean -> 4 sigma band
    t_total = x.size * dt
    m_exp = n_true / (1 + n_true * tau_gm)
    count = int(edge.sum())
    assert abs(count - m_exp * t_total) < 4 * np.sqrt(m_exp * t_total)
    # constant amplitude: the 0.1 us rise is shorter than a sample, so the edge sample or the
    # next one lies on the 20 us RC tail within 1 us of the top: 0.95..1.0 V (noise 1 mV,
    # 1/2 LSB = 7.9 mV)
    ok = cols + 1 < x.shape[1]
    top = np.maximum(x[rows[ok], cols[ok]], x[rows[ok], cols[ok] + 1])
    pk = ap.to_volts("A", top[:, None], dtype=np.float64)[:, 0]
    assert np.all((pk > 0.94) & (pk < 1.01))


def test_coincident_panels_with_delays():
    src = SourceSection(kind="muon", channels=["A", "B", "C"], rate=50.0, amplitude=-0.08, amplitude_spread=0.1,
                        channel_delays=[0.0, 20e-9, 40e-9], jitter=1e-9)
    sc = sim_scope([src], seed=606)
    chans = {c: ChannelConfig(range_v=0.2) for c in "ABC"}
    ap = sc.configure(chans, TimebaseConfig(8e-9, 100, 0.2, 200),
                      TriggerConfig(source="A", threshold_v=-0.03, direction=Direction.FALLING))
    assert ap.sample_interval_s == 8e-9  # three channels on a 500 MS/s 2000A: 125 MS/s
    c = take(sc, 1, timeout=1e6)[0]
    lc = int(round(-0.03 * ap.max_adc / 0.2))
    pos = [_falling_edges(c.raw[:, i, :].astype(np.int32), lc).argmax(axis=1) for i in range(3)]
    # B and C cross 20 ns and 40 ns after A (2.5 and 5 samples of 8 ns; +-1 sample for the
    # sampling phase and the 1 ns jitter)
    lag_b = pos[1] - pos[0]
    lag_c = pos[2] - pos[0]
    assert np.all((lag_b >= 2) & (lag_b <= 4)) and np.all((lag_c >= 4) & (lag_c <= 6))
    assert np.all(pos[0] == ap.n_pre)


def test_sipm_high_threshold_explicit_and_windowed_parts():
    # Trigger at 2.5 p.e.: only n >= 3 dark counts are generated on the timeline (they can
    # fire the trigger); n < 3 are generated inside the sample windows. Both parts must add up
    # to the full dark-count process.
    lam, p_ct, a1 = 2e5, 0.2, -0.01
    src = SourceSection(kind="sipm", channels=["A"], rate=lam, amplitude=a1, crosstalk=p_ct, gain_spread=0.05,
                        rise=1e-9, flat=4e-9, fall=20e-9)
    sc = sim_scope([src], seed=707, noise=0.3e-3)
    ap = sc.configure({"A": ChannelConfig(range_v=0.1)}, TimebaseConfig(2e-9, 1000, 0.8, 500),
                      TriggerConfig(source="A", threshold_v=-0.025, direction=Direction.FALLING))
    assert not sc._scan and sc.streams[0].n_lo >= 2
    caps = take(sc, 10, timeout=1e6)
    v = np.concatenate([ap.to_volts("A", c.raw[:, 0], dtype=np.float64) for c in caps])
    n_pre = ap.n_pre
    npe = np.rint(-v[:, n_pre: n_pre + 3].min(axis=1) / -a1).astype(int)
    n = npe.size
    assert npe.min() >= 3  # every trigger is a pulse of at least 3 cells
    # geometric tail: P(n >= 4 | n >= 3) = p; binomial sigma sqrt(p(1-p)/n) with n = 5000; 4 sigma
    assert abs(np.mean(npe >= 4) - p_ct) < 4 * np.sqrt(p_ct * (1 - p_ct) / n)
    # all dark counts (any n) in the pre-trigger samples: leading edges through 0.5 p.e.
    # Expected lam * (pre-trigger time); Poisson, 4 sigma. The first 20 samples are skipped so
    # that an edge needs no sample before the window.
    pre = v[:, 20: n_pre - 10]
    lc = 0.5 * a1
    edges = int(np.sum((pre[:, 1:] <= lc) & (pre[:, :-1] > lc)))
    expect = lam * (pre.shape[1] - 1) * ap.sample_interval_s * n
    # pile-up within one pulse (~25 ns, lam*25ns = 0.5 %) merges edges: allowed for below
    assert expect > 1000
    assert abs(edges - expect * (1 - lam * 25e-9)) < 4 * np.sqrt(expect) + lam * 25e-9 * expect


def test_muon_capture_afterpulses_and_heights_from_the_generator():
    """The muon stream's physics options, on 200 000 generated muons (no scope needed).

    * stopping fraction 0.2 -> 40 000 stops; mu- share 1/(1 + 1.25) = 0.444; a mu- decays
      with probability 1.795/2.197 = 0.817: decays per muon 0.2 (0.556 + 0.444 * 0.817) =
      0.1837 (binomial error 0.0009, tolerance 4 errors); mu+ share of the decays 0.605;
      the mu- delays are Exp(1.795 us), the mu+ ones Exp(2.197 us) (KS p > 1e-3);
    * after-pulses: probability 0.05 per pulse (binomial error 0.0005, 4 errors), heights
      0.15 of their pulse;
    * split log-normal muon heights: median -0.18 V, quantiles p10/p90 at exp(-+1.2816 sigma)
      with sigma 0.85 / 0.56 (binomial quantile errors < 1 %, tolerance 3 %); decay-electron
      mean -0.145 V (log-normal, standard error 0.4 %).
    """
    src = SourceSection(kind="muon", channels=["A"], rate=1000.0, amplitude=-0.18, amplitude_spread=0.56,
                        amplitude_spread_low=0.85, decay_fraction=0.2, mu_ratio=1.25, lifetime_minus=1.795e-6,
                        decay_amplitude=-0.145, decay_amplitude_spread=0.6, afterpulse_probability=0.05,
                        afterpulse_delay=0.9e-6, afterpulse_spread=0.3e-6, afterpulse_amplitude=0.15,
                        tail="exponential", rise=15e-9, flat=8.5e-9, fall=69.2e-9)
    st = MuonStream(src, np.random.default_rng(77), 0)
    st.keep_truth = True
    n = 200_000
    t, amp, _, aux, _ = st._records(np.sort(np.random.default_rng(1).uniform(0, n / 1000.0, n)))
    prim, dec = aux == 0, (aux == 1) | (aux == 2)
    assert prim.sum() == n
    p_dec = 0.2 * (1.25 / 2.25 + (1 / 2.25) * 1.795 / 2.1969811)
    assert abs(dec.sum() / n - p_dec) < 4 * np.sqrt(p_dec * (1 - p_dec) / n)
    kinds = np.concatenate(st.decay_kinds)
    dd = np.concatenate(st.decay_delays)
    w = 1.25 / (1.25 + 1.795 / 2.1969811)
    assert abs(np.mean(kinds == 1) - w) < 4 * np.sqrt(w * (1 - w) / kinds.size)
    assert stats.kstest(dd[kinds == 1], "expon", args=(0.0, 2.1969811e-6)).pvalue > 1e-3
    assert stats.kstest(dd[kinds == 2], "expon", args=(0.0, 1.795e-6)).pvalue > 1e-3
    n_pulses = int(prim.sum() + dec.sum())
    ap = aux == 3
    assert abs(ap.sum() / n_pulses - 0.05) < 4 * np.sqrt(0.05 * 0.95 / n_pulses)
    assert np.all(np.abs(amp[ap]) < 0.15 * 0.18 * np.exp(5 * 0.56))
    q10, q50, q90 = np.quantile(-amp[prim], [0.1, 0.5, 0.9])
    assert abs(q50 / 0.18 - 1) < 0.03
    assert abs(q10 / (0.18 * np.exp(-1.2816 * 0.85)) - 1) < 0.03
    assert abs(q90 / (0.18 * np.exp(1.2816 * 0.56)) - 1) < 0.03
    assert abs(np.mean(-amp[dec]) / 0.145 - 1) < 0.03
    # the exponential tail: 90 -> 10 % in ln(9) * fall
    sh = st.shape
    assert sh.exp_tail and sh.crossing(np.array([0.1]), False)[0] - sh.crossing(np.array([0.9]), False)[0] == \
        pytest.approx(np.log(9) * 69.2e-9)
