"""``caput -c PICO:Acquire 1`` with ``NumEvents`` N completes only when every obligatory
consumer processed N events *and* the statistics and analysis PVs show the final figures, so a
client reading right after the put-callback sees consistent numbers (ophyd's ``trigger()``
relies on this). Over real CA with the EPICS base tools, the pulse analysis on the simulator."""

from __future__ import annotations

import copy

import pytest
import yaml
from ca_tools import caget, caput
from conftest import REPO

pytestmark = pytest.mark.ca


def _config() -> dict:
    """configs/muon_lifetime.yaml at 100 Hz (realistic-rate runs of N events take too long)."""
    cfg = copy.deepcopy(yaml.safe_load((REPO / "configs" / "muon_lifetime.yaml").read_text()))
    cfg["simulation"]["sources"][0]["rate"] = 100.0
    return cfg


def test_results_final_when_acquire_put_completes(ioc_factory) -> None:
    h = ioc_factory(_config(), ["--no-autosave", "--max-rate", "10"])
    for n in (37, 23, 61, 12, 45):
        r = caput(h.env, h.pv("NumEvents"), n, callback=True)
        assert r.returncode == 0, r.stderr
        r = caput(h.env, h.pv("Acquire"), 1, callback=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        # read immediately after the put-callback: no waiting, no polling
        got = {name: int(caget(h.env, h.pv(name))) for name in
               ("Stats:Events_RBV", "Stats:Processed_RBV", "Pulse:Events_RBV", "Rates:Events_RBV")}
        assert got == dict.fromkeys(got, n), (n, got)
