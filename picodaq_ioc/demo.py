"""``picodaq-demo``: run an acquisition from a configuration file and print rates.

    picodaq-demo --config configs/demo.yaml --events 2000

A do-nothing obligatory consumer receives every event; once per second the demo prints
the run time, events, current trigger and event rates, the live fraction and the ring
fill level, and at the end the run summary.  Exit codes: 0 done, 1 backend/device
error, 2 bad configuration or command line, 130 interrupted (after a clean stop).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from .config.schema import Config


def _load(path: str | None, realtime: bool | None) -> Config:
    from .config.loader import load_config

    cfg = load_config(path) if path else Config.model_validate({
        "channels": {"A": {"range": 0.2}},
        "trigger": {"source": "A", "level": -0.02, "direction": "Falling"},
        "simulation": {"sources": [{"kind": "muon", "channels": ["A"], "rate": 50.0}]},
    })
    if realtime is not None:
        cfg.simulation.realtime = realtime
    return cfg


def _line(st) -> str:
    return (f"t={st.run_time:9.2f}s  events={st.events:9d}  rate={st.event_rate:10.4g} Hz  "
            f"triggers={st.triggers:9d}  live={100 * st.live_fraction:6.2f}%  "
            f"buffer={100 * st.fill_level:5.1f}%  state={st.state.value}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="picodaq-demo", description=__doc__.splitlines()[0])
    ap.add_argument("--config", "-c", help="configuration file (YAML/JSON; picoDAQ files accepted); "
                    "default: a built-in simulated muon source")
    ap.add_argument("--events", "-n", type=int, default=2000, help="stop after this many events (default 2000)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between status lines (default 1)")
    pace = ap.add_mutually_exclusive_group()
    pace.add_argument("--unpaced", action="store_true", help="simulator: run as fast as possible")
    pace.add_argument("--paced", action="store_true", help="simulator: pace to the wall clock")
    ap.add_argument("--verbose", "-v", action="store_true", help="log buffer-manager messages")
    args = ap.parse_args(argv)
    if args.events < 1:
        print(f"picodaq-demo: --events: {args.events} is not allowed; allowed: an integer >= 1", file=sys.stderr)
        return 2
    if not args.interval > 0:
        print(f"picodaq-demo: --interval: {args.interval} is not allowed; allowed: a number > 0",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from .config.loader import ConfigError
    from .scope.errors import ScopeError
    from .session import DaqSession

    realtime = False if args.unpaced else (True if args.paced else None)
    try:
        cfg = _load(args.config, realtime)
    except ConfigError as exc:
        print(f"picodaq-demo: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        session = DaqSession.from_config(cfg)
    except ScopeError as exc:
        field = getattr(exc, "field", None)
        kind = "configuration error" if field else "scope error"
        print(f"picodaq-demo: {kind}: {exc}" + (f" (allowed: {exc.allowed})" if getattr(exc, "allowed", None)
                                                 else ""), file=sys.stderr)
        return 2 if field else 1

    seen = [0]

    def nothing(batch) -> None:  # the do-nothing obligatory consumer
        seen[0] += len(batch)

    code = 0
    with session:
        a = session.applied
        print(f"picodaq-demo: {session.info.model} ({session.info.driver}), channels "
              f"{','.join(a.enabled_channels)}, {a.n_samples} samples x {a.sample_interval_s * 1e9:.4g} ns, "
              f"{a.n_segments} segment(s), {session.bm.n_buffers} buffers; {args.events} events")
        session.attach("demo-null", nothing)
        session.start(max_events=args.events)
        try:
            next_t = time.monotonic() + args.interval
            while not session.bm.wait_stopped(timeout=max(0.0, next_t - time.monotonic())):
                print(_line(session.stats()), flush=True)
                next_t += args.interval
        except KeyboardInterrupt:
            code = 130
        summary = session.stop()
        st = session.stats()
        print(_line(st))
        if summary is not None:
            print(summary.format())
            print(f"consumer saw {seen[0]} events; lost {summary.triggers - summary.discarded - seen[0]}")
            if summary.state == "Error":
                print(f"picodaq-demo: acquisition error: {summary.last_error}", file=sys.stderr)
                code = 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
