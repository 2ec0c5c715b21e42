"""PV Access next to Channel Access (``--pva``): the same PVs, values, metadata and put path.

Needs the ``pva`` extra (p4p); CI installs it (it is in the ``test`` extra), so these tests are
skipped only where p4p is not importable.
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from ca_tools import popen_tool
from conftest import wait_for

p4p = pytest.importorskip("p4p", reason="PV Access tests need the 'pva' extra (pip install p4p)")
from p4p.client.thread import Context, RemoteError  # noqa: E402

pytestmark = [pytest.mark.pva, pytest.mark.ca]


def pva_context(h) -> Context:
    """A p4p client talking to ``h``'s PVA server only (no environment, loopback)."""
    return Context("pva", conf=h.pva_conf, useenv=False)


def list_pvs(h) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "picodaq_ioc", "--prefix", h.prefix, "--list-pvs"],
                         capture_output=True, text=True, timeout=60, env=h.env, check=True).stdout
    names = out.split()
    assert len(names) > 100, out
    return names


@pytest.fixture(scope="module")
def pva_ioc(module_ioc_factory):
    return module_ioc_factory(pva=True)


def test_p4p_cli_get_and_monitor_read_every_pv(pva_ioc):
    """``python -m p4p.client.cli get`` answers every PV of ``--list-pvs`` and the Frame PV;
    ``pvmonitor`` (EPICS base) delivers a first update of each."""
    h = pva_ioc
    names = [*list_pvs(h), h.pv("Frame")]
    cli = [sys.executable, "-m", "p4p.client.cli", "-w", "20"]
    r = subprocess.run([*cli, "get", *names], capture_output=True, text=True, timeout=120, env=h.env)
    lines = r.stdout.splitlines()
    answered = {ln.split(" ", 1)[0] for ln in lines if ln and not ln.startswith(" ")}
    errors = [ln for ln in lines if " Error" in ln]
    assert not errors, errors[:5]
    assert answered >= set(names), sorted(set(names) - answered)[:10]

    # monitor: EPICS base pvmonitor (C++; one line per update, so no interleaving of threads)
    proc = popen_tool("pvmonitor", ["-w", "20", *names], h.env, stdout=subprocess.PIPE,
                      stderr=subprocess.STDOUT)
    seen: set[str] = set()
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            head = line.split(None, 2)
            if head and not line[0].isspace() and head[0] in wanted:
                seen.add(head[0])

    wanted = set(names)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: seen >= wanted, 120, message="a pvmonitor update of every PV",
                 stop=lambda: proc.poll() is not None)
    except AssertionError as ex:
        raise AssertionError(f"{ex}: missing {sorted(wanted - seen)[:10]}; last output {lines[-3:]}") from None
    finally:
        proc.terminate()
        proc.wait(10)


def _ca_value(epics, chid, ftype: str):
    ca = epics.ca
    if ftype == "CHAR":
        return ca.get(chid, as_string=True, timeout=5)
    return ca.get(chid, timeout=5)


def _pva_plain(v, ftype: str):
    raw = v.raw
    if ftype == "ENUM":
        return int(raw["value.index"])
    value = raw["value"]
    if isinstance(value, np.ndarray):
        return np.asarray(value)
    return value


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def test_ca_and_pva_agree_on_every_pv(pva_ioc):
    """For every PV of ``--list-pvs``: the PVA value equals the CA value read just before or
    just after it (values such as IOC:TOD may change in between; each PV gets 3 tries), and
    units, precision, display/control/alarm limits, enum strings and severity are the same."""
    h = pva_ioc
    epics = h.use_pyepics()
    ca = epics.ca
    ctx = pva_context(h)
    from caproto import ChannelType

    try:
        checked = 0
        for name in list_pvs(h):
            chid = ca.create_channel(name, connect=False, auto_cb=False)
            assert ca.connect_channel(chid, timeout=10), name
            ftype = ChannelType(ca.field_type(chid)).name
            for _ in range(3):
                before = _ca_value(epics, chid, ftype)
                pv = ctx.get(name, timeout=10)
                after = _ca_value(epics, chid, ftype)
                got = _pva_plain(pv, ftype)
                if _same(got, before) or _same(got, after):
                    break
            else:
                raise AssertionError(f"{name}: PVA {got!r} is neither CA {before!r} nor {after!r}")
            raw = pv.raw
            if ftype not in ("STRING", "CHAR"):
                ctrl = ca.get_ctrlvars(chid, timeout=5)
                assert int(raw["alarm.severity"]) == int(ctrl["severity"]), name
                if ftype == "ENUM":
                    assert list(raw["value.choices"]) == list(ctrl["enum_strs"]), name
                else:
                    assert raw["display.units"] == ctrl["units"], name
                    assert raw["display.limitLow"] == pytest.approx(ctrl["lower_disp_limit"]), name
                    assert raw["display.limitHigh"] == pytest.approx(ctrl["upper_disp_limit"]), name
                    if ftype in ("DOUBLE", "FLOAT"):
                        assert raw["display.precision"] == ctrl["precision"], name
                    if ca.element_count(chid) == 1:
                        assert raw["control.limitLow"] == pytest.approx(ctrl["lower_ctrl_limit"]), name
                        assert raw["control.limitHigh"] == pytest.approx(ctrl["upper_ctrl_limit"]), name
                        assert raw["valueAlarm.highAlarmLimit"] == pytest.approx(
                            ctrl["upper_alarm_limit"]), name
                        assert raw["valueAlarm.highWarningLimit"] == pytest.approx(
                            ctrl["upper_warning_limit"]), name
            ca.clear_channel(chid)
            checked += 1
        assert checked == len(list_pvs(h))
    finally:
        ctx.close()


