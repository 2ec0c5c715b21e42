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
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ValidationError

from ..daq.events import EventBatch
from ..scope.types import Applied

#: Display scale (HOPR) of event and trigger rates, analysis and IOC alike: the simulator and
#: a USB PicoScope in block or rapid-block mode stay below it (docs/benchmarks.md).
RATE_SCALE_HZ = 1000.0
#: Display scale (HOPR) of run, live, dead and trigger times: one day.
TIME_SCALE_S = 86400.0


@dataclass(frozen=True)
class ResultSpec:
    name: str  # PV leaf, CamelCase, read-only results end in _RBV
    kind: Literal["int", "float", "array", "int_array", "string", "command"]
    doc: str
    units: str = ""
    precision: int = 3
    max_length: int = 1  # arrays: capacity (NELM)
    low: float | None = None  # display limits
    high: float | None = None


@dataclass
class RunInfo:
    run_start_time: float  # epoch seconds of the run start (file names)
    output_dir: str  # where per-run files go
    extra: dict[str, Any] = field(default_factory=dict)


class AnalysisConfigError(ValueError):
    """A bad analysis parameter: names the module, the key, the value and what is allowed."""

    def __init__(self, message: str, *, module: str | None = None, key: str | None = None,
                 value: Any = None, allowed: str | None = None) -> None:
        self.module, self.key, self.value, self.allowed = module, key, value, allowed
        self.detail = message
        super().__init__(self._text())

    def _text(self) -> str:
        parts = []
        if self.module:
            m = str(self.module)
            parts.append(m if m.startswith("analysis") else f"analysis module {m!r}")
        if self.key is not None:
            parts.append(f"parameter {self.key!r} = {self.value!r}")
        head = ": ".join(parts)
        text = f"{head}: {self.detail}" if head else self.detail
        if self.allowed:
            text += f" (allowed: {self.allowed})"
        return text

    def for_module(self, module: str) -> AnalysisConfigError:
        """The same error with the module's label filled in."""
        return AnalysisConfigError(self.detail, module=module, key=self.key, value=self.value,
                                   allowed=self.allowed)


def _describe_field(model: type[BaseModel], key: str) -> str | None:
    f = model.model_fields.get(key)
    if f is None:
        for name, fi in model.model_fields.items():
            if fi.alias == key:
                f, key = fi, name
                break
    if f is None:
        return None
    return f.description


def validate_params(model: type[BaseModel], params: dict[str, Any]) -> BaseModel:
    """Validate ``params`` with a pydantic model; errors become :class:`AnalysisConfigError`.

    Unknown keys are reported with the list of known ones.
    """
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(x) for x in err.get("loc", ())]
        key = ".".join(loc) if loc else None
        top = loc[0] if loc else None
        value = err.get("input")
        if err.get("type") == "extra_forbidden":
            names = sorted({fi.alias or n for n, fi in model.model_fields.items()}
                           | set(model.model_fields))
            raise AnalysisConfigError("unknown parameter", key=key, value=value,
                                      allowed=", ".join(names)) from None
        allowed = _describe_field(model, top) if top else None
        raise AnalysisConfigError(err.get("msg", str(exc)), key=key, value=value, allowed=allowed) from None


class AnalysisModule(ABC):
    """Base class; subclasses set ``prefix`` (PV segment, e.g. "Pulse") and ``specs``.

    Subclasses may set ``Params`` (a pydantic model with ``extra="forbid"``); then
    :meth:`parse_params` validates the config parameters with clear errors. ``specs``
    may be replaced per instance in ``__init__`` (e.g. one set of PVs per channel).
    """

    prefix: str = "Analysis"
    name: str = ""  # instance name from the config (set by the runner; used in file names)
    specs: tuple[ResultSpec, ...] = ()
    Params: ClassVar[type[BaseModel] | None] = None

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.lock = threading.Lock()  # guards the state read by results()

    @abstractmethod
    def start(self, applied: Applied, run: RunInfo) -> None: ...

    @abstractmethod
    def process(self, batch: EventBatch) -> None: ...

    @abstractmethod
    def results(self) -> dict[str, Any]: ...

    def is_new_run(self, run: RunInfo) -> bool:
        """Whether ``start`` is called for another run than the previous call (a restart after
        a configuration change within a run is not a new run); remembers ``run``.

        Modules call it in ``start`` to decide whether to clear their accumulators.
        """
        new = run.run_start_time != getattr(self, "_last_run_start", None)
        self._last_run_start = run.run_start_time
        return new

    def parse_params(self) -> Any:
        """Validate ``self.params`` against ``Params`` (raises :class:`AnalysisConfigError`)."""
        if self.Params is None:
            return dict(self.params)
        return validate_params(self.Params, self.params)

    def command(self, name: str, value: Any) -> None:  # noqa: B027 - optional hook
        """Handle a write to a ``kind="command"`` spec."""

    def finish(self) -> dict[str, Any]:
        return self.results()
