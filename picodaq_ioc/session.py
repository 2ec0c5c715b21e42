"""``DaqSession``: one scope backend + one buffer manager, built from a configuration.

No EPICS here: the IOC, the demo and plain scripts use the same façade::

    from picodaq_ioc.config.loader import load_config
    from picodaq_ioc.session import DaqSession

    with DaqSession.from_config(load_config("configs/demo.yaml")) as s:
        s.bm.add_obligatory_callback("mine", analyse)      # every event, in order
        s.start(max_events=1000)
        s.bm.wait_stopped()
        print(s.stop().format())

Settings are changed with :meth:`DaqSession.update_settings`, which hands the given
fields to the session's :class:`~picodaq_ioc.daq.settings.SettingsPipeline` (the one owner
of the requested settings: the IOC's puts go there too); it merges them into the current
request and reconfigures atomically (while running: stop,
reconfigure, resume; events of the old configuration never mix with the new).  A bad
value raises :class:`~picodaq_ioc.scope.errors.InvalidConfig` naming the field and the
allowed values, and the previous configuration stays in force.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .config.schema import Config

if TYPE_CHECKING:
    from .analysis.runner import AnalysisRunner
from .daq.buffer_manager import BufferManager, ObligatoryConsumer, RunSummary
from .daq.events import EventBatch, RunState, RunStats
from .daq.lifecycle import RunStart
from .daq.settings import Change, Settings, SettingsPipeline
from .scope.types import (
    Applied,
    ChannelConfig,
    ScopeBackend,
    ScopeInfo,
    SigGenConfig,
    TimebaseConfig,
    TriggerConfig,
)


def _scope_settings(cfg: Config, channels: tuple[str, ...] = ()) -> Settings:
    """The requested settings of ``cfg``; channels of the device the file does not name are off."""
    from .config.convert import scope_settings

    chans, tb, tr, sg = scope_settings(cfg)
    chans = dict(chans)
    for ch in channels:
        chans.setdefault(ch, ChannelConfig(enabled=False))
    return Settings(chans, tb, tr, sg)


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
        #: the one owner of the requested settings (every change goes through it)
        self.pipeline = SettingsPipeline(bm.configure, settings, bm.applied)
        #: the analysis runner (None until :meth:`attach_analysis`), subscribed to the run events
        self.runner: AnalysisRunner | None = None
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
            from .config.backend import make_backend

            backend = make_backend(cfg, keep_truth=keep_truth)
        info = backend.open(cfg.device.serial)
        try:
            settings = _scope_settings(cfg, info.channels)
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
        return self.pipeline.requested

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
        change = Change.of("update_settings", channels=channels, timebase=timebase, trigger=trigger,
                           siggen=siggen)
        return self.pipeline.update(change).applied

    def resize(self, n_buffers: int) -> None:
        """Change the number of ring slots (while running: after the ring drained)."""
        self.bm.resize(n_buffers)

    # ------------------------------------------------------------------ consumers
    def attach_analysis(self, sections: Any = None, **kw: Any) -> AnalysisRunner:
        """Build the analysis modules (``sections``: default the configuration's ``analysis``
        list) as obligatory consumers and subscribe them to the run lifecycle: each run starts
        and finishes the modules (summary files) when the buffer manager says so.

        Raises AnalysisConfigError (a ValueError naming module, key and allowed values)."""
        from .analysis.runner import AnalysisRunner

        if self.runner is not None:
            raise RuntimeError("the session already has an analysis runner")
        runner = AnalysisRunner(self.bm, self.config.analysis if sections is None else sections, **kw)
        self.bm.add_run_listener(runner)
        self.runner = runner
        return runner

    def attach(self, name: str, fn: Callable[[EventBatch], None], **kw) -> ObligatoryConsumer:
        """Register ``fn(batch)`` as an obligatory callback consumer (see
        :meth:`BufferManager.add_obligatory_callback` for the keywords)."""
        return self.bm.add_obligatory_callback(name, fn, **kw)

    def latest(self) -> EventBatch | None:
        """A copy of the newest event (random consumer)."""
        return self.bm.latest()

    # ------------------------------------------------------------------ run control
    def start(self, max_events: int | None = None) -> RunStart:
        replay_start = getattr(self.backend, "replay_start", None)
        if replay_start is not None:  # a recorded file: rewind; its end ends the run
            n = int(replay_start())
            max_events = n if max_events is None else min(int(max_events), n)
        return self.bm.start(max_events=max_events)

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
            self.pipeline.close()
            self.bm.close()
            if self.runner is not None:
                self.runner.close()
        finally:
            self.backend.close()

    def __enter__(self) -> DaqSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["DaqSession", "Settings"]
