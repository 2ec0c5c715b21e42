"""One hook for the CLI: access security, put log, autosave and (for tests) fault injection.

The IOC's command line calls two functions and nothing else::

    reliability.add_arguments(parser)              # --acf, --putlog, --autosave, --no-restore, --test-faults
    rel = reliability.install(group, args)         # after the group is attached, before run()

``install`` raises :class:`ReliabilityError` (a user error, exit status 2) for a bad ACF file
or a put log file that cannot be opened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from . import access, autosave, putlog

log = logging.getLogger(__name__)

__all__ = ["Reliability", "ReliabilityError", "add_arguments", "install"]


class ReliabilityError(ValueError):
    """A problem the user must fix (bad ``--acf`` file, unwritable ``--putlog``); the message says
    what and where."""


@dataclass
class Reliability:
    """What :func:`install` set up (each part None when not enabled)."""

    acf: access.AccessSecurity | None = None
    putlog: putlog.PutLog | None = None
    autosave: autosave.AutosaveManager | None = None
    faults: Any = None


def add_arguments(parser: Any) -> None:
    """Add the options of access security, put log, autosave and fault injection."""
    grp = parser.add_argument_group("security and reliability")
    access.add_arguments(grp)
    putlog.add_arguments(grp)
    autosave.add_arguments(grp)
    grp.add_argument("--no-autosave", action="store_true",
                     help="neither restore nor save settings")
    grp.add_argument("--test-faults", action="store_true",
                     help="(testing only) serve hidden PVs <prefix>Test:* that inject simulator faults")


def install(group: Any, args: Any) -> Reliability:
    """Apply ``--acf``, the put log (always on; ``--putlog FILE`` adds a file), autosave
    (file ``--autosave FILE`` or ``<config stem>.autosave.json`` next to ``--config``; off without
    either, or with ``--no-autosave``) and ``--test-faults`` to the IOC ``group`` (its ``pvdb`` is
    modified in place).

    Call after the group is attached to its controller and before the server runs.
    """
    rel = Reliability()
    pvdb = group.pvdb
    if getattr(args, "test_faults", False):
        from . import faults

        rel.faults = faults.install_faults(group)
    try:
        rel.acf = access.install_security(pvdb, args, prefix=getattr(group, "prefix", ""))
    except access.AcfError as exc:
        raise ReliabilityError(f"error: --acf: {exc}") from None
    try:
        rel.putlog = putlog.install_putlog(pvdb, getattr(args, "putlog", None))
    except OSError as exc:  # unwritable --putlog: one line, exit status 2
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(args.putlog) else ""
        raise ReliabilityError(f"error: --putlog {args.putlog}: cannot open for appending: "
                               f"{exc.strerror or exc}{where}") from None
    path = getattr(args, "autosave", None)
    if path is None and getattr(args, "config", None):
        path = autosave.default_path(args.config)
    if path is not None and not getattr(args, "no_autosave", False):
        rel.autosave = autosave.install_autosave(group, pvdb, path,
                                                 restore=not getattr(args, "no_restore", False),
                                                 config_path=getattr(args, "config", None))
    return rel
