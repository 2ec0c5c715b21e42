"""Helpers to run the displays headless against an IOC process on its own loopback port.

Used by the test suite and by ``clients/make_screenshots.py``; nothing here imports the IOC:
the IOC is a subprocess started from a command line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

__all__ = ["LOOPBACK_ENV", "IOCProcess", "ca_server", "free_port", "loopback_env", "start_private_ioc",
           "use_ca_server", "wait_for"]

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and whose UDP twin is free too."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind((LOOPBACK, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair on 127.0.0.1")


#: Address variables forced to loopback (CA and PVA twins); :func:`loopback_env` adds the port.
LOOPBACK_ENV: dict[str, str] = {
    "EPICS_CA_AUTO_ADDR_LIST": "NO",
    "EPICS_CA_ADDR_LIST": LOOPBACK,
    "EPICS_CAS_INTF_ADDR_LIST": LOOPBACK,
    "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
    "EPICS_CAS_BEACON_ADDR_LIST": LOOPBACK,
    "EPICS_PVA_AUTO_ADDR_LIST": "NO",
    "EPICS_PVA_ADDR_LIST": LOOPBACK,
    "EPICS_PVAS_INTF_ADDR_LIST": LOOPBACK,
    "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
    "EPICS_PVAS_BEACON_ADDR_LIST": LOOPBACK,
}


def loopback_env(port: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for an IOC serving and clients searching only 127.0.0.1:``port``."""
    env = dict(os.environ if base is None else base)
    env.update(LOOPBACK_ENV)
    env["EPICS_CA_ADDR_LIST"] = f"{LOOPBACK}:{port}"
    env["EPICS_CA_SERVER_PORT"] = str(port)
    return env


def use_ca_server(port: int) -> None:
    """Point this process's pyepics at 127.0.0.1:``port`` (fresh CA context).

    libca reads the address list when a context starts searching, so after changing the
    environment the pyepics caches are cleared and a new context is created. Close every
    :class:`~picodaq_clients.pvcache.PVCache` of the old context first.
    """
    os.environ.update({k: v for k, v in loopback_env(port, {}).items()
                       if k.startswith("EPICS_CA_") and k != "EPICS_CA_SERVER_PORT"})
    import epics

    epics.ca.clear_cache()


@contextlib.contextmanager
def ca_server(port: int) -> Iterator[None]:
    """Context: pyepics searches 127.0.0.1:``port``; the previous environment and a fresh
    context are restored on exit (so other code in the process keeps working)."""
    keys = [k for k in loopback_env(port, {}) if k.startswith("EPICS_CA_")]
    saved = {k: os.environ.get(k) for k in keys}
    use_ca_server(port)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        import epics

        epics.ca.clear_cache()


def wait_for(condition: Callable[[], bool], timeout: float, poll: float = 0.02) -> bool:
    """Poll ``condition`` (processing CA events in between) until true or ``timeout`` s passed."""
    import epics

    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        epics.ca.poll(poll)


class IOCProcess:
    """An IOC subprocess on its own loopback port, stoppable and restartable by PID.

    Parameters
    ----------
    args : sequence of str
        Command line (e.g. ``[sys.executable, "-m", "picodaq_ioc", "--prefix", "T:"]``).
    port : int, optional
        CA server port (a free one if omitted).
    env : mapping, optional
        Extra environment variables.
    log_path : str, optional
        File receiving the IOC's stdout and stderr.
    cwd : str, optional
        Working directory (run files the IOC writes land there).
    """

    def __init__(self, args: Sequence[str], port: int | None = None,
                 env: Mapping[str, str] | None = None, log_path: str | None = None,
                 cwd: str | None = None) -> None:
        self.args = list(args)
        self.cwd = cwd
        self.port = free_port() if port is None else port
        self.env = loopback_env(self.port)
        self.env.update(env or {})
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self) -> IOCProcess:
        """Start the IOC (not waiting for it: wait for a PV to connect)."""
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.cwd)
        if out is not subprocess.DEVNULL:
            out.close()
        return self

    def kill(self) -> None:
        """SIGKILL the IOC by PID (an IOC that dies) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the IOC by PID (SIGTERM, SIGKILL after ``timeout``)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> IOCProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def python_cmd(*args: str) -> list[str]:
    """``[sys.executable, *args]``."""
    return [sys.executable, *args]


def start_private_ioc(config: str | os.PathLike, prefix: str, repo_root: str | os.PathLike,
                      tmp_prefix: str = "picodaq_") -> IOCProcess:
    """Start ``python -m picodaq_ioc`` on a private copy of ``config`` in a new temp directory
    (so the IOC's autosave file lands there, not next to the repository's config), with
    ``repo_root`` on PYTHONPATH, on its own loopback port."""
    import shutil
    import tempfile
    from pathlib import Path

    work = Path(tempfile.mkdtemp(prefix=tmp_prefix))
    private = work / Path(config).name
    shutil.copy(config, private)
    env = {"PYTHONPATH": os.pathsep.join([str(repo_root), os.environ.get("PYTHONPATH", "")])}
    return IOCProcess([sys.executable, "-m", "picodaq_ioc", "--config", str(private), "--prefix", prefix],
                      env=env, log_path=str(work / "ioc.log"), cwd=str(work)).start()
