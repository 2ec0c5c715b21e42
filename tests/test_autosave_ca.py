"""Autosave over real Channel Access: a caput is saved, a restarted IOC restores it,
``--no-restore`` skips it, a corrupt file is reported in StatusMessage_RBV and ignored."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys

import pytest
from reliability_helpers import Proc, ca_env, free_port, python_argv, run_client, wait_until

pytestmark = pytest.mark.ca

PREFIX = "ASV:"

_CLIENT = """
import sys
from caproto.sync.client import read, write
op, name = sys.argv[1], sys.argv[2]
if op == 'put':
    write(name, [float(sys.argv[3])], notify=True, timeout=5, repeater=False)
data = read(name, timeout=5, repeater=False).data
print('VALUE', data[0].decode() if isinstance(data[0], bytes) else data[0], flush=True)
"""


def _serve(path: str, restore: str) -> None:  # runs in the IOC subprocess
    import logging

    from caproto import ChannelType
    from caproto.server import PVGroup, pvproperty

    from picodaq_ioc.ioc.autosave import install_autosave
    from picodaq_ioc.ioc.ca_server import IsolatedContext

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(levelname)s %(message)s")

    class Group(PVGroup):
        Level = pvproperty(value=0.0)
        Level_RBV = pvproperty(value=0.0, read_only=True)
        StatusMessage_RBV = pvproperty(value="ok", dtype=ChannelType.STRING, read_only=True)

        @Level.putter
        async def Level(self, instance, value):
            await self.Level_RBV.write(value)
            return value

    grp = Group(prefix=PREFIX)
    install_autosave(grp, grp.pvdb, path, restore=restore == "1", period=0.1, debounce=0.2)

    async def serve() -> None:
        # served as the IOC serves (cli.serve): the project's server, SIGINT/SIGTERM handled in the
        # loop. caproto's own run() turns SIGINT into KeyboardInterrupt and its subscription loop
        # swallows the cancellation, so that shutdown could take > 30 s on a loaded machine.
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        server = loop.create_task(IsolatedContext(grp.pvdb, ["127.0.0.1"]).run(log_pv_names=False))
        print("IOC READY", flush=True)
        await stop.wait()
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server

    asyncio.run(serve())


def _ca(env: dict, *args: str) -> str:
    rc, out, err = run_client(python_argv("-c", _CLIENT, *args), env)
    assert rc == 0, err
    return out.split("VALUE ", 1)[1].strip()


def _start(path, restore: bool, env: dict) -> Proc:
    ioc = Proc(python_argv(__file__, str(path), "1" if restore else "0"), env)
    assert ioc.out.wait_for("IOC READY", 20), ioc.out.text()
    wait_until(lambda: _ca(env, "get", PREFIX + "Level_RBV") is not None, 20, what="IOC answering")
    return ioc


def test_put_saved_and_restored_after_restart(tmp_path) -> None:
    path = tmp_path / "lab.autosave.json"
    env = ca_env(free_port())
    with _start(path, True, env) as ioc:
        assert _ca(env, "put", PREFIX + "Level", "0.125") == "0.125"
        wait_until(lambda: path.exists() and json.loads(path.read_text())["settings"].get("Level") == 0.125,
                   10, what="autosave file with the new value")
        ioc.p.send_signal(signal.SIGINT)
        ioc.p.wait(30)  # a clean shutdown can take >10 s on a loaded 2-core CI box
    # restart: the setting and its readback come back
    with _start(path, True, env) as ioc:
        wait_until(lambda: float(_ca(env, "get", PREFIX + "Level_RBV")) == 0.125, 10, what="restored RBV")
        wait_until(lambda: _ca(env, "get", PREFIX + "StatusMessage_RBV") == "autosave: 1 restored", 10,
                   what="restore status")
        assert "autosave: 1 restored from" in ioc.out.text()
    # --no-restore: the defaults of the IOC, the saved file is left alone
    with _start(path, False, env) as ioc:
        assert float(_ca(env, "get", PREFIX + "Level")) == 0.0
        assert "restore skipped (--no-restore)" in ioc.out.text()
    assert json.loads(path.read_text())["settings"]["Level"] == 0.125


def test_corrupt_file_is_reported_not_fatal(tmp_path) -> None:
    path = tmp_path / "lab.autosave.json"
    path.write_text('{"format": "picodaq-ioc autosave 1", "settings": {"Level": 0.5,,}}')
    env = ca_env(free_port())
    with _start(path, True, env) as ioc:
        wait_until(lambda: _ca(env, "get", PREFIX + "StatusMessage_RBV").startswith("autosave file ignored"),
                   10, what="status message")
        assert float(_ca(env, "get", PREFIX + "Level")) == 0.0
        assert _ca(env, "put", PREFIX + "Level", "0.75") == "0.75"  # the IOC works normally
        wait_until(lambda: json.loads(path.read_text())["settings"].get("Level") == 0.75, 10,
                   what="fresh autosave file")
        assert "not valid JSON at line 1" in ioc.out.text()
    assert (tmp_path / "lab.autosave.json.bad").read_text().endswith(",,}}")


REAL_CONFIG = {
    "device": {"backend": "sim", "model": "2000a"},
    "channels": {"A": {"range": 0.2, "coupling": "DC"}, "B": {"range": 0.5, "coupling": "AC"}},
    "timebase": {"sample_interval": 8.0e-9, "samples": 200, "pretrigger": 0.1},
    "trigger": {"enabled": True, "source": "A", "level": -0.02, "direction": "Falling", "auto_timeout": 0.2},
    "simulation": {"seed": 1, "realtime": True,
                   "sources": [{"kind": "muon", "channels": ["A"], "rate": 50.0, "amplitude": -0.08}]},
}


def test_real_ioc_restores_settings_not_run_control(ioc_factory, tmp_path) -> None:
    from reliability_helpers import connect_when_ready

    path = tmp_path / "lab.autosave.json"
    args = ["--autosave", str(path)]
    h = ioc_factory(REAL_CONFIG, args)
    c = connect_when_ready(h.port, h.pv("State_RBV"), user="autosave")
    for name, value in (("A:Range", 0.1), ("B:Coupling", "DC"), ("Trigger:Level", -0.03), ("NumSamples", 300),
                        ("Acquire", "Start")):
        ok, msg = c.put(h.pv(name), value)
        assert ok, (name, msg)
    wait_until(lambda: path.exists() and json.loads(path.read_text())["settings"].get("NumSamples") == 300,
               15, what="autosave file")
    saved = json.loads(path.read_text())["settings"]
    assert saved["A:Range"] == 0.1 and saved["B:Coupling"] == "DC" and saved["Trigger:Level"] == -0.03
    assert "Acquire" not in saved and not any(k.endswith("_RBV") for k in saved)
    c.close()
    assert h.stop() == 0
    h2 = ioc_factory(REAL_CONFIG, args)
    c = connect_when_ready(h2.port, h2.pv("State_RBV"), user="autosave")
    try:
        wait_until(lambda: float(c.value(h2.pv("A:Range_RBV"))) == 0.1, 15, what="restored A:Range")
        assert c.value(h2.pv("B:Coupling_RBV")) == "DC"
        assert float(c.value(h2.pv("Trigger:Level_RBV"))) == -0.03
        assert int(c.value(h2.pv("NumSamples_RBV"))) == 300
        # the setpoints show the restored requests too (not the config file's)
        assert float(c.value(h2.pv("A:Range"))) == 0.1
        assert c.value(h2.pv("B:Coupling")) == "DC"
        assert float(c.value(h2.pv("Trigger:Level"))) == -0.03
        assert int(c.value(h2.pv("NumSamples"))) == 300
        assert c.value(h2.pv("State_RBV")) in ("Idle", "Stopped")  # run control is not restored
    finally:
        c.close()
    assert "autosave:" in h2.log() and "restored" in h2.log()


#: channel A on its 50 mV range; the trigger level must stay inside A's window
#: |level + offset| <= range, so the saved offset and level below are each refused alone
#: (offset 0.2 with level -0.04: |0.16| > 0.05; level -0.2 with offset 0: |-0.2| > 0.05)
#: and valid only together (|-0.2 + 0.2| = 0)
TOGETHER_CONFIG = {
    "device": {"backend": "sim", "model": "2000a"},
    "channels": {"A": {"range": 0.05, "coupling": "DC", "offset": 0.0}},
    "timebase": {"sample_interval": 8.0e-9, "samples": 200, "pretrigger": 0.1},
    "trigger": {"enabled": True, "source": "A", "level": -0.04, "direction": "Falling", "auto_timeout": 0.2},
    "simulation": {"seed": 1, "realtime": True,
                   "sources": [{"kind": "muon", "channels": ["A"], "rate": 50.0, "amplitude": -0.03}]},
}


def _autosave_file(path, settings: dict) -> None:
    from picodaq_ioc.ioc.autosave import FORMAT

    path.write_text(json.dumps({"format": FORMAT, "saved": "2026-11-25T12:00:00Z", "prefix": "X:",
                                "settings": settings}, indent=2))


def test_restore_is_one_atomic_configuration_change(ioc_factory, tmp_path) -> None:
    """Saved settings valid only in combination are restored, whatever their order."""
    from reliability_helpers import connect_when_ready

    for i, settings in enumerate(({"A:Offset": 0.2, "Trigger:Level": -0.2, "A:Range": 0.05},
                                  {"Trigger:Level": -0.2, "A:Offset": 0.2})):
        path = tmp_path / f"together{i}.autosave.json"
        _autosave_file(path, settings)
        h = ioc_factory(TOGETHER_CONFIG, ["--autosave", str(path)])
        c = connect_when_ready(h.port, h.pv("State_RBV"), user="autosave")
        try:
            wait_until(lambda h=h: " restored" in h.log(), 15, what="restore report")
            assert "autosave: 2 restored from" in h.log(), h.log()[-3000:]
            assert h.log().count("applied autosave restore") == 1  # one configuration change
            assert float(c.value(h.pv("A:Offset_RBV"))) == pytest.approx(0.2)
            assert float(c.value(h.pv("Trigger:Level_RBV"))) == pytest.approx(-0.2)
            assert float(c.value(h.pv("A:Range_RBV"))) == pytest.approx(0.05)
            assert float(c.value(h.pv("A:Offset"))) == pytest.approx(0.2)
            assert float(c.value(h.pv("Trigger:Level"))) == pytest.approx(-0.2)
        finally:
            c.close()
        assert h.stop() == 0


def test_restore_refused_as_a_whole_keeps_the_config(ioc_factory, tmp_path) -> None:
    """A saved combination the device refuses is reported and none of it is applied
    (no partial configuration); the setpoints keep showing the configuration in force."""
    from reliability_helpers import connect_when_ready

    path = tmp_path / "refused.autosave.json"
    # each value is within its PV's limits, the combination is not: |-0.3 + 0.2| > 0.05
    _autosave_file(path, {"A:Offset": 0.2, "Trigger:Level": -0.3, "NumSamples": 300})
    h = ioc_factory(TOGETHER_CONFIG, ["--autosave", str(path)])
    c = connect_when_ready(h.port, h.pv("State_RBV"), user="autosave")
    try:
        wait_until(lambda: "refused" in c.value(h.pv("StatusMessage_RBV")), 15, what="restore status")
        wait_until(lambda: "autosave: 0 restored, 3 refused" in h.log(), 15, what="restore report")
        report = h.log().split("autosave: 0 restored, 3 refused", 1)[1].splitlines()[0]
        assert "A:Offset" in report and "Trigger:Level" in report and "NumSamples" in report, report
        for name, value in (("A:Offset", 0.0), ("Trigger:Level", -0.04)):
            assert float(c.value(h.pv(name + "_RBV"))) == pytest.approx(value), name
            assert float(c.value(h.pv(name))) == pytest.approx(value), name
        assert int(c.value(h.pv("NumSamples_RBV"))) == 200
        assert int(c.value(h.pv("NumSamples"))) == 200
        assert c.put(h.pv("Acquire"), "Start")[0]  # the IOC works normally
    finally:
        c.close()
    assert "trigger level" in h.log()


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2])
