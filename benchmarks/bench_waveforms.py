"""Waveform serving benchmark: 8 pyepics clients x 4 channels x 4000 samples.

Method
------
The IOC (``python -m picodaq_ioc``) runs in a subprocess on its own port on 127.0.0.1 with
the simulator (PicoScope 2000a, channels A-D enabled, 4000 samples, real-time paced muon
pulses on all four channels). ``Waveform:MaxRate`` is set to the target publish rate.
Eight client *processes* (one libca context each, i.e. eight CA circuits on the IOC)
monitor ``A..D:Waveform_RBV`` (float32, 16 kB each) with pyepics and record, per update,
the receive time and the PV's timestamp (set by the IOC when it took the event).

Per scenario, over a measuring window after a warm-up:

- ``delivered_hz``: waveform updates per second and channel received by each client (mean
  over clients and channels; min also reported);
- ``published_hz``: ``ArrayCounter_RBV`` increments per second (what the IOC offered);
- ``drops``: frames the IOC published during a client's window (``ArrayCounter_RBV``
  values, which carry the frame's timestamp) whose waveform never reached the client,
  summed over clients and channels;
- ``latency_p50_ms`` / ``latency_p95_ms``: receive time - PV timestamp (same host clock);
- ``ioc_rss_mb`` start/end/max: resident memory of the IOC process (psutil).

Scenarios: ``nominal`` (trigger rate ~100 Hz > MaxRate 50 Hz) and ``overload`` (trigger
rate ~2 kHz, i.e. 40x the publish rate: "latest event wins" must keep the delivered rate
>= 90 % of MaxRate and memory bounded).

Output: one JSON line per figure on stdout. Run: ``python benchmarks/bench_waveforms.py``
(about a minute; ``--window`` to change the measuring time).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
CHANNELS = ("A", "B", "C", "D")

CLIENT = textwrap.dedent(r'''
    import json, sys, time
    from epics import ca
    prefix, warmup, window = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    recs = {c: [] for c in "ABCD"}
    counter = []
    def make_cb(c):
        def cb(pvname=None, value=None, timestamp=None, **kw):
            recs[c].append((time.time(), timestamp, len(value)))
        return cb
    def counter_cb(value=None, timestamp=None, **kw):
        counter.append((time.time(), timestamp, int(value)))
    # low-level pyepics (libca) subscriptions, created after the channel connected: the
    # PV(auto_monitor=True, callback=...) constructor occasionally (~1 in 20 clients here)
    # never created the last of four subscriptions
    keep = []
    for name, cb in [(c + ":Waveform_RBV", make_cb(c)) for c in "ABCD"] + [("ArrayCounter_RBV", counter_cb)]:
        chid = ca.create_channel(prefix + name, connect=False, auto_cb=False)
        if not ca.connect_channel(chid, timeout=10):
            print(json.dumps({"error": "connect " + name})); sys.exit(1)
        keep.append(ca.create_subscription(chid, use_time=True, callback=cb, count=0))
    t_conn = time.time()
    while time.time() < t_conn + 10 and not all(recs[c] for c in "ABCD"):
        time.sleep(0.02)  # every monitor delivered its first update
    print(json.dumps({"ready": True, "first": {c: len(r) for c, r in recs.items()}}), flush=True)
    t_start = time.time() + warmup
    t_end = t_start + window
    while time.time() < t_end + 0.5:
        time.sleep(0.05)
    # frames published in the window: ArrayCounter_RBV updates (same timestamp as the
    # waveforms of that frame); a counter value never seen counts as dropped everywhere
    frames = [x for x in counter if t_start <= x[0] < t_end]
    k0, k1 = (frames[0][2], frames[-1][2]) if frames else (0, -1)
    n_frames = k1 - k0 + 1
    stamps = {x[1] for x in frames}
    out = {"frames": n_frames, "counter_missed": n_frames - len(frames)}
    for c, r in recs.items():
        got = {x[1] for x in r}
        sel = [x for x in r if t_start <= x[0] < t_end]
        lat = [1e3 * (x[0] - x[1]) for x in sel]
        out[c] = {"n": len(sel), "lat": lat, "drops": n_frames - len(stamps & got)}
    print(json.dumps({"t_start": t_start, "t_end": t_end, "channels": out}), flush=True)
    for k in keep:
        ca.clear_subscription(k[2])
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_env(port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "EPICS_CA_AUTO_ADDR_LIST": "NO", "EPICS_CA_ADDR_LIST": f"127.0.0.1:{port}",
        "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1", "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1", "EPICS_PVA_AUTO_ADDR_LIST": "NO",
        "EPICS_PVA_ADDR_LIST": "127.0.0.1", "EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1",
        "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO", "EPICS_PVAS_BEACON_ADDR_LIST": "127.0.0.1",
        "EPICS_CA_SERVER_PORT": str(port), "EPICS_CA_MAX_ARRAY_BYTES": "100000000",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def config(rate: float) -> dict:
    return {
        "device": {"backend": "sim", "model": "2000a"},
        "channels": {c: {"range": 0.2, "coupling": "DC"} for c in CHANNELS},
        "timebase": {"sample_interval": 4.0e-9, "samples": 4000, "pretrigger": 0.1},
        "trigger": {"source": "A", "level": -0.02, "direction": "Falling", "auto_timeout": 0.1},
        "buffer": {"n_buffers": 64},
        "simulation": {"seed": 11, "realtime": True,
                       "sources": [{"kind": "muon", "channels": list(CHANNELS), "rate": rate,
                                    "amplitude": -0.08}]},
    }


class Control:
    """The parent's own CA channels (pyepics low-level API: quiet while the IOC starts)."""

    def __init__(self) -> None:
        from epics import ca  # noqa: PLC0415

        self.ca = ca
        self.chids: dict[str, object] = {}

    def _chid(self, pv: str, timeout: float):
        chid = self.chids.get(pv)
        if chid is None:
            chid = self.chids[pv] = self.ca.create_channel(pv, connect=False, auto_cb=False)
        if not self.ca.connect_channel(chid, timeout=timeout):
            return None
        return chid

    def get(self, pv: str, timeout: float = 10.0):
        chid = self._chid(pv, timeout)
        return None if chid is None else self.ca.get(chid, timeout=timeout)

    def put(self, pv: str, value) -> None:
        chid = self._chid(pv, 10.0)
        if chid is None or self.ca.put(chid, value, wait=True, timeout=10.0) != 1:
            raise RuntimeError(f"caput {pv} {value} failed")


