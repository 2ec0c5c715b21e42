"""The simulated PicoScope (default backend): pulse sources, analogue chain, digitiser, trigger."""

from .scope import PULSE_DTYPE, SimScope, SimTruth

__all__ = ["PULSE_DTYPE", "SimScope", "SimTruth"]
