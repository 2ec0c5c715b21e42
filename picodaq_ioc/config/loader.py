"""Load a configuration file (YAML or JSON, native or legacy picoDAQ) into a :class:`Config`.

Every problem — a missing file, a syntax error, an unknown key, a wrong type, an impossible
value — surfaces as one :class:`ConfigError` whose message names the file, the key path, the
offending value and what is allowed.  No other exception escapes :func:`load_config`.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import _MISSING, ConfigError, _loc_to_key, _rescale_allowed
from .files import read_mapping
from .schema import ALLOWED_SEP, Config

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- file reading


# --------------------------------------------------------------------------- validation errors


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
