"""Short soak (the CI variant of ``benchmarks/soak.py``): 2x10^5 events through the IOC on an
unpaced simulator with the pulse analysis and four CA clients; the counts must agree exactly
with the simulator's ground truth."""

from __future__ import annotations

import importlib.util
import json

import pytest
from reliability_helpers import REPO

pytestmark = [pytest.mark.ca, pytest.mark.slow]

N_EVENTS = 200_000


def _soak_module():
    spec = importlib.util.spec_from_file_location("picodaq_soak", REPO / "benchmarks" / "soak.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_short_soak_is_exact(tmp_path) -> None:
    soak = _soak_module()
    res = soak.soak(N_EVENTS, rate=20_000.0, segments=100, samples=200, n_buffers=1024, seed=3,
                    max_rate=20.0, sample_every=2.0, timeout=300.0, workdir=str(tmp_path))
    print(json.dumps({k: v for k, v in res.items() if k not in ("rss_samples", "client_updates")}))
    # exactly the requested events were delivered and analysed, none lost against the truth:
    # every segment the simulated scope accepted (candidates - lost to dead time - missed
    # + auto/free triggers) became one event, processed by the obligatory pulse analysis
    assert res["events_delivered"] == N_EVENTS
    assert res["lost"] == 0
    assert res["events_analysed"] == res["processed"] == N_EVENTS
    assert res["truth_accepted"] == res["truth_segments"] == N_EVENTS + res["discarded"]
    assert res["truth_lost_dead"] > 0  # the scope really ran into dead time at this rate
    assert res["exact"]
    # the live time of the buffer manager is the simulator's, to the last bit (sums of the
    # same per-capture values, in the same order)
    assert res["live_time_bm_s"] == res["live_time_truth_s"]
    assert res["mean_trigger_rate_hz"] == pytest.approx(res["rate_from_truth_hz"], rel=1e-12)
    # every one of the four CA clients kept receiving updates of every monitored PV
    assert len(res["client_updates"]) == 4
    for cl in res["client_updates"]:
        ups = cl["updates"]
        assert set(ups) == set(soak.CLIENT_PVS), cl
        assert ups["A:Waveform_RBV"] >= 5 and ups["Stats:Events_RBV"] >= 2, cl
        assert all(n >= 1 for n in ups.values()), cl
