"""Autosave: the IOC's settings saved on change and restored at start.

*Settings* are the writable setpoint PVs that have an ``_RBV`` twin (``A:Range`` with
``A:Range_RBV``, ``Trigger:Level`` ...), minus run controls (``Acquire``, ``Pause``,
``*Reset*``). Waveforms, counters and other readbacks are never saved.

The file is human-readable JSON next to the configuration file, ``<config stem>.autosave.json``::

    {
      "format": "picodaq-ioc autosave 1",
      "saved": "2026-11-25T13:40:00Z",
      "config": "configs/demo.yaml",
      "config_sha256": "…",
      "prefix": "PICO:",
      "settings": {"A:Range": 0.2, "A:Coupling": "DC", "Trigger:Level": -0.045, ...}
    }

Names are stored without the PV prefix, so a different ``--prefix`` still restores.

- Saving: the values are polled every ``period`` seconds (0.5 s); a change is written once
  no further change came for ``debounce`` seconds (1 s), at the latest ``max_delay`` (5 s)
  after the first unsaved change, and at shutdown. Writes are atomic (temporary file in the
  same directory, ``fsync``, ``os.replace``).
- Restoring (unless ``--no-restore``): at server start each saved value is written through
  the PV's normal put path (validation, putter, ``_RBV``). With the IOC's group (it has
  ``staged_settings``) the device settings of all saved values are collected and applied as
  ONE atomic configuration change, so settings that are only valid together (an offset whose
  limit depends on the range, a trigger level inside the source channel's window) restore in
  any order; if the device refuses the combination nothing of it is applied and every setting
  of it is reported as refused. A plain PVGroup without that hook gets file order with a second
  pass for values refused in the first. Values equal to the current ones are skipped; values
  refused by their PV's own checks are logged and skipped.
- Backups, as EPICS autosave keeps them: before each save the previous (valid) file is copied
  to ``<file>.savB``; at each IOC start the file is copied to ``<file>_YYMMDD-HHMMSS`` and the
  newest :data:`KEEP_DATED` of those dated copies are kept.
- A corrupt or unreadable file is reported (log + ``StatusMessage_RBV``), copied aside to
  ``<file>.bad`` and ignored: never fatal; the settings are then restored from ``<file>.savB``
  if that one is valid.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fnmatch
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "FORMAT",
    "AutosaveError",
    "AutosaveManager",
    "add_arguments",
    "default_path",
    "install_autosave",
    "setting_names",
]

FORMAT = "picodaq-ioc autosave 1"

#: dated copies ``<file>_YYMMDD-HHMMSS`` kept (one is made at each IOC start)
KEEP_DATED = 5

#: Setpoints that are run controls, not settings (patterns on the name without prefix).
DEFAULT_EXCLUDE: tuple[str, ...] = ("Acquire", "Pause", "*Reset*", "*:Acquire", "*:Pause", "Settings:Defer")


class AutosaveError(ValueError):
    """The autosave file cannot be used (corrupt, wrong format); the message says why.

    ``reason`` is the message without the file name.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.reason = message.split(": ", 1)[1] if ": " in message else message


def default_path(config_path: str | Path | None, fallback_dir: str | Path = ".") -> Path:
    """``<config stem>.autosave.json`` next to the configuration file.

    Without a configuration file: ``picodaq-ioc.autosave.json`` in ``fallback_dir``.
    """
    if config_path is None:
        return Path(fallback_dir) / "picodaq-ioc.autosave.json"
    p = Path(config_path)
    return p.with_name(p.stem + ".autosave.json")


def backup_path(path: str | Path) -> Path:
    """``<file>.savB``: the previous good file (autosave's ``.savB``)."""
    p = Path(path)
    return p.with_name(p.name + ".savB")


def dated_backup(path: str | Path, keep: int = KEEP_DATED, now: float | None = None) -> Path | None:
    """Copy ``path`` to ``<file>_YYMMDD-HHMMSS`` and delete all but the newest ``keep`` such
    copies; None when there is no file yet."""
    p = Path(path)
    if not p.is_file():
        return None
    dst = p.with_name(f"{p.name}_{time.strftime('%y%m%d-%H%M%S', time.localtime(now))}")
    shutil.copy2(p, dst)
    for old in sorted(p.parent.glob(p.name + "_[0-9][0-9][0-9][0-9][0-9][0-9]-[0-9][0-9][0-9][0-9][0-9][0-9]"))[:-keep]:
        with contextlib.suppress(OSError):
            old.unlink()
    return dst


