"""The configuration's error type and how keys and values appear in its messages.

Shared by the loader, the legacy translation and the model checks (which the loader calls),
so none of them imports another's internals: no import circle inside ``config``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


__all__ = ["ConfigError", "key_repr"]
