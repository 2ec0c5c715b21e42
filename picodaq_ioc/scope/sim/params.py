"""What the simulator needs to be told, as Protocols: the scope layer knows no config file.

The configuration's pydantic sections (``picodaq_ioc.config.schema.SimulationSection``,
``SourceSection``, ``DeviceSection``) have these attributes, so they are passed as they are;
any other object with them works too (a test's own dataclass, a replay tool). Defaults and
validation of the values live in one place, the configuration schema; the simulator reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class SourceSection(Protocol):
    """One simulated signal source (the attributes a pulse stream reads; see the config schema
    for units and defaults: ``kind``, ``channels``, ``rate``, ``amplitude`` ...)."""

    kind: Any
    channels: Sequence[str]
    rate: float
    amplitude: float


class SimulationParams(Protocol):
    """Seed, pacing, noise, dead times and sources of a simulated scope."""

    seed: int
    realtime: bool
    count_host_time: bool
    noise_rms: float
    readout_overhead: float
    rearm_time: float
    siggen_channel: str | None
    sources: Sequence[SourceSection]


class DeviceParams(Protocol):
    """Which scope the simulator pretends to be."""

    model: str
    variant: str | None
    serial: str | None
    resolution_bits: int | None


@dataclass(frozen=True)
class SimDevice:
    """A :class:`DeviceParams` of plain values (the default: a 2000a)."""

    model: str = "2000a"
    variant: str | None = None
    serial: str | None = None
    resolution_bits: int | None = None


__all__ = ["DeviceParams", "SimDevice", "SimulationParams", "SourceSection"]
