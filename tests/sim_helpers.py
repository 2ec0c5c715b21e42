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


def run_config(cfg, output_dir, n_events: int, *, sources=None, analysis=None, segments: int = 32):
    """Run ``cfg`` (a loaded :class:`~picodaq_ioc.config.schema.Config`) unpaced through the
    simulated scope, the buffer manager and its analysis modules for ``n_events`` events.

    ``sources`` / ``analysis`` replace the file's sources / analysis entries. Returns
    ``(scope, run summary, runner)``; every event must have been processed.
    """
    from dataclasses import replace

    from picodaq_ioc.analysis.runner import AnalysisRunner
    from picodaq_ioc.config.convert import scope_settings
    from picodaq_ioc.daq.buffer_manager import BufferManager

    upd = {"realtime": False, "count_host_time": False}
    if sources is not None:
        upd["sources"] = list(sources)
    sim = cfg.simulation.model_copy(update=upd)
    scope = SimScope(sim, cfg.device, keep_truth=True)
    scope.open()
    bm = BufferManager(scope, n_buffers=cfg.buffer.n_buffers)
    ch, tb, trg, sg = scope_settings(cfg)
    bm.configure(ch, replace(tb, n_segments=segments), trg, sg)
    runner = AnalysisRunner(bm, cfg.analysis if analysis is None else analysis, output_dir=output_dir)
    runner.begin_run()
    bm.start(max_events=n_events)
    assert bm.wait_stopped(600.0)
    summary = bm.stop()
    runner.end_run()
    bm.close()
    assert summary.events == n_events and summary.processed == n_events  # nothing lost
    return scope, summary, runner
