"""EPICS access security files (ACF): the parser and the rule model (no enforcement here).

The syntax is EPICS base's (Application Developer's Guide, "Access Security"; asLib of
base 7.0.9 for ``METHOD``/``AUTHORITY``/``PROTOCOL``/``RPC``)::

    UAG(<name>) [{ <user> [, <user> ...] }]
    HAG(<name>) [{ <host> [, <host> ...] }]
    AUTHORITY([<id>,] "<CA common name>") [{ AUTHORITY(...) ... }]     # 7.0.9, nests
    ASG(<name>) [{
        [INP<A-L>(<pvname>) ...]
        RULE(<level>, NONE | READ | WRITE | RPC [, NOTRAPWRITE | TRAPWRITE]) [{
            [UAG(<name> [, <name> ...])]
            [HAG(<name> [, <name> ...])]
            [CALC("<expression of A-L>")]
            [METHOD(<method> [, ...])]       # ca, x509, anonymous   (7.0.9)
            [AUTHORITY(<id> [, ...])]        # x509 only            (7.0.9)
            [PROTOCOL(<protocol> [, ...])]   # tcp, tls             (7.0.9)
        }]
        ...
    }]

Macros are substituted first, as ``asSetSubstitutions`` does with macLib: ``$(NAME)``,
``${NAME}`` and ``$(NAME=default)``. A macro without value or default, and anything this
parser does not know (``SAG``, an unknown keyword), is refused with an :class:`AcfError`
naming the file and line -- a file is never half applied.

How a Channel Access client is judged (asLib): in the PV's ASG every RULE whose level is
>= the field's level (every picodaq PV is a ``VAL``-like ASL0 field) and whose conditions
all hold contributes its access; the client gets the highest (``WRITE`` implies ``READ``;
``RPC`` grants nothing over CA). A CA client's METHOD is ``ca``, its PROTOCOL ``tcp``; it has
no certificate, so a rule with ``AUTHORITY`` never applies to it. ``CALC`` holds when the
result is 1 (0.99 < r < 1.01), evaluated with the *current* values of the ASG's ``INP``
PVs -- PVs of this IOC, bound with :meth:`AccessSecurity.bind`; an INP PV in INVALID alarm
makes the CALC false.
"""

from __future__ import annotations

import logging
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caproto import AccessRights

log = logging.getLogger("picodaq_ioc.ioc.access")

__all__ = ["AcfError", "AccessSecurity", "Asg", "Rule", "compile_calc", "load_acf", "parse_acf",
           "substitute_macros"]

LEVELS: dict[str, AccessRights] = {
    "NONE": AccessRights.NO_ACCESS,
    "READ": AccessRights.READ,
    "WRITE": AccessRights.READ | AccessRights.WRITE,
    "RPC": AccessRights.NO_ACCESS,  # PVAccess RPC; grants nothing over Channel Access
}
_OPTIONS = ("TRAPWRITE", "NOTRAPWRITE")
_INPUTS = "ABCDEFGHIJKL"
#: what a Channel Access client presents (7.0.9 identity): method and protocol
CA_METHOD, CA_PROTOCOL = "ca", "tcp"
METHODS = ("ca", "x509", "anonymous")
PROTOCOLS = ("tcp", "tls")


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


# --------------------------------------------------------------------------- macros

_MACRO_RE = re.compile(r"\$(?:\(([^()=]*)(?:=([^()]*))?\)|\{([^{}=]*)(?:=([^{}]*))?\})")


