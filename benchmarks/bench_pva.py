"""PV Access against Channel Access: the same 8-client waveform load, interleaved in one run.

Method
------
One IOC (``python -m picodaq_ioc --pva``) on 127.0.0.1 serves both protocols from the same
PVs: simulator, channels A-D, 4000 float32 samples each (16 kB per waveform), real-time
muon pulses at ``--trigger-rate`` (well above every publish rate, so ``Waveform:MaxRate``
alone sets the offered rate). For each publish rate of the ladder the run measures, in
alternating order (CA first at even steps, PVA first at odd ones, so drifts of the shared
machine hit both alike):

- ``idle``: no client; the IOC's CPU for producing the frames (caproto writes plus PVA posts,
  paid whichever protocol is used);
- ``ca``: 8 client processes, pyepics/libca monitors of ``A..D:Waveform_RBV`` and
  ``ArrayCounter_RBV`` (the client of ``bench_waveforms.py``);
- ``pva``: 8 client processes, p4p monitors of the same PVs over PV Access.

Per case over a window after a warm-up: IOC CPU (``psutil`` user+system of all its threads,
% of one core), delivered waveform updates per second and channel (mean and min over clients
and channels), drops (frames the IOC published in the client's window, per
``ArrayCounter_RBV`` time stamps, whose waveform never arrived; summed over clients x
channels), latency receive time - PV time stamp (p50/p95, same host clock), IOC RSS, and
**CPU per delivered MB** = IOC CPU seconds / MB delivered to all clients (total, and
marginal: minus the idle case's CPU per published frame times the frames published, i.e.
the cost of serving alone). The highest rate each protocol sustains is the highest
ladder rate at which the mean delivered rate is >= 95 % of ``Waveform:MaxRate``.

Output: one JSON line per figure. Run: ``python benchmarks/bench_pva.py`` (~3 min;
``--rates 50 100`` and ``--window`` to shorten). Needs p4p (the ``pva`` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_waveforms import CHANNELS, CLIENT, Control, config, free_port, loopback_env  # noqa: E402

WAVEFORM_BYTES = 4000 * 4


def pva_client(prefix: str, warmup: float, window: float) -> None:
    """Body of one PVA client process (``--pva-client``): prints a ready line, then the figures
    of its window in the format of ``bench_waveforms``' CA client."""
    from p4p.client.thread import Context  # noqa: PLC0415

    ctx = Context("pva")
    recs: dict[str, list] = {c: [] for c in CHANNELS}
    counter: list = []

    def on_wave(c):
        def cb(v):
            if not isinstance(v, Exception):
                recs[c].append((time.time(), v.timestamp, len(v)))
        return cb

    def on_counter(v):
        if not isinstance(v, Exception):
            counter.append((time.time(), v.timestamp, int(v)))

    subs = [ctx.monitor(f"{prefix}{c}:Waveform_RBV", on_wave(c)) for c in CHANNELS]
    subs.append(ctx.monitor(prefix + "ArrayCounter_RBV", on_counter))
    t_conn = time.time()
    while time.time() < t_conn + 10 and not all(recs.values()):
        time.sleep(0.02)
    print(json.dumps({"ready": True, "first": {c: len(r) for c, r in recs.items()}}), flush=True)
    t_start = time.time() + warmup
    t_end = t_start + window
    time.sleep(max(0.0, t_end + 0.5 - time.time()))
    for s in subs:
        s.close()
    print(json.dumps({"t_start": t_start, "t_end": t_end,
                      "channels": window_figures(recs, counter, t_start, t_end)}), flush=True)
    ctx.close()


