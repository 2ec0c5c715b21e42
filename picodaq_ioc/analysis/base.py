"""Plugin interface of the analysis modules (obligatory consumers; no EPICS here).

A module declares its outputs as ``ResultSpec``s; the IOC turns each spec into a PV
``$(P)<prefix>:<name>`` (e.g. ``PICO:Pulse:Lifetime_RBV``) and copies ``results()``
into them at a bounded rate. Commands (``kind="command"``, e.g. ``Reset``) become
writable PVs whose puts call ``command(name, value)``.

Life cycle, all called by the analysis runner::

    m = Module(params)                  # params from the config's analysis: entry
    m.start(applied, run_info)          # new run or new configuration
    m.process(batch)                    # every event, in order, vectorised batches
    m.results() -> dict[name, value]    # snapshot, called from another thread
    m.command("Reset", 1)
    m.finish() -> dict                  # end-of-run summary (also written to files)
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from ..daq.events import EventBatch
from ..scope.types import Applied


@dataclass(frozen=True)
class ResultSpec:
    name: str  # PV leaf, CamelCase, read-only results end in _RBV
    kind: Literal["int", "float", "array", "int_array", "string", "command"]
    doc: str
    units: str = ""
    precision: int = 3
    max_length: int = 1  # arrays: capacity (NELM)
    low: Optional[float] = None  # display limits
    high: Optional[float] = None


@dataclass
class RunInfo:
    run_start_time: float  # epoch seconds of the run start (file names)
    output_dir: str  # where per-run files go
    extra: dict[str, Any] = field(default_factory=dict)


class AnalysisModule(ABC):
    """Base class; subclasses set ``prefix`` (PV segment, e.g. "Pulse") and ``specs``."""

    prefix: str = "Analysis"
    specs: tuple[ResultSpec, ...] = ()

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.lock = threading.Lock()  # guards the state read by results()

    @abstractmethod
    def start(self, applied: Applied, run: RunInfo) -> None: ...

    @abstractmethod
    def process(self, batch: EventBatch) -> None: ...

    @abstractmethod
    def results(self) -> dict[str, Any]: ...

    def command(self, name: str, value: Any) -> None:  # noqa: B027 - optional hook
        """Handle a write to a ``kind="command"`` spec."""

    def finish(self) -> dict[str, Any]:
        return self.results()