def substitute_macros(text: str, macros: Mapping[str, str], filename: str = "<string>") -> str:
    """``$(NAME)``, ``${NAME}``, ``$(NAME=default)`` replaced line by line (macLib's forms);
    an undefined macro without default is an :class:`AcfError` naming the line."""
    out = []
    for no, line in enumerate(text.split("\n"), start=1):
        def repl(m: re.Match, no=no) -> str:
            name = (m.group(1) if m.group(1) is not None else m.group(3)).strip()
            default = m.group(2) if m.group(1) is not None else m.group(4)
            if name in macros:
                return str(macros[name])
            if default is not None:
                return default
            raise AcfError(f"macro $({name}) has no value and no default (give it with "
                           f"--acf-macros {name}=... or write $({name}=default))", filename, no)
        code, sep, comment = line, "", ""
        if "#" in line and line.partition("#")[0].count('"') % 2 == 0:
            code, sep, comment = line.partition("#")  # comments are not substituted
        for _ in range(20):  # innermost first: $(A=$(B)) resolves $(B), then $(A=...)
            new = _MACRO_RE.sub(repl, code)
            if new == code:
                break
            code = new
        else:
            raise AcfError("macros nested too deeply (or recursive)", filename, no)
        out.append(code + sep + comment)
    return "\n".join(out)


# --------------------------------------------------------------------------- CALC

_CALC_TOKEN = re.compile(r"\s*(?:(?P<num>\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
                         r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                         r"|(?P<op>\*\*|>>|<<|>=|<=|!=|==|&&|\|\||[-+*/%^<>=#!~&|?:(),]))")
_FUNCS1: dict[str, Callable[[float], float]] = {
    "ABS": abs, "SQR": math.sqrt, "SQRT": math.sqrt, "EXP": math.exp, "LN": math.log, "LOG": math.log10,
    "LOGE": math.log, "FLOOR": math.floor, "CEIL": math.ceil, "NINT": lambda x: float(round(x)),
    "SIN": math.sin, "COS": math.cos, "TAN": math.tan, "ASIN": math.asin, "ACOS": math.acos,
    "ATAN": math.atan, "ISNAN": lambda x: float(math.isnan(x)), "FINITE": lambda x: float(math.isfinite(x)),
    "NOT": lambda x: float(not x),
}
_FUNCSN: dict[str, Callable[..., float]] = {"MIN": min, "MAX": max}
_CONSTS = {"PI": math.pi, "D2R": math.pi / 180, "R2D": 180 / math.pi, "NAN": math.nan, "INF": math.inf}


def _b(x: float) -> float:
    return float(bool(x))


#: binary operators by precedence level (low -> high), as in EPICS calc
_BINARY: list[dict[str, Callable[[float, float], float]]] = [
    {"||": lambda a, b: _b(a or b)},
    {"&&": lambda a, b: _b(a and b)},
    {"|": lambda a, b: float(int(a) | int(b)), "OR": lambda a, b: float(int(a) | int(b)),
     "XOR": lambda a, b: float(int(a) ^ int(b))},
    {"&": lambda a, b: float(int(a) & int(b)), "AND": lambda a, b: float(int(a) & int(b))},
    {"=": lambda a, b: _b(a == b), "==": lambda a, b: _b(a == b), "!=": lambda a, b: _b(a != b),
     "#": lambda a, b: _b(a != b), "<": lambda a, b: _b(a < b), "<=": lambda a, b: _b(a <= b),
     ">": lambda a, b: _b(a > b), ">=": lambda a, b: _b(a >= b)},
    {"<<": lambda a, b: float(int(a) << int(b)), ">>": lambda a, b: float(int(a) >> int(b))},
    {"+": operator.add, "-": operator.sub},
    {"*": operator.mul, "/": lambda a, b: a / b if b else math.copysign(math.inf, a) if a else math.nan,
     "%": lambda a, b: math.fmod(a, b) if b else math.nan},
]


