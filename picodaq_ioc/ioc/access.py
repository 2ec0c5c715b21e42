"""EPICS access security (ACF) for the caproto IOC: a parser for a subset of the file format
and its enforcement through caproto's per-channel ``check_access(hostname, username)``.

Supported subset of the EPICS Application Developer's Guide, chapter "Access Security"::

    # comment to the end of the line
    UAG(operators) { alice, bob }            # user access group: user names
    HAG(controlroom) { "cr-01", cr02.lab }   # host access group: host names
    ASG(DEFAULT) {
        RULE(1, READ)                        # everybody may read
        RULE(1, WRITE, TRAPWRITE) {          # ... members of both groups may also write
            UAG(operators)
            HAG(controlroom)
        }
    }
    ASG(READONLY) { RULE(1, READ) }

Semantics (as in EPICS ``asLib``):

- A ``RULE`` without ``UAG``/``HAG`` applies to every client. With ``UAG(...)`` the client's
  user name must be in one of the listed groups; with ``HAG(...)`` its host name must be in one
  of the listed groups; with both, both must hold.
- Access levels: ``NONE`` < ``READ`` < ``WRITE`` (``WRITE`` implies ``READ``); the client gets
  the highest level of all rules that apply. ``RPC`` is accepted but grants nothing over CA.
- The rule's first argument is the access security level (0 or 1). Every picodaq PV is a
  ``VAL``-like field (ASL0), so rules of either level apply.
- ``TRAPWRITE``/``NOTRAPWRITE`` are accepted; picodaq logs every put regardless (see
  :mod:`picodaq_ioc.ioc.putlog`).
- PVs are in ``ASG(DEFAULT)`` unless mapped otherwise. As in EPICS, a file without a
  ``DEFAULT`` group gives no access at all to unmapped PVs (a warning is logged).
- User names compare exactly; host names case-insensitively. The host name is the one the
  client announces in its CA ``HOST_NAME`` message (the EPICS default without
  ``asCheckClientIP``).
- Not supported (clear error): ``INP``/``CALC`` in an ``ASG``, ``METHOD``/``AUTHORITY``.

Read-only PVs never become writable: the ACF rights are intersected with the PV's own rights.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caproto import AccessRights

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

_LEVELS: dict[str, AccessRights] = {
    "NONE": AccessRights.NO_ACCESS,
    "READ": AccessRights.READ,
    "WRITE": AccessRights.READ | AccessRights.WRITE,
    "RPC": AccessRights.NO_ACCESS,
}
_OPTIONS = ("TRAPWRITE", "NOTRAPWRITE")


class AcfError(ValueError):
    """A syntax or consistency error in an access security file.

    Attributes
    ----------
    filename : str
        The file (or ``<string>``).
    line : int or None
        1-based line number of the problem.
    problem : str
        The bare description.
    """

    def __init__(self, problem: str, filename: str = "<string>", line: int | None = None) -> None:
        self.problem = problem
        self.filename = filename
        self.line = line
        where = f"{filename}:{line}" if line is not None else filename
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Rule:
    """One ``RULE(level, access[, TRAPWRITE]) { UAG(..) HAG(..) }`` of an ASG."""

    level: int
    access: str  # NONE | READ | WRITE | RPC
    uags: tuple[str, ...] = ()
    hags: tuple[str, ...] = ()
    trapwrite: bool = False
    line: int = 0


@dataclass
class AccessSecurity:
    """A parsed access security file.

    Attributes
    ----------
    uags, hags : dict
        Group name -> set of user names / lower-cased host names.
    asgs : dict
        Access security group name -> its rules in file order.
    filename : str
        Where it came from (for messages).
    """

    uags: dict[str, frozenset[str]] = field(default_factory=dict)
    hags: dict[str, frozenset[str]] = field(default_factory=dict)
    asgs: dict[str, tuple[Rule, ...]] = field(default_factory=dict)
    filename: str = "<string>"
    _cache: dict[tuple[str, str, str], AccessRights] = field(default_factory=dict, repr=False)

    def rights(self, asg: str, host: str | None, user: str | None) -> AccessRights:
        """Access rights of client ``user``@``host`` on a PV of group ``asg``.

        Unknown groups fall back to ``DEFAULT``; a missing ``DEFAULT`` gives no access.
        """
        host_s = (host or "").casefold()
        user_s = user or ""
        key = (asg, host_s, user_s)
        try:
            return self._cache[key]
        except KeyError:
            pass
        rules = self.asgs.get(asg)
        if rules is None:
            rules = self.asgs.get("DEFAULT", ())
        granted = AccessRights.NO_ACCESS
        for rule in rules:
            if rule.uags and not any(user_s in self.uags[g] for g in rule.uags):
                continue
            if rule.hags and not any(host_s in self.hags[g] for g in rule.hags):
                continue
            granted |= _LEVELS[rule.access]
        if len(self._cache) > 4096:  # bounded: host/user strings come from clients
            self._cache.clear()
        self._cache[key] = granted
        return granted

    def may_write(self, asg: str, host: str | None, user: str | None) -> bool:
        """True if ``user``@``host`` may write PVs of ``asg``."""
        return AccessRights.WRITE in self.rights(asg, host, user)


# --------------------------------------------------------------------------- lexer

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>[ \t\r\f\v]+)
  | (?P<nl>\n)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<badstring>"[^\n]*)
  | (?P<punct>[(){},])
  | (?P<word>[A-Za-z0-9_\-+:.\[\]<>;/@*$]+)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Tok:
    kind: str  # 'word' | 'string' | one of ( ) { } , | 'eof'
    text: str
    line: int


def _tokenize(text: str, filename: str) -> list[_Tok]:
    toks: list[_Tok] = []
    line = 1
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise AcfError(f"unexpected character {text[pos]!r}", filename, line)
        kind = m.lastgroup
        s = m.group()
        if kind == "nl":
            line += 1
        elif kind == "string":
            body = s[1:-1]
            body = re.sub(r"\\(.)", r"\1", body)
            toks.append(_Tok("string", body, line))
        elif kind == "badstring":
            raise AcfError("unterminated quoted string", filename, line)
        elif kind == "punct":
            toks.append(_Tok(s, s, line))
        elif kind == "word":
            toks.append(_Tok("word", s, line))
        pos = m.end()
    toks.append(_Tok("eof", "end of file", line))
    return toks


# --------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, toks: list[_Tok], filename: str) -> None:
        self.toks = toks
        self.i = 0
        self.filename = filename

    # helpers ---------------------------------------------------------------------
    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        tok = self.toks[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def error(self, problem: str, tok: _Tok | None = None) -> AcfError:
        tok = tok or self.peek()
        return AcfError(problem, self.filename, tok.line)

    def expect(self, kind: str, what: str | None = None) -> _Tok:
        tok = self.next()
        if tok.kind != kind:
            raise self.error(f"expected {what or repr(kind)}, found {_show(tok)}", tok)
        return tok

    def name(self, what: str) -> _Tok:
        tok = self.next()
        if tok.kind not in ("word", "string") or tok.text == "":
            raise self.error(f"expected {what}, found {_show(tok)}", tok)
        return tok

    def name_list(self, what: str, close: str) -> list[_Tok]:
        """``name {, name}`` up to (not including) ``close``; an empty list is allowed."""
        out: list[_Tok] = []
        if self.peek().kind == close:
            return out
        while True:
            out.append(self.name(what))
            if self.peek().kind == ",":
                self.next()
                continue
            if self.peek().kind == close:
                return out
            raise self.error(f"expected ',' or {close!r} after {what}, found {_show(self.peek())}")

    # grammar ---------------------------------------------------------------------
    def parse(self) -> AccessSecurity:
        acf = AccessSecurity(filename=self.filename)
        uag_refs: list[tuple[str, _Tok]] = []
        hag_refs: list[tuple[str, _Tok]] = []
        while self.peek().kind != "eof":
            tok = self.next()
            kw = tok.text.upper() if tok.kind == "word" else ""
            if kw in ("UAG", "HAG"):
                self.expect("(", "'('")
                gname = self.name(f"{kw} name")
                self.expect(")", "')'")
                members: list[_Tok] = []
                if self.peek().kind == "{":
                    self.next()
                    members = self.name_list("a user name" if kw == "UAG" else "a host name", "}")
                    self.expect("}", "'}'")
                table = acf.uags if kw == "UAG" else acf.hags
                if gname.text in table:
                    raise self.error(f"{kw}({gname.text}) defined twice", gname)
                vals = [m.text for m in members] if kw == "UAG" else [m.text.casefold() for m in members]
                table[gname.text] = frozenset(vals)
            elif kw == "ASG":
                self.expect("(", "'('")
                gname = self.name("ASG name")
                self.expect(")", "')'")
                if gname.text in acf.asgs:
                    raise self.error(f"ASG({gname.text}) defined twice", gname)
                rules: list[Rule] = []
                if self.peek().kind == "{":
                    self.next()
                    while self.peek().kind != "}":
                        rules.append(self.rule(uag_refs, hag_refs))
                    self.expect("}", "'}'")
                acf.asgs[gname.text] = tuple(rules)
            elif kw in ("INP", "CALC", "RULE"):
                raise self.error(f"{kw} is only allowed inside an ASG {{ ... }} block", tok)
            elif kw in ("METHOD", "AUTHORITY"):
                raise self.error(f"{kw} is not supported by picodaq-ioc; allowed: UAG, HAG, ASG", tok)
            else:
                raise self.error(f"expected UAG, HAG or ASG, found {_show(tok)}", tok)
        for gname, tok in uag_refs:
            if gname not in acf.uags:
                raise self.error(f"UAG({gname}) is used but not defined; defined: "
                                 f"{', '.join(sorted(acf.uags)) or 'none'}", tok)
        for gname, tok in hag_refs:
            if gname not in acf.hags:
                raise self.error(f"HAG({gname}) is used but not defined; defined: "
                                 f"{', '.join(sorted(acf.hags)) or 'none'}", tok)
        return acf

    def rule(self, uag_refs: list, hag_refs: list) -> Rule:
        tok = self.next()
        kw = tok.text.upper() if tok.kind == "word" else ""
        if kw in ("INP", "CALC"):
            raise self.error(f"{kw} is not supported by picodaq-ioc (no record links); "
                             "allowed inside ASG: RULE", tok)
        if kw != "RULE":
            raise self.error(f"expected RULE or '}}', found {_show(tok)}", tok)
        self.expect("(", "'('")
        lev = self.name("access security level 0 or 1")
        if lev.text not in ("0", "1"):
            raise self.error(f"access security level must be 0 or 1, found {lev.text!r}", lev)
        self.expect(",", "','")
        acc = self.name("NONE, READ, WRITE or RPC")
        access = acc.text.upper()
        if access not in _LEVELS:
            raise self.error(f"unknown access {acc.text!r}; allowed: NONE, READ, WRITE, RPC", acc)
        trap = False
        if self.peek().kind == ",":
            self.next()
            opt = self.name("TRAPWRITE or NOTRAPWRITE")
            if opt.text.upper() not in _OPTIONS:
                raise self.error(f"unknown rule option {opt.text!r}; allowed: TRAPWRITE, NOTRAPWRITE", opt)
            trap = opt.text.upper() == "TRAPWRITE"
        self.expect(")", "')'")
        uags: list[str] = []
        hags: list[str] = []
        if self.peek().kind == "{":
            self.next()
            while self.peek().kind != "}":
                sub = self.next()
                skw = sub.text.upper() if sub.kind == "word" else ""
                if skw in ("UAG", "HAG"):
                    self.expect("(", "'('")
                    names = self.name_list(f"{skw} name", ")")
                    if not names:
                        raise self.error(f"{skw}() needs at least one group name", sub)
                    self.expect(")", "')'")
                    for nm in names:
                        (uag_refs if skw == "UAG" else hag_refs).append((nm.text, nm))
                        (uags if skw == "UAG" else hags).append(nm.text)
                elif skw == "CALC":
                    raise self.error("CALC is not supported by picodaq-ioc; allowed inside RULE: UAG, HAG",
                                     sub)
                else:
                    raise self.error(f"expected UAG, HAG or '}}' inside RULE, found {_show(sub)}", sub)
            self.expect("}", "'}'")
        return Rule(level=int(lev.text), access=access, uags=tuple(uags), hags=tuple(hags),
                    trapwrite=trap, line=tok.line)


def _show(tok: _Tok) -> str:
    if tok.kind == "eof":
        return "end of file"
    if tok.kind == "string":
        return f'"{tok.text}"'
    return repr(tok.text)


def parse_acf(text: str, filename: str = "<string>") -> AccessSecurity:
    """Parse access security file text.

    Parameters
    ----------
    text : str
        File contents.
    filename : str
        Named in error messages.

    Returns
    -------
    AccessSecurity

    Raises
    ------
    AcfError
        With the file name and 1-based line number of the first problem.
    """
    acf = _Parser(_tokenize(text, filename), filename).parse()
    if "DEFAULT" not in acf.asgs:
        log.warning("%s: no ASG(DEFAULT): PVs not mapped to another group get no access at all", filename)
    return acf


def load_acf(path: str | Path) -> AccessSecurity:
    """Read and parse an access security file (see :func:`parse_acf`).

    Raises
    ------
    AcfError
        Unreadable file or a syntax error.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AcfError("access security file not found", str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AcfError(f"cannot read access security file ({exc.__class__.__name__}: {exc})", str(p)) from None
    return parse_acf(text, str(p))


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

        def check_access(hostname: str, username: str, *, _own=own, _asg=asg) -> AccessRights:
            return _own(hostname, username) & acf.rights(_asg, hostname, username)

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
    acf = load_acf(path)
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
        help="EPICS access security file (UAG/HAG/ASG/RULE subset): who may write which PVs. "
             "Default: everyone who can reach the IOC (loopback only by default) may write.")
