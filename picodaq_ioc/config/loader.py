"""Load a configuration file (YAML or JSON, native or legacy picoDAQ) into a :class:`Config`.

Every problem — a missing file, a syntax error, an unknown key, a wrong type, an impossible
value — surfaces as one :class:`ConfigError` whose message names the file, the key path, the
offending value and what is allowed.  No other exception escapes :func:`load_config`.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .schema import ALLOWED_SEP, Config

log = logging.getLogger(__name__)

_MISSING: Any = object()


class ConfigError(Exception):
    """A configuration that cannot be used, with the details a user needs to fix it.

    Attributes
    ----------
    path : str or None
        The file the problem is in.
    key : str or None
        Key path, e.g. ``channels.A.range`` or ``ChanRanges[1]``.
    value : Any
        The offending value (``None`` when there is none, e.g. a missing file).
    allowed : str or None
        What is allowed, in words (enum values, limits, a "did you mean" suggestion).
    problem : str
        The bare description of the problem.
    """

    def __init__(
        self,
        problem: str,
        *,
        path: str | Path | None = None,
        key: str | None = None,
        value: Any = _MISSING,
        allowed: str | None = None,
        more: int = 0,
    ) -> None:
        self.problem = problem
        self.more = more
        self.path = None if path is None else str(path)
        self.key = key
        self.has_value = value is not _MISSING
        self.value = None if value is _MISSING else value
        self.allowed = allowed
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = []
        if self.path:
            parts.append(f"{self.path}:")
        if self.key:
            parts.append(f"{self.key}:")
        parts.append(self.problem)
        text = " ".join(parts)
        if self.has_value:
            text += f" (got {_show(self.value)})"
        if self.allowed:
            text += f"; allowed: {self.allowed}"
        if self.more:
            text += f" [{self.more} more problem{'s' if self.more > 1 else ''} after fixing this]"
        # always one line, whatever odd characters a key or value holds
        return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)

    def __str__(self) -> str:
        return self.message


def _show(value: Any, limit: int = 80) -> str:
    try:
        text = repr(value)
    except Exception:  # pragma: no cover - exotic objects
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- file reading


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-9`` / ``100E3`` as floats (YAML 1.2 style; PyYAML's
    YAML 1.1 resolver needs a dot, and picoDAQ files write ``sampleTime: 10E-6``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml) or JSON (.json) file whose top level must be a mapping.

    Any other extension is parsed as YAML (JSON is valid YAML 1.2 for practical purposes).

    Raises
    ------
    ConfigError
        File missing or unreadable, syntax error (with line/column), top level not a mapping.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", path=p) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a configuration file", path=p) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read file ({exc.__class__.__name__}: {exc})", path=p) from None
    suffix = p.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}", path=p
            ) from None
    else:
        try:
            data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"YAML syntax error{where}: {what}", path=p) from None
        except Exception as exc:  # e.g. RecursionError on pathological nesting
            raise ConfigError(f"cannot parse file ({exc.__class__.__name__})", path=p) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            "the top level must be a mapping of keys to values",
            path=p,
            value=type(data).__name__,
            allowed="a YAML/JSON mapping such as 'device: {...}' or picoDAQ keys 'PSmodel: 2000a'",
        )
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError("keys must be strings", path=p, value=bad[0])
    return data


# --------------------------------------------------------------------------- validation errors


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_\-\[\]]+$")


def key_repr(part: Any) -> str:
    """A key as shown in messages: bare if plain, quoted (repr) if it holds odd characters."""
    s = str(part)
    return s if _PLAIN_KEY.match(s) else repr(s)


def _loc_to_key(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + key_repr(part)
    return out


def _model_at(loc: Sequence[Any]) -> type[BaseModel] | None:
    """The pydantic model class that holds the last element of ``loc`` (for suggestions)."""
    from typing import get_args, get_origin

    model: Any = Config
    for part in loc[:-1]:
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(part))
            if field is None:
                return None
            model = field.annotation
        elif isinstance(part, int) or get_origin(model) in (dict, list):
            args = get_args(model)
            model = args[-1] if args else None
        else:
            return None
        while get_origin(model) is not None and get_origin(model) not in (dict, list):
            # Optional[X] / Union: take the first model-like argument
            args = [a for a in get_args(model) if a is not type(None)]
            model = args[0] if args else None
    if isinstance(model, type) and issubclass(model, BaseModel):
        return model
    return None


def _allowed_from_ctx(err: Mapping[str, Any]) -> str | None:
    ctx = err.get("ctx") or {}
    typ = err.get("type", "")
    if "expected" in ctx:
        return str(ctx["expected"])
    limits = {
        "greater_than": "> {gt}",
        "greater_than_equal": ">= {ge}",
        "less_than": "< {lt}",
        "less_than_equal": "<= {le}",
    }
    if typ in limits:
        return limits[typ].format(**ctx)
    if typ in ("too_short", "too_long"):
        lo, hi = ctx.get("min_length"), ctx.get("max_length")
        if typ == "too_short":
            return f"at least {lo} item(s)"
        return f"at most {hi} item(s)"
    return None


_TYPE_WORDS = {
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping (key: value)",
    "list_type": "a list",
    "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
}


def _field_limits(model: type[BaseModel] | None, name: str) -> str | None:
    if model is None or name not in model.model_fields:
        return None
    parts: list[str] = []
    for m in model.model_fields[name].metadata:
        for attr, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            v = getattr(m, attr, None)
            if v is not None:
                parts.append(f"{sym} {v}")
    return " and ".join(parts) or None


def error_from_validation(
    exc: ValidationError,
    path: str | Path | None,
    data: Mapping[str, Any] | None = None,
    keymap: Mapping[tuple, Any] | None = None,
) -> ConfigError:
    """Build one :class:`ConfigError` from the first problem of a pydantic ``ValidationError``.

    ``keymap`` maps native key paths (tuples) to :class:`~picodaq_ioc.config.legacy.LegacyKey`
    entries so that problems in translated legacy files are reported under the original key.
    """
    errors = exc.errors(include_url=False)
    # prefer the most specific (deepest) error; pydantic reports union branches separately
    err = errors[0]
    loc = tuple(err.get("loc", ()))
    typ = err.get("type", "")
    value = err.get("input", _MISSING)
    msg = str(err.get("msg", "invalid value"))
    allowed: str | None = _allowed_from_ctx(err)
    more = len({tuple(e.get("loc", ())) for e in errors}) - 1

    if typ == "extra_forbidden":
        name = str(loc[-1]) if loc else "?"
        model = _model_at(loc)
        choices = sorted(model.model_fields) if model is not None else []
        choices = [c for c in choices if c != "source_file"]
        problem = "unknown key"
        sugg = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
        if not sugg:
            from .legacy import ALL_LEGACY_KEYS

            if not loc[:-1]:
                sugg = difflib.get_close_matches(name, ALL_LEGACY_KEYS, n=1, cutoff=0.6)
        if sugg:
            problem += f" (did you mean {sugg[0]!r}?)"
        allowed = ", ".join(choices) if choices else None
        value = _MISSING
        msg = problem
    elif typ in ("enum", "literal_error"):
        if isinstance(value, str):
            opts = [o.strip().strip("'") for o in (allowed or "").replace(" or ", ", ").split(",")]
            sugg = difflib.get_close_matches(value, opts, n=1, cutoff=0.5)
            if sugg:
                msg = f"not one of the allowed values (did you mean {sugg[0]!r}?)"
            else:
                msg = "not one of the allowed values"
        else:
            msg = "not one of the allowed values"
    elif typ in _TYPE_WORDS:
        msg = f"wrong type or value, expected {_TYPE_WORDS[typ]}"
        limits = _field_limits(_model_at(loc), str(loc[-1])) if loc else None
        allowed = _TYPE_WORDS[typ] + (f" {limits}" if limits else "")
    elif typ == "missing":
        msg = "required key is missing"
        value = _MISSING
        model = _model_at(loc)
        field = model.model_fields.get(str(loc[-1])) if model is not None and loc else None
        if field is not None and field.description:
            allowed = field.description
    elif typ == "value_error":
        msg = msg.removeprefix("Value error, ")
        if ALLOWED_SEP in msg:
            msg, allowed = msg.split(ALLOWED_SEP, 1)
        head, sep, rest = msg.partition(": ")
        if sep and isinstance(value, dict) and head in value:
            # a model-level validator naming the sub-key it is about
            loc = (*loc, head)
            value = value[head]
            msg = rest
        elif isinstance(value, dict):
            value = _MISSING
    if typ in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        msg = "out of range"
        limits = _field_limits(_model_at(loc), str(loc[-1])) if loc else None
        allowed = limits or allowed

    if loc and loc[-1] == "[key]":  # a mapping key (e.g. a channel name) was rejected
        loc = loc[:-1]
        msg = "not an allowed name here"
    key = _loc_to_key(loc)
    if keymap:
        lk = _lookup_keymap(keymap, loc)
        if lk is not None:
            key = lk.name
            if lk.file:
                path = lk.file
            if lk.value is not _MISSING and value is not _MISSING:
                value = lk.value
            if lk.scale != 1.0 and allowed:
                allowed = _rescale_allowed(allowed, lk.scale, lk.unit)
    return ConfigError(msg, path=path, key=key, value=value, allowed=allowed, more=max(more, 0))


def _lookup_keymap(keymap: Mapping[tuple, Any], loc: tuple) -> Any:
    for n in range(len(loc), 0, -1):
        lk = keymap.get(tuple(loc[:n]))
        if lk is not None:
            return lk
    return None


def _rescale_allowed(allowed: str, scale: float, unit: str) -> str:
    out = []
    for tok in allowed.split(" "):
        try:
            v = float(tok)
        except ValueError:
            out.append(tok)
            continue
        out.append(f"{v / scale:g}")
    return " ".join(out) + (f" {unit}" if unit else "")


# --------------------------------------------------------------------------- public API


def validate_data(
    data: Mapping[str, Any],
    path: str | Path | None = None,
    *,
    check_model: bool = True,
) -> Config:
    """Validate an already-parsed mapping (native or legacy layout) into a :class:`Config`.

    Parameters
    ----------
    data : Mapping
        Parsed YAML/JSON.
    path : str or Path, optional
        File the data came from: named in messages; relative paths in a legacy DAQ file
        (``DeviceFile``, ``BMfile``, ``PFfile``) are resolved against its directory.
    check_model : bool
        Also check the values against the model tables (ranges, channels, offsets ...).

    Raises
    ------
    ConfigError
    """
    from . import legacy

    where = None if path is None else str(path)
    keymap: dict[tuple, Any] = {}
    notices: list[str] = []
    if "source_file" in data:
        raise ConfigError("unknown key", path=where, key="source_file")
    pf_key = legacy.pulse_filter_key(data)
    if pf_key is not None:
        raise ConfigError(
            "this is a pulse-filter file (picoCosmo/picoDAQ PF*.yaml), not a DAQ configuration: put it "
            "under `analysis:` of a configuration (`analysis: [{module: pulse, <its keys>}]`) or name it as "
            "`PFfile:` in a picoCosmo DAQ file (*.daq)", path=where, key=pf_key)
    if legacy.is_legacy(data):
        data, keymap, notices = legacy.translate(data, path)
    try:
        cfg = Config.model_validate(dict(data))
    except ValidationError as exc:
        raise error_from_validation(exc, where, data, keymap) from None
    except ConfigError:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise ConfigError(f"invalid configuration ({exc.__class__.__name__}: {exc})", path=where) from None
    object.__setattr__(cfg, "source_file", where)
    cfg.notices.extend(notices)
    if check_model:
        from .limits import check_against_model

        cfg.notices.extend(check_against_model(cfg, where, keymap))
    return cfg


def load_config(path: str | Path, *, check_model: bool = True) -> Config:
    """Load and validate a configuration file.

    Parameters
    ----------
    path : str or Path
        ``.yaml``/``.yml`` or ``.json`` (other extensions are tried as YAML). Native layout
        (see :mod:`picodaq_ioc.config.schema`) or the original picoDAQ/picoCosmo keys
        (device file, buffer-manager file, or a DAQ file naming ``DeviceFile``/``BMfile``).
    check_model : bool
        Check values against the scope model tables (default true).

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        The only exception raised; its message names the file, key, value and what is allowed.
    """
    try:
        data = read_mapping(path)
        return validate_data(data, path, check_model=check_model)
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError("configuration nested too deeply", path=str(path)) from None


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def suggest(name: str, choices: Iterable[str]) -> str | None:
    """Closest match of ``name`` in ``choices`` (difflib), or None."""
    m = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return m[0] if m else None


__all__ = ["ConfigError", "error_from_validation", "load_config", "read_mapping", "suggest", "validate_data"]
