"""A deliberately failing analysis module for the fault tests (loaded by import path
``faults_plugin:Exploder`` from the IOC's config; the tests put ``tests/`` on PYTHONPATH)."""

from __future__ import annotations

from typing import Any

from picodaq_ioc.analysis.base import AnalysisModule, ResultSpec, RunInfo
from picodaq_ioc.daq.events import EventBatch
from picodaq_ioc.scope.types import Applied


class Exploder(AnalysisModule):
    """Counts events and raises ``RuntimeError`` once it has seen ``raise_after`` of them."""

    prefix = "Boom"
    specs = (ResultSpec("Events_RBV", "int", "events seen before the explosion"),)

    def __init__(self, raise_after: int = 100, **params: Any) -> None:
        super().__init__(raise_after=raise_after, **params)
        self.raise_after = int(raise_after)
        self.events = 0

    def start(self, applied: Applied, run: RunInfo) -> None:
        with self.lock:
            self.events = 0

    def process(self, batch: EventBatch) -> None:
        with self.lock:
            self.events += len(batch)
        if self.events >= self.raise_after:
            raise RuntimeError(f"Exploder: deliberate failure after {self.events} events")

    def results(self) -> dict[str, Any]:
        with self.lock:
            return {"Events_RBV": self.events}
