"""Hostile and broken Channel Access clients against the real IOC (127.0.0.1), issue 11.

Raw sockets speak CA with caproto's protocol objects, so every request is exactly what the
test says: a channel filter that crashed caproto's shared subscription task, a declared
2 GB write, over-long host/user names, too many channels, a client that stops reading.
The IOC must refuse each one, keep serving everybody else and keep its memory.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time

import caproto as ca
import psutil
import pytest
from reliability_helpers import (
    BlockingCA,
    RawSubscriber,
    StalledClient,
    ca_env,
    connect_when_ready,
    free_port,
    wait_until,
)
from test_faults_ca import CONFIG as FAULTS_CONFIG

pytestmark = pytest.mark.ca

#: the fault tests' paced simulator (muons on A at 300 Hz), a 2000-sample waveform (8 kB), no analysis
CONFIG = {**{k: v for k, v in FAULTS_CONFIG.items() if k != "analysis"},
          "timebase": {"sample_interval": 4.0e-9, "samples": 2000, "pretrigger": 0.1}}
MAX_CHANNELS = 8
STALL_TIMEOUT = 3.0


@pytest.fixture(scope="module")
def ioc(module_ioc_factory):
    h = module_ioc_factory(CONFIG, ["--no-autosave", "--max-rate", "100", "--ca-max-channels", str(MAX_CHANNELS),
                                    "--ca-stall-timeout", str(STALL_TIMEOUT)])
    c = connect_when_ready(h.port, h.pv("State_RBV"), user="limits")
    ok, msg = c.put(h.pv("Acquire"), "Start")
    assert ok, msg
    wait_until(lambda: c.value(h.pv("State_RBV")) == "Running", 10, what="Running")
    yield h, c
    c.close()


def _healthy(h, c) -> None:
    """The IOC still answers a read and a fresh subscriber gets waveform updates."""
    assert h.alive(), h.log()[-3000:]
    assert c.value(h.pv("State_RBV")) == "Running"
    with RawSubscriber(h.port, [h.pv("A:Waveform_RBV")]) as sub:
        sub.count_updates(3, 15)


def _closed_by_ioc(sock: socket.socket, timeout: float = 10.0) -> bool:
    """True once the IOC closed (FIN or RST) the connection; reads and discards what arrives."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(1 << 20):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
    return False


def _hello(port: int, host: str = "rawhost", user: str = "raw") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), 10)
    sock.sendall(b"".join(bytes(m) for m in (ca.VersionRequest(priority=0, version=13),
                                              ca.HostNameRequest(host), ca.ClientNameRequest(user))))
    return sock


def test_arr_filter_with_zero_increment_is_served(ioc) -> None:
    """``camonitor 'PV.{"arr":{"i":0}}'`` raised ValueError in caproto's shared subscription
    task and stopped the IOC (exit 0). EPICS base treats an increment <= 0 as 1."""
    h, c = ioc
    name = h.pv('A:Waveform_RBV.{"arr":{"i":0}}')
    with RawSubscriber(h.port, [name, h.pv("ArrayCounter_RBV")]) as sub:
        sub.count_updates(3, 15)
    with BlockingCA(h.port) as raw:
        data = raw.get(name).data
        assert len(data) == 2000  # every element: increment 1
    _healthy(h, c)
    assert "slice step cannot be zero" not in h.log()


def test_stalled_client_is_disconnected_after_the_stall_timeout(ioc) -> None:
    h, c = ioc
    names = [h.pv("A:Waveform_RBV")] * 3 + [h.pv("ArrayCounter_RBV"), h.pv("EventNumber_RBV")]
    with StalledClient(h.port, names) as st:
        wait_until(lambda: st.backlog() > 0, 20, what="the stalled client's window filling")
        wait_until(lambda: "did not read for" in h.log(), 30, what="the IOC giving up on the stalled client")
        # the IOC aborted the connection: what we never read is all we get, then the end
        assert _closed_by_ioc(st.sock, 20)
    _healthy(h, c)


