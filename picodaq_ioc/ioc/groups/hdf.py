"""HDF5 file writer PVs (prefix ``$(P)HDF:``), named after areaDetector's NDFileHDF5.

The writer itself (:class:`picodaq_ioc.analysis.hdf5_writer.Hdf5Writer`) knows no EPICS;
this group maps puts onto its settings and shows its status, which it pushes on every
change (``Hdf5Writer.listeners``; no polling). ``Capture`` = 1 opens the file; a put with
completion (``caput -c``) completes when that file is closed (``NumCapture`` events, the
end of the run, ``Capture`` = 0, or an error). Errors show in ``WriteMessage_RBV`` and as a
MAJOR alarm on ``WriteStatus_RBV``/``WriteMessage_RBV``; the IOC keeps running.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from caproto import AlarmSeverity, AlarmStatus

from ..controller import PutRefused
from ..pvspec import enum_pv, int_pv, long_string_pv, plain, set_alarm, write_if_changed
from .base import PicoGroup, init_write

log = logging.getLogger("picodaq_ioc.ioc")

COMPRESSION = ("None", "LZ4", "GZIP")
FILTERS = ("All", "Accepted", "Double")


class HdfGroup(PicoGroup):
    """HDF5 file writer (prefix ``$(P)HDF:``)."""

    file_path = long_string_pv("FilePath", "Directory of the HDF5 files (empty: the output directory)",
                               read_only=False)
    file_name = long_string_pv("FileName", "Base name of the HDF5 files", value="picodaq", read_only=False)
    file_number = int_pv("FileNumber", "Number of the next file", value=1, low=0, high=2**31 - 1)
    file_template = long_string_pv("FileTemplate", "printf template of (path, name, number)",
                                   value="%s%s_%3.3d.h5", read_only=False)
    auto_increment = enum_pv("AutoIncrement", "FileNumber + 1 after each file", ("No", "Yes"), value="Yes")
    full_file_name = long_string_pv("FullFileName_RBV", "Name of the current (or next) file")
    capture = enum_pv("Capture", "Start/stop capturing; a put-callback completes when the file is closed",
                      ("Done", "Capture"))
    capture_rbv = enum_pv("Capture_RBV", "Capturing into a file", ("Done", "Capturing"), read_only=True)
    num_capture = int_pv("NumCapture", "Events per file (0 = until stopped or the run ends)", low=0,
                         high=2**31 - 1)
    num_captured = int_pv("NumCaptured_RBV", "Events written into the current (last) file", read_only=True)
    write_status = enum_pv("WriteStatus_RBV", "Last write status (MAJOR alarm on error)",
                           ("Write OK", "Write error"), read_only=True)
    write_message = long_string_pv("WriteMessage_RBV", "Last writer message or error (caget -S)")
    compression = enum_pv("Compression", "Compression of the raw waveforms (LZ4 needs hdf5plugin)", COMPRESSION)
    event_filter = enum_pv("EventFilter", "Events to record: all, accepted by the pulse module, double pulses",
                           FILTERS)

    _refresh_pending = False

    @property
    def writer(self) -> Any:
        w = getattr(self.root, "writer", None)
        if w is None:
            raise PutRefused("HDF: the IOC has no file writer")
        return w

    # ---------------------------------------------------------------- startup / status
    async def start(self, writer: Any) -> None:
        """Show the writer's settings and follow its status (called once at startup)."""
        s = writer.settings
        await init_write(self.file_path, s.file_path)
        await init_write(self.file_name, s.file_name)
        await init_write(self.file_number, int(s.file_number))
        await init_write(self.file_template, s.file_template)
        await init_write(self.auto_increment, "Yes" if s.auto_increment else "No")
        await init_write(self.num_capture, int(s.num_capture))
        await init_write(self.compression, COMPRESSION[("none", "lz4", "gzip").index(s.compression)])
        await init_write(self.event_filter, FILTERS[("all", "accepted", "double").index(s.event_filter)])
        loop = asyncio.get_running_loop()

        def on_status(_st: Any) -> None:  # from the writer's threads: coalesce into one refresh
            if not self._refresh_pending:
                self._refresh_pending = True
                loop.call_soon_threadsafe(lambda: loop.create_task(self.show_status()))

        writer.listeners.append(on_status)
        await self.show_status()

    async def show_status(self) -> None:
        """Write the writer's current status to the readbacks."""
        self._refresh_pending = False
        w = self.writer
        st = w.status
        await write_if_changed(self.full_file_name, st.full_file_name[:255])
        await write_if_changed(self.num_captured, min(int(st.num_captured), 2**31 - 1))
        await write_if_changed(self.capture_rbv, "Capturing" if st.capturing else "Done")
        await write_if_changed(self.file_number, int(w.settings.file_number), verify_value=False)
        await write_if_changed(self.write_status, "Write OK" if st.ok else "Write error")
        message = st.message.replace("\n", " ").encode("ascii", "replace").decode("ascii")[:255]
        await write_if_changed(self.write_message, message)
        sev = AlarmSeverity.NO_ALARM if st.ok else AlarmSeverity.MAJOR_ALARM
        await set_alarm(self.write_status, sev, AlarmStatus.WRITE)
        await set_alarm(self.write_message, sev, AlarmStatus.WRITE)
        if not st.capturing and self.capture.value == "Capture" and not getattr(self, "_put_pending", False):
            await init_write(self.capture, "Done")

    # ---------------------------------------------------------------- settings
    async def _configure(self, what: str, **changes: Any) -> None:
        try:
            await asyncio.to_thread(self.writer.configure, **changes)
        except ValueError as ex:
            raise PutRefused(f"HDF:{what}: {ex}") from None
        await self.show_status()

    @file_path.putter
    async def file_path(self, instance, value):
        await self._configure("FilePath", file_path=str(value))
        return value

    @file_name.putter
    async def file_name(self, instance, value):
        if not str(value).strip():
            raise PutRefused("HDF:FileName: must not be empty")
        await self._configure("FileName", file_name=str(value))
        return value

    @file_number.putter
    async def file_number(self, instance, value):
        await self._configure("FileNumber", file_number=int(value))
        return int(value)

    @file_template.putter
    async def file_template(self, instance, value):
        await self._configure("FileTemplate", file_template=str(value))
        return value

    @auto_increment.putter
    async def auto_increment(self, instance, value):
        await self._configure("AutoIncrement", auto_increment=value == "Yes")
        return value

    @num_capture.putter
    async def num_capture(self, instance, value):
        await self._configure("NumCapture", num_capture=int(value))
        return int(value)

    @compression.putter
    async def compression(self, instance, value):
        if value not in COMPRESSION:
            raise PutRefused(f"HDF:Compression: {plain(value)!r}; allowed: {', '.join(COMPRESSION)}")
        await self._configure("Compression", compression=str(value).lower())
        return value

    @event_filter.putter
    async def event_filter(self, instance, value):
        if value not in FILTERS:
            raise PutRefused(f"HDF:EventFilter: {plain(value)!r}; allowed: {', '.join(FILTERS)}")
        await self._configure("EventFilter", event_filter=str(value).lower())
        return value

    # ---------------------------------------------------------------- capture
    @capture.putter
    async def capture(self, instance, value):
        from ...analysis.hdf5_writer import WriterError

        w = self.writer
        if value == "Done":
            await asyncio.to_thread(w.stop_capture)
            await self.show_status()
            return "Done"
        if value != "Capture":
            raise PutRefused(f"HDF:Capture: {plain(value)!r}; allowed: Done, Capture")
        if w.status.capturing:
            return "Capture"
        closed = w.status.closed_files
        try:
            await asyncio.to_thread(w.start_capture)
        except WriterError as ex:
            await self.show_status()
            raise PutRefused(f"HDF:Capture: {ex}") from None
        self._put_pending = True
        try:
            await init_write(self.capture, "Capture")
            await self.show_status()
            # the put completes when this file is closed (areaDetector stream mode)
            while not await asyncio.to_thread(w.wait_closed, closed, 1.0):
                pass
        finally:
            self._put_pending = False
        await self.show_status()
        return "Done"
