"""Access security and the put log over real Channel Access (127.0.0.1 only).

A small caproto IOC of our own (this file run as a script) with ``apply_acf`` and
``install_putlog``; two clients that differ only in their CA user name: one may write, the
other gets the access-rights refusal and can still read. pyepics (C libca) is checked too:
it sees the rights announced by the server and refuses the put itself.
"""

from __future__ import annotations

import sys
import textwrap

import pytest
from reliability_helpers import Proc, ca_env, free_port, python_argv, run_client, wait_until

pytestmark = pytest.mark.ca

ACF = textwrap.dedent("""\
    UAG(operators) { alice }
    ASG(DEFAULT) {
        RULE(1, READ)
        RULE(1, WRITE, TRAPWRITE) { UAG(operators) }
    }
    ASG(LOCKED) { RULE(1, READ) }
""")


def _serve(prefix: str, acf_path: str, putlog_path: str) -> None:  # runs in the IOC subprocess
    import logging

    from caproto.server import PVGroup, pvproperty, run

    from picodaq_ioc.ioc.access import apply_acf, load_acf
    from picodaq_ioc.ioc.putlog import install_putlog

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(levelname)s %(message)s")

    class Group(PVGroup):
        Setting = pvproperty(value=1.0, upper_ctrl_limit=10.0, lower_ctrl_limit=-10.0)
        Setting_RBV = pvproperty(value=1.0, read_only=True)
        Locked = pvproperty(value=5)

        @Setting.putter
        async def Setting(self, instance, value):
            await self.Setting_RBV.write(value)
            return value

    grp = Group(prefix=prefix)
    apply_acf(grp.pvdb, load_acf(acf_path), {f"{prefix}Locked": "LOCKED"})
    install_putlog(grp.pvdb, putlog_path)
    print("IOC READY", flush=True)
    run(grp.pvdb, interfaces=["127.0.0.1"])


@pytest.fixture(scope="module")
def acf_ioc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("acf")
    acf = tmp / "test.acf"
    acf.write_text(ACF)
    putlog = tmp / "put.log"
    port = free_port()
    env = ca_env(port)
    prefix = "ACFT:"
    with Proc(python_argv(__file__, prefix, str(acf), str(putlog)), env) as ioc:
        assert ioc.out.wait_for("IOC READY", 20), ioc.out.text()
        yield {"port": port, "env": env, "prefix": prefix, "putlog": putlog, "proc": ioc}


@pytest.fixture()
def ca_context(acf_ioc, monkeypatch):
    """Factory of caproto threading-client contexts with a given CA user name."""
    from caproto.threading.client import Context, SharedBroadcaster

    for key, val in acf_ioc["env"].items():
        if key.startswith("EPICS_"):
            monkeypatch.setenv(key, val)
    made = []

    def make(user: str, host: str = "testhost"):
        ctx = Context(SharedBroadcaster(), client_name=user, host_name=host)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.disconnect()


_CAPROTO_CLIENT = """
import sys
from caproto.sync.client import read, write
from caproto._utils import ErrorResponseReceived
name, value = sys.argv[1], float(sys.argv[2])
try:
    write(name, [value], notify=True, timeout=5, repeater=False)
    print('PUT ok', flush=True)
except ErrorResponseReceived as exc:
    print('PUT refused', exc.args[0].error_message, flush=True)
print('VALUE', read(name, timeout=5, repeater=False).data[0], flush=True)
"""


def _caproto_put(env: dict, user: str, pvname: str, value: float) -> dict[str, str]:
    """caproto's sync client in its own process, announcing ``user`` (getpass reads LOGNAME)."""
    env = dict(env, LOGNAME=user, USER=user)
    rc, out, err = run_client(python_argv("-c", _CAPROTO_CLIENT, pvname, str(value)), env)
    assert rc == 0, err
    return dict(ln.split(" ", 1) for ln in out.splitlines() if " " in ln)


