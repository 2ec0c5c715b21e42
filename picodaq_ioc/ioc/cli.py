"""``picodaq-ioc``: the command line of the IOC (also ``python -m picodaq_ioc``).

Options follow caproto's ``ioc_arg_parser`` conventions (``--prefix``, ``--list-pvs``,
``--interfaces``, ``-v``/``-q``). Errors a user can fix (bad configuration, missing Pico
SDK, no scope) end the program with one line on stderr and a non-zero exit code, never a
traceback. SIGINT/SIGTERM stop the run cleanly and write the run summary.

Exit codes: 0 ok, 2 bad configuration or arguments, 3 device/driver not available,
1 unexpected failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from . import env as _env

_env.apply_caproto_defaults()  # before caproto is imported anywhere below

log = logging.getLogger("picodaq_ioc.ioc")

DEFAULT_PREFIX = "PICO:"
DEFAULT_MAX_RATE = 20.0
SWITCH_INTERVAL = 0.001  # s, see run()

#: Used when no --config is given (the same scenario as configs/demo.yaml, which is not
#: installed with the package): signal generator looped back into B, noise and ~20 pulses/s
#: on A, which trigger (a realistic rate: cheap when nobody watches).
DEFAULT_CONFIG: dict[str, Any] = {
    "device": {"backend": "sim", "model": "2000a"},
    "channels": {
        "A": {"range": 0.05, "coupling": "DC", "offset": 0.0},
        "B": {"range": 0.5, "coupling": "AC", "offset": 0.0},
    },
    "timebase": {"duration": 10.0e-6, "samples": 200, "pretrigger": 0.05},
    "trigger": {"enabled": True, "source": "A", "level": -0.01, "direction": "Falling", "auto_timeout": 1.0},
    "siggen": {"enabled": True, "waveform": "Sine", "frequency": 100.0e3, "amplitude": 0.4, "offset": 0.0},
    "buffer": {"n_buffers": 16, "log_time": 60},
    "simulation": {
        "seed": 1, "realtime": True, "noise_rms": 0.5e-3, "siggen_channel": "B",
        "sources": [{"kind": "noise", "channels": ["A"], "rms": 3.0e-3},
                    {"kind": "muon", "channels": ["A"], "rate": 20.0, "amplitude": -0.03}],
    },
}


class UserError(Exception):
    """An error to report in one line (``code`` is the exit status)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------------------ arguments

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="picodaq-ioc",
        description="EPICS Channel Access IOC for pulse data acquisition with PicoScope oscilloscopes "
                    "(simulated scope by default). Serves 127.0.0.1 only unless --serve-network.")
    p.add_argument("--config", metavar="FILE",
                   help="YAML/JSON configuration (native or picoDAQ); default: built-in demo")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"PV name prefix (default {DEFAULT_PREFIX})")
    p.add_argument("--backend", choices=("sim", "picoscope", "replay"), help="override device.backend of the config")
    p.add_argument("--input", metavar="FILE",
                   help="replay backend: the recorded file to play (HDF5 of this IOC or picoCosmo raw/zip)")
    p.add_argument("--replay-pacing", choices=("recorded", "rate", "fast"),
                   help="replay backend: recorded timing (default), --replay-rate events/s, or as fast as possible")
    p.add_argument("--replay-rate", type=float, metavar="HZ", help="replay backend: events/s for --replay-pacing rate")
    p.add_argument("--check", action="store_true",
                   help="validate the configuration, print the applied settings and exit (0 ok, 2 error)")
    p.add_argument("--list-pvs", action="store_true", help="print every PV name and exit")
    p.add_argument("--interfaces", nargs="+", metavar="ADDR",
                   help="interfaces to serve on (default 127.0.0.1; others need --serve-network)")
    p.add_argument("--serve-network", action="store_true",
                   help="opt in to serving a network: interfaces and beacons from the EPICS_CAS_* environment")
    p.add_argument("--pva", action="store_true",
                   help="also serve every PV, and one <prefix>Frame structure per event, over PV Access "
                        "(needs the 'pva' extra, p4p; ports from EPICS_PVAS_SERVER_PORT / "
                        "EPICS_PVAS_BROADCAST_PORT)")
    p.add_argument("--max-samples", type=int, default=None, metavar="N",
                   help="capacity of the waveform PVs (default: max(16384, configured samples))")
    p.add_argument("--max-rate", type=float, default=DEFAULT_MAX_RATE, metavar="HZ",
                   help=f"initial Waveform:MaxRate (default {DEFAULT_MAX_RATE:g} Hz)")
    p.add_argument("--max-ring-mb", type=float, default=1024.0, metavar="MB",
                   help="refuse Buffer:Size / NumSamples / channel settings whose ring needs more memory "
                        "(default 1024 MiB)")
    p.add_argument("--output-dir", metavar="DIR",
                   help="directory of the run files: analysis CSV/summaries, HDF5 files, BMsum files "
                        "(overrides output_dir: of the config; default ./runs)")
    p.add_argument("--summary", metavar="FILE",
                   help="append each run's end-of-run statistics to FILE as JSON lines")
    from .ca_server import DEFAULT_MAX_CHANNELS, DEFAULT_STALL_TIMEOUT

    p.add_argument("--ca-stall-timeout", type=float, default=DEFAULT_STALL_TIMEOUT, metavar="S",
                   help="disconnect a CA client whose connection takes no data for S seconds "
                        f"(default {DEFAULT_STALL_TIMEOUT:g}; 0: never). Its monitors never delay others.")
    p.add_argument("--ca-max-channels", type=int, default=DEFAULT_MAX_CHANNELS, metavar="N",
                   help=f"channels one CA client may open (default {DEFAULT_MAX_CHANNELS}; 0: unlimited). "
                        "Message size limit: EPICS_CA_MAX_ARRAY_BYTES or the largest PV, whichever is larger")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: caproto debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    # --- security and reliability (issue 7, picodaq_ioc/ioc/reliability.py) ---
    from . import reliability

    reliability.add_arguments(p)
    return p


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose >= 2 else logging.INFO)
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger("caproto").setLevel(logging.DEBUG if verbose >= 3 else
                                          logging.INFO if verbose >= 2 else logging.WARNING)