@dataclass
class Window:
    """What one measuring window over ``n`` client processes gave."""

    results: list[dict]  # one JSON record per client (see CLIENT)
    seconds: float
    published_hz: float  # ArrayCounter_RBV increments per second
    cpu_cores: float  # server process CPU time / wall time over the window
    rss0: float
    rss1: float
    rss_max: float


def measure(prefix: str, env: dict[str, str], server: psutil.Process, ctl: Control, n_clients: int,
            warmup: float, window: float) -> Window:
    """Start ``n_clients`` CLIENT processes, wait until each got its first updates, let them run
    ``warmup`` s, then measure the server's CPU and memory over ``window`` s; returns every
    client's record. The clients are stopped before returning."""
    rss0 = server.memory_info().rss
    clients: list[subprocess.Popen] = []
    try:
        for _ in range(n_clients):
            clients.append(subprocess.Popen([sys.executable, "-c", CLIENT, prefix, str(warmup), str(window)],
                                            env=env, stdout=subprocess.PIPE, text=True))
        for c in clients:
            first = json.loads(c.stdout.readline())["first"]  # ready
            if not all(first.values()):
                print(f"{prefix}: a client got no first update: {first}", file=sys.stderr)
        time.sleep(warmup)  # benchmark warm-up period (not a wait for a condition)
        c0, t0 = ctl.get(prefix + "ArrayCounter_RBV"), time.time()
        cpu0 = sum(server.cpu_times()[:2])
        rss_max = rss0
        t_end = t0 + window
        while time.time() < t_end:
            rss_max = max(rss_max, server.memory_info().rss)
            time.sleep(0.2)
        c1, t1 = ctl.get(prefix + "ArrayCounter_RBV"), time.time()
        cpu1 = sum(server.cpu_times()[:2])
        rss1 = server.memory_info().rss
        results = [json.loads(c.stdout.readline()) for c in clients]
    finally:
        for c in clients:
            if c.poll() is None:
                c.terminate()
            c.wait(10)
    return Window(results=results, seconds=window, published_hz=(c1 - c0) / (t1 - t0),
                  cpu_cores=(cpu1 - cpu0) / (t1 - t0), rss0=rss0, rss1=rss1, rss_max=rss_max)


def delivery_figures(base: dict, w: Window, max_rate: float) -> list[dict]:
    """Delivered rate (mean, slowest client), drops and latency of a window."""
    n = np.array([[r["channels"][c]["n"] for c in CHANNELS] for r in w.results], dtype=float)
    got_hz = n / w.seconds
    per_client = got_hz.mean(axis=1)
    lat = np.concatenate([np.array(r["channels"][c]["lat"]) for r in w.results for c in CHANNELS])
    drops = int(sum(r["channels"][c]["drops"] for r in w.results for c in CHANNELS))
    frames = [r["channels"]["frames"] for r in w.results]
    return [
        {**base, "figure": "published_hz", "value": round(w.published_hz, 2)},
        {**base, "figure": "delivered_hz_mean", "value": round(float(got_hz.mean()), 2)},
        {**base, "figure": "delivered_hz_min", "value": round(float(got_hz.min()), 2)},
        {**base, "figure": "delivered_fraction_of_max_rate", "value": round(float(got_hz.mean()) / max_rate, 3)},
        {**base, "figure": "slowest_client_fraction_of_mean",
         "value": round(float(per_client.min() / max(per_client.mean(), 1e-9)), 3)},
        {**base, "figure": "drops", "value": drops,
         "note": f"frames published in each client's window ({min(frames)}..{max(frames)}, from "
                 "ArrayCounter_RBV) whose waveform never arrived, summed over clients x channels"},
        {**base, "figure": "latency_p50_ms", "value": round(float(np.percentile(lat, 50)), 2)},
        {**base, "figure": "latency_p95_ms", "value": round(float(np.percentile(lat, 95)), 2)},
        {**base, "figure": "server_cpu_cores", "value": round(w.cpu_cores, 3)},
    ]


