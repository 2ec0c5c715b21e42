"""Fixed-length time histories sampled by the displays (client side, newest last)."""

from __future__ import annotations

import numpy as np

__all__ = ["History"]


class History:
    """Values of several named series sampled every ``interval`` seconds, ``length`` kept.

    A sample is taken by :meth:`sample` only when ``interval`` has passed since the last one,
    so the history's time axis does not depend on the display's frame rate. Missing values
    (IOC disconnected) are stored as NaN and show as gaps.
    """

    def __init__(self, names: list[str], length: int = 120, interval: float = 1.0) -> None:
        self.names = list(names)
        self.length = int(length)
        self.interval = float(interval)
        self.t = np.full(self.length, np.nan)
        self.values = {n: np.full(self.length, np.nan) for n in self.names}
        self._last: float | None = None
        self.count = 0

    def sample(self, now: float, values: dict[str, float]) -> bool:
        """Append ``values`` (name -> number, missing -> NaN) if an interval has passed."""
        if self._last is not None and now - self._last < self.interval * 0.999:
            return False
        self._last = now
        self.t = np.roll(self.t, -1)
        self.t[-1] = now
        for n in self.names:
            arr = np.roll(self.values[n], -1)
            v = values.get(n)
            try:
                arr[-1] = float(v) if v is not None else np.nan
            except (TypeError, ValueError):
                arr[-1] = np.nan
            self.values[n] = arr
        self.count += 1
        return True

    def ages(self, now: float) -> np.ndarray:
        """Sample times relative to ``now`` (s, negative; NaN where empty)."""
        return self.t - now
