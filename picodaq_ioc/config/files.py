"""Reading a configuration file (YAML or JSON) into a mapping."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

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


__all__ = ["read_mapping"]