# ------------------------------------------------------------------------------ configuration

def load(args: argparse.Namespace):
    """The validated Config (``--backend`` applied). Raises UserError."""
    from ..config.loader import ConfigError, load_config, validate_data

    try:
        if args.config:
            cfg = load_config(args.config)
        else:
            cfg = validate_data(DEFAULT_CONFIG, "<built-in demo configuration>")
        if args.backend:
            cfg.device.backend = args.backend
        if getattr(args, "output_dir", None):
            cfg.output_dir = args.output_dir
        for attr, key in (("input", "input"), ("replay_pacing", "pacing"), ("replay_rate", "rate")):
            if getattr(args, attr, None) is not None:
                setattr(cfg.replay, key, getattr(args, attr))
        if cfg.device.backend == "replay":
            cfg = replay_settings(cfg)
    except ConfigError as ex:
        raise UserError(f"error: {ex}", 2) from None
    except UserError:
        raise
    except Exception as ex:  # pydantic assignment errors etc.
        raise UserError(f"error: configuration: {type(ex).__name__}: {ex}", 2) from None
    for notice in getattr(cfg, "notices", []) or []:
        log.info("config: %s", notice)
    return cfg


def replay_settings(cfg):
    """The configuration with the recorded settings of the replay input (UserError, exit 2,
    when the file is missing or corrupt)."""
    from ..config.replay import replay_config
    from ..scope.recorded import RecordingError

    try:
        return replay_config(cfg)
    except RecordingError as ex:
        raise UserError(f"error: replay: {ex}", 2) from None


def make_modules(cfg) -> list[Any]:
    """Analysis modules of the configuration, for their PV definitions (not attached)."""
    if not cfg.analysis:
        return []
    from ..analysis.registry import create_module

    try:
        return [create_module(sec, i) for i, sec in enumerate(cfg.analysis)]
    except Exception as ex:
        raise UserError(f"error: {ex}", 2) from None


