"""Buffer manager: lossless delivery, order, accounting, run control, consumers.

Ground truth is the fake backend's own record of every segment it handed out
(``FakeScope.truth()``, serial numbers encoded in the samples).  Waiting is always on a
condition (``wait_processed``, ``wait_stopped``, ``get`` with a timeout), never a sleep.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest
from fakes import decode_serials, default_settings, make_fake

from picodaq_ioc.daq.buffer_manager import BufferManager, RunSummary
from picodaq_ioc.daq.events import EventBatch, RunState
from picodaq_ioc.scope.errors import (
    Busy,
    DeviceDisconnected,
    DeviceNotFound,
    InvalidConfig,
    ScopeError,
    Timeout,
)

T_WAIT = 60.0  # generous deadline for condition waits (never reached when things work)


class Recorder:
    """Collects everything an obligatory consumer sees, vectorised per batch."""

    def __init__(self, n_buffers: int | None = None) -> None:
        self.serials: list[np.ndarray] = []
        self.evnum: list[np.ndarray] = []
        self.t: list[np.ndarray] = []
        self.toff: list[np.ndarray] = []
        self.ovf: list[np.ndarray] = []
        self.auto: list[np.ndarray] = []
        self.gens: list[int] = []
        self.stamped_gen_ok = True
        self.writeable_seen = False
        self.lengths: list[int] = []

    def __call__(self, b: EventBatch) -> None:
        self.serials.append(decode_serials(b.raw))
        self.evnum.append(b.event_number.copy())
        self.t.append(b.t_trigger.copy())
        self.toff.append(b.trigger_time_offset_s.copy())
        self.ovf.append(b.overflow[:, 0].copy())
        self.auto.append(b.auto_triggered.copy())
        self.gens.append(b.applied.config_generation)
        self.lengths.append(len(b))
        if not np.all(b.raw[:, :, 3] == b.applied.config_generation):
            self.stamped_gen_ok = False
        for a in (b.raw, b.event_number, b.t_trigger, b.trigger_time_offset_s, b.overflow, b.auto_triggered):
            self.writeable_seen |= bool(a.flags.writeable)

    def cat(self, name: str) -> np.ndarray:
        v = getattr(self, name)
        return np.concatenate(v) if v else np.zeros(0)


def make_bm(rate: float = 1000.0, n_buffers: int = 16, n_samples: int = 16, n_segments: int = 1, **kw):
    fake = make_fake(rate=rate, **{k: v for k, v in kw.items() if k in ("seed", "count_host_time", "gate",
                                                                     "readout_time")})
    bm = BufferManager(fake, n_buffers=n_buffers, **{k: v for k, v in kw.items()
                                                      if k in ("log_file", "rate_window")})
    bm.configure(*default_settings(n_samples=n_samples, n_segments=n_segments))
    return fake, bm


def check_against_truth(rec: Recorder, fake, t0: float) -> None:
    ser, tt = fake.truth()
    got = rec.cat("serials")
    assert len(got) == len(ser)
    np.testing.assert_array_equal(got, ser)  # every event exactly once, in order
    np.testing.assert_array_equal(rec.cat("evnum"), np.arange(1, len(ser) + 1))
    np.testing.assert_allclose(rec.cat("t"), tt - t0, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(rec.cat("toff"), -(ser % 5) * 1e-10)
    np.testing.assert_array_equal(rec.cat("ovf"), ser % 7 == 0)
    np.testing.assert_array_equal(rec.cat("auto"), ser % 11 == 0)
    assert not rec.writeable_seen


@pytest.mark.slow
def test_million_events_exactly_once_in_order_two_consumers():
    """>= 10^6 events (rapid block of 1000 segments); a fast callback consumer and a
    slower pull consumer with small batches both see every event once, in order."""
    n_seg, n_total = 1000, 1_000_000
    fake, bm = make_bm(rate=1e5, n_buffers=3000, n_samples=16, n_segments=n_seg)
    fast = Recorder()
    bm.add_obligatory_callback("fast", fast, max_events=2048)
    slow_cons = bm.add_obligatory("slow")
    slow = Recorder()

    def pull():  # small batches and extra per-batch work: slower than "fast"
        while (b := slow_cons.get(max_events=97, timeout=T_WAIT)) is not None:
            slow(b)
            np.sort(b.raw[:, 0, :4].astype(np.int64), axis=None)
            slow_cons.release(b)

    th = threading.Thread(target=pull)
    th.start()
    bm.start(max_events=n_total)
    t0 = bm._t0
    assert bm.wait_stopped(T_WAIT)
    summary = bm.stop(timeout=T_WAIT)
    th.join(T_WAIT)
    assert not th.is_alive()
    for rec in (fast, slow):
        check_against_truth(rec, fake, t0)
    assert max(slow.lengths) <= 97
    assert summary.events == summary.triggers == summary.processed == n_total
    assert summary.discarded == 0
    bm.close()


def test_batches_never_span_the_wrap_and_are_read_only_views():
    fake, bm = make_bm(rate=1e4, n_buffers=10, n_segments=7)
    cons = bm.add_obligatory("c")
    seen = []
    bm.start(max_events=700)
    while (b := cons.get(max_events=1000, timeout=T_WAIT)) is not None:
        first_slot = (int(b.event_number[0]) - 1) % 10
        assert first_slot + len(b) <= 10  # one contiguous slice of the ring
        assert b.raw.base is not None and not b.raw.flags.writeable
        with pytest.raises(ValueError):
            b.raw[0, 0, 0] = 1
        seen.append(decode_serials(b.raw))
        cons.release(b)
    np.testing.assert_array_equal(np.concatenate(seen), np.arange(1, 701))
    assert bm.stop().events == 700


def _run_fixed(consumer_delay: float, n_events: int, seed: int = 3, count_host_time: bool = True,
               random_consumer: bool = False) -> tuple[RunSummary, Recorder, object]:
    fake, bm = make_bm(rate=1000.0, n_buffers=8, seed=seed, count_host_time=count_host_time)
    rec = Recorder()

    def slow(b: EventBatch) -> None:
        rec(b)
        if consumer_delay:
            time.sleep(consumer_delay * len(b))  # simulated processing time per event (not a wait)

    bm.add_obligatory_callback("slow" if consumer_delay else "fast", slow, max_events=1)
    stop_random = threading.Event()
    n_random = [0]

    def random_reader():
        last = 0
        while not stop_random.is_set():
            ev = bm.wait_latest(last, timeout=0.5)
            if ev is not None:
                last = int(ev.event_number[0])
                n_random[0] += 1
                time.sleep(0.005)  # simulated slow display (a random consumer never gates)

    rt = threading.Thread(target=random_reader)
    if random_consumer:
        rt.start()
    bm.start(max_events=n_events)
    t0 = bm._t0
    assert bm.wait_stopped(T_WAIT)
    s = bm.stop(timeout=T_WAIT)
    stop_random.set()
    if random_consumer:
        rt.join(T_WAIT)
        assert n_random[0] > 0
    check_against_truth(rec, fake, t0)
    bm.close()
    return s, rec, fake


def test_slow_obligatory_consumer_raises_dead_fraction_and_loses_nothing():
    n = 300
    fast, _, _ = _run_fixed(0.0, n)
    slow, _, _ = _run_fixed(0.002, n)  # 2 ms per event against a 1 ms mean trigger interval
    for s in (fast, slow):
        assert s.events == s.triggers == s.processed == n
        assert s.discarded == 0
    # fast: dead = readout 0.1 ms per ~1.1 ms cycle (~9 %) plus host overhead; slow: the ring
    # fills and the acquisition waits ~2 ms per event, so the dead fraction must exceed 1/2.
    assert fast.dead_fraction < 0.3
    assert slow.dead_fraction > 0.5
    assert slow.ring_wait_time > 0.2 * n * 0.002
    assert slow.ring_wait_time <= slow.dead_time + 1e-6
    # live time is the same Poisson sum either way (same seed): the trigger gaps do not depend
    # on the consumer; only the dead time grows.
    assert slow.live_time == pytest.approx(fast.live_time, rel=1e-12)


def test_slow_random_consumer_changes_nothing():
    """With host time not counted by the fake, the simulated run is fully deterministic:
    the same events and exactly the same accounting with and without a slow random reader."""
    a, ra, _ = _run_fixed(0.0, 2000, count_host_time=False)
    b, rb, _ = _run_fixed(0.0, 2000, count_host_time=False, random_consumer=True)
    np.testing.assert_array_equal(ra.cat("serials"), rb.cat("serials"))
    np.testing.assert_array_equal(ra.cat("t"), rb.cat("t"))
    for f in ("triggers", "events", "discarded", "processed", "run_time", "live_time", "dead_fraction"):
        assert getattr(a, f) == getattr(b, f), f


def test_latest_is_a_copy_and_never_holds_a_slot():
    fake, bm = make_bm(rate=1e4, n_buffers=4)
    assert bm.latest() is None
    assert bm.wait_latest(0, timeout=0.05) is None
    bm.start(max_events=50)
    assert bm.wait_stopped(T_WAIT)
    ev = bm.latest()
    assert len(ev) == 1 and int(ev.event_number[0]) == 50
    assert decode_serials(ev.raw)[0] == 50
    ev.raw[0, 0, 0] = -1  # a copy: writable, the ring is untouched
    assert decode_serials(bm.latest().raw)[0] == 50
    assert bm.stop().events == 50


def test_pause_resume_accounting():
    fake, bm = make_bm(rate=2000.0, n_buffers=16)
    rec = Recorder()
    bm.add_obligatory_callback("rec", rec)
    bm.start()
    t0 = bm._t0
    assert bm.wait_processed(300, T_WAIT)
    bm.pause()
    assert bm.state == RunState.PAUSED
    s1 = bm.stats()
    # nothing arrives while paused: waiting for a newer event must time out
    host_pause_start = time.perf_counter()
    assert bm.wait_latest(s1.events, timeout=0.3) is None
    s2 = bm.stats()
    assert (s2.triggers, s2.events, s2.run_time, s2.live_time) == (s1.triggers, s1.events, s1.run_time,
                                                                    s1.live_time)
    assert s2.trigger_rate == 0.0 and s2.state == RunState.PAUSED
    bm.resume()
    pause_host = time.perf_counter() - host_pause_start
    assert bm.state == RunState.RUNNING
    assert bm.wait_processed(s1.events + 300, T_WAIT)
    s = bm.stop(timeout=T_WAIT)
    check_against_truth(rec, fake, t0)
    assert s.events == s.triggers == s.processed
    assert s.live_time == pytest.approx(fake.truth_live, rel=1e-9)
    # the fake's clock also advanced by the host time of the pause (it counts host time
    # between read and arm); the run time must exclude it
    elapsed = fake.clock() - t0
    assert s.run_time <= elapsed - 0.9 * pause_host
    assert s.run_time >= s.live_time
    with pytest.raises(RuntimeError):
        bm.resume()


def test_reconfigure_while_running_never_mixes_generations():
    fake, bm = make_bm(rate=5000.0, n_buffers=32, n_samples=16, n_segments=5)
    rec = Recorder()
    shapes: list[tuple[int, ...]] = []
    bm.add_obligatory_callback("rec", lambda b: (rec(b), shapes.append(b.raw.shape[1:])), max_events=64)
    raw_before = bm._raw
    bm.start()
    t0 = bm._t0
    assert bm.wait_processed(500, T_WAIT)
    g1 = bm.applied.config_generation
    chans, tb, trig, sg = default_settings(n_samples=24, n_segments=3)
    ap2 = bm.configure(chans, tb, trig, sg)  # new shape: ring re-allocated
    assert ap2.config_generation == g1 + 1 and ap2.n_samples == 24
    assert bm._raw is not raw_before
    raw_mid = bm._raw
    assert bm.wait_processed(bm.stats().events + 500, T_WAIT)
    chans3 = {k: (v if k != "A" else type(v)(enabled=True, range_v=0.5)) for k, v in chans.items()}
    ap3 = bm.configure(chans3, tb, trig, sg)  # same shape: no re-allocation
    assert bm._raw is raw_mid and ap3.channels["A"].range_v == 0.5
    assert bm.wait_processed(bm.stats().events + 500, T_WAIT)
    s = bm.stop(timeout=T_WAIT)
    check_against_truth(rec, fake, t0)
    assert rec.stamped_gen_ok  # every event of a batch was taken with the batch's configuration
    gens = np.array(rec.gens)
    assert np.all(np.diff(gens) >= 0) and set(gens) == {g1, g1 + 1, g1 + 2}
    for g, shp in zip(rec.gens, shapes, strict=True):
        assert shp == ((2, 16) if g == g1 else (2, 24))
    assert s.discarded == 0 and s.events == s.triggers


def test_invalid_config_while_running_keeps_the_old_configuration():
    fake, bm = make_bm(rate=5000.0)
    cons = bm.add_obligatory_callback("c", lambda b: None)
    bm.start()
    assert bm.wait_processed(100, T_WAIT)
    before = bm.applied
    chans, tb, trig, sg = default_settings()
    bad = dict(chans, A=type(chans["A"])(enabled=True, range_v=100.0))
    with pytest.raises(InvalidConfig) as ei:
        bm.configure(bad, tb, trig, sg)
    assert ei.value.field == "channels.A.range" and ei.value.allowed
    assert bm.applied is before and bm.state == RunState.RUNNING
    assert bm.wait_processed(bm.stats().events + 100, T_WAIT)
    s = bm.stop()
    assert s.events == s.triggers and not cons.detached


def test_raising_callback_is_reported_by_name_and_detached(caplog):
    fake, bm = make_bm(rate=5000.0, n_buffers=8)
    good = Recorder()
    bm.add_obligatory_callback("good", good, max_events=4)
    errors: list[tuple[str, BaseException]] = []
    calls = [0]

    def bad(b):
        calls[0] += 1
        if calls[0] == 3:
            raise ZeroDivisionError("boom")

    with caplog.at_level(logging.ERROR):
        bad_c = bm.add_obligatory_callback("badone", bad, max_events=4,
                                           on_error=lambda n, e: errors.append((n, e)))
        bm.start(max_events=2000)
        t0 = bm._t0
        assert bm.wait_stopped(T_WAIT)  # the ring of 8 would block forever if "badone" kept a slot
    s = bm.stop(timeout=T_WAIT)
    assert errors and errors[0][0] == "badone" and isinstance(errors[0][1], ZeroDivisionError)
    assert bad_c.detached and bad_c not in bm.obligatory_consumers()
    assert "badone" in caplog.text and "boom" in caplog.text
    assert "badone" in bm.last_error
    check_against_truth(good, fake, t0)
    assert s.events == s.processed == 2000 and s.state == "Stopped"


def test_raising_callback_can_stop_the_run():
    fake, bm = make_bm(rate=5000.0, n_buffers=8)

    def bad(b):
        if b.event_number[0] > 100:
            raise RuntimeError("analysis broke")

    bm.add_obligatory_callback("fragile", bad, stop_on_error=True)
    bm.start()
    assert bm.wait_stopped(T_WAIT)
    s = bm.stop(timeout=T_WAIT)
    assert bm.state == RunState.STOPPED and s is not None
    assert "fragile" in s.last_error and "analysis broke" in s.last_error
    assert s.events == s.triggers  # nothing lost: events still in the ring were delivered


def test_stop_summary_is_consistent_and_written(tmp_path):
    prefix = str(tmp_path / "run")
    # host time not counted: the fake's clock stands still after the last read, so the
    # run time can be compared exactly with it
    fake, bm = make_bm(rate=3000.0, n_buffers=16, n_segments=4, log_file=prefix, count_host_time=False)
    bm.add_obligatory_callback("c", lambda b: None)
    bm.start()
    t0 = bm._t0
    assert bm.wait_processed(1000, T_WAIT)
    s = bm.stop(timeout=T_WAIT)
    st = bm.stats()
    assert s.triggers == s.events + s.discarded and s.discarded == 0
    assert s.processed == s.events == st.events == st.processed
    assert s.events % 4 == 0  # whole captures only (no max_events)
    assert s.live_time == pytest.approx(fake.truth_live, rel=1e-9)
    assert s.run_time == pytest.approx(fake.clock() - t0, rel=1e-9)
    assert s.dead_fraction == pytest.approx(1.0 - s.live_time / s.run_time)
    assert s.mean_rate == pytest.approx(s.events / s.run_time)
    assert st.run_time == s.run_time and st.state == RunState.STOPPED
    files = list(tmp_path.glob("run_*.sum"))
    assert len(files) == 1 and f"Ntrig={s.triggers}" in files[0].read_text()
    assert isinstance(s.as_dict()["events"], int)


def test_max_events_truncates_the_last_rapid_block_and_counts_it():
    fake, bm = make_bm(rate=1e4, n_segments=100)
    rec = Recorder()
    bm.add_obligatory_callback("rec", rec)
    bm.start(max_events=250)
    t0 = bm._t0
    assert bm.wait_stopped(T_WAIT)
    s = bm.stop(timeout=T_WAIT)
    assert (s.events, s.triggers, s.truncated, s.discarded) == (250, 300, 50, 50)
    np.testing.assert_array_equal(rec.cat("serials"), np.arange(1, 251))
    assert rec.cat("t")[-1] == pytest.approx(fake.truth()[1][249] - t0)


def test_consumer_added_while_running_starts_at_next_event():
    fake, bm = make_bm(rate=5000.0)
    bm.add_obligatory_callback("first", lambda b: None)
    bm.start()
    assert bm.wait_processed(200, T_WAIT)
    late = bm.add_obligatory("late")
    b = late.get(max_events=10, timeout=T_WAIT)
    first = int(b.event_number[0])
    assert first > 200
    seen = [decode_serials(b.raw)]
    late.release(b)
    summary_thread = threading.Thread(target=bm.stop, kwargs={"timeout": T_WAIT})
    summary_thread.start()
    while (b := late.get(max_events=50, timeout=T_WAIT)) is not None:
        seen.append(decode_serials(b.raw))
        late.release(b)
    summary_thread.join(T_WAIT)
    got = np.concatenate(seen)
    np.testing.assert_array_equal(got, np.arange(first, first + len(got)))
    assert got[-1] == bm.summary.events


def test_busy_and_timeout_are_retried_without_loss():
    fake, bm = make_bm(rate=5000.0)
    rec = Recorder()
    bm.add_obligatory_callback("rec", rec)
    fake.inject("arm", Busy("busy"))
    fake.inject("wait", Busy("busy again"))
    fake.inject("read", Timeout("slow usb"))  # the capture stays ready; read is retried after re-arm
    bm.start(max_events=500)
    t0 = bm._t0
    assert bm.wait_stopped(T_WAIT)
    s = bm.stop(timeout=T_WAIT)
    assert bm.n_retries == 3 and s.state == "Stopped"
    check_against_truth(rec, fake, t0)
    assert s.events == 500


def test_disconnect_reconnects_and_reapplies_configuration():
    fake, bm = make_bm(rate=5000.0)
    rec = Recorder()
    bm.add_obligatory_callback("rec", rec)
    fake.inject("read", DeviceDisconnected("usb gone"))
    fake.inject("open", DeviceNotFound("not yet"), times=2)
    g1 = bm.applied.config_generation
    bm.start(max_events=400)
    t0 = bm._t0
    assert bm.wait_stopped(T_WAIT)
    s = bm.stop(timeout=T_WAIT)
    assert bm.n_reconnects == 1 and "usb gone" in bm.last_error
    assert fake.calls["open"] == 1 + 3  # initial + two failures + success
    assert bm.applied.config_generation == g1 + 1
    assert bm.applied.n_samples == 16 and bm.applied.enabled_channels == ("A", "B")
    check_against_truth(rec, fake, t0)
    assert s.events == 400 and s.state == "Stopped"


def test_unrecoverable_backend_error_sets_error_state():
    fake, bm = make_bm(rate=5000.0)
    cons = bm.add_obligatory("c")
    fake.inject("read", ScopeError("driver returned PICO_MEMORY_FAIL"))
    bm.start()
    assert bm.wait_stopped(T_WAIT)
    assert bm.state == RunState.ERROR
    assert "PICO_MEMORY_FAIL" in bm.last_error
    assert cons.get(timeout=1.0) is None  # the run ended: no hang
    s = bm.stop()
    assert s.state == "Error" and "PICO_MEMORY_FAIL" in s.last_error
    cons.detach()
    bm.start(max_events=10)  # a new run is possible after an error
    assert bm.wait_stopped(T_WAIT) and bm.stop().events == 10


def test_control_errors_are_clear():
    fake = make_fake()
    bm = BufferManager(fake, n_buffers=4)
    with pytest.raises(RuntimeError, match="configure"):
        bm.start()
    with pytest.raises(ValueError, match="n_buffers"):
        BufferManager(fake, n_buffers=1)
    bm.configure(*default_settings())
    with pytest.raises(RuntimeError, match="pause"):
        bm.pause()
    assert bm.stop() is None
    bm.resize(6)
    assert bm.n_buffers == 6 and bm._raw.shape == (6, 2, 16)


def test_configure_and_resize_while_paused_or_running():
    fake, bm = make_bm(rate=5000.0, n_buffers=16, n_segments=3)
    rec = Recorder()
    bm.add_obligatory_callback("rec", rec)
    bm.start()
    t0 = bm._t0
    assert bm.wait_processed(300, T_WAIT)
    bm.resize(40)  # while running: after the ring drained
    assert bm.n_buffers == 40 and bm._raw.shape[0] == 40 and bm.state == RunState.RUNNING
    assert bm.wait_processed(bm.stats().events + 300, T_WAIT)
    bm.pause()
    n_paused = bm.stats().events
    ap = bm.configure(*default_settings(n_samples=32, n_segments=2))  # while paused
    assert ap.n_samples == 32 and bm.state == RunState.PAUSED
    assert bm.stats().events == n_paused  # still paused: nothing acquired
    bm.resume()
    assert bm.wait_processed(n_paused + 300, T_WAIT)
    s = bm.stop(timeout=T_WAIT)
    check_against_truth(rec, fake, t0)
    assert s.events == s.triggers and rec.stamped_gen_ok


def test_control_calls_from_a_callback_do_not_deadlock():
    fake, bm = make_bm(rate=5000.0, n_buffers=4)
    errors: list[BaseException] = []
    returned: list[object] = []

    def cb(b):
        if b.event_number[0] == 50:
            for call in (bm.pause, lambda: bm.configure(*default_settings())):
                try:
                    call()
                except RuntimeError as e:
                    errors.append(e)
            returned.append(bm.stop())  # only requests the stop

    bm.add_obligatory_callback("ctl", cb, max_events=1)
    bm.start()
    assert bm.wait_stopped(T_WAIT)
    s = bm.stop(timeout=T_WAIT)
    assert len(errors) == 2 and all("callback" in str(e) for e in errors)
    assert returned == [None] and s.events == s.processed >= 50 and s.state == "Stopped"


def test_current_rate_over_the_sliding_window_matches_the_expected_rate():
    """Fake: Poisson triggers at R = 1000 Hz while armed, 0.1 ms readout per capture (host
    time not counted), so the expected trigger rate is 1 / (1/R + 0.1 ms + record) ~ 909 Hz.
    The 2 s window then holds ~1800 triggers; their count fluctuates by at most the Poisson
    sigma (dead time only makes the intervals more regular): 1/sqrt(1800) = 2.4 %, and
    the test allows 4 sigma = 9.4 %.  The mean over 2*10^4 triggers: 4/sqrt(2e4) = 2.8 %."""
    fake, bm = make_bm(rate=1000.0, n_buffers=64, count_host_time=False, rate_window=2.0)
    snaps = []

    def probe(b):
        if not snaps and b.event_number[-1] >= 20_000:
            snaps.append(bm.stats())

    bm.add_obligatory_callback("probe", probe)
    bm.start(max_events=25_000)
    assert bm.wait_stopped(T_WAIT)
    s = bm.stop(timeout=T_WAIT)
    st = snaps[0]
    record = 16 * 4e-9
    expected = 1.0 / (1e-3 + 1e-4 + record)
    assert st.state == RunState.RUNNING
    assert st.trigger_rate == pytest.approx(expected, rel=0.094)
    assert st.event_rate == pytest.approx(st.trigger_rate, rel=1e-3)
    assert s.mean_trigger_rate == pytest.approx(expected, rel=0.028)
    assert bm.stats().trigger_rate == 0.0  # not running: no current rate


def test_random_control_sequence_loses_nothing_and_never_mixes_generations():
    """A seeded random mix of pause/resume/configure/resize/latest while two obligatory
    consumers (a callback and a pull consumer with small batches) run."""
    rng = np.random.default_rng(2024)
    fake, bm = make_bm(rate=2e4, n_buffers=12, n_samples=16, n_segments=3)
    rec_cb = Recorder()
    bm.add_obligatory_callback("cb", rec_cb, max_events=5)
    pull = bm.add_obligatory("pull")
    rec_pull = Recorder()

    rng_pull = np.random.default_rng(7)

    def puller():
        while (b := pull.get(max_events=int(rng_pull.integers(1, 8)), timeout=T_WAIT)) is not None:
            rec_pull(b)
            pull.release(b)

    th = threading.Thread(target=puller)
    th.start()
    bm.start()
    t0 = bm._t0
    for _ in range(40):
        op = rng.integers(0, 5)
        if op == 0 and bm.state == RunState.RUNNING:
            bm.pause()
            bm.resume()
        elif op == 1:
            bm.configure(*default_settings(n_samples=int(rng.choice([16, 24])),
                                           n_segments=int(rng.integers(1, 5))))
        elif op == 2:
            bm.resize(int(rng.integers(4, 20)))
        elif op == 3:
            ev = bm.latest()
            assert ev is None or len(ev) == 1
        assert bm.wait_processed(bm.stats().events + int(rng.integers(1, 50)), T_WAIT)
    s = bm.stop(timeout=T_WAIT)
    th.join(T_WAIT)
    assert not th.is_alive()
    for rec in (rec_cb, rec_pull):
        check_against_truth(rec, fake, t0)
        assert rec.stamped_gen_ok and np.all(np.diff(rec.gens) >= 0)
    assert s.events == s.triggers == s.processed and s.discarded == 0


def test_latest_never_returns_an_event_of_an_older_configuration():
    gate = threading.Event()
    fake, bm = make_bm(rate=5000.0, n_buffers=8, gate=gate)
    gate.set()
    bm.add_obligatory_callback("null", lambda b: None)
    bm.start()
    assert bm.wait_processed(100, T_WAIT)
    gate.clear()  # hold the next capture "in flight"
    ap = bm.configure(*default_settings(n_samples=16, n_segments=2))  # same shape, new generation
    assert bm.latest() is None  # the old generation's newest event is not offered any more
    gate.set()
    ev = bm.wait_latest(0, timeout=T_WAIT)
    assert ev.applied is ap and np.all(ev.raw[:, :, 3] == ap.config_generation)
    s = bm.stop(timeout=T_WAIT)
    assert s.events == s.triggers


def test_stop_with_a_consumer_that_never_releases_ends_within_the_timeout(caplog):
    fake, bm = make_bm(rate=5000.0, n_buffers=4)
    stuck = bm.add_obligatory("stuck")  # registered, never pulls
    bm.start()
    deadline = time.monotonic() + T_WAIT
    while bm.stats().filled < 4:  # poll a condition with a deadline: the ring is full
        assert time.monotonic() < deadline
        bm.wait_latest(bm.stats().events, timeout=0.05)
    t = time.monotonic()
    with caplog.at_level(logging.WARNING):
        s = bm.stop(timeout=0.3)
    assert time.monotonic() - t < 0.3 + 2.0
    assert "stuck" in caplog.text
    assert s.events == 4 and s.processed == 0
    assert s.triggers == s.events + s.discarded and s.discarded == 1  # the capture that found no slot
    assert stuck.get(max_events=10, timeout=1.0) is not None  # its events are still there to read