def describe_restore(path: str | Path, *, restore: bool = True) -> str:
    """One line for ``--check``: which settings the autosave file will restore at start (they
    override the configuration file's values)."""
    p = Path(path)
    if not restore:
        return f"autosave: {p} (--no-restore: nothing is restored; settings are saved there)"
    try:
        doc = read_file(p)
    except FileNotFoundError:
        return f"autosave: {p} does not exist yet: nothing is restored; settings will be saved there"
    except AutosaveError as exc:
        return f"autosave: {p} is unusable and will be ignored ({exc.reason})"
    items = [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in doc["settings"].items()
             if v is not None]
    if not items:
        return f"autosave: {p} holds no settings: nothing is restored"
    return (f"autosave: {p} (saved {doc.get('saved', '?')}) will restore {len(items)} settings over this "
            f"file's values at start: {', '.join(items)} (start with --no-restore to use the file as it is)")


def _is_read_only(chan: Any) -> bool:
    from caproto.server.server import PvpropertyReadOnlyData

    return isinstance(chan, PvpropertyReadOnlyData)


def setting_names(pvdb: Mapping[str, Any], exclude: Iterable[str] = DEFAULT_EXCLUDE,
                  prefix: str = "") -> list[str]:
    """Full PV names of the settings in ``pvdb``: writable, with an ``_RBV`` twin, not excluded.

    ``exclude`` patterns (``fnmatch``) apply to the name without ``prefix``.
    """
    pats = tuple(exclude)
    out = []
    for name, chan in pvdb.items():
        if name.endswith("_RBV") or "." in name[len(prefix):]:
            continue
        if name + "_RBV" not in pvdb or _is_read_only(chan):
            continue
        short = name[len(prefix):] if name.startswith(prefix) else name
        if any(fnmatch.fnmatchcase(short, p) for p in pats):
            continue
        if getattr(chan, "max_length", 1) > 64 and not isinstance(chan.value, str):
            continue  # arrays are data, not settings
        out.append(name)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).split(b"\0", 1)[0].decode("latin-1")
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; such a value is not restored
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(np.all(np.asarray(a) == np.asarray(b))) and np.shape(a) == np.shape(b)
    except Exception:  # noqa: BLE001
        return a == b


