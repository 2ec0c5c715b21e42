"""PicoScope backend: every error path and reconnecting, through the fake C library.

Missing pico-python, missing SDK library (in process and, with the real dynamic
loader, in a subprocess that must exit without any traceback), no unit, wrong
serial, busy driver, rejected settings, power problems, unplug mid-run and the
re-open that re-applies the whole configuration.
"""

from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fake_picosdk import (
    PICO_BUSY,
    PICO_DRIVER_FUNCTION,
    PICO_INVALID_VOLTAGE_RANGE,
    PICO_NOT_RESPONDING,
    PICO_POWER_SUPPLY_NOT_CONNECTED,
    FakeSDK,
    fake_backend,
    installed,
)

from picodaq_ioc.scope.errors import (
    Busy,
    DeviceDisconnected,
    DeviceNotFound,
    DriverNotAvailable,
    InvalidConfig,
)
from picodaq_ioc.scope.picoscope import PicoScopeBackend, loader, make_picoscope_backend
from picodaq_ioc.scope.types import (
    ChannelConfig,
    Coupling,
    SigGenConfig,
    TimebaseConfig,
    TriggerConfig,
    WaveType,
)

REPO = Path(__file__).resolve().parents[1]
CHANS = {"A": ChannelConfig(range_v=0.2)}
TB = TimebaseConfig(16e-9, 100, 0.1)
TRIG = TriggerConfig(source="A", threshold_v=0.05, auto_trigger_s=0.5)


@contextlib.contextmanager
def no_unraisable():
    """Fail if anything (e.g. pico-python's __del__) raises into sys.unraisablehook."""
    seen: list = []
    old = sys.unraisablehook
    sys.unraisablehook = seen.append
    try:
        yield seen
        gc.collect()
    finally:
        sys.unraisablehook = old
    assert seen == [], [f"{u.exc_type.__name__}: {u.exc_value}" for u in seen]


@pytest.mark.parametrize("family,lib,soname", [("2000a", "ps2000a", "libps2000a.so"),
                                               ("4000", "ps4000", "libps4000.so.2"),
                                               ("5000a", "ps5000a", "libps5000a.so"),
                                               ("2000", "ps2000", "libps2000.so")])
def test_missing_sdk_library_gives_one_clear_line(family, lib, soname):
    with no_unraisable(), installed(FakeSDK(missing=True)) as sdk:
        b = make_picoscope_backend({"device": {"model": family}})
        with pytest.raises(DriverNotAvailable) as ei:
            b.open()
        b.close()
        del b
    msg = str(ei.value)
    assert "\n" not in msg
    assert soname in msg and f"'lib{lib}'" in msg  # the library file and the SDK package
    assert "LD_LIBRARY_PATH=/opt/picoscope/lib" in msg and loader.LIBRARY_PATH_ENV in msg
    assert sdk.loaded == [soname]