def info_from_tables(cfg):
    """ScopeInfo of the configured model from the model tables (no device needed)."""
    from ..scope import models

    driver = "sim" if cfg.device.backend == "sim" else f"ps{cfg.device.model}"
    return models.scope_info(cfg.device.model, cfg.device.variant, driver=driver,
                             bits=cfg.device.resolution_bits)


def default_max_samples(cfg, requested: int | None) -> int:
    if requested is not None:
        if requested < 2:
            raise UserError("error: --max-samples must be >= 2", 2)
        if requested < cfg.timebase.samples:
            raise UserError(f"error: --max-samples {requested} is smaller than timebase.samples "
                            f"{cfg.timebase.samples}", 2)
        return int(requested)
    return int(max(16384, cfg.timebase.samples))


def definition_group(cfg, prefix: str, max_samples: int, modules: Sequence[Any] = ()):
    """An IOC group built from the model tables, without a device (for --list-pvs / db)."""
    from .app import build_ioc_class

    cls = build_ioc_class(info_from_tables(cfg), max_samples=max_samples, analysis_modules=modules)
    return cls(prefix=prefix)


# ------------------------------------------------------------------------------ session

def open_session(cfg):
    """``DaqSession.from_config`` with one-line errors for missing drivers/devices."""
    from ..scope.errors import DeviceNotFound, DriverNotAvailable, InvalidConfig, ScopeError
    from ..scope.recorded import RecordingError
    from ..session import DaqSession

    try:
        return DaqSession.from_config(cfg)
    except RecordingError as ex:
        raise UserError(f"error: replay: {ex}", 2) from None
    except DriverNotAvailable as ex:
        raise UserError(f"error: PicoScope driver not available: {ex}", 3) from None
    except DeviceNotFound as ex:
        raise UserError(f"error: no PicoScope found: {ex}", 3) from None
    except InvalidConfig as ex:
        from .controller import explain

        raise UserError(f"error: the device refused the configuration: {explain(ex)}", 2) from None
    except ScopeError as ex:
        raise UserError(f"error: device error: {type(ex).__name__}: {ex}", 3) from None


def session_modules(session, cfg) -> tuple[list[Any], Any, Any]:
    """(modules, runner, error_lookup) of the session's analysis chain."""
    runner = None
    for attr in ("analysis", "runner", "analysis_runner"):
        runner = getattr(session, attr, None)
        if runner is not None and hasattr(runner, "modules"):
            break
        runner = None
    if runner is None and cfg.analysis:
        try:
            runner = session.attach_analysis(cfg.analysis, output_dir=cfg.output_dir)  # the session owns it (run events)
        except (ValueError, TypeError, ImportError) as ex:  # AnalysisConfigError is a ValueError
            raise UserError(f"error: analysis: {ex}", 2) from None
    if runner is None:
        return [], None, None
    errors = getattr(runner, "errors", None)
    mods = runner.modules
    return list(mods.values() if isinstance(mods, dict) else mods), runner, errors


def stats_dict(st: Any) -> dict[str, Any]:
    if st is None:
        return {}
    d = asdict(st) if is_dataclass(st) else dict(getattr(st, "__dict__", {}))
    out: dict[str, Any] = {}
    for k, v in d.items():
        if hasattr(v, "value"):
            v = v.value
        if isinstance(v, (int, float, str, bool)) or v is None:
            out[k] = v
    return out


def write_summary(path: str | None, record: dict[str, Any]) -> None:
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=str) + "\n")
    except OSError as ex:
        log.error("cannot write the run summary to %s: %s", path, ex)


# ------------------------------------------------------------------------------ serving

