"""Choose and build the scope backend named by the configuration (config uses scope, never
the other way round: the backends know nothing of the configuration file)."""

from __future__ import annotations

import importlib

from ..scope.errors import DriverNotAvailable
from ..scope.types import ScopeBackend
from .schema import Config


def make_backend(config: Config, *, keep_truth: bool = False) -> ScopeBackend:
    """Build the backend of ``config.device.backend``.

    ``"sim"`` gives a :class:`~picodaq_ioc.scope.sim.SimScope` from the ``simulation`` and
    ``device`` sections; ``"picoscope"`` imports ``picodaq_ioc.scope.picoscope`` lazily and
    calls its ``make_picoscope_backend(config)``; ``"replay"`` plays ``replay.input``
    (:class:`~picodaq_ioc.scope.replay.ReplayScope`).

    Raises
    ------
    DriverNotAvailable
        The hardware backend (or its driver) is not installed.
    """
    kind = config.device.backend
    if kind == "sim":
        from ..scope.sim import SimScope

        return SimScope(config.simulation, config.device, keep_truth=keep_truth)
    if kind == "picoscope":
        try:
            mod = importlib.import_module("picodaq_ioc.scope.picoscope")
        except ModuleNotFoundError as e:
            if e.name in ("picodaq_ioc.scope.picoscope",):
                raise DriverNotAvailable(
                    "the PicoScope hardware backend (picodaq_ioc.scope.picoscope) is not available; "
                    "use device.backend: sim, or install the hardware extra: pip install 'picodaq-ioc[hw]'"
                ) from None
            raise DriverNotAvailable(
                f"the PicoScope backend needs the module {e.name!r}; install it with "
                "pip install 'picodaq-ioc[hw]' (pico-python) and the PicoSDK C libraries") from None
        factory = getattr(mod, "make_picoscope_backend", None)
        if factory is None:
            raise DriverNotAvailable(
                "picodaq_ioc.scope.picoscope has no make_picoscope_backend(config); the hardware "
                "backend is incomplete")
        return factory(config)
    if kind == "replay":
        from ..scope.recorded import RecordingError
        from ..scope.replay import ReplayScope

        r = config.replay
        if not r.input:
            raise RecordingError("replay.input: no recorded file given (--input FILE)")
        return ReplayScope(r.input, r.pacing, r.rate, model=config.device.model, variant=config.device.variant)
    raise DriverNotAvailable(f"unknown backend {kind!r}; allowed: sim, picoscope, replay")


__all__ = ["make_backend"]
