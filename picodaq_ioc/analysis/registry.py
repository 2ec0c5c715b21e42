"""Analysis module registry: built-in modules by name, user modules by import path.

``module: pulse`` selects a built-in; ``module: mypkg.mymodule:MyAnalysis`` imports
``mypkg.mymodule`` and takes the class ``MyAnalysis`` (a subclass of
:class:`~picodaq_ioc.analysis.base.AnalysisModule`). Nothing is ``exec``-ed.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from .base import AnalysisConfigError, AnalysisModule

__all__ = ["BUILTINS", "create_module", "resolve"]

BUILTINS: dict[str, str] = {
    "pulse": "picodaq_ioc.analysis.pulse_filter:PulseFilter",
    "voltmeter": "picodaq_ioc.analysis.voltmeter:VoltMeter",
    "histogram": "picodaq_ioc.analysis.histograms:HistogramModule",
    "rates": "picodaq_ioc.analysis.rate_history:RateHistory",
}
_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
_ALLOWED = ", ".join(BUILTINS) + ", or an import path 'package.module:Class'"


def resolve(module: str) -> type[AnalysisModule]:
    """The class for a built-in name or a ``package.module:Class`` path."""
    spec = BUILTINS.get(module.strip().lower(), module.strip())
    if not _PATH.match(spec):
        raise AnalysisConfigError("unknown analysis module", key="module", value=module, allowed=_ALLOWED)
    mod_name, cls_name = spec.split(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise AnalysisConfigError(f"cannot import {mod_name!r}: {exc}", key="module", value=module,
                                  allowed=_ALLOWED) from None
    cls = getattr(mod, cls_name, None)
    if cls is None:
        raise AnalysisConfigError(f"module {mod_name!r} has no attribute {cls_name!r}", key="module",
                                  value=module, allowed=_ALLOWED)
    if not (isinstance(cls, type) and issubclass(cls, AnalysisModule)):
        raise AnalysisConfigError(f"{spec} is not a subclass of picodaq_ioc.analysis.base.AnalysisModule",
                                  key="module", value=module)
    return cls


def create_module(section: Any, index: int = 0) -> AnalysisModule:
    """Build a module from one ``analysis:`` entry (an ``AnalysisSection`` or a dict).

    Keys ``module`` and ``name`` select and name it, ``prefix`` overrides the PV segment;
    all other keys are the module's parameters. The returned module has ``name`` and
    ``prefix`` set. Raises :class:`AnalysisConfigError` naming the module, the key, the
    value and the allowed values.
    """
    data = dict(section.model_dump() if hasattr(section, "model_dump") else section)
    module = data.pop("module", None)
    name = data.pop("name", None)
    prefix = data.pop("prefix", None)
    label = f"analysis[{index}]" + (f" {name!r}" if name else "") + (f" ({module})" if module else "")
    if not isinstance(module, str) or not module:
        raise AnalysisConfigError("missing 'module'", module=label, key="module", value=module, allowed=_ALLOWED)
    try:
        cls = resolve(module)
        inst = cls(**data)
    except AnalysisConfigError as exc:
        raise exc.for_module(label) from None
    except (TypeError, ValueError) as exc:
        raise AnalysisConfigError(str(exc), module=label) from None
    if prefix is not None:
        if not re.match(r"^[A-Za-z][\w]*(:[A-Za-z][\w]*)*$", str(prefix)):
            raise AnalysisConfigError("invalid PV prefix segment", module=label, key="prefix", value=prefix,
                                      allowed="letters, digits, '_' and ':' separators, starting with a letter")
        inst.prefix = str(prefix)
    default_name = module.lower() if module.lower() in BUILTINS else cls.__name__.lower()
    inst.name = str(name) if name else default_name
    return inst
