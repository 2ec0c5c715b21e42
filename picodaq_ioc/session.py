"""``DaqSession``: one scope backend + one buffer manager, built from a configuration.

No EPICS here: the IOC, the demo and plain scripts use the same façade::

    from picodaq_ioc.config.loader import load_config
    from picodaq_ioc.session import DaqSession

    with DaqSession.from_config(load_config("configs/demo.yaml")) as s:
        s.bm.add_obligatory_callback("mine", analyse)      # every event, in order
        s.start(max_events=1000)
        s.bm.wait_stopped()
        print(s.stop().format())

Settings are changed with :meth:`DaqSession.update_settings`, which merges the given
fields into the current request and reconfigures atomically (while running: stop,
reconfigure, resume; events of the old configuration never mix with the new).  A bad
value raises :class:`~picodaq_ioc.scope.errors.InvalidConfig` naming the field and the
allowed values, and the previous configuration stays in force.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from .config.schema import Config
from .daq.buffer_manager import BufferManager, ObligatoryConsumer, RunSummary
from .daq.events import EventBatch, RunState, RunStats
from .scope.errors import InvalidConfig
from .scope.types import (
    Applied,
    ChannelConfig,
    ScopeBackend,
    ScopeInfo,
    SigGenConfig,
    TimebaseConfig,
    TriggerConfig,
)

Settings = tuple[dict[str, ChannelConfig], TimebaseConfig, TriggerConfig, SigGenConfig]


def _scope_settings(cfg: Config) -> Settings:
    from .config.convert import scope_settings

    return scope_settings(cfg)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


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


def _merge(section: str, current: Any, update: Any) -> Any:
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
    hints = _field_types(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    changes = {}
    for k, v in update.items():
        if k not in hints:
            raise InvalidConfig(f"{section}.{k}: unknown setting", field=f"{section}.{k}",
                                allowed=", ".join(names))
        changes[k] = _coerce(section, k, hints[k], v)
    return dataclasses.replace(current, **changes)


class DaqSession:
    """A scope backend, its buffer manager and the requested settings.

    Attributes
    ----------
    config : Config
        The configuration the session was built from.
    backend : ScopeBackend
        The opened backend.
    info : ScopeInfo
        What ``backend.open()`` reported.
    bm : BufferManager
        The buffer manager (consumers register here).
    """

    def __init__(self, config: Config, backend: ScopeBackend, info: ScopeInfo, bm: BufferManager,
                 settings: Settings) -> None:
        self.config = config
        self.backend = backend
        self.info = info
        self.bm = bm
        self._settings = settings
        self._lock = threading.RLock()
        self._closed = False

    @classmethod
    def from_config(cls, cfg: Config, *, backend: ScopeBackend | None = None, keep_truth: bool = False,
                    log: Callable[[str], None] | None = None, rate_window: float = 2.0) -> DaqSession:
        """Open the backend of ``cfg`` (or the given one), configure it, create the ring.

        Raises
        ------
        ScopeError
            ``DriverNotAvailable``, ``DeviceNotFound``, ``InvalidConfig`` ... from the backend;
            the backend is closed again before the error propagates.
        """
        if backend is None:
            from .scope.factory import make_backend

            backend = make_backend(cfg, keep_truth=keep_truth)
        info = backend.open(cfg.device.serial)
        try:
            settings = _scope_settings(cfg)
            bm = BufferManager(backend, n_buffers=cfg.buffer.n_buffers, rate_window=rate_window, log=log,
                               log_file=cfg.buffer.log_file, log_time=cfg.buffer.log_time,
                               serial=cfg.device.serial, log_dir=cfg.output_dir)
            bm.configure(*settings)
        except BaseException:
            backend.close()
            raise
        return cls(cfg, backend, info, bm, settings)

    # ------------------------------------------------------------------ settings
    @property
    def applied(self) -> Applied | None:
        """What the device really applied (snapped ranges, quantised interval, generation)."""
        return self.bm.applied

    @property
    def settings(self) -> Settings:
        """The requested (not snapped) channels, timebase, trigger and siggen now in force."""
        return self._settings

    def update_settings(self, channels: Mapping[str, ChannelConfig | Mapping[str, Any]] | None = None,
                        timebase: TimebaseConfig | Mapping[str, Any] | None = None,
                        trigger: TriggerConfig | Mapping[str, Any] | None = None,
                        siggen: SigGenConfig | Mapping[str, Any] | None = None) -> Applied:
        """Merge the given settings into the current request and reconfigure atomically.

        Parameters
        ----------
        channels : mapping, optional
            Per channel name a ``ChannelConfig`` or a mapping of its fields to change
            (e.g. ``{"A": {"range_v": 0.5}}``); channels not named keep their settings.
        timebase, trigger, siggen : dataclass or mapping, optional
            A replacement or a mapping of the fields to change.

        Returns
        -------
        Applied
            The new applied configuration (new ``config_generation``).

        Raises
        ------
        InvalidConfig
            Unknown channel/field, wrong type, or a value the device rejects; ``field``
            names it and ``allowed`` says what is accepted.  The previous configuration
            stays in force.
        """
        with self._lock:
            ch0, tb0, tr0, sg0 = self._settings
            chans = dict(ch0)
            if channels is not None:
                if not isinstance(channels, Mapping):
                    raise InvalidConfig("channels: expected a mapping of channel name to settings",
                                        field="channels", allowed=", ".join(ch0))
                for name, upd in channels.items():
                    if name not in chans:
                        raise InvalidConfig(f"channels.{name}: no such channel", field="channels",
                                            allowed=", ".join(ch0))
                    chans[name] = _merge(f"channels.{name}", chans[name], upd)
            tb = _merge("timebase", tb0, timebase)
            tr = _merge("trigger", tr0, trigger)
            sg = _merge("siggen", sg0, siggen)
            applied = self.bm.configure(chans, tb, tr, sg)
            self._settings = (chans, tb, tr, sg)
            return applied

    def resize(self, n_buffers: int) -> None:
        """Change the number of ring slots (while running: after the ring drained)."""
        self.bm.resize(n_buffers)

    # ------------------------------------------------------------------ consumers
    def attach(self, name: str, fn: Callable[[EventBatch], None], **kw) -> ObligatoryConsumer:
        """Register ``fn(batch)`` as an obligatory callback consumer (see
        :meth:`BufferManager.add_obligatory_callback` for the keywords)."""
        return self.bm.add_obligatory_callback(name, fn, **kw)

    def latest(self) -> EventBatch | None:
        """A copy of the newest event (random consumer)."""
        return self.bm.latest()

    # ------------------------------------------------------------------ run control
    def start(self, max_events: int | None = None) -> None:
        replay_start = getattr(self.backend, "replay_start", None)
        if replay_start is not None:  # a recorded file: rewind; its end ends the run
            n = int(replay_start())
            max_events = n if max_events is None else min(int(max_events), n)
        self.bm.start(max_events=max_events)

    def pause(self) -> None:
        self.bm.pause()

    def resume(self) -> None:
        self.bm.resume()

    def stop(self, timeout: float = 10.0) -> RunSummary | None:
        return self.bm.stop(timeout=timeout)

    @property
    def state(self) -> RunState:
        return self.bm.state

    def stats(self) -> RunStats:
        return self.bm.stats()

    def close(self) -> None:
        """Stop a run, end the consumer threads and close the backend (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.bm.close()
        finally:
            self.backend.close()

    def __enter__(self) -> DaqSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["DaqSession", "Settings"]
