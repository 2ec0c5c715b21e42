"""Benchmark: time per frame of each display (update + Agg draw) against a live simulated IOC.

Prints one JSON line per display: ``{"figure": "frame_time", "display": ..., "median_ms": ...,
"p95_ms": ..., "frames": ..., "method": ...}``. Use it to pick ``--fps``: a display costs
about ``fps * median_ms / 1000`` of one core. Run from the repository root::

    python clients/bench_displays.py [--frames 50] [--channels AB]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "clients"))

from picodaq_clients.testing import start_private_ioc, use_ca_server, wait_for  # noqa: E402

PREFIX = "BENCH:"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--channels", default="AB", help="channels to enable (default AB)")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "muon_lifetime.yaml")
    args = ap.parse_args(argv)
    ioc = start_private_ioc(args.config, PREFIX, ROOT, tmp_prefix="picodaq_bench_")
    try:
        use_ca_server(ioc.port)
        import epics
        from picodaq_clients.bufman import BufferManagerPanel
        from picodaq_clients.dashboard import Dashboard
        from picodaq_clients.hists import Histograms
        from picodaq_clients.osci import Oscilloscope
        from picodaq_clients.pvcache import PVCache
        from picodaq_clients.rates import RateMeter
        from picodaq_clients.vmeter import VoltMeter

        cache = PVCache(PREFIX)
        classes = {"osci": Oscilloscope, "vmeter": VoltMeter, "rates": RateMeter,
                   "bufman": BufferManagerPanel, "hists": Histograms, "dashboard": Dashboard}
        displays = {k: cls(PREFIX, cache=cache) for k, cls in classes.items()}
        if not wait_for(lambda: cache.all_connected(displays["dashboard"].required), 60):
            print(Path(ioc.log_path).read_text(), file=sys.stderr)
            return 1
        for c in "ABCD":
            epics.caput(f"{PREFIX}{c}:Enable", int(c in args.channels), wait=True)
        epics.caput(PREFIX + "Acquire", 1, wait=True)
        wait_for(lambda: (cache.value("Stats:Events_RBV") or 0) > 20, 30)
        samples = len(cache.value("TimeAxis_RBV", []))
        for name, d in displays.items():
            root = d.fig.figure if hasattr(d.fig, "figure") and d.fig.figure is not d.fig else d.fig
            times = []
            for _ in range(args.frames):
                t0 = time.perf_counter()
                d.update()
                root.canvas.draw()
                times.append(time.perf_counter() - t0)
                epics.ca.poll(0.01)
            ms = np.array(times) * 1e3
            print(json.dumps({"figure": "frame_time", "display": name, "median_ms": round(float(np.median(ms)), 2),
                              "p95_ms": round(float(np.percentile(ms, 95)), 2), "frames": args.frames,
                              "channels": args.channels, "samples": samples,
                              "method": "update() + Agg canvas.draw() per frame, live IOC on the simulator "
                                        "(muon_lifetime config), perf_counter; shared 2-core machine"}))
        epics.caput(PREFIX + "Acquire", 0, wait=True)
        cache.close()
    finally:
        ioc.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
