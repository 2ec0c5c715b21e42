"""The analysis runner: builds the configured modules and runs them as obligatory consumers.

Usage (plain Python or inside the IOC)::

    runner = AnalysisRunner(bm, cfg.analysis, output_dir="runs")   # attaches the consumers
    runner.begin_run()            # optional: names the run's files by this start time
    bm.start(); ...; bm.stop()    # every event reaches every module, in order
    summaries = runner.end_run()  # finish() of each module + <stamp>_analysis_summary.yaml
    runner.results("pulse")       # snapshot of one module's results (thread-safe)

Each module gets its own consumer thread (``BufferManager.add_obligatory_callback``).
``start(applied, run)`` is called before the first batch of a run and again whenever
``batch.applied.config_generation`` changes. Runs are announced, never guessed: the runner is
a run listener (:mod:`picodaq_ioc.daq.lifecycle`), so ``bm.add_run_listener(runner)`` (what
``DaqSession.attach_analysis`` does) begins and ends its runs with the buffer manager's;
without it, call :meth:`begin_run` / :meth:`end_run` yourself (a batch arriving with no run
open begins one).

A module whose ``start`` or ``process`` raises is marked failed: the error text is in
``runner.errors[name]`` (and logged), its consumer keeps releasing events (so the DAQ is
never held up) and it is retried at the next run or configuration change.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..daq.accounting import RunSummary
from ..daq.events import EventBatch
from ..daq.lifecycle import RunStart
from .base import AnalysisConfigError, AnalysisModule, RunInfo
from .output import output_path, unique_stamp, write_yaml
from .registry import create_module

__all__ = ["AnalysisRunner"]

log = logging.getLogger("picodaq_ioc.analysis")


@dataclass
class _ModState:
    run: RunInfo | None = None
    generation: int | None = None
    last_event: int | None = None
    failed: bool = False
    started: bool = False  # start() of the current run/generation succeeded at least once
    batches: int = 0
    events: int = 0


class AnalysisRunner:
    """Run analysis modules from an ``analysis:`` config list on a buffer manager.

    Parameters
    ----------
    bm : BufferManager or None
        Where to attach the modules (``add_obligatory_callback``). ``None``: do not attach;
        feed batches yourself with :meth:`process`.
    analysis_sections : iterable
        ``AnalysisSection`` objects or dicts (``module``, optional ``name``/``prefix``,
        parameters), or ready :class:`AnalysisModule` instances.
    output_dir : str or Path
        Directory of the per-run files.
    max_events : int
        Largest batch handed to a module.
    log_fn : callable, optional
        Extra sink for log lines (e.g. the IOC's message PV).

    Raises
    ------
    AnalysisConfigError
        Unknown module, bad parameter (names the module, key, value and allowed values),
        or duplicate names/prefixes.
    """

    def __init__(self, bm: Any, analysis_sections: Iterable[Any] = (), output_dir: str | Path = "runs", *,
                 max_events: int = 256, log_fn: Callable[[str], None] | None = None) -> None:
        self.bm = bm
        self.output_dir = str(output_dir)
        self.max_events = int(max_events)
        self._log_fn = log_fn
        self.modules: dict[str, AnalysisModule] = {}
        self.errors: dict[str, str] = {}
        self.summaries: dict[str, Any] = {}
        self.summary_file: str | None = None
        prefixes: dict[str, str] = {}
        for i, sec in enumerate(analysis_sections or ()):
            m = sec if isinstance(sec, AnalysisModule) else create_module(sec, i)
            if not m.name:
                m.name = type(m).__name__.lower()
            if m.name in self.modules:
                raise AnalysisConfigError("duplicate module name; give each entry its own 'name'",
                                          module=f"analysis[{i}]", key="name", value=m.name)
            if m.prefix in prefixes:
                raise AnalysisConfigError(f"PV prefix already used by module {prefixes[m.prefix]!r}; "
                                          "set 'prefix' to a different segment",
                                          module=f"analysis[{i}] {m.name!r}", key="prefix", value=m.prefix)
            prefixes[m.prefix] = m.name
            self.modules[m.name] = m
        self._state = {n: _ModState() for n in self.modules}
        self._lock = threading.RLock()
        self._run: RunInfo | None = None
        self._run_number = 0
        self.consumers: dict[str, Any] = {}
        if bm is not None:
            self.attach()

    # ------------------------------------------------------------------ wiring
    def attach(self) -> None:
        """Register one obligatory callback consumer per module on the buffer manager."""
        for name in self.modules:
            if name in self.consumers:
                continue
            self.consumers[name] = self.bm.add_obligatory_callback(
                f"analysis:{name}", self._callback(name), max_events=self.max_events,
                on_error=self._bm_error, stop_on_error=False)

    def detach(self) -> None:
        """Stop gating the ring (consumers detached)."""
        for c in self.consumers.values():
            try:
                c.detach()
            except Exception as exc:  # pragma: no cover - best effort at shutdown
                log.warning("detaching analysis consumer: %s", exc)
        self.consumers.clear()

    def _callback(self, name: str) -> Callable[[EventBatch], None]:
        def fn(batch: EventBatch) -> None:
            self.process(name, batch)
        fn.__name__ = f"analysis_{name}"
        return fn

    def _bm_error(self, consumer: str, exc: BaseException) -> None:
        name = consumer.split(":", 1)[-1]
        self._fail(name, "consumer", exc)

    def _log(self, level: int, msg: str) -> None:
        log.log(level, msg)
        if self._log_fn is not None:
            try:
                self._log_fn(msg)
            except Exception:  # pragma: no cover - a broken sink must not break analysis
                pass

    def _fail(self, name: str, where: str, exc: BaseException) -> None:
        text = f"{where}: {type(exc).__name__}: {exc}"
        with self._lock:
            self.errors[name] = text
            if name in self._state:
                self._state[name].failed = True
        self._log(logging.ERROR, f"analysis module {name!r} failed in {text}\n"
                                 + "".join(traceback.format_exception(exc)).rstrip())

    # ------------------------------------------------------------------ runs
    def begin_run(self, run_start_time: float | None = None) -> RunInfo:
        """Start a new run (finishing an unfinished one); modules start on its first batch."""
        with self._lock:
            if self._run is not None:
                self._end_run_locked()
            self._run = self._new_run(run_start_time)
            return self._run

    def run_started(self, run: RunStart) -> None:
        """Run listener: the buffer manager started run ``run`` (before its first event).

        The modules start now (not at the first batch), so their results belong to the new
        run from its start: a client never reads the previous run's figures as this run's."""
        info = self.begin_run(run.start_time)
        applied = self.bm.applied if self.bm is not None else None
        if applied is not None:
            for name in self.modules:
                self._start(name, applied, info)

    def _start(self, name: str, applied: Any, run: RunInfo) -> bool:
        """``start`` module ``name`` for ``run`` with ``applied``; False when it raised."""
        st = self._state[name]
        with self._lock:
            new_run = st.run is not run
            st.run, st.generation, st.failed = run, applied.config_generation, False
            if new_run:
                st.last_event, st.batches, st.events = None, 0, 0
                st.started = False
                self.errors.pop(name, None)
        try:
            self.modules[name].start(applied, run)
        except Exception as exc:
            self._fail(name, "start", exc)
            return False
        st.started = True
        return True

    def run_ended(self, summary: RunSummary) -> None:  # noqa: ARG002 - the runner writes its own
        """Run listener: the run ended and its events were processed; finish the modules."""
        self.end_run()

    def _new_run(self, t: float | None) -> RunInfo:
        self._run_number += 1
        t = time.time() if t is None else float(t)
        return RunInfo(t, self.output_dir, extra={"run_number": self._run_number,
                                                  "stamp": unique_stamp(self.output_dir, t)})

    def end_run(self) -> dict[str, Any]:
        """Finish every module of the current run, write the summary file, return the summaries.

        Call after ``bm.stop()`` returned (all events processed). Idempotent. A run in which
        no event reached any module yet is left open (nothing to summarise).
        """
        with self._lock:
            return self._end_run_locked()

    def _end_run_locked(self) -> dict[str, Any]:
        run = self._run
        if run is None:
            return {}
        if not any(st.run is run for st in self._state.values()):
            # no event of this run reached a module yet (e.g. a late end_run() of the previous
            # run racing a begin_run()): nothing to summarise; keep the run open
            return {}
        out: dict[str, Any] = {}
        for name, m in self.modules.items():
            st = self._state[name]
            if st.run is not run:
                continue
            if not st.started:  # start() failed: nothing to finish, report the error only
                out[name] = {"prefix": m.prefix, "events": 0, "error": self.errors.get(name)}
                continue
            try:
                out[name] = m.finish()
            except Exception as exc:
                self._fail(name, "finish", exc)
                out[name] = {"error": self.errors.get(name)}
            out[name] = {"prefix": m.prefix, "events": st.events, **(out[name] or {})}
            if self.errors.get(name):
                out[name]["error"] = self.errors[name]
        self._run = None
        self.summaries = out
        try:
            path = output_path(run, "analysis", "summary", "yaml")
            write_yaml(path, {"run_start_time": run.run_start_time,
                              "run_start": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.run_start_time)),
                              "run_number": run.extra.get("run_number"), "modules": out})
            self.summary_file = str(path)
        except OSError as exc:
            self._log(logging.ERROR, f"analysis summary not written: {exc}")
            self.summary_file = None
        return out

    @property
    def run(self) -> RunInfo | None:
        return self._run

    # ------------------------------------------------------------------ processing
    def process(self, name: str, batch: EventBatch) -> None:
        """Hand one batch to module ``name`` (the consumer callback; also usable directly)."""
        m = self.modules[name]
        st = self._state[name]
        if len(batch) == 0:
            return
        gen = batch.applied.config_generation
        with self._lock:
            run = self._run
            if run is None:
                run = self._run = self._new_run(None)
            need_start = st.run is not run or st.generation != gen
        if need_start and not self._start(name, batch.applied, run):
            return
        if st.failed:
            st.last_event = int(batch.event_number[-1])
            return
        try:
            m.process(batch)
        except Exception as exc:
            self._fail(name, "process", exc)
        st.last_event = int(batch.event_number[-1])
        st.batches += 1
        st.events += len(batch)

    # ------------------------------------------------------------------ access for the IOC
    def results(self, name: str) -> dict[str, Any]:
        """A snapshot of module ``name``'s results ({} and an error entry if it raises)."""
        try:
            return self.modules[name].results()
        except Exception as exc:
            self._fail(name, "results", exc)
            return {}

    def command(self, name: str, command: str, value: Any = 1) -> None:
        self.modules[name].command(command, value)

    def status(self) -> dict[str, str]:
        """``"OK"`` or the error text per module."""
        with self._lock:
            return {n: self.errors.get(n) or "OK" for n in self.modules}

    def events_processed(self, name: str) -> int:
        return self._state[name].events

    def close(self) -> None:
        self.end_run()
        self.detach()
