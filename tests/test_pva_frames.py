"""The ``Frame`` PV under load: 8 PV Access clients at 50 Hz receive every published event whole.

Ground truth is the IOC's own count of published events (``ArrayCounter_RBV``, incremented in
the same step that posts the Frame): every client must receive exactly that many frames, each
with all enabled channels of one event, in increasing event-number order (0 drops). The run
ends after a number of published events, not after a time; how fast that happens is the
benchmark's business (``benchmarks/bench_pva.py``).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from conftest import wait_for

pytest.importorskip("p4p", reason="PV Access tests need the 'pva' extra (pip install p4p)")
from p4p.client.thread import Context  # noqa: E402

pytestmark = [pytest.mark.pva, pytest.mark.ca]

N_CLIENTS = 8
RATE = 50.0  # Waveform:MaxRate, Hz
N_FRAMES = 150  # published events to observe (3 s at 50 Hz)
SAMPLES = 500

CONFIG = {
    "device": {"backend": "sim", "model": "2000a"},
    "channels": {"A": {"range": 0.05, "coupling": "AC"}, "B": {"range": 0.5, "coupling": "AC"}},
    "timebase": {"duration": 25.0e-6, "samples": SAMPLES, "pretrigger": 0.05},
    "trigger": {"enabled": True, "source": "B", "level": 0.1, "direction": "Rising", "auto_timeout": 1.0},
    "siggen": {"enabled": True, "waveform": "Sine", "frequency": 100.0e3, "amplitude": 0.4},
    "simulation": {"seed": 3, "realtime": True, "siggen_channel": "B"},
}


class FrameClient:
    """One PVA client (its own context and connection) recording every Frame it receives."""

    def __init__(self, conf: dict, name: str) -> None:
        self.ctx = Context("pva", conf=conf, useenv=False)
        self.frames: list[tuple[int, tuple[str, ...], tuple[int, ...], int]] = []
        self.lock = threading.Lock()
        self.errors: list[str] = []
        self.sub = self.ctx.monitor(name, self._cb, request="record[queueSize=16]")

    def _cb(self, value) -> None:
        if isinstance(value, Exception):  # Disconnected / Cancelled: a gap would show as a drop
            with self.lock:
                self.errors.append(repr(value))
            return
        raw = value.raw
        entry = (int(raw["eventNumber"]), tuple(raw["channels"]), tuple(value.shape),
                 int(value.attrib.get("EventNumber", -1)))
        with self.lock:
            self.frames.append(entry)

    def after(self, n0: int) -> list:
        with self.lock:
            return [f for f in self.frames if f[0] > n0]

    def close(self) -> None:
        self.sub.close()
        self.ctx.close()


def test_eight_clients_get_every_frame_whole(ioc_factory):
    h = ioc_factory(CONFIG, ["--max-rate", str(RATE)], pva=True)
    ctl = Context("pva", conf=h.pva_conf, useenv=False)
    clients = [FrameClient(h.pva_conf, h.pv("Frame")) for _ in range(N_CLIENTS)]
    try:
        wait_for(lambda: all(c.frames for c in clients), 20, message="every client connected")
        n0 = int(ctl.get(h.pv("EventNumber_RBV")))
        c0 = int(ctl.get(h.pv("ArrayCounter_RBV")))
        ctl.put(h.pv("Acquire"), "Start", timeout=10)
        t0 = time.monotonic()
        wait_for(lambda: int(ctl.get(h.pv("ArrayCounter_RBV"))) - c0 >= N_FRAMES, 120,
                 message=f"{N_FRAMES} published events")
        elapsed = time.monotonic() - t0
        ctl.put(h.pv("Acquire"), "Stop", timeout=10)

        def settled() -> int | None:
            # the run's last event was published (the publisher always ends on it, up to one
            # publish period after Stop: a quiet moment before that is not the end), the counter
            # no longer moves and every client has that last event
            c = int(ctl.get(h.pv("ArrayCounter_RBV")))
            last = int(ctl.get(h.pv("EventNumber_RBV")))
            if str(ctl.get(h.pv("State_RBV"))) not in ("Running", "Paused") \
                    and last == int(ctl.get(h.pv("Stats:Events_RBV"))) and all(
                    cl.after(n0) and cl.after(n0)[-1][0] == last for cl in clients):
                return c if c == int(ctl.get(h.pv("ArrayCounter_RBV"))) else None
            return None

        c1 = wait_for(settled, 30, message="publishing settled after Stop")
        published = c1 - c0
        # information only (timings are the benchmark's business): the rate actually reached
        print(f"{published} frames to {N_CLIENTS} clients, ~{N_FRAMES / elapsed:.1f} Hz published")
        n_samples = int(ctl.get(h.pv("NumSamples_RBV")))
        assert published >= N_FRAMES
        for i, cl in enumerate(clients):
            got = cl.after(n0)
            numbers = [f[0] for f in got]
            dup = sorted(n for n in set(numbers) if numbers.count(n) > 1)
            assert not dup, f"client {i}: event(s) {dup[:5]} received twice; errors {cl.errors[:3]}"
            assert len(got) == published, f"client {i}: {len(got)} of {published} frames (drops)"
            assert np.all(np.diff(numbers) > 0), f"client {i}: event numbers not increasing"
            for number, chans, shape, attr_number in got:
                assert chans == ("A", "B") and shape == (2, n_samples), (i, number, chans, shape)
                assert attr_number == number
    finally:
        for cl in clients:
            cl.close()
        ctl.close()
