"""The waveform publisher (random consumer) without CA: bounded rate, latest event wins,
odd MaxRate values never kill it."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np

from picodaq_ioc.daq.events import EventBatch
from picodaq_ioc.ioc.publisher import WaveformPublisher, frame_from_batch
from picodaq_ioc.scope.types import Applied, ChannelConfig, SigGenConfig, TriggerConfig


def _applied(n: int = 16) -> Applied:
    chans = {"A": ChannelConfig(range_v=0.2), "B": ChannelConfig(range_v=1.0, offset_v=0.1)}
    return Applied(channels=chans, sample_interval_s=4e-9, n_samples=n, n_pre=2, n_segments=1, max_adc=32512,
                   resolution_bits=8, trigger=TriggerConfig(), siggen=SigGenConfig(), config_generation=3)


class _FakeBM:
    """Events numbered 1, 2, ... appear every ``period`` s; wait_latest returns the newest."""

    def __init__(self, period: float = 0.001) -> None:
        self.t0 = time.monotonic()
        self.period = period
        self.applied = _applied()
        self.calls = 0

    def newest(self) -> int:
        return int((time.monotonic() - self.t0) / self.period)

    def wait_latest(self, after_event: int, timeout: float):
        self.calls += 1
        deadline = time.monotonic() + timeout
        while self.newest() <= after_event:
            if time.monotonic() > deadline:
                return None
            time.sleep(self.period / 2)
        n = self.newest()
        raw = np.full((1, 2, 16), 32512 // 2, np.int16)
        return EventBatch(self.applied, ("A", "B"), raw, np.array([n], np.int64), np.array([n * self.period]),
                          np.zeros(1), np.array([[False, True]]), np.zeros(1, bool))


def test_frame_is_in_volts_with_the_event_metadata():
    bm = _FakeBM()
    batch = bm.wait_latest(0, 1.0)
    f = frame_from_batch(batch)
    assert f.event_number == int(batch.event_number[0])
    assert f.volts["A"].dtype == np.float32 and not f.volts["A"].flags.writeable
    assert np.allclose(f.volts["A"], 0.1, atol=1e-4)  # half scale of 0.2 V
    assert np.allclose(f.volts["B"], 0.5 - 0.1, atol=1e-4)  # offset subtracted
    assert f.overflow == {"A": False, "B": True}


def _run_publisher(pub: WaveformPublisher, seconds: float, changes=()) -> list:
    frames: list = []

    async def main():
        pub.start(asyncio.get_running_loop())

        async def write(frame):
            frames.append((time.monotonic(), frame.event_number))

        task = asyncio.create_task(pub.frames(write))
        t0 = time.monotonic()
        for at, rate in changes:
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            pub.max_rate = rate
        await asyncio.sleep(max(0.0, t0 + seconds - time.monotonic()))
        pub.stop()
        task.cancel()

    asyncio.run(main())
    return frames


def test_rate_is_bounded_and_the_latest_event_wins():
    bm = _FakeBM(period=0.001)  # 1 kHz of events
    pub = WaveformPublisher(bm, max_rate=20.0)
    frames = _run_publisher(pub, 1.0)
    assert 2 <= len(frames) <= 20 * 1.0 + 2  # never more than MaxRate x time (+ the first frame)
    numbers = [n for _, n in frames]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    # conflation: consecutive published events are far apart (latest wins, no backlog)
    assert np.median(np.diff(numbers)) > 10


def test_tiny_nan_and_zero_rates_do_not_kill_the_publisher_and_a_new_rate_applies():
    bm = _FakeBM(period=0.001)
    pub = WaveformPublisher(bm, max_rate=20.0)
    changes = [(0.2, 1e-300), (0.4, float("nan")), (0.5, 0.0), (0.7, 50.0)]
    frames = _run_publisher(pub, 1.5, changes)
    late = [t for t, _ in frames if t > frames[0][0] + 0.9]
    assert late, "no frames after MaxRate was set back to 50 Hz"
    assert pub.errors == 0
    assert pub._thread is not None and not pub._thread.is_alive()  # ended by stop(), not by an error
    assert threading.active_count() >= 1
