"""One settings pipeline: every change request goes to one owner that applies them in order.

Every way of changing the device settings (a CA put to any setting PV, the autosave restore,
``DaqSession.update_settings`` from a script) becomes a :class:`Change` submitted to the
session's :class:`SettingsPipeline`. The pipeline is the only writer of the *requested*
settings (the request in force) and the only caller of ``BufferManager.configure``::

    pipeline.submit(Change.of("Trigger:Source", trigger={"source": "B"}))   # -> Future[Outcome]

Design
------
* **Merge into the current request, under one lock.** A change holds field updates, not a
  whole configuration built by the caller from a state it read earlier, so two concurrent
  changes to different fields can never undo each other (the "lost update" of building the new
  trigger from the old one before taking a lock).
* **Coalescing.** One worker thread applies the changes. Whatever arrives while the device is
  being reconfigured waits in a queue; the worker then merges *all* queued changes, in order of
  arrival (the latest value of a field wins), into the request in force and reconfigures the
  device **once** for all of them. A burst of 1000 puts therefore costs a handful of
  reconfigurations, not 1000, and no intermediate configuration is ever applied.
* **Atomic changes.** A change may update several sections at once (a ``Settings:Defer``
  release, the autosave restore); it is applied entirely or not at all.
* **Refusals stay with their change.** When the merged batch is refused, the changes are
  applied again one at a time, so each is accepted or refused on its own; a refused change
  leaves the request in force untouched.
* **Outcomes.** Each reconfiguration produces an :class:`Outcome` (batch number, the request
  now in force, what the device applied). It completes the futures of every change it
  includes, after the listeners were called, so "done" means "the applied state includes it".
* **No-op batches.** When the merged request equals the request in force the device is not
  touched; the changes complete at once with the current ``Applied``.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import threading
import types
import typing
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, NamedTuple

from ..scope.errors import InvalidConfig
from ..scope.types import Applied, ChannelConfig, SigGenConfig, TimebaseConfig, TriggerConfig

log = logging.getLogger(__name__)


class Settings(NamedTuple):
    """A complete requested configuration (what ``BufferManager.configure`` takes)."""

    channels: dict[str, ChannelConfig]
    timebase: TimebaseConfig
    trigger: TriggerConfig
    siggen: SigGenConfig


#: one step of a change: (section, channel name or None, dataclass or mapping of field values)
Step = tuple[str, str | None, Any]
SECTIONS = ("channels", "timebase", "trigger", "siggen")


def _coerce(section: str, name: str, tp: Any, value: Any) -> Any:
    """Check/convert one field value; raise InvalidConfig naming ``section.name``."""
    field = f"{section}.{name}"
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        tp = inner[0] if inner else tp
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        if isinstance(value, str):
            key = value.strip().lower()
            for m in tp:
                if key in (str(m.value).lower(), m.name.lower()):
                    return m
        allowed = ", ".join(str(m.value) for m in tp)
        raise InvalidConfig(f"{field}: {value!r} is not valid", field=field, allowed=allowed)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise InvalidConfig(f"{field}: {value!r} is not a boolean", field=field, allowed="true or false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise InvalidConfig(f"{field}: {value!r} is not an integer", field=field, allowed="an integer")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise InvalidConfig(f"{field}: {value!r} is not a number", field=field, allowed="a finite number")
        v = float(value)
        if v in (float("inf"), float("-inf")):
            raise InvalidConfig(f"{field}: {value!r} is not finite", field=field, allowed="a finite number")
        return v
    if tp is str:
        if not isinstance(value, str):
            raise InvalidConfig(f"{field}: {value!r} is not a string", field=field, allowed="a string")
        return value
    return value


def merge(section: str, current: Any, update: Any) -> Any:
    """``update`` (a dataclass of the same type or a mapping of field values) merged into
    ``current``; unknown fields and wrong types raise InvalidConfig."""
    cls = type(current)
    if update is None:
        return current
    if isinstance(update, cls):
        return update
    if not isinstance(update, Mapping):
        raise InvalidConfig(f"{section}: expected {cls.__name__} or a mapping of its fields",
                            field=section, allowed=", ".join(f.name for f in dataclasses.fields(cls)))
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    changes = {}
    for k, v in update.items():
        if k not in hints:
            raise InvalidConfig(f"{section}.{k}: unknown setting", field=f"{section}.{k}",
                                allowed=", ".join(names))
        changes[k] = _coerce(section, k, hints[k], v)
    return dataclasses.replace(current, **changes)


@dataclasses.dataclass(frozen=True)
class Change:
    """A settings change request: field updates applied in order to the request in force.

    Build one with :meth:`of`; ``a + b`` is the atomic change "a, then b".
    """

    #: label for logs and error messages (e.g. the PV name ``"Trigger:Level"``)
    what: str
    steps: tuple[Step, ...] = ()

    @classmethod
    def of(cls, what: str, *, channels: Mapping[str, Any] | None = None, timebase: Any = None,
           trigger: Any = None, siggen: Any = None) -> Change:
        """A change of the given sections: each a dataclass (replacement) or a mapping of the
        fields to change; ``channels`` maps channel names to such values."""
        steps: list[Step] = []
        if channels is not None:
            if not isinstance(channels, Mapping):
                raise InvalidConfig("channels: expected a mapping of channel name to settings",
                                    field="channels", allowed="a mapping")
            steps.extend(("channels", str(ch), upd) for ch, upd in channels.items())
        steps.extend((sec, None, upd) for sec, upd in (("timebase", timebase), ("trigger", trigger),
                                                       ("siggen", siggen)) if upd is not None)
        return cls(what, tuple(steps))

    def __add__(self, other: Change) -> Change:
        what = ", ".join(w for w in (self.what, other.what) if w)
        return Change(what, self.steps + other.steps)

    def apply(self, settings: Settings) -> Settings:
        """``settings`` with this change merged in (InvalidConfig for unknown fields or channels)."""
        chans = dict(settings.channels)
        secs = {"timebase": settings.timebase, "trigger": settings.trigger, "siggen": settings.siggen}
        for section, ch, upd in self.steps:
            if section == "channels":
                if ch not in chans:
                    raise InvalidConfig(f"channels.{ch}: no such channel", field="channels",
                                        allowed=", ".join(chans))
                chans[ch] = merge(f"channels.{ch}", chans[ch], upd)
            elif section in secs:
                secs[section] = merge(section, secs[section], upd)
            else:
                raise InvalidConfig(f"{section}: unknown settings section", field=section,
                                    allowed=", ".join(SECTIONS))
        return Settings(chans, secs["timebase"], secs["trigger"], secs["siggen"])


@dataclasses.dataclass(frozen=True)
class Outcome:
    """Result of one reconfiguration (or no-op batch) of the pipeline."""

    #: increasing number of the batch (listeners may skip to the newest)
    batch: int
    #: the request in force after the batch
    requested: Settings
    #: what the device applied
    applied: Applied
    #: labels of the changes included
    changes: tuple[str, ...]


class SettingsPipeline:
    """The single owner of the requested settings; applies :class:`Change` s in one thread.

    Parameters
    ----------
    configure
        ``configure(channels, timebase, trigger, siggen) -> Applied`` (the buffer manager's).
    requested
        The request in force (already applied).
    applied
        What the device applied for it.
    """

    def __init__(self, configure: Callable[..., Applied], requested: Settings, applied: Applied | None) -> None:
        self._configure = configure
        self._requested = Settings(*requested)
        self._applied = applied
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._queue: list[tuple[Change, Future]] = []
        self._thread: threading.Thread | None = None
        self._closed = False
        self._batch = 0
        #: ``fn(settings)`` raising ValueError/InvalidConfig to refuse a merged request
        self.validators: list[Callable[[Settings], None]] = []
        #: ``fn(outcome)`` called in the worker thread after each batch, before its futures complete
        self.listeners: list[Callable[[Outcome], None]] = []

    @property
    def requested(self) -> Settings:
        """The request in force (every accepted change merged in)."""
        return self._requested

    @property
    def applied(self) -> Applied | None:
        return self._applied

    # ------------------------------------------------------------------ requests
    def submit(self, change: Change) -> Future:
        """Queue ``change``; the future gives the :class:`Outcome` that includes it, or raises
        the refusal (InvalidConfig, ValueError, ScopeError ...)."""
        fut: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the settings pipeline is closed")
            self._queue.append((change, fut))
            if self._thread is None:
                self._thread = threading.Thread(target=self._worker, name="picodaq-settings", daemon=True)
                self._thread.start()
            self._cv.notify()
        return fut

    def update(self, change: Change, timeout: float | None = None) -> Outcome:
        """Submit ``change`` and wait for its outcome (raises the refusal)."""
        return self.submit(change).result(timeout)

    def close(self) -> None:
        """Refuse new changes; queued ones fail; the worker ends (idempotent)."""
        with self._lock:
            self._closed = True
            self._cv.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(30.0)

    # ------------------------------------------------------------------ worker
    def _worker(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._cv.wait()
                batch, self._queue = self._queue, []
                closed = self._closed
            if closed:
                for _change, fut in batch:
                    fut.set_exception(RuntimeError("the settings pipeline is closed"))
                return
            self._run_batch(batch)

    def _run_batch(self, batch: list[tuple[Change, Future]]) -> None:
        live = [(c, f) for c, f in batch if f.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            self._apply(live)
        except Exception as ex:  # refused as a whole
            if len(live) == 1:
                live[0][1].set_exception(ex)
                return
            log.info("settings batch of %d changes refused (%s); applying them one at a time", len(live), ex)
            for item in live:
                try:
                    self._apply([item])
                except Exception as ex1:  # noqa: BLE001 - reported to that change's submitter
                    item[1].set_exception(ex1)

    def _apply(self, items: list[tuple[Change, Future]]) -> None:
        """Merge ``items`` into the request in force, apply once, complete their futures."""
        req = self._requested
        for change, _fut in items:
            req = change.apply(req)
        if req == self._requested and self._applied is not None:
            applied = self._applied
        else:
            for check in list(self.validators):
                check(req)
            applied = self._configure(*req)
        self._requested, self._applied = req, applied
        self._batch += 1
        outcome = Outcome(self._batch, req, applied, tuple(c.what for c, _ in items))
        if applied is not None:
            log.debug("settings batch %d applied (generation %s): %s", outcome.batch,
                      getattr(applied, "config_generation", "?"), ", ".join(outcome.changes))
        for fn in list(self.listeners):
            try:
                fn(outcome)
            except Exception:  # a listener must not break the pipeline
                log.exception("settings listener failed")
        for _change, fut in items:
            fut.set_result(outcome)


__all__ = ["Change", "Outcome", "Settings", "SettingsPipeline", "merge"]