def scenario(name: str, trigger_rate: float, max_rate: float, n_clients: int, warmup: float,
             window: float, tmp: Path) -> list[dict]:
    port = free_port()
    env = loopback_env(port)
    os.environ.update({k: v for k, v in env.items() if k.startswith("EPICS_")})
    import epics  # noqa: PLC0415

    epics.ca.clear_cache()
    tmp = Path(tmp)
    cfg_path = tmp / f"{name}.yaml"
    cfg_path.write_text(yaml.safe_dump(config(trigger_rate)))
    prefix = f"BW{port}:"
    log = open(tmp / f"{name}.log", "w")
    ioc = subprocess.Popen([sys.executable, "-m", "picodaq_ioc", "--config", str(cfg_path), "--prefix", prefix,
                            "--max-rate", str(max_rate), "--no-autosave",
                            os.environ.get("BENCH_VERBOSITY", "-v") if os.environ.get("BENCH_KEEP_LOGS") else "-q"], env=env, stdout=log,
                           stderr=subprocess.STDOUT)
    try:
        ctl = wait_ready(ioc, prefix, lambda: (Path(tmp) / f"{name}.log").read_text())
        ctl.put(prefix + "Acquire", 1)
        ev0, t_ev0 = ctl.get(prefix + "Stats:Events_RBV"), time.time()
        w = measure(prefix, env, psutil.Process(ioc.pid), ctl, n_clients, warmup, window)
        ev1, t_ev1 = ctl.get(prefix + "Stats:Events_RBV"), time.time()
        ctl.put(prefix + "Acquire", 0)
    finally:
        epics.ca.clear_cache()  # disconnect the control channels before the IOC goes away
        ioc.send_signal(signal.SIGTERM)
        try:
            ioc.wait(30)
        except subprocess.TimeoutExpired:
            ioc.kill()
        log.close()

    method = (f"{n_clients} pyepics client processes x {len(CHANNELS)} channels x 4000 float32 samples, "
              f"sim trigger rate {trigger_rate:g} Hz, Waveform:MaxRate {max_rate:g} Hz, window {window:g} s "
              f"after {warmup:g} s warm-up, 127.0.0.1, 2-core box shared with other jobs "
              f"(1-min load average {os.getloadavg()[0]:.1f})")
    base = {"bench": "waveforms", "scenario": name, "method": method}
    return [
        {**base, "figure": "event_rate_hz", "value": round((ev1 - ev0) / (t_ev1 - t_ev0), 1),
         "note": "events over the clients' start, warm-up and window"},
        *delivery_figures(base, w, max_rate),
        {**base, "figure": "ioc_rss_mb_start", "value": round(w.rss0 / 2**20, 1)},
        {**base, "figure": "ioc_rss_mb_end", "value": round(w.rss1 / 2**20, 1)},
        {**base, "figure": "ioc_rss_mb_max", "value": round(w.rss_max / 2**20, 1)},
    ]


def wait_ready(proc: subprocess.Popen, prefix: str, log_text, timeout: float = 60.0) -> Control:
    """Control channels once ``<prefix>ArrayCounter_RBV`` answers (RuntimeError if the server died)."""
    deadline = time.monotonic() + timeout
    ctl = Control()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyepics warns at every timed-out readiness poll
        while ctl.get(prefix + "ArrayCounter_RBV", timeout=0.5) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {log_text()}")
    return ctl


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--max-rate", type=float, default=50.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--window", type=float, default=10.0)
    p.add_argument("--scenario", choices=("nominal", "overload", "all"), default="all")
    args = p.parse_args(argv)
    scenarios = {"nominal": 100.0, "overload": 2000.0}
    keep = os.environ.get("BENCH_KEEP_LOGS")  # a directory for the IOC logs (debugging)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = keep or tmp_dir
        Path(tmp).mkdir(parents=True, exist_ok=True)
        for name, rate in scenarios.items():
            if args.scenario not in (name, "all"):
                continue
            for rec in scenario(name, rate, args.max_rate, args.clients, args.warmup, args.window, Path(tmp)):
                print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
