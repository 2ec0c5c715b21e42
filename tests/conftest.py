"""Shared fixtures: the IOC in a subprocess on its own port, loopback only.

``ioc_factory(config=None, extra_args=(), prefix=None, ready_timeout=60)`` starts
``python -m picodaq_ioc`` with

- its own free port (``EPICS_CA_SERVER_PORT``) and a random prefix,
- every EPICS address list set to 127.0.0.1 (interfaces, search, beacons, PVA twins),
- ``config`` = a path, a dict (written as YAML into ``tmp_path``) or None (built-in demo),

waits until ``<prefix>State_RBV`` answers a ``caget`` (deadline), and returns an
:class:`IocHandle` with ``.prefix``, ``.port``, ``.env`` (client environment),
``.proc``, ``.log_path``, ``.stop()``. Every IOC is terminated by PID at teardown.

``IocHandle.use_pyepics()`` points pyepics (libca, one context per process) at this IOC.

``pva=True`` also serves PV Access (``--pva``) on a free TCP and a free UDP port of its own;
``.env`` then holds the PVA client variables too and ``.pva_conf`` the p4p client ``conf``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from ca_tools import loopback_env, run_tool, wait_for  # noqa: E402,F401 (wait_for: for the tests)

REPO = Path(__file__).resolve().parents[1]
_PYEPICS_PORT: int | None = None  # the IOC pyepics' context currently points at


def die_with_parent() -> None:
    """preexec_fn: SIGTERM the child when the test process dies (Linux), so a crashed test
    run leaves no IOC behind."""
    try:
        import ctypes  # noqa: PLC0415

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the fixture teardown still terminates by PID
        pass


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (CA uses both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind(("127.0.0.1", port))
            except OSError:
                continue
        return int(port)
    raise RuntimeError("no free port found")


@dataclass
class IocHandle:
    proc: subprocess.Popen
    prefix: str
    port: int
    env: dict[str, str]
    log_path: Path
    config_path: Path | None
    args: list[str] = field(default_factory=list)
    #: p4p client configuration for this IOC's PV Access server (``pva=True`` only)
    pva_conf: dict[str, str] | None = None

    def pv(self, name: str) -> str:
        return self.prefix + name

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` (SIGTERM) to the IOC's PID and wait; kill after ``timeout``."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)

    def use_pyepics(self):
        """Point pyepics at this IOC and return the ``epics`` module.

        libca reads the address list when its context is created: when the previous IOC
        used by pyepics was a different one, the cached context is dropped (disconnect your
        PV objects from another IOC first) and the next call creates one for this IOC.
        """
        global _PYEPICS_PORT
        import epics  # noqa: PLC0415

        if _PYEPICS_PORT != self.port:
            for k, v in self.env.items():
                if k.startswith("EPICS_"):
                    os.environ[k] = v
            if _PYEPICS_PORT is not None:
                epics.ca.clear_cache()
            _PYEPICS_PORT = self.port
        return epics


class Monitor:
    """A libca subscription through pyepics' low-level ``ca`` API.

    ``epics.PV(name, auto_monitor=True, callback=...)`` occasionally never creates its
    subscription when several PVs connect at once (seen ~1 in 20 clients of four PVs);
    subscribing explicitly after the channel connected does not have that race.
    ``callback(value=..., timestamp=..., **kw)`` runs in libca's thread.
    """

    def __init__(self, epics, pvname: str, callback, timeout: float = 10.0) -> None:
        ca = epics.ca
        self._ca = ca
        self.chid = ca.create_channel(pvname, connect=False, auto_cb=False)
        if not ca.connect_channel(self.chid, timeout=timeout):
            raise AssertionError(f"{pvname} did not connect")
        self._sub = ca.create_subscription(self.chid, use_time=True, callback=callback, count=0)

    def close(self) -> None:
        if self._sub is not None:
            self._ca.clear_subscription(self._sub[2])
            self._sub = None


def ioc_env(port: int) -> dict[str, str]:
    env = loopback_env(port)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def start_ioc(tmp_path: Path, config: Any = None, extra_args: tuple[str, ...] | list[str] = (),
              prefix: str | None = None, ready_timeout: float = 60.0, ready_pv: str = "State_RBV",
              name: str = "ioc", pva: bool = False, extra_env: dict[str, str] | None = None) -> IocHandle:
    port = free_port()
    prefix = prefix or f"T{uuid.uuid4().hex[:6]}:"
    config_path: Path | None = None
    if isinstance(config, dict):
        config_path = tmp_path / f"{name}_{port}.yaml"
        config_path.write_text(yaml.safe_dump(config))
    elif config is not None:
        config_path = Path(config)
    args = [sys.executable, "-m", "picodaq_ioc", "--prefix", prefix]
    if config_path is not None:
        args += ["--config", str(config_path)]
    args += list(extra_args)
    if not any(a in ("--autosave", "--no-autosave") for a in args):
        # keep autosave files out of the repository's configs/ (tests must not share settings)
        args += ["--autosave", str(tmp_path / f"{name}_{port}.autosave.json")]
    log_path = tmp_path / f"{name}_{port}.log"
    env = ioc_env(port)
    env.update(extra_env or {})
    client = loopback_env(port)
    pva_conf = None
    if pva:
        tcp, udp = free_port(), free_port()
        args.append("--pva")
        env.update(EPICS_PVAS_SERVER_PORT=str(tcp), EPICS_PVAS_BROADCAST_PORT=str(udp))
        pva_conf = {"EPICS_PVA_ADDR_LIST": f"127.0.0.1:{udp}", "EPICS_PVA_AUTO_ADDR_LIST": "NO",
                    "EPICS_PVA_BROADCAST_PORT": str(udp), "EPICS_PVA_SERVER_PORT": str(tcp)}
        client.update(pva_conf)
    with open(log_path, "w") as logf:
        proc = subprocess.Popen(args, env=env, stdout=logf, stderr=subprocess.STDOUT, cwd=str(tmp_path),
                                preexec_fn=die_with_parent)
    handle = IocHandle(proc=proc, prefix=prefix, port=port, env=client, log_path=log_path,
                       config_path=config_path, args=args, pva_conf=pva_conf)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"IOC exited with {proc.returncode} before it was ready")
        return run_tool("caget", ["-w", "0.5", handle.pv(ready_pv)], handle.env, timeout=10).returncode == 0

    try:
        wait_for(ready, ready_timeout, interval=0.1, message=f"IOC serving {ready_pv}",
                 stop=lambda: proc.poll() is not None)
    except AssertionError as ex:
        handle.stop()
        raise AssertionError(f"{ex}:\n{handle.log()}") from None
    return handle


@pytest.fixture
def ioc_factory(tmp_path):
    """Start IOCs (see module doc); all are terminated at teardown."""
    yield from _ioc_handles(tmp_path)


def _ioc_handles(workdir: Path):
    """Generator body of the IOC fixtures: a factory, then terminate every IOC it started."""
    handles: list[IocHandle] = []

    def factory(config: Any = None, extra_args: tuple[str, ...] | list[str] = (), **kw) -> IocHandle:
        h = start_ioc(workdir, config, extra_args, **kw)
        handles.append(h)
        return h

    yield factory
    for h in handles:
        h.stop()


@pytest.fixture(scope="module")
def module_ioc_factory(tmp_path_factory):
    """Like ``ioc_factory`` but the IOCs live for the whole test module."""
    yield from _ioc_handles(tmp_path_factory.mktemp("ioc"))
