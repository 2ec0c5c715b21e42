"""Put log: every Channel Access put to the IOC, accepted or refused, on one line each.

Accepted puts are logged at INFO on the logger ``picodaq_ioc.putlog``::

    put PICO:A:Range old=0.5 new=0.2 requested=0.15 by alice@labpc1 (127.0.0.1:53012) via CA

Refused puts at WARNING, with the reason::

    put refused PICO:A:Range requested=nan by alice@labpc1 (127.0.0.1:53012) via CA: ... not finite
    put refused PICO:NumSamples requested=100 by eve@labpc9 (...) via PVA: no write access (ASG DEFAULT)

``new`` is what the PV holds after the put (a clamped or snapped value shows here, the
``_RBV`` twin shows what the device applied). With ``--putlog FILE`` the same lines, with an
ISO-8601 UTC time stamp, are appended to ``FILE``. Only puts from CA clients are logged
(``ChannelData.auth_write``); the IOC's own updates of readbacks are not. PV Access puts
(:mod:`picodaq_ioc.ioc.pva`) enter through the same ``auth_write`` with :data:`PROTOCOL` set to
``"PVA"``, so one log shows both protocols.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np

from .fields import with_fields

__all__ = ["PROTOCOL", "PUTLOG", "PutLog", "add_arguments", "format_value", "install_putlog"]

PUTLOG = logging.getLogger("picodaq_ioc.putlog")

#: Protocol of the put being processed ("CA" unless a PV Access put handler set it).
PROTOCOL: ContextVar[str] = ContextVar("picodaq_put_protocol", default="CA")

_MAX_TEXT = 120


def _scalar(value: Any) -> Any:
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return _scalar(value[0])
    if isinstance(value, np.ndarray) and value.size == 1:
        return _scalar(value.reshape(-1)[0].item())
    if isinstance(value, np.generic):
        return _scalar(value.item())
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).split(b"\0", 1)[0].decode("latin-1")
    return value


def format_value(value: Any, limit: int = _MAX_TEXT) -> str:
    """Short, one-line text of a PV value (arrays summarised, bytes decoded)."""
    try:
        v = _scalar(value)
        if isinstance(v, (list, tuple, np.ndarray)):
            items = list(np.asarray(v).reshape(-1)[:5]) if isinstance(v, np.ndarray) else list(v[:5])
            n = v.size if isinstance(v, np.ndarray) else len(v)
            head = ", ".join(repr(_scalar(x)) for x in items[:4])
            text = f"[{head}, ... ({n} values)]" if n > 4 else f"[{head}]"
        else:
            text = repr(v)
    except Exception:  # noqa: BLE001 - a log line must never fail the put
        text = f"<{type(value).__name__}>"
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reason(exc: BaseException, chan: Any) -> str:
    name = type(exc).__name__
    if name == "Forbidden":
        asg = getattr(chan, "_picodaq_asg", None)
        return "no write access" + (f" (ASG {asg})" if asg else "")
    text = str(exc).strip()
    return f"{name}: {text}" if text else name


def _snapshot(chan: Any) -> Any:
    value = getattr(chan, "value", None)
    if isinstance(value, np.ndarray):
        # arrays are summarised anyway; keep only what the summary needs
        return value[:9].copy() if value.size > 9 else value.copy()
    return value


class PutLog:
    """The installed put log: counters and the optional file handler.

    Attributes
    ----------
    accepted, refused : int
        Puts logged since installation.
    path : Path or None
        The ``--putlog`` file, if any.
    """

    def __init__(self, path: str | Path | None = None, logger: logging.Logger = PUTLOG) -> None:
        self.logger = logger
        self.accepted = 0
        self.refused = 0
        self.path = Path(path) if path else None
        self.handler: logging.Handler | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(self.path, encoding="utf-8", delay=False)
            fmt = logging.Formatter("%(asctime)s.%(msecs)03dZ %(levelname)s %(message)s",
                                    datefmt="%Y-%m-%dT%H:%M:%S")
            fmt.converter = time.gmtime
            handler.setFormatter(fmt)
            handler.setLevel(logging.INFO)
            self.handler = handler
            logger.addHandler(handler)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)

    def close(self) -> None:
        """Detach and close the file handler."""
        if self.handler is not None:
            self.logger.removeHandler(self.handler)
            self.handler.close()
            self.handler = None

    # ---------------------------------------------------------------------------------
    def wrap(self, pvname: str, chan: Any) -> None:
        """Wrap ``chan.auth_write`` (the entry point of client puts) to log every put."""
        original = chan.auth_write
        logger = self.logger

        async def auth_write(hostname, username, data, data_type, metadata, *, flags=0,
                             user_address=None):
            who = f"{username}@{hostname}"
            if user_address:
                who += f" ({user_address[0]}:{user_address[1]})"
            who += f" via {PROTOCOL.get()}"
            old = _snapshot(chan)
            try:
                result = await original(hostname, username, data, data_type, metadata,
                                        flags=flags, user_address=user_address)
            except BaseException as exc:
                self.refused += 1
                try:
                    logger.warning("put refused %s requested=%s by %s: %s", pvname,
                                   format_value(data), who, _reason(exc, chan))
                except Exception:  # noqa: BLE001
                    pass
                raise
            self.accepted += 1
            try:
                logger.info("put %s old=%s new=%s requested=%s by %s", pvname, format_value(old),
                            format_value(getattr(chan, "value", None)), format_value(data), who)
            except Exception:  # noqa: BLE001
                pass
            return result

        chan.auth_write = auth_write


def install_putlog(pvdb: Mapping[str, Any], path: str | Path | None = None, *,
                   logger: logging.Logger = PUTLOG) -> PutLog:
    """Log every client put to the PVs of ``pvdb`` (in place).

    Call after :func:`picodaq_ioc.ioc.access.install_security` or before, either works:
    access is checked inside the wrapped call, so refusals for lack of rights are logged too.

    Parameters
    ----------
    pvdb : mapping
        ``{pvname: ChannelData}``.
    path : str or Path, optional
        Also append the lines to this file (``--putlog FILE``).
    logger : logging.Logger
        Defaults to ``picodaq_ioc.putlog`` (propagates to the IOC's log).

    Returns
    -------
    PutLog
    """
    plog = PutLog(path, logger)
    for name, chan, _record in with_fields(pvdb):  # fields too: PV.DESC, PV.PROC ...
        plog.wrap(name, chan)
    return plog


def add_arguments(parser: Any) -> None:
    """Add ``--putlog FILE`` to an argparse parser (used by the IOC's CLI)."""
    parser.add_argument(
        "--putlog", metavar="FILE", default=None,
        help="also append the put log (every CA and PVA put: time, PV, old/new value, client user@host, "
             "protocol; every refused put with the reason) to FILE")
