"""Construction and capture helpers of the simulated-scope tests (not a test module)."""

from __future__ import annotations

from collections.abc import Sequence

from picodaq_ioc.config.schema import DeviceSection, SimulationSection, SourceSection
from picodaq_ioc.scope.sim import SimScope
from picodaq_ioc.scope.types import Capture


def sim_scope(sources: Sequence[SourceSection], seed: int, model: str = "2000a",
              bits: int | None = None, noise: float = 0.5e-3, **sim) -> SimScope:
    """An opened non-realtime :class:`SimScope` that keeps the truth of every pulse.

    ``sim`` holds further :class:`SimulationSection` fields (``readout_overhead``, ...).
    """
    section = SimulationSection(seed=seed, realtime=False, count_host_time=False, noise_rms=noise,
                                sources=list(sources), **sim)
    sc = SimScope(section, DeviceSection(model=model, resolution_bits=bits), keep_truth=True)
    sc.open()
    return sc


def take(sc: SimScope, n: int, timeout: float) -> list[Capture]:
    """``n`` captures, each armed, waited for (``timeout`` simulated seconds) and read."""
    caps = []
    for _ in range(n):
        sc.arm()
        assert sc.wait(timeout)
        caps.append(sc.read())
    return caps
