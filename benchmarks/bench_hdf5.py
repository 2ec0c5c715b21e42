"""HDF5 writer benchmark: ``python benchmarks/bench_hdf5.py [--dir DIR]``.

Kamiokanne events (1 channel x 4000 int16 samples = 8000 B of raw data per event) go through
the buffer manager into the HDF5 writer (``picodaq_ioc.analysis.hdf5_writer``), the only
obligatory consumer. Prints one JSON line per figure.

Backend: ``PoissonBackend`` hands out pre-generated Kamiokanne-like waveforms (a pool of 16
noisy records with a PM pulse, so compression sees realistic data) on the host clock:

* ``rate=None``: unpaced, every ``wait`` is immediately ready (the writer's limit);
* ``rate=R``: triggers arrive as a Poisson process of R Hz *while armed* (the time from
  ``arm`` to the trigger is live time); triggers that would fall while the scope is not
  armed do not exist, as on a real scope. The dead fraction ``1 - live/run time`` is then
  the time the acquisition was not armed: buffer-manager overhead plus waiting for a free
  ring slot, i.e. the dead time the writer causes.

Cases

* ``limit_<compression>``: unpaced, N events, compression none / gzip / lz4 (if hdf5plugin):
  events/s and MB/s of raw data written (wall clock from start to the closed file),
  file size, lost events (delivered minus events in the file; must be 0) and the writer's
  dead fraction at its limit (time the acquisition waited for a ring slot / wall time).
* ``dead_<R>Hz``: paced at R Hz (100 Hz, 1 kHz, 5 kHz), dead fraction with the writer
  recording vs. without the writer (baseline: buffer-manager overhead), lost events.
* ``stall_2s``: paced at 100 Hz, the writer blocks once for 2 s (a stalled disk) after 200
  events: dead time with and without the stall, lost events (must be 0), ring size 64.

The files go to ``--dir`` (default: a temporary directory on the same disk as /tmp) and are
deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from picodaq_ioc.analysis.hdf5_writer import Hdf5Writer, WriterSettings  # noqa: E402
from picodaq_ioc.daq.buffer_manager import BufferManager  # noqa: E402
from picodaq_ioc.scope.types import (  # noqa: E402
    Applied,
    Capture,
    ChannelConfig,
    Coupling,
    Direction,
    ScopeInfo,
    SigGenConfig,
    TimebaseConfig,
    TriggerConfig,
)

N_SAMPLES = 4000
EVENT_BYTES = N_SAMPLES * 2


class PoissonBackend:
    """Pre-generated Kamiokanne waveforms, Poisson triggers while armed (see module docstring)."""

    def __init__(self, rate: float | None, seed: int = 3) -> None:
        self.rate = rate
        rng = np.random.default_rng(seed)
        t = np.arange(N_SAMPLES)
        pool = []
        for _ in range(16):
            v = rng.normal(0.0, 1e-3, N_SAMPLES) - 0.2 * rng.uniform(0.5, 1.5) * np.exp(-np.clip(t - 200, 0, None) / 32.0) * (t >= 200)
            pool.append(np.clip(np.rint((v + 0.4) * 32512 / 0.5), -32767, 32767).astype(np.int16))
        self.pool = np.stack(pool)[:, None, :]
        self.rng = rng
        self.applied: Applied | None = None
        self._t_arm = 0.0
        self._t_trig = 0.0
        self._seq = 0

    def open(self, serial=None) -> ScopeInfo:
        return ScopeInfo("bench", "2000a", "B0", "bench", ("A",), (0.5,), (Coupling.AC,), (8,), 1e9, 10**8, 1,
                         True, False, None)

    def close(self) -> None:
        pass

    def configure(self, channels, timebase, trigger, siggen=None) -> Applied:
        self.applied = Applied({"A": ChannelConfig(True, Coupling.AC, 0.5, 0.4)}, 4e-9, N_SAMPLES, 200, 1, 32512, 8,
                               TriggerConfig(source="A", threshold_v=-0.045, direction=Direction.FALLING),
                               SigGenConfig(), 1)
        return self.applied

    def arm(self) -> None:
        self._t_arm = time.monotonic()
        self._t_trig = self._t_arm + (self.rng.exponential(1.0 / self.rate) if self.rate else 0.0)

    def wait(self, timeout_s: float) -> bool:
        now = time.monotonic()
        if now >= self._t_trig:
            return True
        time.sleep(min(timeout_s, self._t_trig - now))
        return time.monotonic() >= self._t_trig

    def stop(self) -> None:
        pass

    def read(self) -> Capture:
        self._seq += 1
        raw = self.pool[self._seq % len(self.pool)][None]
        return Capture(("A",), raw, np.zeros((1, 1), bool), np.array([self._t_trig]), np.zeros(1), np.zeros(1, bool),
                       self._t_trig - self._t_arm, self._t_arm, self._t_trig, self.applied, self._seq)

    def clock(self) -> float:
        return time.monotonic()

    def ping(self) -> bool:
        return True


def run(directory: Path, n: int, *, rate: float | None, compression: str = "none", capture: bool = True,
        n_buffers: int = 64, stall_after: int | None = None) -> dict:
    be = PoissonBackend(rate)
    be.open()
    bm = BufferManager(be, n_buffers=n_buffers)
    bm.configure({"A": ChannelConfig(True, Coupling.AC, 0.5, 0.4)}, TimebaseConfig(4e-9, N_SAMPLES, 0.05),
                 TriggerConfig(source="A", threshold_v=-0.045, direction=Direction.FALLING))
    w = Hdf5Writer(bm, WriterSettings(file_path=str(directory), file_name=f"bench_{compression}_{rate}",
                                      compression=compression, num_capture=n))
    if stall_after is not None:
        orig = w._append
        stalled = threading.Event()

        def stalling(op, batch):
            if op.n >= stall_after and not stalled.is_set():
                stalled.set()
                time.sleep(2.0)  # the injected 2 s disk stall
            orig(op, batch)

        w._append = stalling
    if not capture:
        w.consumer.detach()  # baseline: no writer in the ring at all
    path = w.start_capture() if capture else None
    t0 = time.perf_counter()
    bm.start(max_events=n)
    bm.wait_stopped()
    summary = bm.stop()
    if capture:
        w.run_ended()
        w.wait_closed(0, 600)
    wall = time.perf_counter() - t0
    out = {"events": summary.events, "wall_s": wall, "dead_fraction": summary.dead_fraction,
           "dead_time_s": summary.dead_time, "run_time_s": summary.run_time, "ring_wait_s": summary.ring_wait_time}
    if capture:
        import h5py

        with h5py.File(path, "r") as f:
            in_file = int(f["raw"].shape[0])
        out["lost"] = summary.events - in_file
        out["file_mb"] = os.path.getsize(path) / 1e6
        os.unlink(path)
    bm.close()
    return out


def emit(figure: str, case: str, value: float, unit: str, method: str, **extra) -> None:
    print(json.dumps({"figure": figure, "case": case, "value": round(value, 4), "unit": unit, "method": method,
                      **extra}), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", help="directory for the files (default: a temporary directory)")
    ap.add_argument("--events", type=int, default=20000, help="events of the limit cases (default 20000)")
    ap.add_argument("--paced-seconds", type=float, default=10.0, help="length of the paced cases, s (default 10)")
    args = ap.parse_args(argv)
    tmp = tempfile.TemporaryDirectory(dir=args.dir) if args.dir else tempfile.TemporaryDirectory()
    d = Path(tmp.name)
    print(json.dumps({"machine": platform.machine(), "python": platform.python_version(), "cpus": os.cpu_count(),
                      "dir": str(d)}), flush=True)
    comps = ["none", "gzip"]
    try:
        import hdf5plugin  # noqa: F401

        comps.insert(1, "lz4")
    except ImportError:
        pass
    for c in comps:
        r = run(d, args.events, rate=None, compression=c)
        ev_s = r["events"] / r["wall_s"]
        method = (f"unpaced backend, {args.events} events of 1 ch x {N_SAMPLES} int16 through the buffer manager "
                  "(64 slots) into the writer, wall clock from start to closed file")
        emit("events_per_s", f"limit_{c}", ev_s, "events/s", method, lost=r["lost"],
             writer_dead_fraction=round(r["ring_wait_s"] / r["wall_s"], 4))
        emit("raw_mb_per_s", f"limit_{c}", ev_s * EVENT_BYTES / 1e6, "MB/s", method,
             file_mb=round(r["file_mb"], 1), ratio=round(r["file_mb"] * 1e6 / (r["events"] * EVENT_BYTES), 3))
    for rate in (100.0, 1000.0, 5000.0):
        n = int(rate * args.paced_seconds)
        base = run(d, n, rate=rate, capture=False)
        r = run(d, n, rate=rate)
        emit("dead_fraction", f"dead_{rate:g}Hz", r["dead_fraction"], "fraction",
             f"Poisson {rate:g} Hz while armed, {n} events, writer recording (compression none), 64 slots",
             baseline_without_writer=round(base["dead_fraction"], 5), lost=r["lost"],
             ring_wait_s=round(r["ring_wait_s"], 3))
    n = int(100 * args.paced_seconds)
    base = run(d, n, rate=100.0)
    r = run(d, n, rate=100.0, stall_after=200)
    emit("dead_time", "stall_2s", r["dead_time_s"], "s",
         f"Poisson 100 Hz, {n} events, 64 slots, the writer blocks once for 2 s after 200 events",
         dead_time_without_stall=round(base["dead_time_s"], 3), ring_wait_s=round(r["ring_wait_s"], 3),
         events=r["events"], lost=r["lost"])
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