def test_two_users_one_writes_other_refused(acf_ioc, ca_context) -> None:
    from caproto import AccessRights

    p = acf_ioc["prefix"]
    # the rights each client is told at channel creation
    alice_pv, alice_rbv = ca_context("alice").get_pvs(p + "Setting", p + "Setting_RBV", timeout=5)
    (eve_pv,) = ca_context("eve").get_pvs(p + "Setting", timeout=5)
    for pv in (alice_pv, alice_rbv, eve_pv):
        pv.wait_for_connection(timeout=10)
    assert alice_pv.access_rights == AccessRights.READ | AccessRights.WRITE
    assert alice_rbv.access_rights == AccessRights.READ  # read-only PV, whatever the ACF says
    assert eve_pv.access_rights == AccessRights.READ

    # two client processes that differ only in the user name
    res = _caproto_put(acf_ioc["env"], "alice", p + "Setting", 3.5)
    assert res["PUT"] == "ok" and float(res["VALUE"]) == 3.5
    assert alice_rbv.read(timeout=5).data[0] == 3.5

    res = _caproto_put(acf_ioc["env"], "eve", p + "Setting", 7.0)
    assert res["PUT"].startswith("refused") and "cannot write" in res["PUT"], res
    assert float(res["VALUE"]) == 3.5  # eve can still read; the value is untouched
    assert alice_rbv.read(timeout=5).data[0] == 3.5

    log = acf_ioc["putlog"]
    wait_until(lambda: "put refused ACFT:Setting requested=7.0 by eve@" in log.read_text(), 5,
               what="refusal in the put log")
    text = log.read_text()
    assert "no write access (ASG DEFAULT)" in text
    assert "INFO put ACFT:Setting old=1.0 new=3.5 requested=3.5 by alice@" in text
    assert "(127.0.0.1:" in text


def test_mapped_group_locks_pv_even_for_operator(acf_ioc, ca_context) -> None:
    from caproto import AccessRights

    (pv,) = ca_context("alice").get_pvs(acf_ioc["prefix"] + "Locked", timeout=5)
    pv.wait_for_connection(timeout=10)
    assert pv.access_rights == AccessRights.READ
    res = _caproto_put(acf_ioc["env"], "alice", acf_ioc["prefix"] + "Locked", 6)
    assert res["PUT"].startswith("refused") and float(res["VALUE"]) == 5
    wait_until(lambda: "put refused ACFT:Locked requested=6 by alice@" in acf_ioc["putlog"].read_text()
               and "no write access (ASG LOCKED)" in acf_ioc["putlog"].read_text(), 5, what="lock refusal")


def test_refused_out_of_limits_put_is_logged(acf_ioc) -> None:
    res = _caproto_put(acf_ioc["env"], "alice", acf_ioc["prefix"] + "Setting", 1e6)
    assert res["PUT"].startswith("refused")
    wait_until(lambda: "put refused ACFT:Setting requested=1000000.0 by alice@"
               in acf_ioc["putlog"].read_text(), 5, what="limit refusal")


_PYEPICS_CLIENT = """
import sys, epics
pv = epics.PV(sys.argv[1])
assert pv.wait_for_connection(timeout=10), 'no connection'
print('WRITE_ACCESS', pv.write_access, flush=True)
print('READ_ACCESS', pv.read_access, flush=True)
try:
    pv.put(float(sys.argv[2]), wait=True, timeout=5)
    print('PUT', 'ok', flush=True)
except Exception as exc:
    print('PUT', 'refused', type(exc).__name__, exc, flush=True)
print('VALUE', pv.get(timeout=5), flush=True)
"""


def test_pyepics_libca_sees_rights(acf_ioc) -> None:
    """libca announces the OS login name; whoever runs the tests is not in UAG(operators)."""
    import getpass

    user = getpass.getuser()
    assert user != "alice"
    rc, out, err = run_client(python_argv("-c", _PYEPICS_CLIENT, acf_ioc["prefix"] + "Setting", "9.0"),
                              acf_ioc["env"])
    assert rc == 0, err
    lines = dict(ln.split(" ", 1) for ln in out.splitlines() if " " in ln)
    assert lines["WRITE_ACCESS"] == "False"
    assert lines["READ_ACCESS"] == "True"
    assert lines["PUT"].startswith("refused")
    assert float(lines["VALUE"]) != 9.0


REAL_CONFIG = {
    "device": {"backend": "sim", "model": "2000a"},
    "channels": {"A": {"range": 0.2, "coupling": "DC"}},
    "timebase": {"sample_interval": 8.0e-9, "samples": 200, "pretrigger": 0.1},
    "trigger": {"enabled": True, "source": "A", "level": -0.02, "direction": "Falling", "auto_timeout": 0.2},
    "simulation": {"seed": 1, "realtime": True,
                   "sources": [{"kind": "muon", "channels": ["A"], "rate": 50.0, "amplitude": -0.08}]},
}


#: field puts a guest tried successfully before fields were covered (issue 11)
GUEST_FIELD_PUTS = {"NumEvents.DESC": "guest was here", "NumEvents.DRVH": 5.0, "NumEvents.HOPR": 5.0,
                    "NumEvents.DISP": 1, "NumEvents.PROC": 1, "A:Range.EGU": "furlongs",
                    "IOC:SYSRESET.PROC": 1, "Acquire.PROC": 1}