def read_file(path: str | Path) -> dict[str, Any]:
    """Read and check an autosave file; return its ``settings`` mapping.

    Raises
    ------
    FileNotFoundError
        No file (nothing to restore).
    AutosaveError
        Unreadable, not JSON, wrong format or wrong types (the message names the problem).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise AutosaveError(f"{p}: cannot read ({exc.__class__.__name__}: {exc})") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        where = f" at line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise AutosaveError(f"{p}: not valid JSON{where}") from None
    if not isinstance(data, dict):
        raise AutosaveError(f"{p}: the top level must be an object, got {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise AutosaveError(f"{p}: unknown format {data.get('format')!r}; expected {FORMAT!r}")
    settings = data.get("settings")
    if not isinstance(settings, dict):
        raise AutosaveError(f"{p}: 'settings' must be an object of name: value")
    for k, v in settings.items():
        if not isinstance(v, (int, float, str, bool, list)) or isinstance(v, dict):
            raise AutosaveError(f"{p}: settings.{k}: value must be a number, string or list, got {v!r}")
    return data


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (tmp file in the same directory + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class AutosaveManager:
    """Saves and restores the settings of one IOC.

    Parameters
    ----------
    pvdb : mapping
        ``{pvname: ChannelData}``.
    path : str or Path
        The autosave file.
    prefix : str
        PV prefix, stripped from names in the file.
    restore : bool
        Restore at server start.
    config_path : str or Path, optional
        Recorded in the file (with its sha256) to tell the user which config it belongs to.
    period, debounce, max_delay : float
        Polling period, quiet time before a save, longest delay of a save (seconds).
    exclude : iterable of str
        Patterns of setpoints that are not settings.
    group : PVGroup, optional
        The IOC's top group; with a ``staged_settings`` method (``PicoDAQIOC``) the restore is
        one atomic configuration change.
    """

    def __init__(self, pvdb: Mapping[str, Any], path: str | Path, *, prefix: str = "",
                 restore: bool = True, config_path: str | Path | None = None,
                 period: float = 0.5, debounce: float = 1.0, max_delay: float = 5.0,
                 exclude: Iterable[str] = DEFAULT_EXCLUDE, group: Any = None) -> None:
        self.pvdb = pvdb
        self.group = group
        self.path = Path(path)
        self.prefix = prefix
        self.restore_enabled = restore
        self.config_path = None if config_path is None else str(config_path)
        self.period = period
        self.debounce = debounce
        self.max_delay = max_delay
        self.names = setting_names(pvdb, exclude, prefix)
        self.status_chan = next((c for n, c in pvdb.items() if n == prefix + "StatusMessage_RBV"), None) \
            or next((c for n, c in pvdb.items() if n.endswith("StatusMessage_RBV")), None)
        self.saves = 0
        self.restored: list[str] = []
        self.refused: dict[str, str] = {}
        self.problem: str | None = None
        #: why the last save failed (None: the file is up to date or no save failed)
        self.save_error: str | None = None
        self._last_saved: dict[str, Any] | None = None
        self._pending_since: float | None = None
        self._last_change: float | None = None
        self._last_seen: dict[str, Any] | None = None
        self.started = False

    # --------------------------------------------------------------------- names/values
    def short(self, name: str) -> str:
        return name[len(self.prefix):] if self.prefix and name.startswith(self.prefix) else name

    def full(self, short: str) -> str:
        return self.prefix + short

    def snapshot(self) -> dict[str, Any]:
        """Current values of the settings, JSON-ready, by name without prefix."""
        return {self.short(n): _jsonable(self.pvdb[n].value) for n in self.names}

    def _config_digest(self) -> str | None:
        if not self.config_path:
            return None
        try:
            return hashlib.sha256(Path(self.config_path).read_bytes()).hexdigest()
        except OSError:
            return None

    # --------------------------------------------------------------------- saving
    def save(self, values: dict[str, Any] | None = None) -> None:
        """Write the settings now (atomically)."""
        values = self.snapshot() if values is None else values
        doc = {
            "format": FORMAT,
            "saved": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "config": self.config_path,
            "config_sha256": self._config_digest(),
            "prefix": self.prefix,
            "settings": values,
        }
        self._backup()
        write_atomic(self.path, json.dumps(doc, indent=2, allow_nan=False) + "\n")
        self._last_saved = values
        self.saves += 1
        log.debug("autosave: %d settings written to %s", len(values), self.path)

    def _backup(self) -> None:
        """Copy the current file to ``.savB`` before it is replaced -- only a valid one, so a
        corrupt file never overwrites the last good backup."""
        try:
            read_file(self.path)
        except (FileNotFoundError, AutosaveError):
            return
        try:
            write_atomic(backup_path(self.path), self.path.read_text(encoding="utf-8"))
        except OSError as exc:
            log.warning("autosave: cannot write the backup %s: %s", backup_path(self.path), exc)

    def poll(self, now: float | None = None) -> bool:
        """One step of the save loop: detect changes, save when due. Returns True if saved."""
        now = time.monotonic() if now is None else now
        values = self.snapshot()
        if self._last_saved is None and not self.restore_enabled:
            # --no-restore: keep the old file until a setting actually changes
            self._last_saved = self._last_seen = values
            return False
        if self._last_saved is not None and values == self._last_saved:
            self._pending_since = self._last_change = None
            self._last_seen = values
            return False
        if values != self._last_seen:
            self._last_change = now
            if self._pending_since is None:
                self._pending_since = now
        self._last_seen = values
        quiet = self._last_change is not None and now - self._last_change >= self.debounce
        overdue = self._pending_since is not None and now - self._pending_since >= self.max_delay
        if self._last_saved is None or quiet or overdue:
            try:
                self.save(values)
            except OSError as exc:
                culprit = str(exc.filename or "")  # a parent in the way, not our own temporary file
                where = f" ({culprit})" if culprit and not Path(culprit).name.startswith(self.path.name) else ""
                text = f"autosave: cannot write {self.path}: {exc.strerror or exc}{where}"
                if text != self.save_error:  # a full disk is logged once, not at every retry
                    self.save_error = text
                    self._report(text, level=logging.ERROR)
                self._pending_since = now  # retry after max_delay
                return False
            if self.save_error is not None:
                log.info("autosave: %s written again after: %s", self.path, self.save_error)
                self.save_error = None
            self._pending_since = self._last_change = None
            return True
        return False

    def flush(self) -> None:
        """Save now if anything changed since the last save (e.g. at shutdown)."""
        try:
            values = self.snapshot()
            if values != self._last_saved:
                self.save(values)
        except Exception as exc:  # noqa: BLE001 - never fail a shutdown
            log.error("autosave: final save to %s failed: %s", self.path, exc)

    # --------------------------------------------------------------------- restoring
    def load(self) -> dict[str, Any] | None:
        """The saved settings (full PV names), or None if there is no usable file.

        A corrupt file is reported, copied aside to ``<file>.bad`` and ignored.
        """
        try:
            doc = read_file(self.path)
        except FileNotFoundError:
            log.info("autosave: no file %s yet, nothing to restore", self.path)
            return None
        except AutosaveError as exc:
            bad = self.path.with_name(self.path.name + ".bad")
            try:
                bad.write_bytes(self.path.read_bytes())
                kept = f"copy kept as {bad}"
            except OSError as copy_exc:  # an unreadable file cannot be copied: do not claim it was
                kept = f"no copy kept: {copy_exc.strerror or copy_exc}"
            self.problem = f"autosave file ignored: {exc.reason}"
            log.error("autosave file ignored: %s (%s)", exc, kept)
            try:
                doc = read_file(backup_path(self.path))
            except (FileNotFoundError, AutosaveError):
                return None
            self.problem += f"; restored from {backup_path(self.path).name}"
            log.warning("autosave: restoring from the backup %s", backup_path(self.path))
        digest = self._config_digest()
        if digest and doc.get("config_sha256") and doc["config_sha256"] != digest:
            log.warning("autosave: %s was saved with a different version of %s; its settings override "
                        "the file's (start with --no-restore to use the config file as it is)",
                        self.path, self.config_path)
        out: dict[str, Any] = {}
        for short, value in doc["settings"].items():
            full = self.full(short)
            if full not in self.names:
                log.warning("autosave: %s is not a setting of this IOC; ignored", full)
                continue
            if value is None:
                continue
            out[full] = value
        return out

    async def restore(self) -> int:
        """Write the saved settings through the normal put path. Returns how many were applied."""
        saved = self.load()
        if self.problem:
            await self._status(self.problem)
        if not saved:
            return 0
        todo = list(saved.items())
        errors: dict[str, str] = {}
        staged = getattr(self.group, "staged_settings", None)
        if staged is not None and getattr(self.group, "ctl", None) is not None:
            await self._restore_atomically(staged, todo, errors)
        else:
            await self._restore_in_passes(todo, errors)
        self.refused = errors
        for name, why in errors.items():
            log.warning("autosave: could not restore %s = %r: %s", name, saved[name], why)
        short = f"autosave: {len(self.restored)} restored"
        if errors:
            short += f", {len(errors)} refused: {', '.join(self.short(n) for n in errors)}"
        if self.problem:  # restored from the .savB backup: say so
            short += f" ({self.problem})"
        log.info("%s from %s", short, self.path)
        if self.restored or errors:
            await self._status(short)
        return len(self.restored)

    async def _write_saved(self, name: str, value: Any, errors: dict[str, str]) -> bool | None:
        """Put one saved value through its PV's put path: True if written, None if it already
        had that value, False if refused (the reason goes to ``errors``)."""
        chan = self.pvdb[name]
        if _same(chan.value, value):
            return None
        try:
            await chan.write(value)
        except Exception as exc:  # noqa: BLE001 - every refusal is reported, none is fatal
            errors[name] = f"{type(exc).__name__}: {exc}"
            return False
        return True

    async def _restore_atomically(self, staged: Any, todo: list[tuple[str, Any]], errors: dict[str, str]) -> None:
        """Every saved value through its PV's put path, the device settings collected and
        applied as one configuration change (``ioc_group.staged_settings``): order never matters."""
        written: list[str] = []
        async with staged("autosave restore") as batch:
            for name, value in todo:
                if await self._write_saved(name, value, errors):
                    written.append(name)
        in_change = {self.full(n) for n in batch.names}
        for name in written:
            if batch.error and name in in_change:
                errors[name] = f"the saved settings were refused together: {batch.error}"
            else:
                self.restored.append(name)

    async def _restore_in_passes(self, todo: list[tuple[str, Any]], errors: dict[str, str]) -> None:
        """Without a staging hook (a plain PVGroup): file order, a second pass for refusals."""
        for _pass in range(2):
            retry = []
            for name, value in todo:
                ok = await self._write_saved(name, value, errors)
                if ok is False:
                    retry.append((name, value))
                elif ok:
                    errors.pop(name, None)
                    self.restored.append(name)
            todo = retry
            if not todo:
                break

    # --------------------------------------------------------------------- server hooks
    async def _status(self, text: str) -> None:
        chan = self.status_chan
        if chan is None:
            return
        try:
            from caproto import ChannelType

            if getattr(chan, "data_type", None) == ChannelType.STRING:
                n = 39  # DBR_STRING: 40 bytes with the terminator
            else:
                n = max(1, (getattr(chan, "max_length", 40) or 40) - 1)
            await chan.write(text[:n])
        except Exception as exc:  # noqa: BLE001
            log.debug("autosave: cannot write status message: %s", exc)

    def _report(self, text: str, level: int = logging.WARNING) -> None:
        log.log(level, text)
        self.problem = text

    async def server_startup(self, async_lib: Any) -> None:
        """Restore (if enabled), then save on change until the server stops. Never raises."""
        self.started = True
        try:
            dated = dated_backup(self.path)
            if dated is not None:
                log.info("autosave: dated backup %s", dated)
        except OSError as exc:
            log.warning("autosave: cannot write a dated backup of %s: %s", self.path, exc)
        try:
            if self.restore_enabled:
                await self.restore()
            else:
                log.info("autosave: restore skipped (--no-restore); saving to %s", self.path)
        except Exception as exc:  # noqa: BLE001 - an exception here would end the server
            log.exception("autosave: restore failed: %s", exc)
            await self._status(f"autosave: restore failed: {exc}")
        sleep = async_lib.library.sleep
        # after a restore the first poll saves the current state, so the file matches the IOC
        while True:
            error_before = self.save_error
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001
                log.exception("autosave: %s", exc)
            if self.save_error != error_before:
                await self._show_save_error()
            await sleep(self.period)

    async def _show_save_error(self) -> None:
        """StatusMessage_RBV with a MAJOR WRITE alarm while settings cannot be saved; cleared
        (message saying so) once a save works again."""
        from caproto import AlarmSeverity, AlarmStatus

        device = getattr(self.group, "device", None)
        text = self.save_error or f"autosave: {self.path.name} written again"
        if device is None or not hasattr(device, "set_status"):
            await self._status(text)
            return
        try:
            if self.save_error:
                await device.set_status(text, AlarmSeverity.MAJOR_ALARM, AlarmStatus.WRITE)
            else:
                await device.set_status(text)
        except Exception as exc:  # noqa: BLE001 - reporting must not stop the save loop
            log.debug("autosave: cannot show the save error: %s", exc)

    async def server_shutdown(self, async_lib: Any) -> None:
        self.flush()

    def attach(self) -> None:
        """Register :meth:`server_startup`/:meth:`server_shutdown` with caproto's server.

        caproto calls the ``server_startup``/``server_shutdown`` attributes of every channel in
        the pvdb; the hooks are put on a channel that has none of its own.
        """
        for chan in self.pvdb.values():
            if getattr(chan, "server_startup", None) is None and getattr(chan, "server_scan", None) is None \
                    and getattr(chan, "server_shutdown", None) is None:
                chan.server_startup = self.server_startup
                chan.server_shutdown = self.server_shutdown
                return
        raise RuntimeError("autosave: no channel free to carry the startup hook")


def install_autosave(ioc_group: Any, pvdb: Mapping[str, Any], path: str | Path, restore: bool = True,
                     **kwargs: Any) -> AutosaveManager:
    """Save the IOC's settings on change and restore them when the server starts.

    Call before caproto's ``run(pvdb)``; nothing else is needed: the manager registers itself
    as a server startup/shutdown hook of one channel.

    Parameters
    ----------
    ioc_group : PVGroup or None
        The top-level group (its ``prefix`` is stripped from names in the file).
    pvdb : mapping
        ``{pvname: ChannelData}`` as passed to ``run``.
    path : str or Path
        The autosave file (see :func:`default_path`).
    restore : bool
        False for ``--no-restore``.
    **kwargs
        Passed to :class:`AutosaveManager` (``config_path``, ``period``, ``debounce`` ...).

    Returns
    -------
    AutosaveManager
    """
    prefix = getattr(ioc_group, "prefix", "") or ""
    kwargs.setdefault("group", ioc_group)
    mgr = AutosaveManager(pvdb, path, prefix=prefix, restore=restore, **kwargs)
    mgr.attach()
    log.info("autosave: %d settings, file %s%s", len(mgr.names), mgr.path,
             "" if restore else " (no restore)")
    return mgr


def add_arguments(parser: Any) -> None:
    """Add ``--no-restore`` and ``--autosave FILE`` to an argparse parser (used by the IOC's CLI)."""
    parser.add_argument("--no-restore", action="store_true",
                        help="do not restore the autosaved settings at start (they are still saved)")
    parser.add_argument("--autosave", metavar="FILE", default=None,
                        help="autosave file (default: <config stem>.autosave.json next to the --config file; "
                             "without --config and --autosave nothing is saved)")