def compile_calc(expr: str) -> tuple[Callable[[Mapping[str, float]], float], frozenset[str]]:
    """An EPICS calc expression (no assignments) as ``f(values) -> float`` and the set of
    inputs (A-L) it uses. Raises ``ValueError`` with the problem."""
    toks: list[str] = []
    pos = 0
    s = expr.strip()
    while pos < len(s):
        m = _CALC_TOKEN.match(s, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"unexpected {s[pos]!r} at position {pos + 1}")
        toks.append(m.group(m.lastgroup))
        pos = m.end()
        while pos < len(s) and s[pos].isspace():
            pos += 1
    if not toks:
        raise ValueError("empty expression")
    used: set[str] = set()
    i = 0

    def peek() -> str | None:
        return toks[i].upper() if i < len(toks) else None

    def take() -> str:
        nonlocal i
        if i >= len(toks):
            raise ValueError("unexpected end of expression")
        i += 1
        return toks[i - 1]

    def ternary():
        cond = binary(0)
        if peek() == "?":
            take()
            a = ternary()
            if take() != ":":
                raise ValueError("'?' without ':'")
            b = ternary()
            return lambda v: a(v) if cond(v) else b(v)
        return cond

    def binary(level: int):
        if level == len(_BINARY):
            return unary()
        left = binary(level + 1)
        while peek() in _BINARY[level]:
            fn = _BINARY[level][take().upper()]
            right = binary(level + 1)
            left = (lambda f, a, b: lambda v: f(a(v), b(v)))(fn, left, right)
        return left

    def unary():
        t = peek()
        if t in ("-", "+", "!", "~"):
            take()
            x = unary()
            return {"-": lambda v: -x(v), "+": x, "!": lambda v: _b(not x(v)),
                    "~": lambda v: float(~int(x(v)))}[t]
        return power()

    def power():
        base = atom()
        if peek() in ("^", "**"):
            take()
            exp = unary()  # right associative
            return lambda v: float(base(v) ** exp(v))
        return base

    def atom():
        t = take()
        u = t.upper()
        if t == "(":
            x = ternary()
            if take() != ")":
                raise ValueError("missing ')'")
            return x
        if re.fullmatch(r"\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?", t):
            c = float(t)
            return lambda v: c
        if u in _INPUTS and len(u) == 1:
            used.add(u)
            return lambda v: v[u]
        if u in _CONSTS:
            c = _CONSTS[u]
            return lambda v: c
        if u in _FUNCS1 or u in _FUNCSN:
            if take() != "(":
                raise ValueError(f"{u} needs '('")
            args = [ternary()]
            while peek() == ",":
                take()
                args.append(ternary())
            if take() != ")":
                raise ValueError(f"missing ')' after the arguments of {u}")
            if u in _FUNCS1:
                if len(args) != 1:
                    raise ValueError(f"{u} takes one argument")
                f1, a0 = _FUNCS1[u], args[0]
                return lambda v: float(f1(a0(v)))
            fn = _FUNCSN[u]
            return lambda v: float(fn(a(v) for a in args))
        if u == "VAL" or (len(u) == 2 and u[0] in _INPUTS and u[1] == "A"):
            raise ValueError(f"{t!r} is not allowed in an access security CALC (inputs are A-L)")
        raise ValueError(f"unknown name {t!r} (inputs are A-L)")

    tree = ternary()
    if i != len(toks):
        raise ValueError(f"unexpected {toks[i]!r}" + (" (assignments are not allowed)" if toks[i] == ":" else ""))

    def evaluate(values: Mapping[str, float]) -> float:
        try:
            return float(tree(values))
        except (ArithmeticError, ValueError):
            return math.nan

    return evaluate, frozenset(used)


# --------------------------------------------------------------------------- model

@dataclass(frozen=True)
class Rule:
    """One ``RULE(level, access[, TRAPWRITE]) { ... }`` of an ASG."""

    level: int
    access: str  # NONE | READ | WRITE | RPC
    uags: tuple[str, ...] = ()
    hags: tuple[str, ...] = ()
    trapwrite: bool = False
    line: int = 0
    calc: str | None = None
    methods: tuple[str, ...] = ()
    authorities: tuple[str, ...] = ()
    protocols: tuple[str, ...] = ()
    _calc_fn: Callable[[Mapping[str, float]], float] | None = field(default=None, compare=False, repr=False)


@dataclass
class Asg:
    """An access security group: its INP links (letter -> (PV name, line)) and rules."""

    name: str
    rules: tuple[Rule, ...] = ()
    inputs: dict[str, tuple[str, int]] = field(default_factory=dict)


#: the current value of a bound INP PV: (value, invalid alarm) or None when unknown
InputReader = Callable[[], tuple[float, bool] | None]


