"""``picodaq-analyze``: run the configured analysis modules over a recorded file, without an IOC.

    picodaq-analyze --config configs/kamiokanne.yaml --input runs/kanne_001.h5 [--output-dir DIR]

Reads the project's HDF5 event files and picoCosmo raw-waveform files (plain or zipped;
see :mod:`picodaq_ioc.scope.recorded`), feeds every event, in order, to the modules of the
configuration's ``analysis:`` list through the same :class:`~picodaq_ioc.analysis.runner.
AnalysisRunner` the IOC uses, and writes the same per-run outputs as a live run into the
output directory: the modules' CSV/npz files, ``<stamp>_analysis_summary.yaml`` and
``<stamp>_analysis_results.h5`` (the ``/analysis`` group of the IOC's HDF5 files). Prints
one line: events, accepted events, double pulses, lifetime ± error.

Without ``--config`` the configuration stored in an HDF5 file is used. Exit codes: 0 done,
2 bad configuration, command line or input file.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from .config.schema import Config

__all__ = ["analyze", "main", "summary_line"]


class AnalyzeError(Exception):
    """A problem to report in one line (exit status 2)."""


def _config(path: str | None, recording: Any) -> Config:
    from .config.loader import ConfigError, load_config, validate_data

    try:
        if path:
            return load_config(path)
        if recording.kind == "hdf5" and recording.config:
            return validate_data(recording.config, f"{recording.path} (stored configuration)", check_model=False)
    except ConfigError as ex:
        raise AnalyzeError(str(ex)) from None
    raise AnalyzeError("--config is required (the input file stores no picodaq-ioc configuration)")


def analyze(cfg: Config, input_path: str, output_dir: str | None = None, chunk: int = 256) -> dict[str, Any]:
    """Run ``cfg.analysis`` over the events of ``input_path``.

    Returns
    -------
    dict
        ``events`` (events read), ``summaries`` (per module, as ``AnalysisRunner.end_run``),
        ``summary_file``, ``results_file``, ``recording`` (the opened file's metadata).

    Raises
    ------
    AnalyzeError
        Unreadable input, no analysis modules, a module that fails on the recorded data.
    """
    import h5py
    import numpy as np

    from .analysis.base import AnalysisConfigError
    from .analysis.hdf5_writer import store_results
    from .analysis.output import output_path
    from .analysis.runner import AnalysisRunner
    from .daq.events import EventBatch
    from .scope.recorded import RecordingError, open_recording

    try:
        rec = open_recording(input_path)
    except RecordingError as ex:
        raise AnalyzeError(str(ex)) from None
    if not cfg.analysis:
        raise AnalyzeError("the configuration has no analysis: modules to run")
    out_dir = output_dir or cfg.output_dir
    try:
        runner = AnalysisRunner(None, cfg.analysis, output_dir=out_dir, max_events=chunk)
    except AnalysisConfigError as ex:
        raise AnalyzeError(f"analysis: {ex}") from None
    t0 = float(rec.attrs.get("run_start_time") or 0.0) or time.time()
    run = runner.begin_run(t0)
    n = 0
    for c in rec.chunks(chunk):
        t = c.t_trigger
        if np.isnan(t).any():  # picoCosmo files record no times
            t = np.zeros(len(c))
        batch = EventBatch(rec.applied, rec.channels, c.raw, c.event_number, t, c.trigger_time_offset_s,
                           c.overflow, c.auto_triggered, c.live_time)
        for name in runner.modules:
            runner.process(name, batch)
        n += len(c)
    results = {name: runner.results(name) for name in runner.modules}
    summaries = runner.end_run()
    if runner.errors:
        name, err = next(iter(runner.errors.items()))
        raise AnalyzeError(f"analysis module {name!r} failed on {input_path}: {err}")
    results_file = output_path(run, "analysis", "results", "h5")
    with h5py.File(results_file, "w") as f:
        f.attrs["input"] = str(input_path)
        f.attrs["events"] = n
        store_results(f.require_group("analysis"), results)
    return {"events": n, "summaries": summaries, "summary_file": runner.summary_file,
            "results_file": str(results_file), "recording": rec}


def summary_line(result: dict[str, Any]) -> str:
    """``events N, accepted A, double pulses D, lifetime T +- E us`` (pulse module, if any)."""
    parts = [f"events {result['events']}"]
    pulse = next((s for s in result["summaries"].values() if isinstance(s, dict) and "double_pulses" in s), None)
    if pulse is not None:
        parts.append(f"accepted {pulse.get('accepted', 0)}")
        parts.append(f"double pulses {pulse.get('double_pulses', 0)}")
        fit = pulse.get("lifetime") or {}
        tau, err = fit.get("tau"), fit.get("tau_err")
        if tau is not None and err is not None and math.isfinite(tau):
            parts.append(f"lifetime {tau * 1e6:.4f} +- {err * 1e6:.4f} us")
        else:
            parts.append("lifetime n/a")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="picodaq-analyze", description=__doc__.splitlines()[0])
    ap.add_argument("--config", "-c", help="configuration with the analysis: modules (YAML/JSON); "
                    "default: the configuration stored in the HDF5 input file")
    ap.add_argument("--input", "-i", required=True, help="recorded file: picodaq-ioc HDF5, picoCosmo raw "
                    "(.dat/.yaml) or a .zip holding one")
    ap.add_argument("--output-dir", "-o", help="directory of the output files (default: output_dir of the "
                    "configuration, ./runs)")
    ap.add_argument("--chunk", type=int, default=256, help="events per batch (default 256)")
    args = ap.parse_args(argv)
    if args.chunk < 1:
        print(f"picodaq-analyze: --chunk: {args.chunk}; allowed: an integer >= 1", file=sys.stderr)
        return 2
    try:
        from .scope.recorded import RecordingError, open_recording

        try:
            rec = open_recording(args.input)
        except RecordingError as ex:
            raise AnalyzeError(str(ex)) from None
        cfg = _config(args.config, rec)
        result = analyze(cfg, args.input, args.output_dir, args.chunk)
    except AnalyzeError as ex:
        print(f"picodaq-analyze: error: {ex}", file=sys.stderr)
        return 2
    print(summary_line(result))
    out = Path(result["summary_file"]).parent if result["summary_file"] else None
    if out is not None:
        print(f"outputs in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
