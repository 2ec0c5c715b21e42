"""Soak test: the IOC on the simulator at a high trigger rate with the pulse analysis and four
Channel Access clients, for many events; then exactness against the simulator's ground truth.

Usage (the documented long run, >= 10^7 events; see docs/reliability.md for the last result)::

    python benchmarks/soak.py --events 10000000

    python benchmarks/soak.py --events 200000 --segments 100   # a quick look (~1 min)

What it does:

1. starts ``picodaq-ioc --test-faults`` (loopback only, its own port) on an unpaced simulator:
   muon pulses on channel A at ``--rate`` Hz of simulated time, rapid block of ``--segments``
   segments per capture, the ``pulse`` analysis module as an obligatory consumer;
2. starts four CA client processes: two monitor the waveform, the time axis, the event
   counters and the pulse-height spectrum with pyepics (libca), two do the same with caproto's
   threading client; each reports how many updates it received;
3. puts ``NumEvents`` and ``Acquire=Start`` with put-completion (``caput -c``) and waits;
   meanwhile samples the IOC's RSS and CPU every ``--sample-every`` seconds;
4. compares, exactly: events delivered by the buffer manager, events analysed by the pulse
   module (``Pulse:Events_RBV``), and the simulator's truth (segments read = triggers
   accepted = candidates - lost to dead time - missed + auto-triggered + free-running), minus
   the surplus segments of the last capture (``truncated``) and segments of outdated
   configurations (``discarded``).

Prints one JSON line per figure (method included) and exits 0 when the counts agree exactly,
1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from reliability_helpers import (  # noqa: E402
    LOOPBACK_ENV,
    connect_when_ready,
    free_port,
)

CLIENT_PVS = ("A:Waveform_RBV", "TimeAxis_RBV", "ArrayCounter_RBV", "Stats:Events_RBV", "Stats:TriggerRate_RBV",
              "Pulse:Heights_RBV", "Pulse:Events_RBV")


def soak_config(rate: float, segments: int, samples: int, n_buffers: int, seed: int) -> dict:
    return {
        "device": {"backend": "sim", "model": "2000a"},
        "channels": {"A": {"range": 0.5, "coupling": "DC", "offset": 0.4}},
        "timebase": {"sample_interval": 4.0e-9, "samples": samples, "pretrigger": 0.1, "segments": segments},
        "trigger": {"enabled": True, "source": "A", "level": -0.045, "direction": "Falling", "auto_timeout": 1.0},
        "buffer": {"n_buffers": n_buffers},
        "simulation": {"seed": seed, "realtime": False, "noise_rms": 1.0e-3,
                       "sources": [{"kind": "muon", "channels": ["A"], "rate": rate, "amplitude": -0.2,
                                    "amplitude_spread": 0.35, "decay_fraction": 0.05}]},
        "analysis": [{"module": "pulse", "pulseShape": [{"taur": 20e-9, "tauon": 12e-9, "tauf": 128e-9,
                                                         "pheight": -0.1}],
                      "threshold": 0.5, "doublePulse": False, "height_range": [0.0, 0.8]}],
    }


# ------------------------------------------------------------------------------ CA clients

def run_client(kind: str, prefix: str, seconds_file: str) -> None:
    """A client process: monitor CLIENT_PVS until SIGTERM, then print update counts as JSON."""
    counts = {n: 0 for n in CLIENT_PVS}
    lock = threading.Lock()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    keep = []
    if kind == "pyepics":
        import epics

        for n in CLIENT_PVS:
            def cb(pvname=None, _n=n, **kw):
                with lock:
                    counts[_n] += 1
            pv = epics.PV(prefix + n, auto_monitor=True, callback=cb)
            keep.append(pv)
        for pv in keep:
            if not pv.wait_for_connection(timeout=60):
                print(json.dumps({"client": kind, "error": f"{pv.pvname} did not connect"}), flush=True)
    else:
        from caproto.threading.client import Context

        ctx = Context()
        pvs = ctx.get_pvs(*[prefix + n for n in CLIENT_PVS], timeout=60)
        for n, pv in zip(CLIENT_PVS, pvs, strict=True):
            pv.wait_for_connection(timeout=60)

            def cb2(sub, resp, _n=n):
                with lock:
                    counts[_n] += 1
            sub = pv.subscribe(data_type="time")
            sub.add_callback(cb2)
            keep.append((sub, cb2))
    Path(seconds_file).write_text("connected")
    while not stop.wait(0.5):
        pass
    if kind == "pyepics":
        connected = {n: bool(pv.connected) for n, pv in zip(CLIENT_PVS, keep, strict=True)}
    else:
        connected = {n: sub.pv.connected for n, (sub, _cb) in zip(CLIENT_PVS, keep, strict=True)}
    with lock:
        print(json.dumps({"client": kind, "updates": counts, "connected": connected}), flush=True)
    os._exit(0)


# ------------------------------------------------------------------------------ driver

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--rate", type=float, default=20_000.0, help="muon rate, Hz of simulated time")
    p.add_argument("--segments", type=int, default=100, help="rapid-block segments per capture")
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--buffers", type=int, default=4096)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--max-rate", type=float, default=20.0, help="Waveform:MaxRate, Hz")
    p.add_argument("--sample-every", type=float, default=5.0, help="s between RSS samples")
    p.add_argument("--timeout", type=float, default=24 * 3600.0)
    p.add_argument("--client", choices=("pyepics", "caproto"), help=argparse.SUPPRESS)
    p.add_argument("--prefix", help=argparse.SUPPRESS)
    p.add_argument("--ready-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.client:
        run_client(args.client, args.prefix, args.ready_file)
        return 0
    result = soak(args.events, rate=args.rate, segments=args.segments, samples=args.samples,
                  n_buffers=args.buffers, seed=args.seed, max_rate=args.max_rate,
                  sample_every=args.sample_every, timeout=args.timeout, emit=True)
    return 0 if result["exact"] else 1


def _env(port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(LOOPBACK_ENV)
    env["EPICS_CA_SERVER_PORT"] = str(port)
    env["EPICS_CA_ADDR_LIST"] = f"127.0.0.1:{port}"
    env["EPICS_CA_MAX_ARRAY_BYTES"] = "100000000"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def soak(n_events: int, *, rate: float = 20_000.0, segments: int = 100, samples: int = 200,
         n_buffers: int = 4096, seed: int = 7, max_rate: float = 20.0, sample_every: float = 5.0,
         timeout: float = 3600.0, emit: bool = False, workdir: str | None = None) -> dict:
    """Run the soak; returns a dict of results (``exact`` is the verdict)."""
    import psutil
    import yaml

    def out(rec: dict) -> None:
        if emit:
            print(json.dumps(rec), flush=True)

    tmp = Path(workdir or tempfile.mkdtemp(prefix="picodaq-soak-"))
    port = free_port()
    env = _env(port)
    prefix = f"SOAK{port}:"
    cfg_path = tmp / "soak.yaml"
    cfg_path.write_text(yaml.safe_dump(soak_config(rate, segments, samples, n_buffers, seed)))
    log_path = tmp / "ioc.log"
    summary = tmp / "runs.jsonl"
    argv = [sys.executable, "-m", "picodaq_ioc", "--config", str(cfg_path), "--prefix", prefix, "--test-faults",
            "--no-autosave", "--max-rate", str(max_rate), "--summary", str(summary), "-q"]
    with open(log_path, "w") as logf:
        ioc = subprocess.Popen(argv, env=env, stdout=logf, stderr=subprocess.STDOUT, cwd=str(tmp))
    clients: list[subprocess.Popen] = []
    client_out: list[Path] = []
    try:
        c = connect_when_ready(port, prefix + "State_RBV", timeout=120, user="soak")
        proc = psutil.Process(ioc.pid)
        for i, kind in enumerate(("pyepics", "pyepics", "caproto", "caproto")):
            ready = tmp / f"client{i}.ready"
            o = tmp / f"client{i}.json"
            client_out.append(o)
            with open(o, "w") as f:
                clients.append(subprocess.Popen(
                    [sys.executable, "-u", str(Path(__file__).resolve()), "--client", kind, "--prefix", prefix,
                     "--ready-file", str(ready)], env=env, stdout=f, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True))
        deadline = time.monotonic() + 180
        while not all((tmp / f"client{i}.ready").exists() for i in range(4)):
            if time.monotonic() > deadline:
                raise RuntimeError("CA clients did not connect: " + " ".join(o.read_text() for o in client_out))
            time.sleep(0.2)

        ok, msg = c.put(prefix + "NumEvents", n_events)
        assert ok, msg
        samples_rss: list[dict] = []
        done = threading.Event()
        t0 = time.monotonic()
        cpu0 = proc.cpu_times()

        def sampler() -> None:
            mon = connect_when_ready(port, prefix + "Stats:Events_RBV", user="soak-sampler")
            while not done.is_set():
                try:
                    ev = int(mon.value(prefix + "Stats:Events_RBV"))
                    rec = {"t": round(time.monotonic() - t0, 2), "rss_mb": round(proc.memory_info().rss / 1e6, 1),
                           "events": ev}
                    samples_rss.append(rec)
                except (OSError, TimeoutError, psutil.Error):
                    pass
                done.wait(sample_every)
            mon.close()

        th = threading.Thread(target=sampler, daemon=True)
        th.start()
        ok, msg = c.put(prefix + "Acquire", "Start", timeout=timeout)  # completes after n_events
        wall = time.monotonic() - t0
        done.set()
        th.join(30)
        cpu1 = proc.cpu_times()
        if not ok:
            raise RuntimeError(f"Acquire put failed: {msg}")
        deadline = time.monotonic() + 60
        while c.value(prefix + "State_RBV") not in ("Stopped", "Idle"):
            if time.monotonic() > deadline:
                raise RuntimeError("run did not stop")
            time.sleep(0.1)
        rss_end = proc.memory_info().rss / 1e6
        assert c.put(prefix + "Test:Refresh", 1)[0]
        doc = json.loads(c.value(prefix + "Test:Truth_RBV"))
        truth, stats = doc["truth"], doc["stats"]
        # analysis result PVs are refreshed at 2 Hz: wait until they show the final count
        deadline = time.monotonic() + 15
        while True:
            analysed = int(c.value(prefix + "Pulse:Events_RBV"))
            if analysed >= stats["processed"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        c.close()
    finally:
        for cl in clients:
            if cl.poll() is None:
                cl.terminate()
        for cl in clients:
            try:
                cl.wait(30)
            except subprocess.TimeoutExpired:
                cl.kill()
        if ioc.poll() is None:
            ioc.terminate()
            try:
                ioc.wait(60)
            except subprocess.TimeoutExpired:
                ioc.kill()
    client_updates = []
    for o in client_out:
        lines = [ln for ln in o.read_text().splitlines() if ln.startswith("{")]
        client_updates.append(json.loads(lines[-1]) if lines else {"client": "?", "updates": {}, "output": o.read_text()[-500:]})
    summary_recs = [json.loads(ln) for ln in summary.read_text().splitlines() if ln.strip()] if summary.exists() else []
    run_end = next((r for r in reversed(summary_recs) if r.get("event") == "run_end"), {})

    # --- exactness ------------------------------------------------------------------------
    accepted_truth = (truth["n_candidates"] - truth["n_lost_dead"] - truth["n_missed"]
                      + truth["n_auto"] + truth["n_free"])
    truncated = int(run_end.get("truncated", stats.get("truncated", 0)) or 0)
    # segments the scope delivered that never became events: the surplus of the last capture
    # beyond NumEvents (truncated) and captures of an outdated configuration (discarded)
    not_delivered = stats["discarded"]
    expected = truth["n_segments"] - not_delivered
    res = {
        "events_requested": n_events,
        "events_delivered": stats["events"],
        "events_analysed": analysed,
        "processed": stats["processed"],
        "truth_segments": truth["n_segments"],
        "truth_accepted": accepted_truth,
        "truth_candidates": truth["n_candidates"],
        "truth_lost_dead": truth["n_lost_dead"],
        "truth_missed": truth["n_missed"],
        "discarded": stats["discarded"],
        "truncated": truncated,
        "lost": expected - stats["events"],
        "exact": (stats["events"] == expected == stats["processed"] == analysed
                  and accepted_truth == truth["n_segments"] and stats["triggers"] == truth["n_segments"]),
        "wall_s": round(wall, 1),
        "ioc_cpu_s": round((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system), 1),
        "rss_start_mb": samples_rss[0]["rss_mb"] if samples_rss else None,
        "rss_end_mb": round(rss_end, 1),
        "rss_max_mb": max((s["rss_mb"] for s in samples_rss), default=None),
        "live_time_bm_s": stats["live_time"],
        "live_time_truth_s": truth["live_time_s"],
        "run_time_s": stats["run_time"],
        "mean_trigger_rate_hz": stats["mean_trigger_rate"],
        "rate_from_truth_hz": truth["n_segments"] / stats["run_time"] if stats["run_time"] > 0 else None,
        "client_updates": client_updates,
        "rss_samples": samples_rss,
        "workdir": str(tmp),
    }
    method = (f"picodaq-ioc on SimScope 2000a unpaced, muon {rate:g} Hz sim time, {samples} samples x "
              f"{segments} segments/capture, ring {n_buffers}, pulse analysis, 4 CA clients (2 pyepics, "
              f"2 caproto) monitoring {len(CLIENT_PVS)} PVs at Waveform:MaxRate {max_rate:g} Hz; "
              f"NumEvents + Acquire with put-completion; truth via Test:Truth_RBV")
    out({"figure": "soak events delivered", "value": res["events_delivered"], "unit": "events", "method": method})
    out({"figure": "soak lost events (delivered vs simulator truth)", "value": res["lost"], "unit": "events",
         "exact": res["exact"], "detail": {k: res[k] for k in ("events_analysed", "processed", "truth_segments",
                                                                "truth_accepted", "truth_candidates",
                                                                "truth_lost_dead", "truth_missed", "discarded",
                                                                "truncated")}})
    out({"figure": "soak wall time", "value": res["wall_s"], "unit": "s",
         "events_per_s": round(res["events_delivered"] / max(wall, 1e-9)), "ioc_cpu_s": res["ioc_cpu_s"]})
    out({"figure": "soak IOC RSS", "start_mb": res["rss_start_mb"], "end_mb": res["rss_end_mb"],
         "max_mb": res["rss_max_mb"], "samples": res["rss_samples"]})
    out({"figure": "soak live time and rate vs truth", "live_time_bm_s": res["live_time_bm_s"],
         "live_time_truth_s": res["live_time_truth_s"], "mean_trigger_rate_hz": res["mean_trigger_rate_hz"],
         "rate_from_truth_hz": res["rate_from_truth_hz"]})
    out({"figure": "soak CA client updates", "clients": client_updates})
    return res


if __name__ == "__main__":
    raise SystemExit(main())