@dataclass
class AccessSecurity:
    """A parsed access security file.

    Attributes
    ----------
    uags, hags : dict
        Group name -> set of user names / lower-cased host names.
    asgs : dict
        Access security group name -> its rules in file order (``groups`` has INP links too).
    authorities : dict
        ``AUTHORITY`` id (or name) -> certificate authority common name.
    filename : str
        Where it came from (for messages).
    """

    uags: dict[str, frozenset[str]] = field(default_factory=dict)
    hags: dict[str, frozenset[str]] = field(default_factory=dict)
    groups: dict[str, Asg] = field(default_factory=dict)
    authorities: dict[str, str] = field(default_factory=dict)
    filename: str = "<string>"
    _readers: dict[str, InputReader] = field(default_factory=dict, repr=False)
    _cache: dict[tuple[str, str, str, int], AccessRights] = field(default_factory=dict, repr=False)

    @property
    def asgs(self) -> dict[str, tuple[Rule, ...]]:
        return {name: g.rules for name, g in self.groups.items()}

    def input_pvs(self) -> dict[str, list[tuple[str, str, int]]]:
        """PV name -> [(ASG, INP letter, line)] of every INP link."""
        out: dict[str, list[tuple[str, str, int]]] = {}
        for g in self.groups.values():
            for letter, (pv, line) in g.inputs.items():
                out.setdefault(pv, []).append((g.name, letter, line))
        return out

    def bind(self, readers: Mapping[str, InputReader]) -> None:
        """Connect the INP links: ``readers[pvname]()`` gives the PV's current value.
        An INP naming a PV without reader is an :class:`AcfError` naming its line."""
        for pv, uses in self.input_pvs().items():
            if pv not in readers:
                asg, letter, line = uses[0]
                raise AcfError(f"ASG({asg}) INP{letter}({pv}): not a PV of this IOC (CALC conditions "
                               "are evaluated on the IOC's own PVs)", self.filename, line)
        self._readers = dict(readers)
        self._cache.clear()

    def _calc_holds(self, group: Asg, rule: Rule) -> bool:
        values: dict[str, float] = {}
        for letter, (pv, _) in group.inputs.items():
            reader = self._readers.get(pv)
            got = reader() if reader is not None else None
            if got is None or got[1]:  # unknown or INVALID alarm: the CALC is false (asLib)
                return False
            values[letter] = float(got[0])
        r = rule._calc_fn(values) if rule._calc_fn is not None else math.nan
        return 0.99 < r < 1.01

    def rights(self, asg: str, host: str | None, user: str | None, *, asl: int = 0,
               method: str = CA_METHOD, protocol: str = CA_PROTOCOL) -> AccessRights:
        """Access rights of client ``user``@``host`` on a field of level ``asl`` of a PV in
        group ``asg`` (unknown groups fall back to ``DEFAULT``; no ``DEFAULT``: no access)."""
        host_s = (host or "").casefold()
        user_s = user or ""
        group = self.groups.get(asg) or self.groups.get("DEFAULT")
        if group is None:
            return AccessRights.NO_ACCESS
        dynamic = bool(group.inputs)  # CALC results change with the INP values: never cached
        key = (group.name, host_s, user_s, asl)
        if not dynamic and method == CA_METHOD and protocol == CA_PROTOCOL and key in self._cache:
            return self._cache[key]
        granted = AccessRights.NO_ACCESS
        for rule in group.rules:
            if asl > rule.level:
                continue
            if rule.uags and not any(user_s in self.uags[g] for g in rule.uags):
                continue
            if rule.hags and not any(host_s in self.hags[g] for g in rule.hags):
                continue
            if rule.methods and method.casefold() not in rule.methods:
                continue
            if rule.protocols and protocol.casefold() not in rule.protocols:
                continue
            if rule.authorities:  # x509 only: a CA client has no certificate authority
                continue
            if rule.calc is not None and not self._calc_holds(group, rule):
                continue
            granted |= LEVELS[rule.access]
        if not dynamic and method == CA_METHOD and protocol == CA_PROTOCOL:
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
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise AcfError(f"unexpected character {text[pos]!r}", filename, line)
        kind, s = m.lastgroup, m.group()
        if kind == "nl":
            line += 1
        elif kind == "string":
            toks.append(_Tok("string", re.sub(r"\\(.)", r"\1", s[1:-1]), line))
        elif kind == "badstring":
            raise AcfError("unterminated quoted string", filename, line)
        elif kind == "punct":
            toks.append(_Tok(s, s, line))
        elif kind == "word":
            toks.append(_Tok("word", s, line))
        pos = m.end()
    toks.append(_Tok("eof", "end of file", line))
    return toks