async def serve(group, interfaces: list[str], summary_path: str | None, ca_limits: dict[str, Any] | None = None,
                pva: bool = False) -> int:
    """Serve until SIGINT/SIGTERM (0) or until the CA server fails (1: a supervisor restarts)."""
    from .ca_server import IsolatedContext

    ctl = group.ctl
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)

    # every run end (Acquire=Stop, NumEvents reached) goes to the summary file
    async def on_run_end(summary) -> None:  # noqa: ARG001 - the live statistics have more figures
        st = await ctl.stats()
        rec = {"event": "run_end", "time": time.time(), **stats_dict(st)}
        write_summary(summary_path, rec)
        log.info("run summary: %s", json.dumps(rec, default=str))

    group.run_end_hooks.append(on_run_end)

    mirror = None
    if pva:
        from .pva import PvaMirror

        mirror = PvaMirror(group.pvdb, group.prefix)
        group.frame_listeners.append(mirror.post_frame)
        mirror.start()
    group.pva = mirror
    ctx = IsolatedContext(group.pvdb, interfaces, **(ca_limits or {}))
    group.server_context = ctx
    server = loop.create_task(ctx.run(log_pv_names=False, startup_hook=group.__ainit__))
    waiter = loop.create_task(stop.wait())
    await asyncio.wait({server, waiter}, return_when=asyncio.FIRST_COMPLETED)
    status = 0
    if server.done() and not server.cancelled():
        ex = server.exception()
        log.error("Channel Access server failed: %s", f"{type(ex).__name__}: {ex}" if ex else "it ended")
        status = 1
    log.info("shutting down")
    server.cancel()
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await server
    if mirror is not None:
        mirror.stop()
    group.publisher.stop()
    was_running = ctl.state.value in ("Running", "Paused")
    summary = await asyncio.to_thread(ctl.shutdown)
    if summary is not None:  # the run-end hooks (its summary record) come before the shutdown record
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ctl.run_end(summary.run_id), 10.0)
    runner = getattr(group, "runner", None)
    if runner is not None and hasattr(runner, "close"):
        try:
            await asyncio.to_thread(runner.close)
        except Exception:
            log.exception("closing the analysis runner failed")
    writer = getattr(group, "writer", None)
    if writer is not None:
        try:
            await asyncio.to_thread(writer.close)
        except Exception:
            log.exception("closing the HDF5 writer failed")
    try:
        st = ctl.bm.stats()
    except Exception:
        st = None
    rec = {"event": "shutdown", "time": time.time(), "stopped_run": was_running, **stats_dict(st)}
    if summary is not None and not isinstance(summary, (int, float, str)):
        rec["summary"] = stats_dict(summary) or str(summary)
    write_summary(summary_path, rec)
    log.info("final summary: %s", json.dumps(rec, default=str))
    return status


def want_pva(args: argparse.Namespace, cfg) -> bool:
    """PV Access on (``--pva`` or ``ioc.pva: true`` in the configuration) and p4p importable."""
    ioc_section = getattr(cfg, "ioc", None)
    on = bool(getattr(args, "pva", False) or getattr(ioc_section, "pva", False))
    if on:
        from .pva import available

        if not available():
            raise UserError("error: PV Access (--pva / ioc.pva) needs p4p: pip install 'picodaq-ioc[pva]'", 2)
    return on


def resolve_interfaces(args: argparse.Namespace) -> list[str]:
    if args.interfaces:
        if not args.serve_network and any(a != _env.LOOPBACK for a in args.interfaces):
            raise UserError("error: --interfaces other than 127.0.0.1 need --serve-network", 2)
        return list(args.interfaces)
    if args.serve_network:
        value = os.environ.get("EPICS_CAS_INTF_ADDR_LIST", "").split()
        if not value:
            raise UserError("error: --serve-network: set EPICS_CAS_INTF_ADDR_LIST to the interfaces to "
                            "serve (and EPICS_CAS_BEACON_ADDR_LIST for beacons)", 2)
        return value
    return [_env.LOOPBACK]