def test_real_ioc_with_example_acf(ioc_factory, tmp_path) -> None:
    """The IOC with configs/example.acf: operators set A:Range, a guest is refused; the IOC
    administration PVs (ASG EXPERT) need alice on a lab host; readbacks stay read-only; a
    record's access group covers all its fields (RSRV); a rename after the first channel is
    ignored; every refusal is in the put log."""
    import caproto as ca
    from reliability_helpers import REPO, connect_when_ready

    putlog = tmp_path / "put.log"
    h = ioc_factory(REAL_CONFIG, ["--acf", str(REPO / "configs" / "example.acf"), "--no-autosave",
                                  "--putlog", str(putlog)])
    op = connect_when_ready(h.port, h.pv("A:Range"), user="operator", host="somepc")
    guest = connect_when_ready(h.port, h.pv("A:Range"), user="guest", host="somepc")
    alice = connect_when_ready(h.port, h.pv("IOC:SYSRESET"), user="alice", host="localhost")
    try:
        rw = ca.AccessRights.READ | ca.AccessRights.WRITE
        assert op.chans[h.pv("A:Range")].access_rights == rw
        assert guest.chans[h.pv("A:Range")].access_rights == ca.AccessRights.READ
        assert op.put(h.pv("A:Range"), 0.1) == (True, "ok")
        wait_until(lambda: float(op.value(h.pv("A:Range_RBV"))) == pytest.approx(0.1), 10, what="RBV")
        ok, msg = guest.put(h.pv("A:Range"), 0.5)
        assert not ok and "cannot write" in msg
        assert float(guest.value(h.pv("A:Range_RBV"))) == pytest.approx(0.1)  # guests still read
        # ASG(EXPERT): an operator may not touch IOC administration, alice on a lab host may
        op.connect(h.pv("IOC:SYSRESET"), h.pv("A:Range_RBV"))
        assert op.chans[h.pv("IOC:SYSRESET")].access_rights == ca.AccessRights.READ
        assert alice.chans[h.pv("IOC:SYSRESET")].access_rights == rw
        assert op.put(h.pv("IOC:SYSRESET"), 0)[0] is False
        assert alice.put(h.pv("IOC:SYSRESET"), 0) == (True, "ok")  # 0: no reset
        assert op.chans[h.pv("A:Range_RBV")].access_rights == ca.AccessRights.READ
        assert op.put(h.pv("A:Range_RBV"), 0.5)[0] is False
        # fields: the record's group decides (a guest may write none, an operator DEFAULT's)
        for field, value in GUEST_FIELD_PUTS.items():
            ok, msg = guest.put(h.pv(field), value)
            assert not ok and "cannot write" in msg, (field, msg)
            assert guest.chans[h.pv(field)].access_rights == ca.AccessRights.READ, field
        assert op.put(h.pv("NumEvents.DESC"), "operator note") == (True, "ok")
        assert op.put(h.pv("IOC:SYSRESET.PROC"), 1)[0] is False  # EXPERT covers the fields too
        assert guest.value(h.pv("NumEvents.DESC")) == "operator note"
        # a rename after the first channel changes nothing (RSRV ignores it)
        guest._send(ca.ClientNameRequest("operator"))
        ok, msg = guest.put(h.pv("A:Range"), 0.2)
        assert not ok and "cannot write" in msg
        guest.connect(h.pv("A:Enable"))  # a channel created after the rename: still the guest's rights
        assert guest.chans[h.pv("A:Enable")].access_rights == ca.AccessRights.READ
    finally:
        for c in (op, guest, alice):
            c.close()
    log = h.log()
    assert f"put refused {h.pv('A:Range')} requested=0.5 by guest@somepc" in log
    assert "no write access (ASG DEFAULT)" in log and "no write access (ASG EXPERT)" in log
    assert "name change to 'operator' after creating channels ignored" in log
    text = putlog.read_text()
    for field in GUEST_FIELD_PUTS:
        assert f"put refused {h.pv(field)} requested=" in text and "by guest@somepc" in text, field
    assert f"put {h.pv('NumEvents.DESC')} old='' new='operator note'" in text


def test_bad_acf_is_a_clear_startup_error(tmp_path) -> None:
    import os

    from reliability_helpers import REPO

    bad = tmp_path / "lab.acf"
    bad.write_text("UAG(ops) { alice }\nASG(DEFAULT) {\n    RULE(1, WRIT)\n}\n")
    rc, out, err = run_client([sys.executable, "-m", "picodaq_ioc", "--acf", str(bad), "--no-autosave"],
                              ca_env(free_port(), os.environ | {"PYTHONPATH": str(REPO)}))
    assert rc == 2, (rc, out, err)
    assert f"{bad}:3: unknown access 'WRIT'; allowed: NONE, READ, WRITE, RPC" in err
    assert "Traceback" not in err


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2], sys.argv[3])
