"""Default simulated detectors for picoDAQ/picoCosmo files that have no ``simulation:`` section.

The original files describe a scope, not a signal, so the simulated scope would see only
noise. When a file names its detector (``Kanne.daq``, ``PMpulse.yaml``, ``Cosmo.daq``,
``SiPMpulse.yaml``, ``GammaCounter.daq`` ...), :func:`default_simulation` supplies a realistic
source for it, and the loader says so in a notice that points to the ``simulation:`` section:

* ``kanne`` — the Kamiokanne of ``configs/kamiokanne_real.yaml`` (calibrated to a real
  18.8-day run; a test checks that both stay identical);
* ``cosmo`` — CosMO scintillator panels with SiPM read-out: muons on every listed channel,
  2 ns apart, ~6.6 Hz (picoCosmo's CosMO-panel run: 571 529 accepted in a day), a few
  stopping in the panels;
* ``gamma`` — the GDK 101 PIN-diode gamma counter of ``GammaCounter.daq``: slow positive
  pulses (55 us rise, 100 us fall), 0.6 Hz (14 639 accepted in 24 361 s).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["DETECTORS", "default_simulation", "detector_kind"]

#: detector kind -> (words in a file name that name it, description)
DETECTORS: dict[str, tuple[tuple[str, ...], str]] = {
    "kanne": (("kanne", "kamiokanne", "pmpulse"), "Kamiokanne water-Cherenkov detector (muons, decays)"),
    "cosmo": (("cosmo", "sipm", "panel"), "CosMO scintillator panels (coincident muons)"),
    "gamma": (("gamma",), "GDK 101 gamma counter (slow positive pulses)"),
}

_KANNE_MUON: dict[str, Any] = {
    "kind": "muon", "rate": 4.0, "amplitude": -0.182, "amplitude_spread": 0.56, "amplitude_spread_low": 0.85,
    "rise": 15.0e-9, "flat": 8.5e-9, "fall": 69.2e-9, "tail": "exponential", "decay_fraction": 1.1e-4,
    "lifetime": 2.1969811e-6, "mu_ratio": 1.25, "lifetime_minus": 1.795e-6, "decay_amplitude": -0.145,
    "decay_amplitude_spread": 0.6, "afterpulse_probability": 1.0e-4, "afterpulse_delay": 0.9e-6,
    "afterpulse_spread": 0.3e-6, "afterpulse_amplitude": 0.15,
}


def detector_kind(names: Iterable[str | Path | None]) -> str | None:
    """The detector a set of file names names (first match in ``names`` order), or None."""
    for name in names:
        if not name:
            continue
        stem = Path(str(name)).name.lower()
        for kind, (words, _) in DETECTORS.items():
            if any(w in stem for w in words):
                return kind
    return None


def default_simulation(kind: str, channels: list[str], trigger: str | None) -> dict[str, Any]:
    """A native ``simulation:`` section for detector ``kind`` on the file's channels."""
    trg = trigger if trigger in channels else (channels[0] if channels else "A")
    if kind == "kanne":
        return {"noise_rms": 1.9e-3, "sources": [{**_KANNE_MUON, "channels": [trg]}]}
    if kind == "cosmo":
        chans = channels or ["A"]
        return {"noise_rms": 0.8e-3, "sources": [{
            "kind": "muon", "channels": chans, "rate": 6.6, "amplitude": -0.08, "amplitude_spread": 0.3,
            "rise": 20.0e-9, "flat": 10.0e-9, "fall": 150.0e-9,
            "channel_delays": [2.0e-9 * i for i in range(len(chans))], "jitter": 1.0e-9,
            "decay_fraction": 1.0e-3, "lifetime": 2.1969811e-6}]}
    if kind == "gamma":
        return {"noise_rms": 2.0e-3, "sources": [{
            "kind": "geiger", "channels": [trg], "rate": 0.6, "amplitude": 0.15, "amplitude_spread": 0.3,
            "rise": 55.0e-6, "flat": 15.0e-6, "fall": 100.0e-6, "dead_time": 1.0e-3}]}
    raise ValueError(f"unknown detector kind {kind!r}; allowed: {', '.join(DETECTORS)}")