def test_pva_puts_take_the_ca_put_path(pva_ioc):
    """A PVA put is checked, applied and logged exactly like a CA put."""
    h = pva_ioc
    epics = h.use_pyepics()
    ctx = pva_context(h)
    try:
        ctx.put(h.pv("A:Range"), 0.2, timeout=10)
        wait_for(lambda: abs(epics.caget(h.pv("A:Range_RBV"), timeout=5) - 0.2) < 1e-9, 10,
                 message="A:Range_RBV applied after a PVA put")
        with pytest.raises(RemoteError, match="Limits"):
            ctx.put(h.pv("A:Range"), float("nan"), timeout=10)
        with pytest.raises(RemoteError, match="not an enum index.*Stop.*Start"):
            ctx.put(h.pv("Acquire"), 7, timeout=10)
        with pytest.raises(RemoteError, match="no write access"):
            ctx.put(h.pv("NumSamples_RBV"), 10, timeout=10)
        assert epics.caget(h.pv("A:Range"), timeout=5) == pytest.approx(0.2)
        wait_for(lambda: "put refused " + h.pv("Acquire") in h.log(), 10, message="refusal logged")
        log = h.log()
        assert f"put {h.pv('A:Range')} old=" in log and "via PVA" in log
        assert f"put refused {h.pv('NumSamples_RBV')} requested=10 by " in log
        # and a CA put is marked as such
        epics.caput(h.pv("A:Range"), 0.5, wait=True, timeout=10)
        wait_for(lambda: "requested=0.5 by" in h.log(), 10, message="CA put logged")
        ca_line = [ln for ln in h.log().splitlines() if "requested=0.5 by" in ln][-1]
        assert ca_line.endswith("via CA"), ca_line
        # an enum by its name, and the put-callback semantics of Acquire (done when running)
        ctx.put(h.pv("Acquire"), "Start", timeout=10)
        assert str(ctx.get(h.pv("Acquire"))) == "Start"
        ctx.put(h.pv("Acquire"), "Stop", timeout=10)
        wait_for(lambda: epics.caget(h.pv("State_RBV"), as_string=True, timeout=5) != "Running", 20,
                 message="run stopped after a PVA put")
    finally:
        ctx.close()


def test_frame_holds_one_whole_event(pva_ioc):
    """``<prefix>Frame``: all enabled channels of one event, its number, trigger time and axis."""
    h = pva_ioc
    ctx = pva_context(h)
    try:
        ctx.put(h.pv("Acquire"), "Start", timeout=10)
        wait_for(lambda: int(ctx.get(h.pv("Frame"), timeout=5).raw["eventNumber"]) > 0, 30,
                 message="a published event")
        f = ctx.get(h.pv("Frame"), timeout=5)
        raw = f.raw
        chans = list(raw["channels"])
        n_samples = int(ctx.get(h.pv("NumSamples_RBV")))
        assert chans == ["A", "B"]  # the demo configuration's enabled channels
        assert f.shape == (2, n_samples) and f.dtype == np.float32
        assert f.attrib["EventNumber"] == raw["eventNumber"] == raw["uniqueId"]
        assert f.attrib["TriggerTime"] == raw["triggerTime"] > 0
        axis = np.asarray(raw["timeAxis"])
        assert axis.shape == (n_samples,)
        np.testing.assert_allclose(axis, np.asarray(ctx.get(h.pv("TimeAxis_RBV")))[:n_samples])
        with pytest.raises(RemoteError, match="read-only"):
            ctx.put(h.pv("Frame"), {"eventNumber": 1}, timeout=10)
        ctx.put(h.pv("Acquire"), "Stop", timeout=10)
    finally:
        ctx.close()