def test_missing_sdk_with_the_real_loader_exits_cleanly(tmp_path):
    """Real dlopen (no fake): the library directory is empty, so loading must fail."""
    script = textwrap.dedent("""
        from picodaq_ioc.scope.errors import DriverNotAvailable
        from picodaq_ioc.scope.picoscope import make_picoscope_backend
        for family in ("2000a", "4000", "5000a", "2000"):
            b = make_picoscope_backend({"device": {"model": family}})
            try:
                b.open()
            except DriverNotAvailable as exc:
                print("OK", family, exc)
            b.close()
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO), **{loader.LIBRARY_PATH_ENV: str(tmp_path)})
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [ln.split()[1] for ln in lines] == ["2000a", "4000", "5000a", "2000"]
    assert all(ln.startswith("OK") and "cannot open shared object file" in ln for ln in lines)
    assert f"{tmp_path}/libps2000a.so" in lines[0]
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr


def test_missing_pico_python_names_the_extra(monkeypatch):
    monkeypatch.setattr(loader, "_SAFE_CLASSES", {})
    monkeypatch.setitem(sys.modules, "picoscope.ps2000a", None)  # import now fails
    b = PicoScopeBackend("2000a")
    with pytest.raises(DriverNotAvailable, match=r"pip install 'picodaq-ioc\[hw\]'"):
        b.open()
    b.close()


@pytest.mark.parametrize("lib", ["ps2000a", "ps4000", "ps5000a", "ps2000"])
def test_no_scope_and_unknown_serial(lib):
    with no_unraisable():
        with fake_backend(lib, units=[]) as (b, sdk, _):
            with pytest.raises(DeviceNotFound, match=lib):
                b.open()
        with fake_backend(lib, serial="AB1/01") as (b, sdk, unit):
            with pytest.raises(DeviceNotFound, match="ZZ9/99"):
                b.open("ZZ9/99")
            assert not unit.open  # nothing left open
            assert b.open("AB1/01").serial == "AB1/01"
        gc.collect()


def test_failed_open_with_handle_minus_one_leaves_no_del_noise():
    # pico-python's PS5000a stores the handle before checking the status; its __del__ would
    # then call CloseUnit(-1) and print "Exception ignored ... PICO_INVALID_HANDLE"
    with no_unraisable(), fake_backend("ps5000a", units=[]) as (b, sdk, _):
        sdk.not_found_handle = -1
        with pytest.raises(DeviceNotFound):
            b.open()
        b.close()
        gc.collect()
        assert not sdk.calls_to("CloseUnit")


def test_unknown_family_is_a_config_error():
    with pytest.raises(InvalidConfig) as ei:
        make_picoscope_backend({"device": {"model": "9000"}})
    assert ei.value.field == "device.model" and "2000a" in ei.value.allowed


def test_busy_driver_maps_to_busy():
    with fake_backend("ps2000a") as (b, sdk, unit):
        b.open()
        b.configure(CHANS, TB, TRIG)
        sdk.inject("RunBlock", PICO_DRIVER_FUNCTION)
        with pytest.raises(Busy, match="PICO_DRIVER_FUNCTION"):
            b.arm()
        b.arm()
        assert b.wait(5.0)
        sdk.inject("GetValues", PICO_BUSY)
        with pytest.raises(Busy, match="PICO_BUSY"):
            b.read()


def test_driver_rejection_names_field_code_and_request():
    with fake_backend("ps5000a") as (b, sdk, unit):
        b.open()
        sdk.inject("SetChannel", PICO_INVALID_VOLTAGE_RANGE)
        with pytest.raises(InvalidConfig) as ei:
            b.configure(CHANS, TB, TRIG)
        e = ei.value
        assert e.field == "channels.A.range" and e.driver_code == "PICO_INVALID_VOLTAGE_RANGE"
        assert "±0.2 V" in str(e) and "SetChannel" in str(e)
        assert b.applied is None  # a failed configure leaves nothing half-applied behind
        sdk.inject("SetChannel", 0x50)  # PICO_INVALID_ANALOGUE_OFFSET
        with pytest.raises(InvalidConfig) as ei:
            b.configure(CHANS, TB, TRIG)
        assert ei.value.field == "channels.A.offset"
        sdk.inject("GetTimebase2", 0x0E)  # PICO_INVALID_TIMEBASE
        with pytest.raises(InvalidConfig) as ei:
            b.configure(CHANS, TB, TRIG)
        assert ei.value.field == "timebase.sample_interval" and ei.value.driver_code == "PICO_INVALID_TIMEBASE"
        with pytest.raises(Exception, match="arm\\(\\) before a successful configure"):
            b.arm()
        assert b.configure(CHANS, TB, TRIG).config_generation == 1  # and it recovers


@pytest.mark.parametrize("chans,field", [
    ({"A": ChannelConfig(range_v=0.2, coupling=Coupling.DC50)}, "channels.A.coupling"),
    ({"A": ChannelConfig(range_v=0.2, offset_v=1.0)}, "channels.A.offset"),
    ({"A": ChannelConfig(range_v=0.2), "E": ChannelConfig()}, "channels.E"),
    ({"A": ChannelConfig(enabled=False)}, "channels"),
])
def test_table_validation_before_any_driver_call(chans, field):
    with fake_backend("ps2000a") as (b, sdk, unit):
        b.open()
        sdk.calls.clear()
        with pytest.raises(InvalidConfig) as ei:
            b.configure(chans, TB, TRIG)
        assert ei.value.field == field and ei.value.allowed
        assert sdk.calls == []


def test_siggen_waveform_the_driver_lacks():
    with fake_backend("ps2000") as (b, sdk, unit):
        b.open()
        with pytest.raises(InvalidConfig) as ei:
            b.configure(CHANS, TimebaseConfig(20e-9, 100, 0.0), TRIG,
                        SigGenConfig(enabled=True, waveform=WaveType.SINC, frequency_hz=1e3))
        assert ei.value.field == "siggen.waveform"


def test_power_supply_problems():
    # ps2000a: pico-python raises, we say what to do
    with no_unraisable(), fake_backend("ps2000a", open_status=PICO_POWER_SUPPLY_NOT_CONNECTED) as (b, sdk, u):
        with pytest.raises(DeviceNotFound, match="power supply"):
            b.open()
    # ps5000a: pico-python switches to USB power itself (ChangePowerSource) and the unit opens
    with fake_backend("ps5000a", open_status=PICO_POWER_SUPPLY_NOT_CONNECTED) as (b, sdk, u):
        b.open()
        assert sdk.calls_to("ChangePowerSource")[0].values[1] == PICO_POWER_SUPPLY_NOT_CONNECTED


def _settings_calls(sdk, start: int) -> list:
    keep = ("SetChannel", "MemorySegments", "SetNoOfCaptures", "GetTimebase2", "SetSimpleTrigger",
            "SetSigGenBuiltIn", "SetDeviceResolution")
    return [(c.name, c.values[1:]) for c in sdk.calls[start:] if c.name.endswith(keep)]


@pytest.mark.parametrize("lib", ["ps2000a", "ps4000", "ps5000a"])
def test_not_responding_mid_run_then_reopen_reapplies_everything(lib):
    kw = {"resolution_bits": 12} if lib == "ps5000a" else {}
    with no_unraisable(), fake_backend(lib, backend_kw=kw) as (b, sdk, unit):
        b.open()
        start = len(sdk.calls)
        sg = SigGenConfig(enabled=True, waveform=WaveType.SINE, frequency_hz=1e3, pk_to_pk_v=0.2)
        tb = TimebaseConfig(16e-9, 100, 0.1, n_segments=3)
        a1 = b.configure({"A": ChannelConfig(range_v=0.2), "B": ChannelConfig(range_v=1.0)}, tb, TRIG, sg)
        first = _settings_calls(sdk, start)
        handle1 = unit.handle
        b.arm()
        sdk.inject("IsReady", PICO_NOT_RESPONDING, after=1)
        with pytest.raises(DeviceDisconnected, match="PICO_NOT_RESPONDING"):
            b.wait(5.0)
        start = len(sdk.calls)
        a2 = b.reopen()
        assert unit.handle != handle1 and sdk.calls_to("OpenUnit")[-1].status == 0
        assert a2.config_generation == a1.config_generation + 1
        assert (a2.channels, a2.n_segments, a2.siggen, a2.resolution_bits) == \
               (a1.channels, a1.n_segments, a1.siggen, a1.resolution_bits)
        again = _settings_calls(sdk, start)
        if lib == "ps5000a":
            assert again[0] == ("ps5000aSetDeviceResolution", (1,))
            again = again[1:]
        assert again == first  # the same settings, in the same order, sent again
        b.arm()
        assert b.wait(5.0)
        assert b.read().applied.config_generation == a2.config_generation


def test_unplug_then_open_and_configure_again():
    with no_unraisable(), fake_backend("ps2000a") as (b, sdk, unit):
        b.open()
        b.configure(CHANS, TB, TRIG)
        b.arm()
        sdk.unplug()
        with pytest.raises(DeviceDisconnected):
            b.wait(5.0)
        assert b.ping() is False
        with pytest.raises(DeviceNotFound):
            b.open()  # still unplugged: the caller retries with back-off
        with pytest.raises(DeviceDisconnected, match="not open"):
            b.configure(CHANS, TB, TRIG)
        sdk.replug()
        b.open()
        a = b.configure(CHANS, TB, TRIG)
        assert a.config_generation == 2
        assert b.ping() is True
        b.arm()
        assert b.wait(5.0)
        assert b.read().raw.shape == (1, 1, 100)
        b.close()
        b.close()  # idempotent


def test_ps2000_unit_gone_mid_run():
    with fake_backend("ps2000") as (b, sdk, unit):
        b.open()
        b.configure(CHANS, TimebaseConfig(20e-9, 100, 0.0), TRIG)
        b.arm()
        sdk.unplug()
        with pytest.raises(DeviceDisconnected, match="ps2000_ready"):
            b.wait(5.0)
        b.close()  # never raises, even with the unit gone


@pytest.mark.parametrize("code,exc_type", [
    ("PICO_NOT_RESPONDING", DeviceDisconnected),
    ("PICO_INVALID_HANDLE", DeviceDisconnected),
    ("PICO_CYUSB_REQUEST_FAILED", DeviceDisconnected),
    ("PICO_DRIVER_FUNCTION", Busy),
    ("PICO_BUSY", Busy),
    ("PICO_NOT_FOUND", DeviceNotFound),
    ("PICO_INVALID_VOLTAGE_RANGE", InvalidConfig),
])
def test_pico_python_error_text_mapping(code, exc_type):
    from picodaq_ioc.scope.picoscope.status import map_error

    # the exact text pico-python's checkResult produces
    exc = OSError(f"Error calling _lowLevelSetChannel: {code} (some description)")
    err = map_error(exc, driver="ps2000a", action="SetChannel", asked="channel A ±0.2 V")
    assert type(err) is exc_type and code in str(err)
    if exc_type is InvalidConfig:
        assert err.driver_code == code and err.field == "range" and "channel A ±0.2 V" in str(err)
    # power problems: not found while opening, a disconnect later
    power = OSError("Error calling _lowLevelOpenUnit: PICO_POWER_SUPPLY_NOT_CONNECTED (x)")
    assert type(map_error(power, driver="ps4000a", action="OpenUnit", opening=True)) is DeviceNotFound
    assert type(map_error(power, driver="ps4000a", action="RunBlock")) is DeviceDisconnected
