"""Latest values of a set of PVs, kept current by Channel Access monitors (pyepics).

Callbacks run in the CA library's threads and only store the newest value under a lock;
displays read the cache from the GUI thread at their own frame rate, so a slow display
never slows the IOC (the IOC drops what a client cannot take, latest value wins).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from .env import apply_client_env

apply_client_env()

import epics  # noqa: E402  (after the CA environment defaults)

__all__ = ["PVCache"]


class PVCache:
    """Monitored PVs under one prefix: newest value, enum string and connection state.

    Parameters
    ----------
    prefix : str
        IOC prefix including the separator, e.g. ``"PICO:"``.
    suffixes : iterable of str, optional
        PV names relative to the prefix to monitor right away (more with :meth:`add`).

    Notes
    -----
    PVs are created once and kept: re-creating pyepics ``PV`` objects leaks channels on
    the IOC. When the IOC goes away the connection callback marks its PVs disconnected;
    libca reconnects by itself when the IOC returns and the monitors resume.
    """

    def __init__(self, prefix: str, suffixes: Iterable[str] = ()) -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._pvs: dict[str, epics.PV] = {}
        self._values: dict[str, Any] = {}
        self._strings: dict[str, str] = {}
        self._units: dict[str, str] = {}
        self._connected: dict[str, bool] = {}
        self._updates: dict[str, int] = {}
        self.disconnects = 0  #: number of connection losses seen (any PV)
        self.add(*suffixes)

    # -- subscription ----------------------------------------------------------------------
    def add(self, *suffixes: str) -> None:
        """Start monitoring ``prefix + suffix`` for each suffix not yet monitored."""
        for suffix in suffixes:
            if suffix in self._pvs:
                continue
            with self._lock:
                self._connected[suffix] = False
                self._updates[suffix] = 0
            self._pvs[suffix] = epics.PV(
                self.prefix + suffix,
                form="ctrl",
                auto_monitor=True,
                callback=self._on_value,
                connection_callback=self._on_connection,
            )

    def _suffix(self, pvname: str) -> str:
        return pvname[len(self.prefix):] if pvname.startswith(self.prefix) else pvname

    def _on_value(self, pvname: str = "", value: Any = None, char_value: str | None = None,
                  units: str | None = None, enum_strs: Any = None, **_: Any) -> None:
        suffix = self._suffix(pvname)
        if enum_strs and isinstance(value, (int,)) and 0 <= value < len(enum_strs):
            s = enum_strs[value]
            char_value = s.decode() if isinstance(s, bytes) else str(s)
        with self._lock:
            self._values[suffix] = value
            if char_value is not None:
                self._strings[suffix] = str(char_value)
            if units:
                self._units[suffix] = units.decode() if isinstance(units, bytes) else str(units)
            self._updates[suffix] = self._updates.get(suffix, 0) + 1

    def _on_connection(self, pvname: str = "", conn: bool = False, **_: Any) -> None:
        suffix = self._suffix(pvname)
        with self._lock:
            if self._connected.get(suffix) and not conn:
                self.disconnects += 1
            self._connected[suffix] = bool(conn)

    # -- reading ---------------------------------------------------------------------------
    def value(self, suffix: str, default: Any = None) -> Any:
        """Newest value of ``suffix`` (``default`` before the first update)."""
        with self._lock:
            return self._values.get(suffix, default)

    def string(self, suffix: str, default: str = "") -> str:
        """Newest value as a string (enum state name for enum PVs)."""
        with self._lock:
            return self._strings.get(suffix, default)

    def units(self, suffix: str, default: str = "") -> str:
        """Engineering units reported by the IOC."""
        with self._lock:
            return self._units.get(suffix, default)

    def updates(self, suffix: str) -> int:
        """Number of monitor updates received for ``suffix``."""
        with self._lock:
            return self._updates.get(suffix, 0)

    def connected(self, suffix: str) -> bool:
        """Whether the channel for ``suffix`` is connected now."""
        with self._lock:
            return self._connected.get(suffix, False)

    def all_connected(self, suffixes: Iterable[str] | None = None) -> bool:
        """Whether every listed (default: every monitored) PV is connected."""
        with self._lock:
            keys = list(self._connected) if suffixes is None else list(suffixes)
            return all(self._connected.get(k, False) for k in keys)

    def wait_connected(self, suffixes: Iterable[str] | None = None, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` s until the PVs are connected and have a value."""
        keys = list(self._pvs) if suffixes is None else list(suffixes)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(self._connected.get(k) and k in self._values for k in keys):
                    return True
            epics.ca.poll(0.02)
        return False

    # -- writing ---------------------------------------------------------------------------
    def put(self, suffix: str, value: Any, *, wait: bool = False, timeout: float = 5.0) -> bool:
        """``caput prefix+suffix value``; returns False when the PV is not connected."""
        self.add(suffix)
        pv = self._pvs[suffix]
        if not pv.connected and not pv.wait_for_connection(timeout=min(timeout, 1.0)):
            return False
        pv.put(value, wait=wait, timeout=timeout)
        return True

    def close(self) -> None:
        """Clear all subscriptions and channels."""
        for pv in self._pvs.values():
            pv.clear_callbacks()
            pv.disconnect()
        self._pvs.clear()