def test_pva_is_off_by_default(ioc_factory):
    """Without ``--pva`` no PV Access server answers (CA users see no change)."""
    from conftest import free_port

    tcp, udp = free_port(), free_port()
    h = ioc_factory(extra_env={"EPICS_PVAS_SERVER_PORT": str(tcp), "EPICS_PVAS_BROADCAST_PORT": str(udp)})
    ctx = Context("pva", conf={"EPICS_PVA_ADDR_LIST": f"127.0.0.1:{udp}", "EPICS_PVA_AUTO_ADDR_LIST": "NO",
                               "EPICS_PVA_BROADCAST_PORT": str(udp),
                               "EPICS_PVA_NAME_SERVERS": f"127.0.0.1:{tcp}"}, useenv=False)
    try:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            ctx.get(h.pv("State_RBV"), timeout=1.0)
        assert time.monotonic() - t0 < 10
    finally:
        ctx.close()
    assert "PV Access" not in h.log()


def test_phoebus_screens_work_over_pva(pva_ioc):
    """The shipped screens select PV Access by their P macro (``P=pva://PICO:``): every PV
    reference starts with the ``P`` macro (``$(P=PICO:)``), so opened with that macro it
    resolves -- by Phoebus's macro rules, embedded screens included -- to a ``pva://`` name,
    and every such name the IOC serves answers over PV Access."""
    from test_phoebus_screens import TOP_SCREENS, resolve

    h = pva_ioc
    served = set(list_pvs(h))
    refs: set[str] = set()
    for screen in TOP_SCREENS:
        for name, _ in resolve(screen, {"P": "pva://" + h.prefix}).pvs:
            assert name.startswith("pva://" + h.prefix), f"{screen}: {name!r} is not a pva:// name"
            refs.add(name)
    names = [r.removeprefix("pva://") for r in refs]
    names = [n for n in names if n in served]  # the demo IOC has no analysis PVs
    assert len(names) > 50
    ctx = pva_context(h)
    try:
        values = ctx.get(names, timeout=20)
        assert [v.raw is not None for v in values] == [True] * len(names)
    finally:
        ctx.close()


def test_config_turns_pva_on(ioc_factory):
    """``ioc: {pva: true}`` in the configuration serves PV Access without ``--pva``."""
    from conftest import free_port

    from picodaq_ioc.ioc.cli import DEFAULT_CONFIG

    tcp, udp = free_port(), free_port()
    h = ioc_factory({**DEFAULT_CONFIG, "ioc": {"pva": True}},
                    extra_env={"EPICS_PVAS_SERVER_PORT": str(tcp), "EPICS_PVAS_BROADCAST_PORT": str(udp)})
    assert "--pva" not in h.args
    ctx = Context("pva", conf={"EPICS_PVA_ADDR_LIST": f"127.0.0.1:{udp}", "EPICS_PVA_AUTO_ADDR_LIST": "NO",
                               "EPICS_PVA_BROADCAST_PORT": str(udp)}, useenv=False)
    try:
        assert str(ctx.get(h.pv("Acquire"), timeout=20)) == "Stop"
    finally:
        ctx.close()


def test_access_rules_apply_to_pva_puts(ioc_factory, tmp_path):
    """The ACF decides over PVA puts as over CA puts: the PVA account (``getpass.getuser()``)
    from host 127.0.0.1 (a PVA client's host is its IP address) may write; with a file that
    lets only another user write, the same put is refused and logged."""
    import getpass

    acf = tmp_path / "lab.acf"
    acf.write_text(f'UAG(me) {{ "{getpass.getuser()}" }}\nHAG(here) {{ 127.0.0.1 }}\n'
                   "ASG(DEFAULT) { RULE(1, READ) RULE(1, WRITE) { UAG(me) HAG(here) } }\n")
    h = ioc_factory(extra_args=["--acf", str(acf)], pva=True)
    ctx = pva_context(h)
    try:
        ctx.put(h.pv("A:Range"), 0.2, timeout=10)  # allowed
        assert float(ctx.get(h.pv("A:Range"))) == pytest.approx(0.2)
    finally:
        ctx.close()
    acf.write_text('UAG(me) { "somebody-else" }\n'
                   "ASG(DEFAULT) { RULE(1, READ) RULE(1, WRITE) { UAG(me) } }\n")
    h2 = ioc_factory(extra_args=["--acf", str(acf)], pva=True)
    ctx = pva_context(h2)
    try:
        with pytest.raises(RemoteError, match="no write access to .*A:Range"):
            ctx.put(h2.pv("A:Range"), 0.2, timeout=10)
        wait_for(lambda: f"put refused {h2.pv('A:Range')} requested=0.2 by " in h2.log(), 10,
                 message="refusal in the put log")
        assert "via PVA: no write access" in h2.log()
    finally:
        ctx.close()
