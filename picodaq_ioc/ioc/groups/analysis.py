"""Generic PV groups of analysis modules, built from their ``ResultSpec``s.

For a module with ``prefix = "Pulse"`` every spec becomes ``$(P)Pulse:<name>``; results are
copied from ``module.results()`` at a bounded rate (by the IOC's status loop), commands
(``kind="command"``) are writable and call ``module.command(name, value)`` off the event loop.
``$(P)<prefix>:ModuleStatus_RBV`` shows a module error (MAJOR alarm) or "OK".
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from typing import Any

import numpy as np
from caproto import AlarmSeverity, AlarmStatus, ChannelType

from ...analysis.base import AnalysisModule, ResultSpec
from ..controller import PutRefused
from ..pvspec import (
    float_pv,
    int_pv,
    long_string_pv,
    plain,
    set_alarm,
    string_pv,
    waveform_pv,
    write_if_changed,
)
from .base import PicoGroup

log = logging.getLogger("picodaq_ioc.ioc.analysis")

STATUS_PV = "ModuleStatus_RBV"


def _attr(name: str) -> str:
    a = re.sub(r"\W", "_", name)
    return "pv_" + a


def _limits(spec: ResultSpec) -> dict[str, Any]:
    if spec.low is not None and spec.high is not None and spec.low < spec.high:
        return {"low": spec.low, "high": spec.high}
    return {}


def _make_pv(spec: ResultSpec):
    doc = spec.doc or spec.name
    if spec.kind == "float":
        return float_pv(spec.name, doc, units=spec.units, precision=spec.precision, read_only=True,
                        value=0.0, **_limits(spec))
    if spec.kind == "int":
        return int_pv(spec.name, doc, units=spec.units, read_only=True, **_limits(spec))
    if spec.kind == "array":
        return waveform_pv(spec.name, doc, max_length=max(1, spec.max_length), dtype=ChannelType.DOUBLE,
                           units=spec.units, precision=spec.precision, low=spec.low, high=spec.high)
    if spec.kind == "int_array":
        return waveform_pv(spec.name, doc, max_length=max(1, spec.max_length), dtype=ChannelType.LONG,
                           units=spec.units, precision=0, low=spec.low, high=spec.high)
    if spec.kind == "string":
        return string_pv(spec.name, doc)
    if spec.kind == "command":
        return float_pv(spec.name, doc, units=spec.units, precision=spec.precision, read_only=False,
                        **_limits(spec))
    raise ValueError(f"analysis spec {spec.name!r}: unknown kind {spec.kind!r}")


def make_analysis_group(module: AnalysisModule) -> type[PicoGroup]:
    """A PVGroup class for ``module`` (use it with ``SubGroup(cls, prefix=module.prefix + ':')``)."""
    specs = tuple(module.specs)
    attrs: dict[str, Any] = {"module": module, "specs": specs}
    names = set()
    for spec in specs:
        if spec.name in names:
            raise ValueError(f"analysis module {module.prefix}: duplicate result name {spec.name!r}")
        names.add(spec.name)
        prop = _make_pv(spec)
        if spec.kind == "command":
            prop.putter(_command_putter(spec.name))
        attrs[_attr(spec.name)] = prop
    if STATUS_PV not in names:
        attrs[_attr(STATUS_PV)] = long_string_pv(STATUS_PV, f"{module.prefix} analysis module status")
    clean = re.sub(r"\W", "", module.prefix)
    cls = type(f"Analysis{clean}Group", (AnalysisGroup,), attrs)
    return cls


def _command_putter(name: str):
    async def putter(self, instance, value):
        v = float(value)
        if not math.isfinite(v):
            raise PutRefused(f"{self.module.prefix}:{name}: {plain(value)!r} is not a finite number")
        arg: Any = int(v) if v.is_integer() else v
        try:
            await asyncio.to_thread(self.module.command, name, arg)
        except Exception as ex:
            raise PutRefused(f"{self.module.prefix}:{name}: {type(ex).__name__}: {ex}") from ex
        return v
    putter.__name__ = _attr(name)
    return putter


class AnalysisGroup(PicoGroup):
    """Base of the generated analysis groups."""

    module: AnalysisModule
    specs: tuple[ResultSpec, ...] = ()

    def pv_for(self, name: str):
        return getattr(self, _attr(name))

    async def show_results(self, results: dict[str, Any] | None, error: str | None = None) -> None:
        for spec in self.specs:
            if spec.kind == "command" or results is None or spec.name not in results:
                continue
            value = results[spec.name]
            pv = self.pv_for(spec.name)
            try:
                if spec.kind in ("array", "int_array"):
                    dtype = np.float64 if spec.kind == "array" else np.int32
                    arr = np.asarray(value, dtype=dtype).ravel()[: max(1, spec.max_length)]
                    if len(arr) == len(pv.value) and np.array_equal(arr, np.asarray(pv.value), equal_nan=
                                                                     spec.kind == "array"):
                        continue
                    arr.flags.writeable = False
                    await pv.write(arr)
                elif spec.kind == "float":
                    await write_if_changed(pv, float(value) if value is not None else math.nan)
                elif spec.kind == "int":
                    await write_if_changed(pv, int(value))
                else:
                    await write_if_changed(pv, str(value)[:39])
            except Exception as ex:
                log.warning("analysis %s: result %s = %r not published: %s", self.module.prefix,
                            spec.name, value, ex)
        status_pv = getattr(self, _attr(STATUS_PV), None)
        if status_pv is not None and STATUS_PV not in {s.name for s in self.specs}:
            text = "OK" if not error else error[:255]
            if status_pv.value != text:
                await status_pv.write(text)
            await set_alarm(status_pv, AlarmSeverity.MAJOR_ALARM if error else AlarmSeverity.NO_ALARM,
                            AlarmStatus.STATE)
