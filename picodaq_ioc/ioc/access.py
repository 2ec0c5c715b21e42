"""EPICS access security (ACF) for the caproto IOC: enforcement through caproto's per-channel
``check_access(hostname, username)``. The file format -- all of EPICS base's, incl. INP/CALC,
macros and base 7.0.9's METHOD/AUTHORITY/PROTOCOL -- is parsed by :mod:`.acf`.

Read-only PVs never become writable: the ACF rights are intersected with the PV's own rights.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Mapping
from typing import Any

from caproto import AccessRights

from .acf import AccessSecurity, AcfError, Rule, load_acf, parse_acf, parse_macros, pv_reader
from .fields import with_fields

log = logging.getLogger(__name__)

__all__ = [
    "AcfError",
    "AccessSecurity",
    "Rule",
    "apply_acf",
    "default_asg_map",
    "install_security",
    "load_acf",
    "parse_acf",
]

# --------------------------------------------------------------------------- enforcement

AsgMap = Callable[[str], str] | Mapping[str, str] | None


def _asg_lookup(asg_for_pv: AsgMap) -> Callable[[str], str]:
    if asg_for_pv is None:
        return lambda name: "DEFAULT"
    if callable(asg_for_pv):
        return asg_for_pv
    patterns = list(asg_for_pv.items())

    def lookup(name: str) -> str:
        for pat, asg in patterns:
            if fnmatch.fnmatchcase(name, pat):
                return asg
        return "DEFAULT"

    return lookup


def apply_acf(pvdb: Mapping[str, Any], acf: AccessSecurity, asg_for_pv: AsgMap = None) -> dict[str, str]:
    """Enforce ``acf`` on every channel of ``pvdb`` (in place).

    Each ``ChannelData.check_access(hostname, username)`` is wrapped so that it returns the
    intersection of the channel's own rights (read-only PVs stay read-only) and the rights
    the ACF grants the client. caproto announces these rights to clients when the channel is
    created (clients such as libca then refuse puts locally with ``ECA_NOWTACCESS``) and checks
    them again on every read and write (``Forbidden``).

    Parameters
    ----------
    pvdb : mapping
        ``{pvname: ChannelData}`` as passed to caproto's ``run``.
    acf : AccessSecurity
        The parsed file.
    asg_for_pv : callable, mapping or None
        Which ASG a PV belongs to: a function ``pvname -> asg``, or a mapping of shell-style
        patterns (``fnmatch``, first match wins) to ASG names; unmatched PVs are in ``DEFAULT``.

    Returns
    -------
    dict
        ``{pvname: asg}`` as applied (fields included: ``{"P:X.DESC": asg of "P:X"}``).
    """
    lookup = _asg_lookup(asg_for_pv)
    applied: dict[str, str] = {}
    for name, chan, record in with_fields(pvdb):  # a record's ASG covers all its fields (RSRV)
        asg = lookup(record)
        if name == record and asg not in acf.asgs and asg != "DEFAULT":
            log.warning("PV %s is mapped to ASG(%s), which %s does not define; using DEFAULT",
                        name, asg, acf.filename)
        own = chan.check_access

        # a record's value is an ASL0 field, its other fields (.DESC, .HOPR ...) ASL1, as in EPICS
        asl = 0 if name == record else 1

        def check_access(hostname: str, username: str, *, _own=own, _asg=asg, _asl=asl) -> AccessRights:
            return _own(hostname, username) & acf.rights(_asg, hostname, username, asl=_asl)

        chan.check_access = check_access
        chan._picodaq_asg = asg
        applied[name] = asg
    return applied


def default_asg_map(prefix: str) -> dict[str, str]:
    """The IOC's PV -> ASG mapping: IOC administration (``<prefix>IOC:*``, e.g. ``SYSRESET``)
    and the test-only fault PVs (``<prefix>Test:*``) are in ``ASG(EXPERT)``, everything else
    in ``ASG(DEFAULT)``. A file without ``ASG(EXPERT)`` puts them in ``DEFAULT`` too."""
    return {f"{prefix}IOC:*": "EXPERT", f"{prefix}Test:*": "EXPERT"}


def install_security(pvdb: Mapping[str, Any], args: Any, prefix: str = "") -> AccessSecurity | None:
    """CLI hook: apply ``--acf FILE`` (``args.acf``) to ``pvdb``; no-op without it.

    Without ``--acf`` the IOC is unchanged: every client that can reach it (loopback by
    default) may read and write every writable PV. With it, PVs are mapped to access security
    groups by :func:`default_asg_map` (``args.acf_map``, a ``{pattern: asg}`` mapping, overrides).

    Raises
    ------
    AcfError
        The file is missing or invalid (the CLI reports it and exits with status 2).
    """
    path = getattr(args, "acf", None)
    if not path:
        return None
    macros = {"P": prefix, **parse_macros(getattr(args, "acf_macros", None))}
    acf = load_acf(path, macros)
    acf.bind({name: pv_reader(chan) for name, chan in pvdb.items()})
    mapping = getattr(args, "acf_map", None)
    if mapping is None:
        mapping = {pat: asg for pat, asg in default_asg_map(prefix).items() if asg in acf.asgs}
    apply_acf(pvdb, acf, mapping)
    log.info("access security from %s: groups %s", acf.filename, ", ".join(acf.asgs) or "none")
    return acf


def add_arguments(parser: Any) -> None:
    """Add ``--acf`` to an argparse parser (used by the IOC's CLI)."""
    parser.add_argument(
        "--acf", metavar="FILE", default=None,
        help="EPICS access security file (UAG/HAG/AUTHORITY/ASG with INP/CALC, METHOD, PROTOCOL): who may "
             "write which PVs. Default: everyone who can reach the IOC (loopback only by default) may write.")
    parser.add_argument(
        "--acf-macros", metavar="NAME=VALUE,...", default=None,
        help="macro values for the access security file ($(NAME) / $(NAME=default)); P is the IOC prefix")
