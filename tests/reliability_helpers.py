"""Shared helpers of the reliability tests (issue 7): loopback env, free ports, small IOCs.

Not a test module. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# loopback env and free ports come from ca_tools (LOOPBACK_ENV is re-exported for benchmarks/soak.py)
from ca_tools import LOOPBACK_ENV, client_env, free_port, wait_for  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


def ca_env(port: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for an IOC serving on ``port`` and clients talking to it (loopback only)."""
    env = client_env(port, base)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_until(cond: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``cond()`` until it returns a truthy value or ``timeout`` expires (then AssertionError)."""
    return wait_for(cond, timeout, interval, message=what or repr(cond))


class OutputCollector:
    """Collect a subprocess' text output in a background thread (so pipes never fill)."""

    def __init__(self, stream) -> None:
        self.lines: deque[str] = deque(maxlen=200_000)
        self._cond = threading.Condition()
        self._t = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._t.start()

    def _run(self, stream) -> None:
        for line in iter(stream.readline, ""):
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        stream.close()

    def text(self) -> str:
        with self._cond:
            return "".join(self.lines)

    def wait_for(self, needle: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(needle in ln for ln in self.lines):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True


class Proc:
    """A subprocess with collected stdout+stderr, stopped by PID on exit."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], cwd: str | Path | None = None) -> None:
        self.argv = list(argv)
        self.p = subprocess.Popen(self.argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.out = OutputCollector(self.p.stdout)

    def stop(self, timeout: float = 10.0) -> int:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout)
        return self.p.returncode

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def run_client(argv: Sequence[str], env: dict[str, str], timeout: float = 60.0) -> tuple[int, str, str]:
    """Run a short-lived client process; output goes through temporary files, not pipes, because
    libca may spawn a caRepeater daemon that inherits (and would hold open) the pipes."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.run(list(argv), env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                           timeout=timeout, text=True)
        out.seek(0)
        err.seek(0)
        return p.returncode, out.read(), err.read()


def python_argv(*args: str) -> list[str]:
    return [sys.executable, "-u", *args]


class RawSubscriber:
    """A raw Channel Access client that subscribes to PVs on one TCP connection.

    ``count_updates`` reads monitor updates; a *stalled* client (see :class:`StalledClient`)
    simply never reads again. ``backlog()`` is the number of bytes waiting unread in our socket.
    """

    def __init__(self, port: int, pvnames: Sequence[str], rcvbuf: int | None = None, timeout: float = 10.0,
                 user: str = "raw") -> None:
        import caproto as ca
        from caproto._commands import read_from_bytestream

        self._ca = ca
        self._read = read_from_bytestream
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        out = [ca.VersionRequest(priority=0, version=13), ca.HostNameRequest("rawclient"),
               ca.ClientNameRequest(user)]
        out += [ca.CreateChanRequest(name=n, cid=i, version=13) for i, n in enumerate(pvnames)]
        self.sock.sendall(b"".join(bytes(m) for m in out))
        created: dict[int, Any] = {}
        self.buf = bytearray()
        deadline = time.monotonic() + timeout
        while len(created) < len(pvnames):
            if time.monotonic() > deadline:
                raise AssertionError(f"raw client: channels not created: {pvnames}")
            for cmd in self._messages():
                if isinstance(cmd, ca.CreateChanResponse):
                    created[cmd.cid] = cmd
                elif isinstance(cmd, ca.CreateChFailResponse):
                    raise AssertionError(f"raw client: no such PV {pvnames[cmd.cid]}")
        subs = [ca.EventAddRequest(data_type=r.data_type, data_count=r.data_count, sid=r.sid,
                                   subscriptionid=cid, low=0.0, high=0.0, to=0.0,
                                   mask=int(ca.SubscriptionType.DBE_VALUE | ca.SubscriptionType.DBE_ALARM))
                for cid, r in sorted(created.items())]
        self.sock.sendall(b"".join(bytes(m) for m in subs))
        self.updates: dict[int, int] = dict.fromkeys(created, 0)

    def _messages(self) -> list:
        self.buf += self.sock.recv(1 << 20)
        out = []
        while True:
            rest, cmd, _need = self._read(self.buf, self._ca.SERVER)
            self.buf = bytearray(rest)
            if cmd is self._ca.NEED_DATA:
                return out
            out.append(cmd)

    def count_updates(self, min_each: int, timeout: float) -> dict[int, int]:
        """Read until every subscription got ``min_each`` updates (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        while min(self.updates.values()) < min_each:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"raw client: too few updates {self.updates} (wanted {min_each} each)")
            self.sock.settimeout(left)
            try:
                msgs = self._messages()
            except TimeoutError:
                continue
            for cmd in msgs:
                if isinstance(cmd, self._ca.EventAddResponse):
                    self.updates[cmd.subscriptionid] += 1
        return dict(self.updates)

    def backlog(self) -> int:
        import array
        import fcntl
        import termios

        buf = array.array("i", [0])
        fcntl.ioctl(self.sock.fileno(), termios.FIONREAD, buf, True)
        return int(buf[0])

    def close(self, abrupt: bool = False) -> None:
        with contextlib.suppress(OSError):
            if abrupt:  # RST instead of FIN, like a killed client
                import struct

                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()

    def __enter__(self) -> RawSubscriber:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StalledClient(RawSubscriber):
    """Subscribes with a tiny receive buffer and then never reads: its TCP window fills."""

    def __init__(self, port: int, pvnames: Sequence[str], rcvbuf: int = 4096, timeout: float = 10.0) -> None:
        super().__init__(port, pvnames, rcvbuf=rcvbuf, timeout=timeout, user="stalled")


class BlockingCA:
    """A small blocking Channel Access client on one TCP connection (caproto's sans-I/O core).

    Unlike caproto's threading client it returns at once when the IOC refuses a put
    (``ErrorResponse``), and unlike its sync client it keeps the connection and channels open,
    so thousands of puts are fast. ``put`` returns ``(ok, message)``.
    """

    def __init__(self, port: int, user: str = "fuzzer", host: str = "fuzzhost", timeout: float = 10.0) -> None:
        import caproto as ca

        self.ca = ca
        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout)
        self.circuit = ca.VirtualCircuit(our_role=ca.CLIENT, address=("127.0.0.1", port), priority=0)
        self.circuit.our_address = self.sock.getsockname()
        self.chans: dict[str, Any] = {}
        self.stray_errors: list = []
        self._send(ca.VersionRequest(priority=0, version=13), ca.HostNameRequest(host),
                   ca.ClientNameRequest(user))

    def _send(self, *cmds: Any) -> None:
        self.sock.sendall(b"".join(self.circuit.send(*cmds)))

    def _recv(self) -> list:
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("the IOC closed the connection")
        cmds, _ = self.circuit.recv(data)
        for c in cmds:
            self.circuit.process_command(c)
        return cmds

    def _wait(self, match: Callable[[Any], bool], what: str, timeout: float | None = None,
              ioid: int | None = None) -> Any:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer from the IOC: {what}")
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                cmds = self._recv()
            except TimeoutError:
                continue
            for c in cmds:
                if isinstance(c, self.ca.ErrorResponse):
                    if ioid is not None and c.original_request.parameter2 == ioid:
                        return c
                    self.stray_errors.append(c)  # answer to an earlier request without notify
                elif match(c):
                    return c

    def connect(self, *names: str) -> None:
        """Create channels (all requests first, then wait for every answer)."""
        ca = self.ca
        new = [n for n in names if n not in self.chans]
        chans = [ca.ClientChannel(n, self.circuit) for n in new]
        if chans:
            self._send(*[c.create() for c in chans])
        for name, chan in zip(new, chans, strict=True):
            deadline = time.monotonic() + self.timeout
            while chan.states[ca.CLIENT] is not ca.CONNECTED:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"channel {name} did not connect")
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                with contextlib.suppress(TimeoutError):
                    self._recv()
            self.chans[name] = chan

    def channel(self, name: str) -> Any:
        if name not in self.chans:
            self.connect(name)
        return self.chans[name]

    def get(self, name: str, data_type: Any = None) -> Any:
        """A ReadNotifyResponse (``.data``, ``.metadata``); raises on an error response."""
        chan = self.channel(name)
        req = chan.read(data_type=data_type, notify=True)
        self._send(req)
        resp = self._wait(lambda c: isinstance(c, self.ca.ReadNotifyResponse) and c.ioid == req.ioid,
                          f"read {name}", ioid=req.ioid)
        if isinstance(resp, self.ca.ErrorResponse):
            raise RuntimeError(f"read {name} refused: {resp.error_message!r}")
        return resp

    def value(self, name: str) -> Any:
        """The value: a scalar for one element, str for strings/enums, an array otherwise."""
        chan = self.channel(name)
        native = chan.native_data_type
        ca = self.ca
        dtype = ca.ChannelType.STRING if native == ca.ChannelType.ENUM else None
        data = self.get(name, data_type=dtype).data
        if native in (ca.ChannelType.STRING, ca.ChannelType.ENUM):
            return data[0].decode("latin-1") if isinstance(data[0], bytes) else str(data[0])
        if native == ca.ChannelType.CHAR:
            return bytes(data).split(b"\0", 1)[0].decode("utf-8", "replace")
        return data[0].item() if len(data) == 1 else data

    def severity(self, name: str) -> int:
        """Alarm severity of ``name`` (0 none, 1 minor, 2 major, 3 invalid)."""
        ca = self.ca
        chan = self.channel(name)
        resp = self.get(name, data_type=ca.field_types["time"][chan.native_data_type])
        return int(resp.metadata.severity)

    def put(self, name: str, data: Any, data_type: Any = None, notify: bool = True,
            timeout: float | None = None) -> tuple[bool, str]:
        """Write; with ``notify`` wait for the IOC's answer. Returns ``(accepted, message)``."""
        chan = self.channel(name)
        ca = self.ca
        if not isinstance(data, (list, tuple)) and not hasattr(data, "__len__"):
            data = [data]
        elif isinstance(data, (str, bytes)):
            data = [data]
        if data_type is None and len(data):
            first = data[0]
            if isinstance(first, (str, bytes)):
                data_type = ca.ChannelType.STRING
                data = [x.encode("utf-8", "surrogateescape") if isinstance(x, str) else x for x in data]
            elif isinstance(first, (bool, int)) and not isinstance(first, float):
                data_type = ca.ChannelType.LONG
            elif isinstance(first, float):
                data_type = ca.ChannelType.DOUBLE
        req = chan.write(data=data, data_type=data_type, notify=notify)
        self._send(req)
        if not notify:
            return True, "sent"
        resp = self._wait(lambda c: isinstance(c, ca.WriteNotifyResponse) and c.ioid == req.ioid,
                          f"put {name}", timeout, ioid=req.ioid)
        if isinstance(resp, ca.ErrorResponse):
            msg = resp.error_message
            if isinstance(msg, (bytes, bytearray)):
                msg = bytes(msg).split(b"\0", 1)[0].decode("utf-8", "replace")
            return False, str(msg)
        if resp.status.success != 1:
            return False, resp.status.name
        return True, "ok"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> BlockingCA:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect_when_ready(port: int, pvname: str, proc: Proc | None = None, timeout: float = 60.0,
                       **kw: Any) -> BlockingCA:
    """A :class:`BlockingCA` connected to ``pvname`` once the IOC on ``port`` serves it."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.p.poll() is not None:
            raise AssertionError(f"IOC exited with {proc.p.returncode}:\n{proc.out.text()[-5000:]}")
        try:
            c = BlockingCA(port, **kw)
            c.connect(pvname)
            return c
        except (OSError, TimeoutError):
            if time.monotonic() > deadline:
                raise AssertionError(f"IOC on port {port} not serving {pvname} after {timeout} s"
                                     + (f":\n{proc.out.text()[-5000:]}" if proc else "")) from None
            time.sleep(0.1)
