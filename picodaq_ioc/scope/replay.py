"""Replay backend: plays a recorded file through the buffer manager as if it were a scope.

``device.backend: replay`` (``picodaq-ioc --backend replay --input FILE``) reads the
project's HDF5 event files and picoCosmo raw files through
:func:`picodaq_ioc.scope.recorded.open_recording` and delivers their events, in order, one
capture per event. No configuration module is imported here (the ``scope`` layer is the
lowest); the factory passes the file name and the pacing.

Design
------
* **Settings are the recording's.** :meth:`ReplayScope.configure` accepts exactly the
  recorded device configuration (the IOC's settings are set from the file at startup, see
  ``picodaq_ioc.config.replay.replay_config``) and refuses any other request with
  :class:`~picodaq_ioc.scope.errors.InvalidConfig` naming the field and the recorded value,
  so a ``caput`` of a setting is refused through the normal settings pipeline.
* **Time is the recording's.** :meth:`clock` is a virtual clock on the recorded time axis:
  it starts at 0 (the recorded run start) with every replay and each event carries its
  recorded trigger time and live time, so run time, rates, live time and every analysis
  result equal those of the recorded run whatever the pacing. Files without times
  (picoCosmo) get ``i / rate`` (``rate`` default 10 Hz).
* **Pacing** decides only when an event is handed out on the wall clock: ``recorded``
  (the recorded intervals; pauses and stops freeze the virtual clock), ``rate`` (``rate``
  events per second) or ``fast`` (as fast as the consumers take them).
* **End of file ends the run**: :meth:`replay_start` (called by the session when a run
  starts) rewinds and returns the number of events, which the session uses as the run's
  ``max_events``.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Mapping

import numpy as np

from . import models
from .errors import InvalidConfig, ScopeError
from .recorded import Recording, RecordingError, open_recording
from .types import Applied, Capture, ChannelConfig, ScopeInfo, SigGenConfig, TimebaseConfig, TriggerConfig

__all__ = ["PACINGS", "ReplayScope"]

PACINGS = ("recorded", "rate", "fast")
_CHUNK = 256


def _close(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-15)


class ReplayScope:
    """A :class:`~picodaq_ioc.scope.types.ScopeBackend` playing a recorded file.

    Parameters
    ----------
    path : str
        HDF5 event file of this project, picoCosmo raw file, or a zip holding one.
    pacing : str
        ``recorded``, ``rate`` or ``fast``.
    rate : float
        Events per second for ``pacing="rate"``, and the event spacing of files without
        trigger times.
    model, variant : str, optional
        Model family of the :class:`ScopeInfo` when the file does not name one.
    """

    def __init__(self, path: str, pacing: str = "recorded", rate: float = 10.0, *, model: str = "2000a",
                 variant: str | None = None) -> None:
        if pacing not in PACINGS:
            raise InvalidConfig(f"replay pacing {pacing!r} is not valid", field="replay.pacing",
                                allowed=", ".join(PACINGS))
        if not (rate > 0 and math.isfinite(rate)):
            raise InvalidConfig(f"replay rate {rate!r} is not valid", field="replay.rate",
                                allowed="a number of events per second > 0")
        self.path = str(path)
        self.pacing = pacing
        self.rate = float(rate)
        self._model, self._variant = model, variant
        self.rec: Recording | None = None
        self._applied: Applied | None = None
        self._gen = 0
        self._cond = threading.Condition()
        self._reset_position()

    # ------------------------------------------------------------------ file position
    def _reset_position(self) -> None:
        self._chunks = None
        self._chunk = None
        self._ci = 0
        self._pos = 0  # events handed out
        self._virt = 0.0  # virtual clock (recorded time axis), s
        self._live_prev = 0.0
        self._armed_wall: float | None = None
        self._armed_virt = 0.0
        self._next: tuple | None = None
        self._ready = False
        self._seq = 0

    def replay_start(self) -> int:
        """Rewind to the first event (a new run) and return the number of events."""
        with self._cond:
            self._reset_position()
            return self.rec.n_events if self.rec is not None else 0

    @property
    def events_total(self) -> int:
        return self.rec.n_events if self.rec is not None else 0

    # ------------------------------------------------------------------ ScopeBackend
    def open(self, serial: str | None = None) -> ScopeInfo:  # noqa: ARG002 - no serial for a file
        """Open the file (RecordingError, a ScopeError, when missing or corrupt)."""
        self.rec = rec = open_recording(self.path)
        dev = (rec.config or {}).get("device") if rec.kind == "hdf5" else None
        family = str((dev or {}).get("model") or self._model)
        variant = (dev or {}).get("variant") or self._variant
        try:
            info = models.scope_info(family, variant, serial=f"replay:{rec.path}"[:39], driver="replay")
        except InvalidConfig:
            info = models.scope_info(self._model, None, serial=f"replay:{rec.path}"[:39], driver="replay")
        missing = [c for c in rec.channels if c not in info.channels]
        if missing:
            raise RecordingError(f"{rec.path}: recorded channel(s) {', '.join(missing)} do not exist on a "
                                 f"{info.family}")
        return dataclasses.replace(info, model=f"{info.model} (replay)")

    def close(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def recorded(self) -> Applied:
        """The device configuration of the recording."""
        if self.rec is None:
            raise ScopeError("replay: open() the file first")
        return self.rec.applied

    def configure(self, channels: Mapping[str, ChannelConfig], timebase: TimebaseConfig,
                  trigger: TriggerConfig, siggen: SigGenConfig | None = None) -> Applied:
        """Accept the recorded configuration only (InvalidConfig names what differs)."""
        rec = self.recorded()
        self._check(rec, channels, timebase, trigger)
        with self._cond:
            self._gen += 1
            self._applied = dataclasses.replace(rec, config_generation=self._gen,
                                                channels=self._all_channels(rec, channels))
            self._next = None
            self._ready = False
            self._armed_wall = None
            return self._applied

    @staticmethod
    def _all_channels(rec: Applied, requested: Mapping[str, ChannelConfig]) -> dict[str, ChannelConfig]:
        out = {ch: (rec.channels[ch] if ch in rec.channels else dataclasses.replace(c, enabled=False))
               for ch, c in requested.items()}
        for ch, c in rec.channels.items():
            out.setdefault(ch, c)
        return out

    def _check(self, rec: Applied, channels: Mapping[str, ChannelConfig], tb: TimebaseConfig,
               tr: TriggerConfig) -> None:
        def refuse(field: str, got: object, want: object) -> None:
            raise InvalidConfig(f"{field}: {got!r} differs from the recording; the replay backend plays "
                                f"{self.path} with its recorded settings, which cannot be changed",
                                field=field, allowed=f"{want!r} (the recorded value)")

        enabled = set(rec.enabled_channels)
        for ch, c in channels.items():
            if bool(c.enabled) != (ch in enabled):
                refuse(f"{ch}:Enable", "On" if c.enabled else "Off", "On" if ch in enabled else "Off")
            if not c.enabled:
                continue
            r = rec.channels[ch]
            if not _close(c.range_v, r.range_v):
                refuse(f"{ch}:Range", c.range_v, r.range_v)
            if not _close(c.offset_v, r.offset_v):
                refuse(f"{ch}:Offset", c.offset_v, r.offset_v)
            if c.coupling != r.coupling:
                refuse(f"{ch}:Coupling", c.coupling.value, r.coupling.value)
        missing = enabled - {ch for ch, c in channels.items() if c.enabled}
        if missing:
            ch = sorted(missing)[0]
            refuse(f"{ch}:Enable", "Off", "On")
        if int(tb.n_samples) != rec.n_samples:
            refuse("NumSamples", int(tb.n_samples), rec.n_samples)
        if not _close(tb.sample_interval_s, rec.sample_interval_s):
            refuse("SampleInterval", tb.sample_interval_s, rec.sample_interval_s)
        if int(round(tb.pretrigger_fraction * tb.n_samples)) != rec.n_pre:
            refuse("PreTrigger", tb.pretrigger_fraction, rec.n_pre / rec.n_samples)
        if int(tb.n_segments) != rec.n_segments:
            refuse("NumSegments", int(tb.n_segments), rec.n_segments)
        t = rec.trigger
        for name, got, want in (("Trigger:Enable", tr.enabled, t.enabled), ("Trigger:Source", tr.source, t.source),
                                ("Trigger:Direction", tr.direction, t.direction),
                                ("Trigger:Delay", tr.delay_samples, t.delay_samples)):
            if got != want:
                refuse(name, getattr(got, "value", got), getattr(want, "value", want))
        if not _close(tr.threshold_v, t.threshold_v):
            refuse("Trigger:Level", tr.threshold_v, t.threshold_v)
        if not _close(tr.auto_trigger_s or 0.0, t.auto_trigger_s or 0.0):
            refuse("Trigger:AutoTimeout", tr.auto_trigger_s or 0.0, t.auto_trigger_s or 0.0)

    # ------------------------------------------------------------------ events
    def _peek(self) -> tuple | None:
        """The next event (raw, evnum, t, offset, overflow, auto, live) or None at the end."""
        if self._next is not None:
            return self._next
        rec = self.rec
        if self._pos >= rec.n_events:
            return None
        if self._chunks is None:
            self._chunks = rec.chunks(_CHUNK)
        if self._chunk is None or self._ci >= len(self._chunk):
            self._chunk = next(self._chunks, None)
            self._ci = 0
            if self._chunk is None:
                return None
        c, i = self._chunk, self._ci
        t = float(c.t_trigger[i])
        if not math.isfinite(t):
            t = self._pos / self.rate
        lt = float(c.live_time[i])
        self._next = (c.raw[i:i + 1], int(c.event_number[i]), t, float(c.trigger_time_offset_s[i]),
                      c.overflow[i:i + 1], bool(c.auto_triggered[i]), lt)
        self._ci += 1
        return self._next

    def arm(self) -> None:
        with self._cond:
            if self._applied is None:
                raise InvalidConfig("arm() before configure()", field="configure", allowed="call configure() first")
            self._ready = False
            self._armed_wall = time.monotonic()
            self._armed_virt = self._virt

    def _due_wall(self, ev: tuple) -> float:
        if self.pacing == "fast":
            return 0.0
        if self.pacing == "rate":
            return self._armed_wall + 1.0 / self.rate
        return self._armed_wall + max(0.0, ev[2] - self._armed_virt)

    def wait(self, timeout_s: float) -> bool:
        """True when the next event is due; False on timeout (also at the end of the file)."""
        deadline = time.monotonic() + max(0.0, float(timeout_s))
        with self._cond:
            if self._ready:
                return True
            if self._armed_wall is None:
                return False
            ev = self._peek()
            if ev is None:  # end of file: nothing more comes (the session's max_events ends the run)
                self._cond.wait(max(0.0, deadline - time.monotonic()))
                return False
            due = self._due_wall(ev)
            while True:
                now = time.monotonic()
                if now >= due:
                    self._ready = True
                    return True
                if now >= deadline or self._armed_wall is None:
                    return False
                self._cond.wait(min(due, deadline) - now)

    def stop(self) -> None:
        """Abort the capture in flight: the virtual clock stays where the last event left it."""
        with self._cond:
            self._armed_wall = None
            self._ready = False
            self._cond.notify_all()

    def read(self) -> Capture:
        with self._cond:
            if not self._ready:
                raise ScopeError("read() before wait() returned True")
            raw, evn, t, off, ovf, auto, lt = self._next
            a = self._applied
            if math.isfinite(lt):
                live = max(0.0, lt - self._live_prev)
                self._live_prev = lt
            else:
                live = max(0.0, t - self._virt)
            t_armed = self._virt
            self._virt = max(self._virt, t)
            self._next = None
            self._ready = False
            self._armed_wall = None
            self._pos += 1
            self._seq += 1
            return Capture(channels=a.enabled_channels, raw=np.ascontiguousarray(raw), overflow=np.array(ovf),
                           t_trigger=np.array([t]), trigger_time_offset_s=np.array([off]),
                           auto_triggered=np.array([auto]), live_time_s=live, t_armed=t_armed,
                           t_ready=self._virt, applied=a, sequence=self._seq)

    def clock(self) -> float:
        """Virtual time on the recorded time axis (advances with the wall clock while armed
        in ``recorded`` pacing)."""
        with self._cond:
            if self.pacing == "recorded" and self._armed_wall is not None and not self._ready:
                return self._armed_virt + (time.monotonic() - self._armed_wall)
            return self._virt

    def ping(self) -> bool:
        return self.rec is not None
