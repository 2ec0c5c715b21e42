"""PicoScope backend: block and rapid-block captures through the fake C library.

Raw data, overflow bitmask decoding, trigger time offsets, auto-trigger flags,
live time, the wait/stop protocol and the one-driver-thread rule.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np
import pytest
from fake_picosdk import FakeSDK, fake_backend, installed, make_unit

from picodaq_ioc.scope.types import ChannelConfig, TimebaseConfig, TriggerConfig

TRIG = TriggerConfig(source="A", threshold_v=0.05, auto_trigger_s=0.5)


def _capture(b, chans, tb, trig=TRIG):
    a = b.configure(chans, tb, trig)
    b.arm()
    assert b.wait(5.0)
    return a, b.read()


@pytest.mark.parametrize("lib", ["ps2000a", "ps4000", "ps5000a"])
def test_block_capture_raw_and_overflow_bits_per_channel(lib):
    # B's pulse (0.5 V) leaves its ±200 mV range: only B's overflow bit may be set
    with fake_backend(lib, amplitude_v={"A": 0.1, "B": 0.5}) as (b, sdk, unit):
        b.open()
        chans = {"A": ChannelConfig(range_v=0.2), "B": ChannelConfig(range_v=0.2)}
        a, cap = _capture(b, chans, TimebaseConfig(16e-9, 300, 0.1))
        assert cap.channels == ("A", "B")
        assert cap.raw.dtype == np.int16 and cap.raw.shape == (1, 2, 300)
        np.testing.assert_array_equal(cap.raw, unit.captured[:, :2, :])
        assert cap.overflow.tolist() == [[False, True]]
        assert int(unit.overflow[0]) == 0b10  # what the driver reported
        assert np.max(cap.raw[0, 1]) == a.max_adc  # clipped at the true full-scale code
        assert len(sdk.calls_to("GetValues")) == 1  # one GetValues reads every channel
        assert unit.buffers == {}  # no driver pointer left into our arrays


@pytest.mark.parametrize("lib", ["ps2000a", "ps4000", "ps5000a"])
def test_rapid_block_segments_and_per_segment_overflow(lib):
    # amplitude grows by 25 % per segment: 0.17 V fits ±200 mV, 0.2125 V and more do not
    with fake_backend(lib, amplitude_v={"A": 0.17, "B": 0.05}) as (b, sdk, unit):
        b.open()
        chans = {"A": ChannelConfig(range_v=0.2), "B": ChannelConfig(range_v=0.2)}
        a, cap = _capture(b, chans, TimebaseConfig(16e-9, 128, 0.25, n_segments=5))
        assert a.n_segments == 5 and unit.n_captures == 5
        assert sdk.calls_to("MemorySegments")[-1].values[1] == 5
        assert sdk.calls_to("SetNoOfCaptures")[-1].values[1] == 5
        assert cap.raw.shape == (5, 2, 128)
        np.testing.assert_array_equal(cap.raw, unit.captured)
        assert cap.overflow[:, 0].tolist() == [False, True, True, True, True]
        assert not cap.overflow[:, 1].any()
        (bulk,) = sdk.calls_to("GetValuesBulk")
        # noOfSamples is a uint32_t* in every driver's prototype; segments 0..4
        assert type(bulk.args[1]._obj) is ctypes.c_uint32
        assert bulk.values[2:4] == (0, 4)
        if lib == "ps4000":
            sets = sdk.calls_to("SetDataBufferBulk")
            assert {type(c.args[4]) for c in sets} == {ctypes.c_uint16}  # waveform index is uint16
        assert unit.buffers == {}  # every per-segment buffer cleared after the read
        # segment-resolved trigger offsets from GetValuesTriggerTimeOffsetBulk64
        dt = a.sample_interval_s
        np.testing.assert_allclose(cap.trigger_time_offset_s, [-0.25 * dt / (1 + s) for s in range(5)],
                                   atol=1e-12)
        np.testing.assert_allclose(cap.t_trigger, cap.t_ready + cap.trigger_time_offset_s)


def test_ps2000a_rapid_block_needs_our_bulk_read():
    """pico-python cannot read PS2000a rapid block: our call path is what makes it work."""
    sdk = FakeSDK([make_unit("ps2000a")])
    with installed(sdk):
        from picoscope import ps2000a

        ps = ps2000a.PS2000a()
        try:
            ps.setChannel("A", "DC", 0.2)
            ps.setSamplingInterval(16e-9, 100 * 16e-9)
            ps.memorySegments(3)
            ps.setNoOfCaptures(3)
            ps.runBlock(0.1)
            ps.waitReady(0)
            with pytest.raises(AttributeError, match="_lowLevelSetDataBufferBulk"):
                ps.getDataRawBulk("A")
            # and its GetValuesBulk passes an int16 sample count where the C API has uint32_t*
            with pytest.raises(OSError, match="PICO_INVALID_PARAMETER"):
                ps._lowLevelGetValuesBulk(100, 0, 2, 1, 0, np.zeros(3, dtype=np.int16))
            # its GetTriggerTimeOffset reads the signed offset as two unsigned halves
            assert ps.getTriggerTimeOffset(0) > 1e6  # seconds: nonsense for a -4 ns offset
        finally:
            ps.close()


def test_block_trigger_offset_is_signed_and_sub_sample():
    with fake_backend("ps2000a") as (b, sdk, unit):
        b.open()
        a, cap = _capture(b, {"A": ChannelConfig(range_v=0.2)}, TimebaseConfig(16e-9, 100, 0.1))
        (off,) = cap.trigger_time_offset_s
        assert -a.sample_interval_s < off <= 0
        assert off == pytest.approx(-0.25 * a.sample_interval_s, abs=1e-12)
        assert type(sdk.calls_to("GetTriggerTimeOffset64")[0].args[1]._obj) is ctypes.c_int64


def test_auto_trigger_flag_best_effort():
    with fake_backend("ps5000a", pulse=False) as (b, sdk, unit):
        b.open()
        tb, chans = TimebaseConfig(16e-9, 100, 0.1, n_segments=3), {"A": ChannelConfig(range_v=0.2)}
        _, cap = _capture(b, chans, tb)
        assert cap.auto_triggered.tolist() == [True, True, True]  # flat: no crossing at n_pre
        unit.pulse = True
        _, cap = _capture(b, chans, tb)
        assert cap.auto_triggered.tolist() == [False, False, False]
        # without an auto-trigger time the unit only captures on a real trigger
        _, cap = _capture(b, chans, tb, TriggerConfig(source="A", threshold_v=0.05, auto_trigger_s=None))
        assert not cap.auto_triggered.any()


def test_capture_metadata_live_time_sequence_and_generation():
    with fake_backend("ps4000") as (b, sdk, unit):
        b.open()
        chans, tb = {"A": ChannelConfig(range_v=0.2)}, TimebaseConfig(50e-9, 100, 0.1)
        a1, c1 = _capture(b, chans, tb)
        b.arm()
        assert b.wait(5.0)
        c2 = b.read()
        assert (c1.sequence, c2.sequence) == (1, 2)
        assert c1.applied is a1 and a1.config_generation == 1
        for c in (c1, c2):
            assert c.t_armed <= c.t_ready <= b.clock()
            assert 0.0 <= c.live_time_s <= c.t_ready - c.t_armed
        a2, c3 = _capture(b, chans, tb)
        assert a2.config_generation == 2 and c3.applied.config_generation == 2


def test_wait_times_out_and_stop_interrupts_a_waiting_thread():
    with fake_backend("ps2000a", never_ready=True) as (b, sdk, unit):
        b.open()
        b.configure({"A": ChannelConfig(range_v=0.2)}, TimebaseConfig(16e-9, 100, 0.1), TRIG)
        b.arm()
        assert b.wait(0.02) is False  # timeout: still armed
        assert unit.running
        result: list[bool] = []
        waiter = threading.Thread(target=lambda: result.append(b.wait(60.0)))
        waiter.start()
        # wait until the waiter is really polling before stopping it
        n0 = len(sdk.calls_to("IsReady"))
        deadline = b.clock() + 5.0
        while len(sdk.calls_to("IsReady")) < n0 + 3 and b.clock() < deadline:
            threading.Event().wait(0.001)
        b.stop()
        waiter.join(5.0)
        assert not waiter.is_alive() and result == [False]
        assert sdk.calls_to("Stop") and not unit.running
        with pytest.raises(Exception, match="read\\(\\) needs a capture"):
            b.read()


def test_configure_from_another_thread_cancels_a_wait():
    with fake_backend("ps2000a", never_ready=True) as (b, sdk, unit):
        b.open()
        chans, tb = {"A": ChannelConfig(range_v=0.2)}, TimebaseConfig(16e-9, 100, 0.1)
        b.configure(chans, tb, TRIG)
        b.arm()
        result: list[bool] = []
        waiter = threading.Thread(target=lambda: result.append(b.wait(60.0)))
        waiter.start()
        a = b.configure(chans, tb, TRIG)  # goes to the driver thread between two polls
        waiter.join(5.0)
        assert not waiter.is_alive() and result == [False]
        assert a.config_generation == 2 and not unit.running


def test_every_driver_call_runs_on_one_worker_thread():
    with fake_backend("ps5000a") as (b, sdk, unit):
        b.open()
        _capture(b, {"A": ChannelConfig(range_v=0.2)}, TimebaseConfig(16e-9, 100, 0.1, n_segments=2))
        b.ping()
        b.stop()
        threads = {c.thread for c in sdk.calls}
        assert len(threads) == 1
        assert threads != {threading.get_ident()}


@pytest.mark.parametrize("lib,true_max", [("ps3000a", 32512), ("ps4000a", 32767), ("ps6000", 32512)])
def test_other_families_block_and_rapid_block(lib, true_max):
    """3000A/4000A/6000 through the same paths (header max code where there is no MaximumValue)."""
    with fake_backend(lib, amplitude_v={"A": 0.1}) as (b, sdk, unit):
        b.open()
        assert b.max_adc == true_max == unit.max_adc
        for n_seg in (1, 3):
            a, cap = _capture(b, {"A": ChannelConfig(range_v=0.2)}, TimebaseConfig(16e-9, 100, 0.1, n_seg))
            assert a.sample_interval_s == pytest.approx(unit.dt(sdk.calls_to("GetTimebase2")[-1].values[1]))
            np.testing.assert_array_equal(cap.raw[:, 0], unit.captured[:, 0])
            assert np.isfinite(cap.trigger_time_offset_s).all()
            assert unit.buffers == {}
