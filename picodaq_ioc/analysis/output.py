"""Per-run output files of the analysis modules: names, CSV writers, summaries.

Files go to ``RunInfo.output_dir`` and are named by the run start time (local time,
``yymmdd-HHMMSS``), e.g. ``261125-130512_pulse_accepted.csv``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import yaml

from .base import RunInfo

__all__ = ["CsvWriter", "output_path", "plain", "run_stamp", "unique_stamp", "write_yaml"]


def run_stamp(run: RunInfo) -> str:
    """``yymmdd-HHMMSS`` of the run start (local time), or ``run.extra["stamp"]`` if set
    (the runner adds ``-2``, ``-3`` ... when files of another run already use the stamp)."""
    st = run.extra.get("stamp") if run.extra else None
    return str(st) if st else time.strftime("%y%m%d-%H%M%S", time.localtime(run.run_start_time))


def unique_stamp(output_dir: str, run_start_time: float) -> str:
    """A stamp for a new run that no file in ``output_dir`` uses yet."""
    base = time.strftime("%y%m%d-%H%M%S", time.localtime(run_start_time))
    d = Path(output_dir)
    stamp, n = base, 1
    while d.is_dir() and any(d.glob(f"{stamp}_*")):
        n += 1
        stamp = f"{base}-{n}"
    return stamp


def output_path(run: RunInfo, name: str, what: str, ext: str) -> Path:
    """``<output_dir>/<stamp>_<name>_<what>.<ext>`` (directory created)."""
    d = Path(run.output_dir)
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{run_stamp(run)}_{name}_{what}.{ext}"


def plain(obj: Any) -> Any:
    """Convert numpy scalars/arrays (recursively) to plain Python for YAML/JSON."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, np.generic):
        return plain(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else obj
    if hasattr(obj, "value") and hasattr(obj, "name") and not isinstance(obj, (int, float, str)):
        return plain(obj.value)  # enums
    return obj


def write_yaml(path: Path, data: Any) -> None:
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "w") as fh:
        yaml.safe_dump(plain(data), fh, sort_keys=False)
    os.replace(tmp, path)


class CsvWriter:
    """Appends rows of a numeric table to a CSV file with a ``#``-free header line.

    Loadable with ``pandas.read_csv(path)`` or ``numpy.genfromtxt(path, delimiter=",",
    names=True)``. Missing values are written as ``nan``.
    """

    def __init__(self, path: Path, columns: Sequence[str], fmt: Sequence[str]) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        self._fmt = ",".join(fmt) + "\n"
        self._fh: IO[str] | None = open(self.path, "w", buffering=1 << 16)
        self._fh.write(",".join(self.columns) + "\n")
        self.rows = 0

    def write(self, table: Sequence[np.ndarray]) -> None:
        """Append rows; ``table`` is one 1-d array per column, all the same length."""
        if self._fh is None or len(table[0]) == 0:
            return
        fmt = self._fmt
        self._fh.write("".join(fmt % row for row in zip(*(c.tolist() for c in table), strict=True)))
        self.rows += len(table[0])

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