def window_figures(recs: dict[str, list], counter: list, t_start: float, t_end: float) -> dict:
    """Updates, latencies and drops per channel in ``[t_start, t_end)`` (receive time)."""
    seen = [x for x in counter if t_start <= x[0] < t_end]
    first, last = (seen[0][2], seen[-1][2]) if seen else (0, -1)
    published = last - first + 1
    stamps = {x[1] for x in seen}
    res: dict = {"frames": published, "counter_missed": published - len(seen)}
    for c, r in recs.items():
        inside = [x for x in r if t_start <= x[0] < t_end]
        res[c] = {"n": len(inside), "lat": [1e3 * (x[0] - x[1]) for x in inside],
                  "drops": published - len(stamps & {x[1] for x in r})}
    return res


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        port, self.pva_tcp, self.pva_udp = free_port(), free_port(), free_port()
        self.env = loopback_env(port)
        self.env.update({"EPICS_PVAS_SERVER_PORT": str(self.pva_tcp),
                         "EPICS_PVAS_BROADCAST_PORT": str(self.pva_udp),
                         "EPICS_PVA_ADDR_LIST": f"127.0.0.1:{self.pva_udp}",
                         "EPICS_PVA_BROADCAST_PORT": str(self.pva_udp)})
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("EPICS_")})
        self.prefix = f"BP{port}:"
        cfg = tmp / "bench_pva.yaml"
        cfg.write_text(yaml.safe_dump(config(args.trigger_rate)))
        self.log = open(tmp / "ioc.log", "w")
        self.ioc = subprocess.Popen([sys.executable, "-m", "picodaq_ioc", "--config", str(cfg), "--prefix",
                                     self.prefix, "--pva", "--no-autosave", "-q"], env=self.env,
                                    stdout=self.log, stderr=subprocess.STDOUT)
        self.proc = psutil.Process(self.ioc.pid)
        self.ctl = Control()
        deadline = time.monotonic() + 90
        while self.ctl.get(self.prefix + "State_RBV", timeout=0.5) is None:
            if self.ioc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"IOC did not start: {(tmp / 'ioc.log').read_text()}")
        self.ctl.put(self.prefix + "Acquire", 1)

    def close(self) -> None:
        import epics  # noqa: PLC0415

        epics.ca.clear_cache()
        self.ioc.send_signal(signal.SIGTERM)
        try:
            self.ioc.wait(30)
        except subprocess.TimeoutExpired:
            self.ioc.kill()
        self.log.close()

    def case(self, proto: str, rate: float) -> dict:
        a = self.args
        self.ctl.put(self.prefix + "Waveform:MaxRate", rate)
        clients = []
        try:
            for _ in range(a.clients if proto != "idle" else 0):
                argv = ([sys.executable, "-c", CLIENT] if proto == "ca"
                        else [sys.executable, __file__, "--pva-client"])
                clients.append(subprocess.Popen([*argv, self.prefix, str(a.warmup), str(a.window)],
                                                env=self.env, stdout=subprocess.PIPE, text=True))
            for c in clients:
                json.loads(c.stdout.readline())  # ready: every monitor has its first update
            time.sleep(a.warmup)  # benchmark warm-up period (not a wait for a condition)
            c0 = self.ctl.get(self.prefix + "ArrayCounter_RBV")
            cpu0, t0 = sum(self.proc.cpu_times()[:2]), time.time()
            rss_max = 0
            while time.time() < t0 + a.window:
                rss_max = max(rss_max, self.proc.memory_info().rss)
                time.sleep(0.2)
            cpu1, t1 = sum(self.proc.cpu_times()[:2]), time.time()
            c1 = self.ctl.get(self.prefix + "ArrayCounter_RBV")
            results = [json.loads(c.stdout.readline()) for c in clients]
        finally:
            for c in clients:
                if c.poll() is None:
                    c.terminate()
                c.wait(10)
        out = {"proto": proto, "rate": rate, "cpu_pct": 100.0 * (cpu1 - cpu0) / (t1 - t0),
               "cpu_s": cpu1 - cpu0, "published_hz": (c1 - c0) / (t1 - t0), "rss_mb": rss_max / 2**20}
        if results:
            n = np.array([[r["channels"][c]["n"] for c in CHANNELS] for r in results], dtype=float)
            lat = np.concatenate([np.asarray(r["channels"][c]["lat"]) for r in results for c in CHANNELS])
            out.update(delivered_hz_mean=float(n.mean() / a.window), delivered_hz_min=float(n.min() / a.window),
                       drops=int(sum(r["channels"][c]["drops"] for r in results for c in CHANNELS)),
                       latency_p50_ms=float(np.percentile(lat, 50)) if lat.size else float("nan"),
                       latency_p95_ms=float(np.percentile(lat, 95)) if lat.size else float("nan"),
                       delivered_mb=float(n.sum() * WAVEFORM_BYTES / 1e6))
        return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--pva-client"]:
        pva_client(argv[1], float(argv[2]), float(argv[3]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--rates", type=float, nargs="+", default=[25.0, 50.0, 100.0, 200.0])
    p.add_argument("--trigger-rate", type=float, default=500.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--window", type=float, default=6.0)
    args = p.parse_args(argv)
    method = (f"one IOC serving CA and PVA; {args.clients} client processes x {len(CHANNELS)} channels x 4000 "
              f"float32; sim trigger rate {args.trigger_rate:g} Hz; window {args.window:g} s after "
              f"{args.warmup:g} s warm-up; CA/PVA order alternating per rate; 127.0.0.1, 2-core box shared "
              f"with other jobs")
    sustained = {"ca": 0.0, "pva": 0.0}  # delivered >= 95 % of Waveform:MaxRate
    sustained_pub = {"ca": 0.0, "pva": 0.0}  # delivered >= 95 % of what the IOC published
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(args, Path(tmp))
        try:
            for i, rate in enumerate(args.rates):
                idle = bench.case("idle", rate)
                order = ("ca", "pva") if i % 2 == 0 else ("pva", "ca")
                for proto in order:
                    r = bench.case(proto, rate)
                    mb = r.get("delivered_mb") or float("nan")
                    r["cpu_ms_per_mb"] = 1e3 * r["cpu_s"] / mb
                    # serving cost: minus what producing the same number of frames cost without clients
                    idle_per_frame = idle["cpu_s"] / max(idle["published_hz"] * args.window, 1.0)
                    serving_s = r["cpu_s"] - idle_per_frame * r["published_hz"] * args.window
                    r["marginal_cpu_ms_per_mb"] = 1e3 * serving_s / mb
                    r["idle_cpu_pct"] = idle["cpu_pct"]
                    r["delivered_fraction"] = r["delivered_hz_mean"] / rate
                    r["delivered_of_published"] = r["delivered_hz_mean"] / max(r["published_hz"], 1e-9)
                    if r["delivered_fraction"] >= 0.95:
                        sustained[proto] = max(sustained[proto], rate)
                    if r["delivered_of_published"] >= 0.95 and r["drops"] <= 0.05 * r["published_hz"] * \
                            args.window * args.clients * len(CHANNELS):
                        sustained_pub[proto] = max(sustained_pub[proto], r["published_hz"])
                    rec = {"bench": "pva", "method": method, "load_avg_1min": round(os.getloadavg()[0], 1),
                           **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}}
                    print(json.dumps(rec), flush=True)
        finally:
            bench.close()
    for proto in ("ca", "pva"):
        print(json.dumps({"bench": "pva", "figure": "highest_rate_95pct_delivery_hz", "proto": proto,
                          "value": sustained[proto], "of_published_hz": round(sustained_pub[proto], 1),
                          "ladder": args.rates, "method": method,
                          "note": "value: highest MaxRate delivered at >= 95 %; of_published_hz: highest "
                                  "published rate delivered at >= 95 % with <= 5 % drops"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