def run(args: argparse.Namespace) -> int:
    if not args.serve_network:
        _env.apply_loopback_env()
    interfaces = resolve_interfaces(args)
    cfg = load(args)
    pva_on = want_pva(args, cfg) if not args.list_pvs else False
    max_samples = default_max_samples(cfg, args.max_samples)
    if not args.prefix:
        raise UserError("error: --prefix must not be empty", 2)

    if args.list_pvs:
        group = definition_group(cfg, args.prefix, max_samples, make_modules(cfg))
        for name in group.pvdb:
            print(name)
        return 0

    from . import caproto_ctrl, caproto_fixes
    from .app import build_ioc_class
    from .controller import Controller
    from .publisher import WaveformPublisher

    caproto_fixes.apply()
    caproto_ctrl.apply()
    # the simulator/analysis threads are CPU-bound: with Python's default 5 ms GIL switch
    # interval every hand-over (publisher thread -> event loop -> sockets) can wait 5 ms,
    # which alone caps the publish rate under overload (issue 11). 1 ms keeps it responsive.
    sys.setswitchinterval(SWITCH_INTERVAL)
    session = open_session(cfg)
    try:
        modules, runner, errors = session_modules(session, cfg)
        try:
            cls = build_ioc_class(session.info, max_samples=max_samples, analysis_modules=modules)
        except ValueError as ex:  # e.g. an analysis prefix that clashes with the IOC's own
            raise UserError(f"error: {ex}", 2) from None
        group = cls(prefix=args.prefix)
        ctl = Controller(session, max_ring_bytes=int(args.max_ring_mb * 2**20))
        publisher = WaveformPublisher(session.bm, max_rate=args.max_rate)
        group.attach(ctl, publisher, cfg.device.backend, analysis_errors=errors)
        group.runner = runner
        # --- HDF5 file writer (HDF:* PVs): one file per run at most, closed after the analysis
        from ..analysis.hdf5_writer import WriterError, writer_from_config

        try:
            group.writer = writer = writer_from_config(session.bm, cfg, runner)
        except WriterError as ex:
            raise UserError(f"error: hdf5.capture: {ex}", 2) from None

        async def close_hdf_file(summary) -> None:  # noqa: ARG001
            await asyncio.to_thread(writer.run_ended)

        group.run_end_hooks.append(close_hdf_file)
        # --- security and reliability (issue 7): --acf, put log, autosave, --test-faults ---
        from .reliability import ReliabilityError
        from .reliability import install as install_reliability

        try:
            group.reliability = install_reliability(group, args)
        except ReliabilityError as ex:
            raise UserError(str(ex), 2) from None
        log.info("serving %d PVs with prefix %s on %s (port %s)", len(group.pvdb), args.prefix,
                 ", ".join(interfaces), os.environ.get("EPICS_CA_SERVER_PORT", "5064"))
        ca_limits = {"stall_timeout": args.ca_stall_timeout, "max_channels": args.ca_max_channels}
        status = asyncio.run(serve(group, interfaces, args.summary, ca_limits, pva=pva_on))
    except BaseException:
        with contextlib.suppress(Exception):
            session.close()
        raise
    return status


def check_autosave_line(args: argparse.Namespace) -> str:
    """The ``--check`` line about autosave: where it writes and what it will restore."""
    from . import autosave

    if getattr(args, "no_autosave", False):
        return "autosave: off (--no-autosave)"
    path = args.autosave or (autosave.default_path(args.config) if args.config else None)
    if path is None:
        return "autosave: off (no --config and no --autosave FILE)"
    return autosave.describe_restore(path, restore=not getattr(args, "no_restore", False))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``picodaq-ioc``; returns the exit status (and exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    if args.check:
        from ..config.check import check_main

        cfg_path = args.config
        if cfg_path is None:
            import tempfile

            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                json.dump(DEFAULT_CONFIG, f)
                cfg_path = f.name
        rc = check_main([cfg_path])
        if args.config is None:
            Path(cfg_path).unlink(missing_ok=True)
        if rc == 0:
            print(check_autosave_line(args))
        sys.exit(rc)
    try:
        rc = run(args)
    except UserError as ex:
        print(f"picodaq-ioc: {ex}", file=sys.stderr)
        rc = ex.code
    except KeyboardInterrupt:
        rc = 0
    sys.exit(rc)


if __name__ == "__main__":
    main()
