"""Serving cost of picodaq-ioc next to bare caproto and pythonSoftIOC, same payload, interleaved.

Method
------
Three servers publish the same payload on 127.0.0.1 — four float32 waveforms of 4000 samples
(``<P>A..D:Waveform_RBV``, 16 kB each) and a counter (``<P>ArrayCounter_RBV``) — at ``--rate``
Hz (default 50):

- ``picodaq``: ``python -m picodaq_ioc`` with the simulator (4 channels x 4000 samples, paced
  muon triggers at 4x the rate) and ``Waveform:MaxRate`` = rate: the payload comes from real
  events through the buffer manager and the publisher thread.
- ``caproto``: a bare caproto 1.3.0 ``PVGroup`` with caproto's default settings, updated from
  an asyncio loop (pre-generated random arrays, cycled).
- ``softioc``: pythonSoftIOC (``softioc`` on PyPI: EPICS base RSRV) with ``WaveformIn``/``longIn``
  records, updated from its asyncio dispatcher the same way.

For each server: start it, measure its CPU for ``--idle`` s with no client (the cost of
producing the payload), then run the 8 pyepics client processes of ``bench_waveforms.py``
(one libca context each, 4 waveforms + the counter) and measure over the window: delivered
rate, p50/p95 latency (receive time - PV timestamp), drops, server CPU. ``serving_cpu_cores``
= CPU with clients - CPU without clients. Servers are run in turn, ``--rounds`` times, so the
load of the shared machine affects all of them alike; one JSON line per figure and run.

Run: ``python benchmarks/compare_servers.py`` (about 3 minutes; needs ``pip install softioc``).
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
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
from bench_waveforms import CHANNELS, config, delivery_figures, free_port, loopback_env, measure, wait_ready

SERVERS = ("picodaq", "caproto", "softioc")


def payload(n_frames: int = 16, samples: int = 4000) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.normal(0.0, 0.05, samples).astype(np.float32) for _ in range(n_frames)]


def serve_caproto(prefix: str, rate: float) -> None:
    """A bare caproto IOC with caproto's defaults (run in its own process)."""
    from caproto import ChannelType
    from caproto.asyncio.server import run
    from caproto.server import PVGroup, pvproperty

    attrs = {f"wf_{c}": pvproperty(name=f"{c}:Waveform_RBV", value=np.zeros(4000, np.float32),
                                   dtype=ChannelType.FLOAT, max_length=4000, read_only=True)
             for c in CHANNELS}
    attrs["counter"] = pvproperty(name="ArrayCounter_RBV", value=0, read_only=True)
    group = type("Bare", (PVGroup,), attrs)(prefix=prefix)
    frames = payload()

    async def loop(async_lib) -> None:
        period, t_next, k = 1.0 / rate, time.monotonic(), 0
        while True:
            ts = time.time()
            for c in CHANNELS:
                await getattr(group, f"wf_{c}").write(frames[k % len(frames)], timestamp=ts)
            k += 1
            await group.counter.write(k, timestamp=ts)
            t_next += period
            await asyncio.sleep(max(0.0, t_next - time.monotonic()))

    run(group.pvdb, interfaces=["127.0.0.1"], startup_hook=loop)


def serve_softioc(prefix: str, rate: float) -> None:
    """pythonSoftIOC (EPICS base RSRV) with the same records (run in its own process)."""
    from softioc import asyncio_dispatcher, builder, softioc

    dispatcher = asyncio_dispatcher.AsyncioDispatcher()
    builder.SetDeviceName(prefix.rstrip(":"))
    wfs = [builder.WaveformIn(f"{c}:Waveform_RBV", length=4000, datatype=np.float32) for c in CHANNELS]
    counter = builder.longIn("ArrayCounter_RBV", initial_value=0)
    builder.LoadDatabase()
    softioc.iocInit(dispatcher)
    frames = payload()

    async def loop() -> None:
        period, t_next, k = 1.0 / rate, time.monotonic(), 0
        while True:
            ts = time.time()  # one timestamp per frame, as the other two servers
            for wf in wfs:
                wf.set(frames[k % len(frames)], timestamp=ts)
            k += 1
            counter.set(k, timestamp=ts)
            t_next += period
            await asyncio.sleep(max(0.0, t_next - time.monotonic()))

    dispatcher(loop)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    os._exit(0)