def test_declared_2gb_write_is_refused_before_it_is_buffered(ioc) -> None:
    """RSRV refuses a message over EPICS_CA_MAX_ARRAY_BYTES and disconnects the client;
    caproto 1.3.0 buffered it (256 MB streamed: RSS +257 MB, kept after the client left)."""
    h, c = ioc
    proc = psutil.Process(h.proc.pid)
    with BlockingCA(h.port) as raw:
        chan = raw.channel(h.pv("A:Range"))
        rss0 = proc.memory_info().rss
        # WriteNotifyRequest (command 19) with the extended header: payload 0x7FFFFFF8 bytes
        size = 0x7FFFFFF8
        header = struct.pack(">HHHHII", 19, 0xFFFF, int(ca.ChannelType.DOUBLE), 0, chan.sid, 1)
        header += struct.pack(">II", size, size // 8)
        sent = 0
        try:
            raw.sock.sendall(header)
            chunk = bytes(1 << 16)
            while sent < 64 << 20:  # stream up to 64 MB of the "payload"
                raw.sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        assert _closed_by_ioc(raw.sock), f"the IOC still reads after {sent} bytes"
    grown = proc.memory_info().rss - rss0
    assert grown < 8e6, f"IOC RSS grew by {grown / 1e6:.1f} MB"
    assert sent < 16 << 20, f"the IOC read {sent / 1e6:.0f} MB of the oversized message"
    assert "more than the limit" in h.log()
    _healthy(h, c)


@pytest.mark.parametrize("which", ["host", "user"])
def test_names_over_512_bytes_are_refused(ioc, which) -> None:
    h, c = ioc
    long = "x" * 600
    sock = _hello(h.port, **({"host": long} if which == "host" else {"user": long}))
    try:
        sock.sendall(bytes(ca.CreateChanRequest(name=h.pv("State_RBV"), cid=1, version=13)))
        assert _closed_by_ioc(sock)
    finally:
        sock.close()
    assert f"{which} name of 600 bytes" in h.log()
    with BlockingCA(h.port, host="h" * 512, user="u" * 512) as ok:  # 512 is still allowed
        assert ok.value(h.pv("State_RBV")) == "Running"
    _healthy(h, c)


def test_channels_per_client_are_bounded(ioc) -> None:
    h, c = ioc
    names = [h.pv(n) for n in ("State_RBV", "A:Range", "A:Range_RBV", "A:Enable", "A:Coupling",
                               "Trigger:Level", "Trigger:Source", "NumEvents", "StatusMessage_RBV")]
    assert len(names) == MAX_CHANNELS + 1
    with BlockingCA(h.port) as raw:
        raw.connect(*names[:MAX_CHANNELS])
        with pytest.raises(TimeoutError):
            raw.timeout = 3.0
            raw.connect(names[MAX_CHANNELS])  # CreateChFail: never connects
        assert raw.value(h.pv("State_RBV")) == "Running"  # the first ones keep working
        # closing a channel makes room again
        chan = raw.chans.pop(names[0])
        raw._send(chan.clear())
        wait_until(lambda: _connects(raw, names[MAX_CHANNELS]), 10, what="a channel after one was cleared")
    assert f"already {MAX_CHANNELS} channels" in h.log()


def _connects(raw: BlockingCA, name: str) -> bool:
    raw.timeout = 1.0
    try:
        raw.connect(name)
    except TimeoutError:
        return False
    return True


def test_server_failure_exits_non_zero(tmp_path) -> None:
    """The CA server cannot bind (an address of no local interface): the IOC must end with a
    non-zero status so that a supervisor restarts it (it used to log and exit 0)."""
    env = ca_env(free_port())
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never a local address, so nothing is ever served
    argv = [sys.executable, "-m", "picodaq_ioc", "--prefix", "FAIL:", "--no-autosave",
            "--serve-network", "--interfaces", "192.0.2.1"]
    p = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stderr[-3000:]
    assert "Channel Access server failed" in p.stderr
