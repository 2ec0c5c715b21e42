"""Test-only fault injection over Channel Access (``picodaq-ioc --test-faults``).

Adds hidden PVs under ``<prefix>Test:`` (not in ``--list-pvs``, ``db/`` or the docs) that
call the simulator's fault hooks, and two JSON readbacks that let a test outside the IOC
process compare the IOC with the device and with the simulator's hidden ground truth:

============================  =====================================================
``Test:Unplug``               put 1: the simulated scope is unplugged (every call raises
                              ``DeviceDisconnected`` until replugged)
``Test:Replug``               put 1: plug it back in (the IOC must reconnect by itself)
``Test:Busy``                 put n: the next n driver calls raise ``Busy``
``Test:Stall``                put n: the next n waits time out (USB stall)
``Test:Refresh``              put 1: update the two readbacks below (put-completion when done)
``Test:Applied_RBV``          JSON: what the backend reports as applied (the device state)
``Test:Truth_RBV``            JSON: the simulator's ground truth and the buffer manager's stats
============================  =====================================================

Never enable this on a production IOC: anybody who can write these PVs can break the run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import logging
import math
from typing import Any

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

log = logging.getLogger(__name__)

__all__ = ["FaultGroup", "find_backend", "install_faults", "to_jsonable"]

JSON_MAX = 65536


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, enums, numpy scalars/arrays, mappings -> plain JSON values (NaN -> None)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return to_jsonable(obj.tolist())
    if isinstance(obj, dict) or hasattr(obj, "items"):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


def find_backend(session: Any) -> Any:
    """The scope backend object of a DAQ session (duck-typed: has ``configure`` and ``arm``)."""
    seen: set[int] = set()
    todo = [session]
    while todo:
        obj = todo.pop(0)
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if hasattr(obj, "configure") and hasattr(obj, "arm") and hasattr(obj, "read"):
            return obj
        for attr in ("backend", "scope", "_backend", "device", "bm"):
            todo.append(getattr(obj, attr, None))
    return None


def _truth(backend: Any) -> Any:
    for attr in ("truth", "ground_truth"):
        t = getattr(backend, attr, None)
        if t is None:
            continue
        return t() if callable(t) else t
    return None


class FaultGroup(PVGroup):
    """Hidden test PVs (see the module docstring)."""

    Unplug = pvproperty(value=0, doc="(test) put 1 to unplug the simulated scope")
    Replug = pvproperty(value=0, doc="(test) put 1 to plug the simulated scope back in")
    Busy = pvproperty(value=0, doc="(test) put n: the next n driver calls raise Busy")
    Stall = pvproperty(value=0, doc="(test) put n: the next n waits time out")
    Refresh = pvproperty(value=0, doc="(test) put 1 to update Applied_RBV and Truth_RBV")
    Applied_RBV = pvproperty(value="{}", dtype=ChannelType.CHAR, max_length=JSON_MAX, string_encoding="utf-8",
                             read_only=True, doc="(test) backend-applied settings as JSON")
    Truth_RBV = pvproperty(value="{}", dtype=ChannelType.CHAR, max_length=JSON_MAX, string_encoding="utf-8",
                           read_only=True, doc="(test) simulator ground truth and BM stats as JSON")
    MemTop_RBV = pvproperty(value="[]", dtype=ChannelType.CHAR, max_length=JSON_MAX, string_encoding="utf-8",
                            read_only=True, doc="(test) top memory growth since the last refresh "
                                                "(only when the IOC runs with PYTHONTRACEMALLOC)")

    def __init__(self, *args: Any, ioc: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ioc = ioc

    # ----------------------------------------------------------------------------
    @property
    def session(self) -> Any:
        ctl = getattr(self.ioc, "ctl", None)
        return getattr(ctl, "session", None)

    @property
    def backend(self) -> Any:
        return find_backend(self.session)

    async def _call(self, name: str, *args: Any) -> None:
        be = self.backend
        fn = getattr(be, name, None)
        if fn is None:
            raise ValueError(f"the backend {type(be).__name__} has no fault hook {name}()")
        log.warning("TEST FAULT: %s.%s%s", type(be).__name__, name, args)
        # fault hooks only set flags; calling from the event loop's thread pool is safe
        await asyncio.to_thread(fn, *args)

    @Unplug.putter
    async def Unplug(self, instance, value):
        if int(value):
            await self._call("unplug")
        return 0

    @Replug.putter
    async def Replug(self, instance, value):
        if int(value):
            await self._call("replug")
        return 0

    @Busy.putter
    async def Busy(self, instance, value):
        if int(value) > 0:
            await self._call("busy", int(value))
        return int(value)

    @Stall.putter
    async def Stall(self, instance, value):
        if int(value) > 0:
            await self._call("stall", int(value))
        return int(value)

    @Refresh.putter
    async def Refresh(self, instance, value):
        await self.refresh()
        return 0

    async def refresh(self) -> None:
        be = self.backend
        applied = getattr(be, "applied", None)
        if callable(applied):
            applied = applied()
        if applied is None:
            applied = getattr(be, "_applied", None)  # SimScope keeps it private
        ctl = getattr(self.ioc, "ctl", None)
        bm = getattr(ctl, "bm", None)
        stats = None
        if bm is not None:
            stats = await asyncio.to_thread(bm.stats)
        truth = _truth(be)
        doc_a = json.dumps(to_jsonable({"applied": applied, "bm_applied": getattr(bm, "applied", None),
                                        "controller_applied": getattr(ctl, "applied", None)}))
        doc_t = json.dumps(to_jsonable({"truth": truth, "stats": stats}))
        await self.Applied_RBV.write(doc_a[: JSON_MAX - 1])
        await self.Truth_RBV.write(doc_t[: JSON_MAX - 1])
        growth = await asyncio.to_thread(self._memory_growth)
        await self.MemTop_RBV.write(json.dumps(growth)[: JSON_MAX - 1])

    def _memory_growth(self, n: int = 12) -> list[dict[str, Any]]:
        """Allocation sites that grew most since the previous call (tracemalloc, if tracing)."""
        import gc
        import tracemalloc

        if not tracemalloc.is_tracing():
            return []
        gc.collect()
        snap = tracemalloc.take_snapshot()
        prev, self._mem_snapshot = getattr(self, "_mem_snapshot", None), snap
        if prev is None:
            return []
        out = []
        for st in snap.compare_to(prev, "traceback")[:n]:
            out.append({"kb": round(st.size_diff / 1e3, 1), "count": st.count_diff,
                        "where": [f"{f.filename}:{f.lineno}" for f in st.traceback][-6:]})
        return out


def install_faults(group: Any) -> FaultGroup:
    """Add the hidden ``<prefix>Test:*`` PVs to ``group.pvdb`` (call before the server runs)."""
    prefix = getattr(group, "prefix", "") + "Test:"
    fg = FaultGroup(prefix=prefix, ioc=group)
    clash = set(fg.pvdb) & set(group.pvdb)
    if clash:
        raise RuntimeError(f"--test-faults: PV names already used: {sorted(clash)}")
    group.pvdb.update(fg.pvdb)
    log.warning("--test-faults: fault injection PVs enabled under %s (testing only)", prefix)
    return fg
