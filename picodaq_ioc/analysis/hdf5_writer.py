"""HDF5 file writer: an obligatory consumer that records events (no EPICS here).

Usage from plain Python::

    w = Hdf5Writer(bm, WriterSettings(file_path="runs", file_name="muons", num_capture=1000))
    w.start_capture()            # opens <file_path>/muons_001.h5 (errors raise WriterError)
    bm.start(); ...              # every delivered event reaches the writer, in order
    w.wait_closed(timeout=60)    # closed after 1000 events, at the end of the run or stop_capture()

The file layout is described (and read back) by :mod:`picodaq_ioc.scope.recorded`.

Design
------
* The writer is an obligatory callback consumer of the buffer manager: it writes a batch
  before it releases its slots, so a slow disk fills the ring and then holds the
  acquisition (dead time, counted by the buffer manager), and no delivered event is
  ever skipped. Raw samples are written as int16 ``[event, channel, sample]`` with one
  chunk per event (optionally lz4 via ``hdf5plugin`` or gzip), per-event arrays beside.
* The file is opened by :meth:`start_capture` (so a missing directory or a permission
  problem is reported at once); datasets are created from the first event's configuration
  and the file is switched to SWMR mode, so readers (``h5py.File(path, "r", swmr=True)``)
  can follow it while it is written. Every batch is flushed.
* A capture ends (file closed) when ``num_capture`` events were written, when
  :meth:`stop_capture` is called, when the run ends (:meth:`run_ended`; one file per
  run), on an error, or when the device configuration changes (the layout holds one
  configuration). Closing is done by a closer thread: it waits (bounded) until every
  obligatory consumer processed the last written event, then stores the analysis results
  (``results_fn``) in ``/analysis`` and the final attributes, and closes the file.
* Errors (no directory, permission, disk full ...) end the capture: the status carries
  the message once (``on_status`` listeners, the log); acquisition goes on.
* ``event_filter``: ``all`` records every event; ``accepted``/``double`` record only the
  events the pulse module accepts / finds a double pulse in. The verdict comes from a
  private instance of that module's class (``selector_factory``), so the writer does not
  wait for the analysis thread; its cost is one more pulse analysis of the events.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..daq.events import EventBatch
from ..scope.recorded import EVENT_DTYPE, FORMAT, FORMAT_VERSION, applied_to_dict
from ..scope.types import Applied

__all__ = ["COMPRESSIONS", "EVENT_FILTERS", "Hdf5Writer", "PulseSelector", "WriterError", "WriterSettings",
           "WriterStatus", "full_file_name", "store_results", "writer_from_config"]

log = logging.getLogger("picodaq_ioc.hdf5")

COMPRESSIONS = ("none", "lz4", "gzip")
EVENT_FILTERS = ("all", "accepted", "double")
#: seconds the closer waits for the other consumers before it stores the analysis results
RESULTS_WAIT_S = 10.0


class WriterError(Exception):
    """A capture could not start (message names the file and the cause)."""


@dataclass(frozen=True)
class WriterSettings:
    """What the next capture writes (areaDetector NDFileHDF5 names in brackets).

    ``file_template`` is applied as ``template % (file_path + "/", file_name, file_number)``
    [FileTemplate, default ``%s%s_%3.3d.h5``]; an empty ``file_path`` means the output
    directory given to the writer.
    """

    file_path: str = ""  # [FilePath]
    file_name: str = "picodaq"  # [FileName]
    file_number: int = 1  # [FileNumber]
    file_template: str = "%s%s_%3.3d.h5"  # [FileTemplate]
    auto_increment: bool = True  # [AutoIncrement]
    num_capture: int = 0  # [NumCapture], 0 = until stopped / end of run
    compression: str = "none"  # none, lz4, gzip
    event_filter: str = "all"  # all, accepted, double

    def checked(self) -> WriterSettings:
        """Self, or ValueError naming the field and the allowed values."""
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression: {self.compression!r} is not valid; allowed: {', '.join(COMPRESSIONS)}")
        if self.event_filter not in EVENT_FILTERS:
            raise ValueError(f"event_filter: {self.event_filter!r} is not valid; allowed: {', '.join(EVENT_FILTERS)}")
        if int(self.num_capture) < 0:
            raise ValueError(f"num_capture: {self.num_capture} is negative; allowed: 0 (until stopped) or more")
        if int(self.file_number) < 0:
            raise ValueError(f"file_number: {self.file_number} is negative; allowed: an integer >= 0")
        try:
            self.file_template % ("", "x", 1)
        except (TypeError, ValueError):
            raise ValueError(f"file_template: {self.file_template!r} does not format (path, name, number); "
                             "allowed: a printf template with %s %s %d, e.g. %s%s_%3.3d.h5") from None
        return self


def full_file_name(s: WriterSettings, default_dir: str) -> str:
    """The file name the settings give (``FullFileName_RBV``)."""
    path = s.file_path or default_dir
    if path and not path.endswith("/"):
        path += "/"
    return s.file_template % (path, s.file_name, int(s.file_number))


@dataclass(frozen=True)
class WriterStatus:
    """What the writer is doing (sent to ``on_status`` listeners on every change)."""

    capturing: bool = False
    num_captured: int = 0
    full_file_name: str = ""
    ok: bool = True
    message: str = ""
    file_number: int = 1
    closed_files: int = 0  # files closed so far (put-completion waits for this to grow)
    last_file: str = ""  # the last file closed


def _compression_kw(name: str) -> dict[str, Any]:
    if name == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    if name == "lz4":
        try:
            import hdf5plugin
        except ImportError:
            raise WriterError("compression lz4 needs the package hdf5plugin (pip install hdf5plugin); "
                              "allowed without it: none, gzip") from None
        return dict(hdf5plugin.LZ4())
    return {}


class PulseSelector:
    """``select(batch) -> bool mask`` from a private instance of a pulse-type analysis module.

    ``section`` is the module's ``analysis:`` entry (a mapping); the instance is built with
    ``write_files: false``. ``kind`` ``accepted`` selects events the module accepts,
    ``double`` those with a double pulse. The instance is (re)started when the
    configuration changes.
    """

    def __init__(self, section: Any, kind: str) -> None:
        from .registry import create_module

        data = dict(section.model_dump() if hasattr(section, "model_dump") else section)
        data["write_files"] = False
        self.module = create_module(data)
        self.kind = kind
        self._gen: int | None = None

    def __call__(self, batch: EventBatch) -> np.ndarray:
        from .base import RunInfo

        gen = batch.applied.config_generation
        if gen != self._gen:
            self.module.start(batch.applied, RunInfo(time.time(), "", extra={"stamp": "selector"}))
            self._gen = gen
        r = self.module.analyse(batch)
        if self.kind == "accepted":
            return np.asarray(r.accepted, dtype=bool)
        mask = np.zeros(len(batch), dtype=bool)
        for d in r.doubles:
            mask[int(d["row"])] = True
        return mask


@dataclass
class _Open:
    """The file of the current capture."""

    path: str
    f: Any
    ds: dict[str, Any] = field(default_factory=dict)
    applied: Applied | None = None
    n: int = 0
    last_seq: int = 0  # event_number of the last event written (in the run's numbering)
    run_start: float = 0.0  # wall-clock start of the run the events belong to (epoch s)


class Hdf5Writer:
    """Records events of a buffer manager into HDF5 files (see the module docstring).

    Parameters
    ----------
    bm : BufferManager
        Where to attach (``add_obligatory_callback``).
    settings : WriterSettings
    output_dir : str
        Directory used when ``settings.file_path`` is empty.
    ioc_version : str
        Stored as the file attribute ``ioc_version``.
    config_json : str, optional
        The IOC configuration (JSON) stored as the attribute ``config``.
    results_fn : callable, optional
        ``() -> {module name: {result name: value}}``, stored in ``/analysis`` at close.
    selector_factory : callable, optional
        ``(kind) -> select(batch) -> bool mask`` for event filters other than ``all``; None
        or a factory returning None makes those filters refuse to start.
    on_status : callable, optional
        ``fn(WriterStatus)`` on every status change (from the writer's threads).
    """

    def __init__(self, bm: Any, settings: WriterSettings | None = None, *, output_dir: str = "runs",
                 ioc_version: str = "", config_json: str | None = None,
                 results_fn: Callable[[], dict[str, Any]] | None = None,
                 selector_factory: Callable[[str], Callable[[EventBatch], np.ndarray] | None] | None = None,
                 on_status: Callable[[WriterStatus], None] | None = None) -> None:
        self.bm = bm
        self.settings = (settings or WriterSettings()).checked()
        self.output_dir = str(output_dir)
        self.ioc_version = ioc_version
        self.config_json = config_json
        self.results_fn = results_fn
        self.selector_factory = selector_factory
        self.listeners: list[Callable[[WriterStatus], None]] = [on_status] if on_status else []
        self._lock = threading.RLock()
        self._closed_cv = threading.Condition(self._lock)
        self._open: _Open | None = None
        self._select: Callable[[EventBatch], np.ndarray] | None = None
        self._status = WriterStatus(full_file_name=full_file_name(self.settings, self.output_dir),
                                    file_number=int(self.settings.file_number))
        self._closers: list[threading.Thread] = []
        self.consumer = bm.add_obligatory_callback("hdf5", self._write, max_events=256)

    # ------------------------------------------------------------------ status
    @property
    def status(self) -> WriterStatus:
        return self._status

    def _set_status(self, **kw: Any) -> None:
        with self._lock:
            self._status = st = replace(self._status, **kw)
            self._closed_cv.notify_all()
        for fn in list(self.listeners):
            try:
                fn(st)
            except Exception:  # a listener must never break the writer
                log.exception("HDF5 status listener failed")

    def _error(self, message: str) -> None:
        log.error("HDF5 writer: %s", message)
        self._set_status(ok=False, message=message)

    # ------------------------------------------------------------------ settings
    def configure(self, **changes: Any) -> WriterSettings:
        """Change settings (they apply to the next capture; ValueError names a bad field)."""
        with self._lock:
            new = replace(self.settings, **changes).checked()
            self.settings = new
            if not self._status.capturing:
                self._set_status(full_file_name=full_file_name(new, self.output_dir),
                                 file_number=int(new.file_number))
            return new

    # ------------------------------------------------------------------ capture control
    def start_capture(self) -> str:
        """Open the next file and record the following events. Returns its name.

        Raises
        ------
        WriterError
            Already capturing, the file cannot be created (no directory, permission, exists
            as a directory ...), or the event filter / compression is not available; the
            message is also in the status.
        """
        with self._lock:
            if self._open is not None:
                raise WriterError(f"already capturing into {self._open.path}")
            s = self.settings
            path = full_file_name(s, self.output_dir)
            try:
                _compression_kw(s.compression)
                select = None
                if s.event_filter != "all":
                    select = self.selector_factory(s.event_filter) if self.selector_factory else None
                    if select is None:
                        raise WriterError(f"event_filter {s.event_filter!r} needs a pulse analysis module "
                                          "(module: pulse) in the configuration; allowed without one: all")
                f = self._create(path)
            except WriterError as exc:
                self._error(str(exc))
                raise
            self._select = select
            self._open = _Open(path, f)
            self._set_status(capturing=True, num_captured=0, full_file_name=path, ok=True,
                             message=f"capturing into {path}")
            log.info("HDF5 capture started: %s (num_capture=%s, filter %s, compression %s)", path,
                     s.num_capture or "until stopped", s.event_filter, s.compression)
            return path

    def _create(self, path: str) -> Any:
        import h5py

        p = Path(path)
        if "\x00" in path:
            raise WriterError(f"cannot create {path!r}: the name contains a NUL character")
        if not p.parent.is_dir():
            raise WriterError(f"cannot create {path}: directory {p.parent} does not exist")
        if p.exists():
            raise WriterError(f"cannot create {path}: the file exists (change FileName/FileNumber)")
        try:
            return h5py.File(path, "w-", libver="latest", locking=False)
        except Exception as exc:  # OSError, ValueError (NUL in the name) ...
            reason = getattr(exc, "strerror", None) or str(exc)
            if isinstance(exc, PermissionError) or "ermission" in str(exc):
                reason = "permission denied"
            raise WriterError(f"cannot create {path}: {reason}") from None

    def stop_capture(self, timeout: float = 30.0) -> WriterStatus:
        """End the capture now (file closed when this returns, or after ``timeout``)."""
        with self._lock:
            if self._open is None:
                return self._status
            closed = self._status.closed_files
            self._close_async("capture stopped")
        self.wait_closed(closed, timeout)
        return self._status

    def run_ended(self) -> None:
        """The run ended: close a file holding events of it (one file per run)."""
        with self._lock:
            op = self._open
            if op is not None and op.n > 0:
                self._close_async("end of run")

    def wait_closed(self, after: int | None = None, timeout: float | None = None) -> bool:
        """Wait until more than ``after`` files were closed (default: the current capture's)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if after is None:
                after = self._status.closed_files if self._open is not None else self._status.closed_files - 1
            while self._status.closed_files <= after:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._closed_cv.wait(remaining)
            return True

    def close(self) -> None:
        """Close an open file and detach from the buffer manager."""
        self.stop_capture()
        for t in list(self._closers):
            t.join(timeout=RESULTS_WAIT_S + 5.0)
        self.consumer.detach()

    # ------------------------------------------------------------------ the consumer
    def _write(self, batch: EventBatch) -> None:
        """Obligatory callback: append the batch (never raises: errors end the capture)."""
        with self._lock:
            op = self._open
            if op is None or not self._status.capturing:
                return
            try:
                self._append(op, batch)
            except Exception as exc:  # disk full, I/O error ...: report once, keep the IOC running
                text = getattr(exc, "strerror", None) or str(exc)
                self._fail_open(op, f"writing {op.path} failed after {op.n} events: {type(exc).__name__}: {text}")

    def _append(self, op: _Open, batch: EventBatch) -> None:
        run_start = float(getattr(self.bm, "run_start_time", 0.0) or 0.0)
        if op.applied is None:
            op.run_start = run_start or time.time()
            self._layout(op, batch)
        elif batch.applied.config_generation != op.applied.config_generation or (
                run_start and run_start != op.run_start):
            why = ("the device configuration changed" if run_start == op.run_start else "a new run started")
            self._close_async(f"{why}: file closed")
            return
        sel = None
        if self._select is not None:
            mask = self._select(batch)
            sel = np.flatnonzero(mask)
            if sel.size == 0:
                return
        nmax = int(self.settings.num_capture)
        k = len(batch) if sel is None else int(sel.size)
        if nmax > 0:
            k = min(k, nmax - op.n)
        if sel is None:
            rows = slice(0, k)
        else:
            rows = sel[:k]
        n0, n1 = op.n, op.n + k
        ev = batch.event_number[rows]
        t = np.asarray(batch.t_trigger[rows], dtype=np.float64)
        row = np.empty(k, dtype=EVENT_DTYPE)
        row["event_number"] = ev
        row["t_trigger"] = t
        row["timestamp"] = op.run_start + t
        row["trigger_time_offset"] = batch.trigger_time_offset_s[rows]
        ovf = np.asarray(batch.overflow[rows], dtype=np.uint8)
        row["overflow"] = (ovf << np.arange(ovf.shape[1], dtype=np.uint8)[None, :]).sum(axis=1, dtype=np.uint8)
        row["auto_triggered"] = batch.auto_triggered[rows]
        lt = batch.live_time
        row["live_time"] = lt[rows] if lt is not None else math.nan
        raw, events = op.ds["raw"], op.ds["events"]
        raw.resize(n1, axis=0)
        raw[n0:n1] = batch.raw[rows]
        events.resize(n1, axis=0)
        events[n0:n1] = row
        raw.flush()
        events.flush()
        op.n = n1
        op.last_seq = int(ev[-1]) if k else op.last_seq
        self._set_status(num_captured=n1)
        if nmax > 0 and n1 >= nmax:
            self._close_async(f"{n1} events captured")

    def _layout(self, op: _Open, batch: EventBatch) -> None:
        """Create the datasets from the first batch and switch to SWMR mode."""
        a = batch.applied
        f = op.f
        s = self.settings
        comp = _compression_kw(s.compression)
        nch, ns = int(batch.raw.shape[1]), int(batch.raw.shape[2])
        chans = list(batch.channels)
        run_start = op.run_start
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["ioc_version"] = self.ioc_version
        f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        f.attrs["applied"] = json.dumps(applied_to_dict(a))
        if self.config_json:
            f.attrs["config"] = self.config_json
        f.attrs["event_filter"] = s.event_filter
        f.attrs["compression"] = s.compression
        f.attrs["run_start_time"] = run_start
        f.attrs["complete"] = False
        f.attrs["num_captured"] = 0
        raw = f.create_dataset("raw", shape=(0, nch, ns), maxshape=(None, nch, ns), chunks=(1, nch, ns),
                               dtype=np.int16, **comp)
        raw.attrs["channels"] = chans
        raw.attrs["volts_per_count"] = np.array([a.volts_per_count(c) for c in chans])
        raw.attrs["offset_v"] = np.array([a.channels[c].offset_v for c in chans])
        raw.attrs["sample_interval_s"] = float(a.sample_interval_s)
        raw.attrs["n_pre"] = int(a.n_pre)
        raw.attrs["time_axis_s"] = a.time_axis()
        raw.attrs["units"] = "ADC counts; volts = raw * volts_per_count - offset_v"
        events = f.create_dataset("events", shape=(0,), maxshape=(None,), chunks=(64,), dtype=EVENT_DTYPE)
        events.attrs["overflow"] = "bit i set: channel i of /raw clipped"
        ds = {"raw": raw, "events": events}
        f.create_group("analysis")
        f.swmr_mode = True
        op.ds = ds
        op.applied = a

    # ------------------------------------------------------------------ closing
    def _fail_open(self, op: _Open, message: str) -> None:
        with self._lock:
            if self._open is not op:
                return
            self._open = None
            try:
                op.f.close()
            except Exception:
                pass
            n = self._status.closed_files + 1
        self._error(message)
        self._set_status(capturing=False, closed_files=n, last_file=op.path)

    def _close_async(self, why: str) -> None:
        """Stop recording now; a closer thread finishes the file (caller holds the lock)."""
        op = self._open
        if op is None:
            return
        self._open = None
        self._set_status(capturing=False, message=f"closing {op.path}: {why}")
        t = threading.Thread(target=self._finish, args=(op, why), name="picodaq-hdf5-close", daemon=True)
        self._closers = [c for c in self._closers if c.is_alive()] + [t]
        t.start()

    def _finish(self, op: _Open, why: str) -> None:
        import h5py

        try:
            if op.n > 0 and op.last_seq > 0:
                # the analysis consumers are behind the writer: let them process the last event
                wait = getattr(self.bm, "wait_processed", None)
                if wait is not None:
                    wait(op.last_seq, RESULTS_WAIT_S)
            results = {}
            if self.results_fn is not None:
                try:
                    results = self.results_fn() or {}
                except Exception as exc:
                    log.warning("HDF5 writer: analysis results not available: %s", exc)
            op.f.close()
            with h5py.File(op.path, "a", libver="latest", locking=False) as f:
                f.attrs["complete"] = True
                f.attrs["num_captured"] = op.n
                f.attrs["closed"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                f.attrs["close_reason"] = why
                g = f.require_group("analysis")
                store_results(g, results)
        except Exception as exc:
            self._error(f"closing {op.path} failed: {type(exc).__name__}: {exc}")
            with self._lock:
                n = self._status.closed_files + 1
            self._set_status(closed_files=n, last_file=op.path)
            return
        log.info("HDF5 file closed: %s (%d events; %s)", op.path, op.n, why)
        with self._lock:
            s = self.settings
            if s.auto_increment:
                self.settings = s = replace(s, file_number=int(s.file_number) + 1)
            n = self._status.closed_files + 1
            kw: dict[str, Any] = {"closed_files": n, "last_file": op.path, "num_captured": op.n,
                                  "message": f"closed {op.path} ({op.n} events; {why})"}
            if self._open is None:
                kw.update(full_file_name=full_file_name(s, self.output_dir), file_number=int(s.file_number))
            if self._status.ok:
                kw["ok"] = True
        self._set_status(**kw)


def store_results(g: Any, results: dict[str, Any]) -> None:
    """Scalars as attributes, arrays as datasets, nested mappings as subgroups."""
    for name, res in results.items():
        sub = g.require_group(str(name))
        if not isinstance(res, dict):
            sub.attrs["value"] = json.dumps(res, default=str)
            continue
        for k, v in res.items():
            key = str(k)
            if isinstance(v, dict):
                sub.attrs[key] = json.dumps(v, default=_plain)
            elif isinstance(v, np.ndarray) or isinstance(v, (list, tuple)) and v and \
                    all(isinstance(x, (int, float, np.number)) for x in v):
                if key in sub:
                    del sub[key]
                sub.create_dataset(key, data=np.asarray(v))
            elif isinstance(v, (int, float, str, bool, np.number, np.bool_)):
                sub.attrs[key] = v
            elif v is None:
                continue
            else:
                sub.attrs[key] = json.dumps(v, default=_plain)


def _plain(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def writer_from_config(bm: Any, cfg: Any, runner: Any = None, output_dir: str | None = None) -> Hdf5Writer:
    """The writer of a configuration (``hdf5:`` section, ``output_dir``), attached to ``bm``.

    ``runner`` (an :class:`~picodaq_ioc.analysis.runner.AnalysisRunner`) supplies the
    analysis results stored at close; the first ``module: pulse`` entry of ``cfg.analysis``
    gives the event filters ``accepted`` / ``double``. Raises WriterError when
    ``hdf5.capture`` is set and the first file cannot be opened.
    """
    import importlib.metadata

    from ..config.convert import config_dump

    h = cfg.hdf5
    try:
        version = importlib.metadata.version("picodaq-ioc")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    pulse = next((sec for sec in cfg.analysis if str(sec.module).strip().lower() == "pulse"), None)

    def selector(kind: str):
        return None if pulse is None else PulseSelector(pulse, kind)

    def results() -> dict[str, Any]:
        if runner is None:
            return {}
        return {name: runner.results(name) for name in runner.modules}

    settings = WriterSettings(file_path=h.file_path, file_name=h.file_name, file_number=h.file_number,
                              file_template=h.file_template, auto_increment=h.auto_increment,
                              num_capture=h.num_capture, compression=h.compression, event_filter=h.event_filter)
    w = Hdf5Writer(bm, settings, output_dir=output_dir or cfg.output_dir, ioc_version=version,
                   config_json=json.dumps(config_dump(cfg)), results_fn=results, selector_factory=selector)
    if h.capture:
        w.start_capture()
    return w
