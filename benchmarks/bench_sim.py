"""Simulated-scope throughput: ``python benchmarks/bench_sim.py``.

Prints one JSON line per figure (``figure``, ``case``, ``value``, ``unit``, ``method``).
Each case runs ``arm(); wait(); read()`` in a loop on an unpaced ``SimScope`` (realtime off,
host time not counted) and reports generated samples per second (segments x channels x
samples / wall time) and captures (``read()`` calls) per second; the median of
``--repeat`` runs.

Cases:

* ``rapid_2ch_200_muon``: 2 ch x 200 samples at 4 ns, rapid block of 1000 segments, muons
  at 100 kHz on both channels, 0.5 mV noise (the simulator's target: >= 20 M samples/s).
* ``rapid_2ch_200_quiet``: the same without sources or noise, trigger off (free running):
  the cheap path the buffer-manager benchmark uses.
* ``block_2ch_200_muon``: one segment per capture (block mode), muons at 200 Hz.
* ``block_2ch_200_quiet``: one segment per capture, no sources/noise, trigger off.
* ``kamiokanne_1ch_4000``: 1 ch x 4000 samples over 16 us, muons at 4 Hz, one per capture.
* ``sipm_1ch_100_rapid``: SiPM dark counts at 500 kHz with 8.7 % crosstalk, 1000 segments.

``samples_per_cpu_s`` divides by the process CPU time instead of the wall time, which is the
fairer figure on a machine shared with other processes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from picodaq_ioc.config.schema import SimulationSection, SourceSection  # noqa: E402
from picodaq_ioc.scope.sim import SimScope  # noqa: E402
from picodaq_ioc.scope.types import (  # noqa: E402
    ChannelConfig,
    Direction,
    TimebaseConfig,
    TriggerConfig,
)


def _case(name: str):
    muon2 = SourceSection(kind="muon", channels=["A", "B"], rate=1e5, amplitude=-0.08)
    trig = TriggerConfig(source="A", threshold_v=-0.02, direction=Direction.FALLING, auto_trigger_s=0.01)
    two = {"A": ChannelConfig(range_v=0.2), "B": ChannelConfig(range_v=0.2)}
    if name == "rapid_2ch_200_muon":
        return [muon2], 0.5e-3, two, TimebaseConfig(4e-9, 200, 0.1, 1000), trig
    if name == "rapid_2ch_200_quiet":
        return [], 0.0, two, TimebaseConfig(4e-9, 200, 0.1, 1000), TriggerConfig(enabled=False)
    if name == "block_2ch_200_muon":
        m = SourceSection(kind="muon", channels=["A", "B"], rate=200.0, amplitude=-0.08)
        return [m], 0.5e-3, two, TimebaseConfig(4e-9, 200, 0.1, 1), trig
    if name == "block_2ch_200_quiet":
        return [], 0.0, two, TimebaseConfig(4e-9, 200, 0.1, 1), TriggerConfig(enabled=False)
    if name == "kamiokanne_1ch_4000":
        m = SourceSection(kind="muon", channels=["A"], rate=4.0, amplitude=-0.04, decay_fraction=3e-4)
        return ([m], 0.5e-3, {"A": ChannelConfig(range_v=0.2)}, TimebaseConfig(16e-6 / 3999.9, 4000, 0.05, 1),
                TriggerConfig(source="A", threshold_v=-0.02, direction=Direction.FALLING, auto_trigger_s=5.0))
    if name == "sipm_1ch_100_rapid":
        s = SourceSection(kind="sipm", channels=["A"], rate=5e5, amplitude=-0.01, crosstalk=0.087,
                          rise=1e-9, flat=2e-9, fall=50e-9)
        return ([s], 0.3e-3, {"A": ChannelConfig(range_v=0.1)}, TimebaseConfig(2e-9, 100, 0.2, 1000),
                TriggerConfig(source="A", threshold_v=-0.005, direction=Direction.FALLING))
    raise KeyError(name)


CASES = ("rapid_2ch_200_muon", "rapid_2ch_200_quiet", "block_2ch_200_muon", "block_2ch_200_quiet",
         "kamiokanne_1ch_4000", "sipm_1ch_100_rapid")


def run(name: str, seconds: float) -> tuple[float, float, int, float]:
    sources, noise, chans, tb, trig = _case(name)
    sim = SimulationSection(seed=1, realtime=False, count_host_time=False, noise_rms=noise, sources=sources)
    sc = SimScope(sim)
    sc.open()
    ap = sc.configure(chans, tb, trig)
    per = ap.n_segments * len(ap.enabled_channels) * ap.n_samples
    for _ in range(3):  # warm-up
        sc.arm()
        sc.wait(1e9)
        sc.read()
    n = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    while True:
        sc.arm()
        assert sc.wait(1e9)
        sc.read()
        n += 1
        el = time.perf_counter() - t0
        if el >= seconds and n >= 3:
            break
    cpu = time.process_time() - c0
    return per * n / el, n / el, n, per * n / cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="wall time per run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--case", action="append", choices=CASES)
    args = ap.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    for name in args.case or CASES:
        res = [run(name, args.seconds) for _ in range(args.repeat)]
        sps = sorted(r[0] for r in res)
        cps = sorted(r[1] for r in res)
        method = (f"SimScope unpaced (realtime off, host time not counted), loop arm/wait/read for "
                  f"{args.seconds:g} s wall per run after 3 warm-up captures, median of {args.repeat} runs; "
                  f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} cpus, "
                  f"1-min load average {load:.2f} (CPU shared with other processes)")
        target = 20e6 if name == "rapid_2ch_200_muon" else None
        line = {"figure": "samples_per_s", "case": name, "value": round(float(np.median(sps))), "unit": "samples/s",
                "runs": [round(x) for x in sps], "target": target,
                "meets_target": None if target is None else bool(np.median(sps) >= target), "method": method}
        print(json.dumps(line), flush=True)
        cpu = sorted(r[3] for r in res)
        line = {"figure": "samples_per_cpu_s", "case": name, "value": round(float(np.median(cpu))),
                "unit": "samples/CPU-s", "runs": [round(x) for x in cpu],
                "method": method + "; samples / time.process_time of the loop (insensitive to CPU sharing)"}
        print(json.dumps(line), flush=True)
        line = {"figure": "captures_per_s", "case": name, "value": round(float(np.median(cps)), 1),
                "unit": "captures/s", "runs": [round(x, 1) for x in cps], "method": method}
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