def start(server: str, prefix: str, rate: float, env: dict[str, str], tmp: Path, log) -> subprocess.Popen:
    if server == "picodaq":
        cfg = config(4 * rate)
        cfg["trigger"]["auto_timeout"] = 1.0
        path = tmp / "picodaq.yaml"
        path.write_text(yaml.safe_dump(cfg))
        argv = [sys.executable, "-m", "picodaq_ioc", "--config", str(path), "--prefix", prefix,
                "--max-rate", str(rate), "--no-autosave", "-q"]
    else:
        argv = [sys.executable, __file__, "--serve", server, "--prefix", prefix, "--rate", str(rate)]
    return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)


def run_one(server: str, rate: float, n_clients: int, idle: float, warmup: float, window: float,
            tmp: Path) -> list[dict]:
    port = free_port()
    env = loopback_env(port)
    env["EPICS_CAS_SERVER_PORT"] = str(port)  # RSRV (softioc) reads this one
    env["EPICS_PVAS_SERVER_PORT"] = str(free_port())  # softioc's PVA server: keep off shared ports
    env["EPICS_PVAS_BROADCAST_PORT"] = str(free_port())
    os.environ.update({k: v for k, v in env.items() if k.startswith("EPICS_")})
    import epics  # noqa: PLC0415

    epics.ca.clear_cache()
    prefix = f"CMP{port}:"
    log_path = tmp / f"{server}_{port}.log"
    with open(log_path, "w") as log:
        proc = start(server, prefix, rate, env, tmp, log)
        try:
            ctl = wait_ready(proc, prefix, log_path.read_text)
            if server == "picodaq":
                ctl.put(prefix + "Acquire", 1)
            ps = psutil.Process(proc.pid)
            time.sleep(1.0)  # let the producer settle (a benchmark pause, not a condition)
            c0, t0 = sum(ps.cpu_times()[:2]), time.time()
            time.sleep(idle)  # the no-client CPU window
            idle_cores = (sum(ps.cpu_times()[:2]) - c0) / (time.time() - t0)
            w = measure(prefix, env, ps, ctl, n_clients, warmup, window)
        finally:
            epics.ca.clear_cache()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    method = (f"{server}: {n_clients} pyepics client processes x {len(CHANNELS)} waveforms x 4000 float32 at "
              f"{rate:g} Hz, window {window:g} s after {warmup:g} s warm-up, idle CPU over {idle:g} s without "
              f"clients; 127.0.0.1, 2-core box shared with other jobs (1-min load average "
              f"{os.getloadavg()[0]:.1f})")
    base = {"bench": "compare_servers", "server": server, "method": method}
    return [*delivery_figures(base, w, rate),
            {**base, "figure": "idle_cpu_cores", "value": round(idle_cores, 3)},
            {**base, "figure": "serving_cpu_cores", "value": round(w.cpu_cores - idle_cores, 3)},
            {**base, "figure": "server_rss_mb_end", "value": round(w.rss1 / 2**20, 1)}]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--idle", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--window", type=float, default=10.0)
    p.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    p.add_argument("--serve", choices=("caproto", "softioc"), help=argparse.SUPPRESS)
    p.add_argument("--prefix", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve == "caproto":
        serve_caproto(args.prefix, args.rate)
        return 0
    if args.serve == "softioc":
        serve_softioc(args.prefix, args.rate)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for server in args.servers:
                for rec in run_one(server, args.rate, args.clients, args.idle, args.warmup, args.window, Path(tmp)):
                    print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
