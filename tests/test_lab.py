"""``picodaq-lab``: three IOCs on one host behind one ``pvagw``, all on 127.0.0.1.

A client that knows only the gateway's address sees all three prefixes; stopping one IOC
(by its PID) leaves the other two served, and ``picodaq-dashboard`` shows the stopped one as
disconnected. Lab files with mistakes are refused naming the field.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ca_tools import caget, loopback_env
from conftest import REPO, die_with_parent, free_port, wait_for

from picodaq_ioc.ioc.lab import LabError, build_lab, gateway_config, load_lab

N = 3
CONFIG = {
    "device": {"backend": "sim", "model": "2000a"},
    "channels": {"A": {"range": 0.5, "coupling": "DC"}},
    "timebase": {"duration": 10.0e-6, "samples": 200, "pretrigger": 0.05},
    "trigger": {"enabled": False},
    "simulation": {"seed": 1, "realtime": True},
}


def test_lab_file_errors_name_the_field(tmp_path):
    cfg = tmp_path / "a.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    with pytest.raises(LabError, match=r"scopes\[1\].config: file .*nope.yaml.* not found"):
        build_lab([{"config": str(cfg)}, {"config": str(tmp_path / "nope.yaml")}])
    with pytest.raises(LabError, match="prefix 'X:' is used twice"):
        build_lab([{"config": str(cfg), "prefix": "X:"}, {"config": str(cfg), "prefix": "X:"}])
    with pytest.raises(LabError, match=r"LAB2: CA: tcp port 5064 is already used by LAB1: CA"):
        build_lab([{"config": str(cfg)}, {"config": str(cfg), "ca_port": 5064}])
    with pytest.raises(LabError, match=r"scopes\[0\].pva_port: 70000 is not a port number"):
        build_lab([{"config": str(cfg), "pva_port": 70000}])
    with pytest.raises(LabError, match="gateway needs pva: true"):
        build_lab([{"config": str(cfg)}], pva=False, gateway={})
    bad = tmp_path / "lab.yaml"
    bad.write_text("scopes: [{config: a.yaml, colour: red}]\n")
    with pytest.raises(LabError, match=r"scopes\[0\]: unknown key\(s\) colour \(allowed: config, prefix"):
        load_lab(bad)


def test_gateway_config_searches_every_ioc(tmp_path):
    cfg = tmp_path / "a.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    lab = build_lab([{"config": str(cfg)}] * 3, gateway={"port": 6000, "udp_port": 6001})
    conf = gateway_config(lab)
    assert conf["clients"][0]["addrlist"] == "127.0.0.1:5101 127.0.0.1:5103 127.0.0.1:5105"
    assert conf["servers"][0]["interface"] == ["127.0.0.1"]
    assert (conf["servers"][0]["serverport"], conf["servers"][0]["bcastport"]) == (6000, 6001)
    assert [s.ca_port for s in lab.scopes] == [5064, 5065, 5066]


@pytest.mark.pva
@pytest.mark.ca
def test_three_iocs_behind_one_gateway(tmp_path):
    pytest.importorskip("p4p", reason="the lab gateway needs the 'pva' extra (p4p)")
    from p4p.client.thread import Context

    # the teaching setup (pulse analysis: the dashboard's histograms need it), one file shared
    # by the three scopes (the lab gives each IOC its own autosave file)
    shutil.copy(REPO / "configs" / "muon_lifetime.yaml", tmp_path / "scope.yaml")
    tag = os.urandom(3).hex()
    scopes = [{"config": "scope.yaml", "prefix": f"L{tag}{i}:", "ca_port": free_port(),
               "pva_port": free_port(), "pva_udp_port": free_port()} for i in range(N)]
    gw_tcp, gw_udp = free_port(), free_port()
    lab_file = tmp_path / "lab.yaml"
    lab_file.write_text(yaml.safe_dump({"scopes": scopes, "gateway": {"port": gw_tcp, "udp_port": gw_udp}}))
    workdir = tmp_path / "lab"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "picodaq_ioc.ioc.lab", "--lab", str(lab_file),
                             "--workdir", str(workdir)], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "lab.log", "w"), preexec_fn=die_with_parent)
    gw_conf = {"EPICS_PVA_ADDR_LIST": f"127.0.0.1:{gw_udp}", "EPICS_PVA_AUTO_ADDR_LIST": "NO",
               "EPICS_PVA_BROADCAST_PORT": str(gw_udp)}
    ctx = None
    try:
        wait_for(lambda: (workdir / "lab.json").exists(), 30, message="lab.json",
                 stop=lambda: proc.poll() is not None)
        info = json.loads((workdir / "lab.json").read_text())
        prefixes = [s["prefix"] for s in info["scopes"]]
        # only the gateway's one address: every prefix answers through it
        ctx = Context("pva", conf=gw_conf, useenv=False)

        def answers(prefix: str) -> bool:
            try:
                return str(ctx.get(prefix + "State_RBV", timeout=2.0)) != ""
            except Exception:
                return False

        wait_for(lambda: all(answers(p) for p in prefixes), 120, interval=0.5,
                 message="all prefixes through the gateway",
                 stop=lambda: proc.poll() is not None)
        # the same value as the IOC itself serves over CA on its own port
        direct = caget(loopback_env(info["scopes"][1]["ca_port"]), prefixes[1] + "NumSamples_RBV")
        assert int(ctx.get(prefixes[1] + "NumSamples_RBV")) == int(direct) > 0
        # a put through the gateway reaches its IOC
        ctx.put(prefixes[2] + "Waveform:MaxRate", 7.0, timeout=10)
        assert caget(loopback_env(info["scopes"][2]["ca_port"]), prefixes[2] + "Waveform:MaxRate") == "7"

        # stop IOC 0 by its PID: the others stay served, the lab keeps running
        victim = info["scopes"][0]
        os.kill(victim["pid"], signal.SIGTERM)
        wait_for(lambda: not Path(f"/proc/{victim['pid']}").exists()
                 or "Z" in Path(f"/proc/{victim['pid']}/stat").read_text().split()[2], 30,
                 message="IOC 0 ended")
        wait_for(lambda: not answers(prefixes[0]), 30, message="IOC 0 gone from the gateway")
        assert all(answers(p) for p in prefixes[1:])
        assert proc.poll() is None

        # the dashboard shows the two live IOCs and the stopped one as DISCONNECTED
        client_env = {**env, **info["client_env"]}
        out = subprocess.run([sys.executable, "-m", "picodaq_clients.dashboard",
                              *[a for p in prefixes for a in ("--prefix", p)], "--save",
                              str(tmp_path / "dash_{prefix}.png"), "--frames", "1", "--timeout", "10"],
                             env={**client_env, "PYTHONPATH": str(REPO / "clients") + os.pathsep
                                  + client_env["PYTHONPATH"]},
                             capture_output=True, text=True, timeout=180)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("saved ")]
        assert len(lines) == N, out.stdout + out.stderr
        assert "(DISCONNECTED)" in lines[0] and prefixes[0].strip(":") in lines[0]
        assert all("(online)" in ln for ln in lines[1:]), lines
    finally:
        if ctx is not None:
            ctx.close()
        proc.terminate()
        proc.wait(60)
    assert proc.returncode == 0
    for s in json.loads((workdir / "lab.json").read_text())["scopes"]:  # the lab stopped every IOC
        assert not Path(f"/proc/{s['pid']}").exists() or \
            "Z" in Path(f"/proc/{s['pid']}/stat").read_text().split()[2]