def _show(tok: _Tok) -> str:
    if tok.kind == "eof":
        return "end of file"
    return f'"{tok.text}"' if tok.kind == "string" else repr(tok.text)


# --------------------------------------------------------------------------- parser

class _Parser:
    def __init__(self, toks: list[_Tok], filename: str) -> None:
        self.toks = toks
        self.i = 0
        self.filename = filename
        self.acf = AccessSecurity(filename=filename)
        self.refs: list[tuple[str, str, _Tok]] = []  # (kind, name, token) to check at the end

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        tok = self.toks[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def error(self, problem: str, tok: _Tok | None = None) -> AcfError:
        return AcfError(problem, self.filename, (tok or self.peek()).line)

    def expect(self, kind: str) -> _Tok:
        tok = self.next()
        if tok.kind != kind:
            raise self.error(f"expected {kind!r}, found {_show(tok)}", tok)
        return tok

    def name(self, what: str) -> _Tok:
        tok = self.next()
        if tok.kind not in ("word", "string") or tok.text == "":
            raise self.error(f"expected {what}, found {_show(tok)}", tok)
        return tok

    def names(self, what: str, close: str) -> list[_Tok]:
        """``name {, name}`` up to (not including) ``close``; may be empty."""
        out: list[_Tok] = []
        if self.peek().kind == close:
            return out
        while True:
            out.append(self.name(what))
            if self.peek().kind == ",":
                self.next()
            elif self.peek().kind == close:
                return out
            else:
                raise self.error(f"expected ',' or {close!r} after {what}, found {_show(self.peek())}")

    def args(self, what: str) -> list[_Tok]:
        """``( name {, name} )``."""
        self.expect("(")
        out = self.names(what, ")")
        self.expect(")")
        return out

    @staticmethod
    def kw(tok: _Tok) -> str:
        return tok.text.upper() if tok.kind == "word" else ""

    # grammar ---------------------------------------------------------------------
    def parse(self) -> AccessSecurity:
        acf = self.acf
        while self.peek().kind != "eof":
            tok = self.next()
            kw = self.kw(tok)
            if kw in ("UAG", "HAG"):
                (gname,) = self.exactly(self.args(f"{kw} name"), 1, kw, tok)
                members: list[_Tok] = []
                if self.peek().kind == "{":
                    self.next()
                    members = self.names("a user name" if kw == "UAG" else "a host name", "}")
                    self.expect("}")
                table = acf.uags if kw == "UAG" else acf.hags
                if gname.text in table:
                    raise self.error(f"{kw}({gname.text}) defined twice", gname)
                table[gname.text] = frozenset(m.text if kw == "UAG" else m.text.casefold() for m in members)
            elif kw == "AUTHORITY":
                self.authority(tok)
            elif kw == "ASG":
                self.asg(tok)
            elif kw in ("RULE", "CALC", "METHOD", "PROTOCOL") or re.fullmatch(r"INP[A-L]", kw):
                raise self.error(f"{tok.text} is only allowed inside an ASG {{ ... }} block", tok)
            else:
                raise self.error(f"{_show(tok)} is not supported here; allowed at the top level: "
                                 "UAG, HAG, AUTHORITY, ASG", tok)
        for kind, gname, tok in self.refs:
            table = {"UAG": acf.uags, "HAG": acf.hags, "AUTHORITY": acf.authorities}[kind]
            if gname not in table:
                raise self.error(f"{kind}({gname}) is used but not defined; defined: "
                                 f"{', '.join(sorted(table)) or 'none'}", tok)
        return acf

    def exactly(self, toks: list[_Tok], n: int, what: str, at: _Tok) -> list[_Tok]:
        if len(toks) != n:
            raise self.error(f"{what}(...) takes {n} name{'s' if n > 1 else ''}, found {len(toks)}", at)
        return toks

    def authority(self, tok: _Tok) -> None:
        """``AUTHORITY([id,] "CN") [{ AUTHORITY(...) ... }]`` (7.0.9): a tree of certificate
        authorities; ids (or the names themselves) can be referred to from rules."""
        args = self.args("AUTHORITY id or name")
        if len(args) not in (1, 2):
            raise self.error(f"AUTHORITY takes [id,] \"name\", found {len(args)} arguments", tok)
        ident, cn = (args[0].text, args[1].text) if len(args) == 2 else (args[0].text, args[0].text)
        self.acf.authorities[ident] = cn
        if self.peek().kind == "{":
            self.next()
            while self.peek().kind != "}":
                sub = self.next()
                if self.kw(sub) != "AUTHORITY":
                    raise self.error(f"only AUTHORITY(...) may be nested in AUTHORITY, found {_show(sub)}", sub)
                self.authority(sub)
            self.expect("}")

    def asg(self, tok: _Tok) -> None:
        (gname,) = self.exactly(self.args("ASG name"), 1, "ASG", tok)
        if gname.text in self.acf.groups:
            raise self.error(f"ASG({gname.text}) defined twice", gname)
        group = Asg(gname.text)
        rules: list[Rule] = []
        if self.peek().kind == "{":
            self.next()
            while self.peek().kind != "}":
                sub = self.next()
                kw = self.kw(sub)
                m = re.fullmatch(r"INP([A-Z])", kw)
                if m:
                    if m.group(1) not in _INPUTS:
                        raise self.error(f"{sub.text}: inputs are INPA ... INPL", sub)
                    (pv,) = self.exactly(self.args("PV name"), 1, sub.text, sub)
                    if m.group(1) in group.inputs:
                        raise self.error(f"{sub.text} given twice in ASG({gname.text})", sub)
                    group.inputs[m.group(1)] = (pv.text, sub.line)
                elif kw == "RULE":
                    rules.append(self.rule(sub, group))
                elif sub.kind == "eof":
                    raise self.error(f"ASG({gname.text}) is not closed with '}}'", sub)
                else:
                    raise self.error(f"{_show(sub)} is not supported inside ASG; allowed: INPA ... INPL, RULE",
                                     sub)
            self.expect("}")
        group.rules = tuple(rules)
        self.acf.groups[gname.text] = group

    def rule(self, tok: _Tok, group: Asg) -> Rule:
        self.expect("(")
        lev = self.name("access security level 0 or 1")
        if lev.text not in ("0", "1"):
            raise self.error(f"access security level must be 0 or 1, found {lev.text!r}", lev)
        self.expect(",")
        acc = self.name("NONE, READ, WRITE or RPC")
        access = acc.text.upper()
        if access not in LEVELS:
            raise self.error(f"unknown access {acc.text!r}; allowed: NONE, READ, WRITE, RPC", acc)
        trap = False
        if self.peek().kind == ",":
            self.next()
            opt = self.name("TRAPWRITE or NOTRAPWRITE")
            if opt.text.upper() not in _OPTIONS:
                raise self.error(f"unknown rule option {opt.text!r}; allowed: TRAPWRITE, NOTRAPWRITE", opt)
            trap = opt.text.upper() == "TRAPWRITE"
        self.expect(")")
        parts: dict[str, list[str]] = {"UAG": [], "HAG": [], "METHOD": [], "AUTHORITY": [], "PROTOCOL": []}
        calc: str | None = None
        calc_fn = None
        if self.peek().kind == "{":
            self.next()
            while self.peek().kind != "}":
                sub = self.next()
                kw = self.kw(sub)
                if kw in parts:
                    names = self.args(f"{kw} name")
                    if not names:
                        what = "group name" if kw in ("UAG", "HAG") else "name"
                        raise self.error(f"{kw}() needs at least one {what}", sub)
                    for nm in names:
                        value = nm.text
                        if kw in ("UAG", "HAG", "AUTHORITY"):
                            self.refs.append((kw, value, nm))
                        elif kw == "METHOD" and value.casefold() not in METHODS:
                            raise self.error(f"METHOD {value!r}: allowed: {', '.join(METHODS)}", nm)
                        elif kw == "PROTOCOL" and value.casefold() not in PROTOCOLS:
                            raise self.error(f"PROTOCOL {value!r}: allowed: TCP, TLS", nm)
                        parts[kw].append(value.casefold() if kw in ("METHOD", "PROTOCOL") else value)
                elif kw == "CALC":
                    if calc is not None:
                        raise self.error("CALC given twice in one RULE", sub)
                    (expr,) = self.exactly(self.args("calculation"), 1, "CALC", sub)
                    try:
                        calc_fn, used = compile_calc(expr.text)
                    except ValueError as ex:
                        raise self.error(f"CALC({expr.text!r}): {ex}", expr) from None
                    missing = sorted(used - set(group.inputs))
                    if missing:
                        raise self.error(f"CALC({expr.text!r}) uses {', '.join(missing)} but ASG({group.name}) "
                                         f"has no INP{', INP'.join(missing)} (define INP<letter>(<pv>) "
                                         "before the RULE)", expr)
                    calc = expr.text
                elif sub.kind == "eof":
                    raise self.error("RULE is not closed with '}'", sub)
                else:
                    raise self.error(f"{_show(sub)} is not supported inside RULE; allowed: UAG, HAG, CALC, "
                                     "METHOD, AUTHORITY, PROTOCOL", sub)
            self.expect("}")
        return Rule(level=int(lev.text), access=access, uags=tuple(parts["UAG"]), hags=tuple(parts["HAG"]),
                    trapwrite=trap, line=tok.line, calc=calc, methods=tuple(parts["METHOD"]),
                    authorities=tuple(parts["AUTHORITY"]), protocols=tuple(parts["PROTOCOL"]),
                    _calc_fn=calc_fn)


def parse_acf(text: str, filename: str = "<string>", macros: Mapping[str, str] | None = None) -> AccessSecurity:
    """Parse access security file text (macros substituted first).

    Raises
    ------
    AcfError
        With the file name and 1-based line number of the first problem.
    """
    text = substitute_macros(text, macros or {}, filename)
    acf = _Parser(_tokenize(text, filename), filename).parse()
    if "DEFAULT" not in acf.groups:
        log.warning("%s: no ASG(DEFAULT): PVs not mapped to another group get no access at all", filename)
    return acf


def load_acf(path: str | Path, macros: Mapping[str, str] | None = None) -> AccessSecurity:
    """Read and parse an access security file (see :func:`parse_acf`)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AcfError("access security file not found", str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AcfError(f"cannot read access security file ({exc.__class__.__name__}: {exc})", str(p)) from None
    return parse_acf(text, str(p), macros)


def parse_macros(spec: str | None) -> dict[str, str]:
    """``"A=1,B=two"`` (asSetSubstitutions' form) as a dict."""
    out: dict[str, str] = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise AcfError(f"macro definition {part.strip()!r}: expected NAME=value", "--acf-macros")
        out[name.strip()] = value.strip()
    return out


def pv_reader(chan: Any) -> InputReader:
    """An INP reader of a caproto ChannelData: its value as a number (enum: index) and
    whether it is in INVALID alarm."""
    def read() -> tuple[float, bool] | None:
        v = chan.value
        strings = getattr(chan, "enum_strings", None)
        if strings and isinstance(v, str):
            v = list(strings).index(v) if v in strings else math.nan
        try:
            x = float(v[0] if hasattr(v, "__len__") and not isinstance(v, (str, bytes)) else v)
        except (TypeError, ValueError, IndexError):
            return None
        sev = getattr(getattr(chan, "alarm", None), "severity", 0)
        return x, int(sev) == 3  # INVALID_ALARM
    return read
