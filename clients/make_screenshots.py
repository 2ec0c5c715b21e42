"""Render the README/docs screenshots of every display from a live simulated IOC.

Starts ``picodaq-ioc`` (simulated scope, ``configs/muon_lifetime.yaml``) on a free loopback
port, runs an acquisition while driving the displays headless (matplotlib Agg) exactly as
their GUI timers would, saves ``docs/img/<display>.png``, then kills the IOC to capture the
disconnected state. Run from the repository root::

    python clients/make_screenshots.py [--seconds 60] [--out docs/img]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "clients"))

from picodaq_clients.testing import start_private_ioc, use_ca_server, wait_for  # noqa: E402

PREFIX = "PICO:"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="acquisition time before saving (default 60)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "muon_lifetime.yaml")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    ioc = start_private_ioc(args.config, PREFIX, ROOT, tmp_prefix="picodaq_shots_")
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
        hist_interval = max(args.seconds / 100.0, 0.2)
        displays = {
            "osci": Oscilloscope(PREFIX, cache=cache),
            "vmeter": VoltMeter(PREFIX, cache=cache, interval=hist_interval / 2, history=120),
            "rates": RateMeter(PREFIX, cache=cache, interval=hist_interval, history=100),
            "bufman": BufferManagerPanel(PREFIX, cache=cache, interval=hist_interval, history=100),
            "hists": Histograms(PREFIX, cache=cache),
            "dashboard": Dashboard(PREFIX, cache=cache),
        }
        # the dashboard's own histories at the same pace
        dash = displays["dashboard"]
        for part in (dash.rates, dash.bufman):
            part.history.interval = hist_interval
        dash.vmeter.history.interval = hist_interval / 2
        if not wait_for(lambda: cache.all_connected(displays["dashboard"].required), 60):
            print("IOC did not connect; log:\n" + Path(ioc.log_path).read_text(), file=sys.stderr)
            return 1
        epics.caput(PREFIX + "NumEvents", 0, wait=True)
        epics.caput(PREFIX + "Acquire", 1, wait=True)
        t_end = time.monotonic() + args.seconds
        while time.monotonic() < t_end:  # the GUI timer, at 5 frames/s
            for d in displays.values():
                d.update()
            epics.ca.poll(0.2)
        for name, d in displays.items():
            d.update()
            d.savefig(str(args.out / f"{name}.png"), dpi=80)
            print(f"saved {args.out / f'{name}.png'}")
        osci = displays["osci"]
        ioc.kill()
        wait_for(lambda: (osci.update(), not osci.online)[1], 30)
        osci.savefig(str(args.out / "osci_disconnected.png"), dpi=80)
        print(f"saved {args.out / 'osci_disconnected.png'}")
        cache.close()
    finally:
        ioc.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
