"""``picodaq-lab``: a teaching lab of N scopes on one host, optionally behind one PVA gateway.

One command starts one IOC per configuration (``python -m picodaq_ioc``), each with its own
prefix, its own Channel Access port and its own PV Access TCP and UDP ports, all on 127.0.0.1
unless ``--serve-network``. With a gateway, p4p's ``pvagw`` is started with a generated
configuration whose client side searches exactly the IOCs' PVA ports and whose server side is
*one* address for every prefix (by default the standard PVA ports 5075/5076, so a client
with ``EPICS_PVA_ADDR_LIST=127.0.0.1`` sees the whole lab).

Two ways to describe a lab::

    picodaq-lab --config a.yaml --config b.yaml --config c.yaml --gateway
    picodaq-lab --lab lab.yaml

``lab.yaml``::

    pva: true                     # PV Access on every IOC (default true; the gateway needs it)
    scopes:
      - {config: a.yaml, prefix: "LAB1:"}                       # ports from the bases below
      - {config: b.yaml, prefix: "LAB2:", ca_port: 5070, pva_port: 5120, pva_udp_port: 5121}
    ports: {ca: 5064, pva: 5100}  # IOC i: CA ca+i, PVA TCP pva+2i, PVA UDP pva+2i+1
    gateway: {port: 5075, udp_port: 5076, status_prefix: "LABGW:"}   # omit: no gateway

The lab process supervises its children: one IOC ending (crash or ``kill <pid>``) is reported
and the others keep serving; SIGINT/SIGTERM stop every child by its PID. ``<workdir>/lab.json``
lists every process (prefix, pid, ports, log file) and the client environment; each IOC
autosaves its settings to ``<workdir>/<prefix>.autosave.json`` (scopes may share a config).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import env as _env

log = logging.getLogger("picodaq_ioc.lab")

__all__ = ["Lab", "LabError", "Scope", "gateway_config", "load_lab", "main"]

DEFAULT_CA_BASE = 5064
DEFAULT_PVA_BASE = 5100
DEFAULT_GATEWAY = (5075, 5076)


class LabError(ValueError):
    """A problem with the lab description (the message names the field)."""


@dataclass
class Scope:
    """One IOC of the lab."""

    prefix: str
    config: str | None
    ca_port: int
    pva_port: int
    pva_udp_port: int
    log: str = ""
    pid: int | None = None


@dataclass
class Lab:
    scopes: list[Scope]
    pva: bool = True
    gateway: dict[str, Any] | None = None
    extra_args: list[str] = field(default_factory=list)

    def client_env(self) -> dict[str, str]:
        """Environment for CA clients of every IOC, and for PVA clients of the gateway (or of
        every IOC without one)."""
        env = dict(_env.LOOPBACK_ENV)
        env["EPICS_CA_ADDR_LIST"] = " ".join(f"{_env.LOOPBACK}:{s.ca_port}" for s in self.scopes)
        if self.gateway:
            env["EPICS_PVA_ADDR_LIST"] = f"{_env.LOOPBACK}:{self.gateway['udp_port']}"
            env["EPICS_PVA_BROADCAST_PORT"] = str(self.gateway["udp_port"])
        else:
            env["EPICS_PVA_ADDR_LIST"] = " ".join(f"{_env.LOOPBACK}:{s.pva_udp_port}" for s in self.scopes)
        env["EPICS_CA_MAX_ARRAY_BYTES"] = "100000000"
        return env


def _port(value: Any, what: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise LabError(f"{what}: {value!r} is not a port number (1..65535)") from None
    if not 1 <= port <= 65535:
        raise LabError(f"{what}: {port} is not a port number (1..65535)")
    return port


def build_lab(entries: Sequence[dict[str, Any]], *, pva: bool = True, ca_base: int = DEFAULT_CA_BASE,
              pva_base: int = DEFAULT_PVA_BASE, gateway: dict[str, Any] | None = None,
              base_dir: Path | None = None) -> Lab:
    """A :class:`Lab` from scope entries (``config``, ``prefix`` and optional ports)."""
    if not entries:
        raise LabError("scopes: a lab needs at least one scope (--config FILE or scopes: in the lab file)")
    scopes: list[Scope] = []
    for i, e in enumerate(entries):
        where = f"scopes[{i}]"
        if not isinstance(e, dict):
            raise LabError(f"{where}: expected a mapping with config, prefix (and ports), got {e!r}")
        unknown = set(e) - {"config", "prefix", "ca_port", "pva_port", "pva_udp_port"}
        if unknown:
            raise LabError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                           "(allowed: config, prefix, ca_port, pva_port, pva_udp_port)")
        config = e.get("config")
        if config is not None:
            path = Path(config)
            if base_dir is not None and not path.is_absolute():
                path = base_dir / path
            if not path.is_file():
                raise LabError(f"{where}.config: file {str(path)!r} not found")
            config = str(path)
        prefix = str(e.get("prefix") or f"LAB{i + 1}:")
        scopes.append(Scope(
            prefix=prefix, config=config,
            ca_port=_port(e.get("ca_port", ca_base + i), f"{where}.ca_port"),
            pva_port=_port(e.get("pva_port", pva_base + 2 * i), f"{where}.pva_port"),
            pva_udp_port=_port(e.get("pva_udp_port", pva_base + 2 * i + 1), f"{where}.pva_udp_port")))
    prefixes = [s.prefix for s in scopes]
    dup = sorted({p for p in prefixes if prefixes.count(p) > 1})
    if dup:
        raise LabError(f"scopes: prefix {dup[0]!r} is used twice (every scope needs its own prefix)")
    used: dict[tuple[str, int], str] = {}

    def claim(proto: str, port: int, who: str) -> None:
        if (proto, port) in used:
            raise LabError(f"{who}: {proto} port {port} is already used by {used[(proto, port)]}")
        used[(proto, port)] = who

    for s in scopes:
        claim("tcp", s.ca_port, f"{s.prefix} CA")
        claim("udp", s.ca_port, f"{s.prefix} CA")
        if pva:
            claim("tcp", s.pva_port, f"{s.prefix} PVA")
            claim("udp", s.pva_udp_port, f"{s.prefix} PVA search")
    if gateway is not None:
        if not pva:
            raise LabError("gateway: the PVA gateway needs pva: true (the IOCs must serve PV Access)")
        gw = dict(gateway)
        unknown = set(gw) - {"port", "udp_port", "status_prefix"}
        if unknown:
            raise LabError(f"gateway: unknown key(s) {', '.join(sorted(unknown))} "
                           "(allowed: port, udp_port, status_prefix)")
        gw["port"] = _port(gw.get("port", DEFAULT_GATEWAY[0]), "gateway.port")
        gw["udp_port"] = _port(gw.get("udp_port", DEFAULT_GATEWAY[1]), "gateway.udp_port")
        gw.setdefault("status_prefix", "LABGW:")
        claim("tcp", gw["port"], "gateway")
        claim("udp", gw["udp_port"], "gateway search")
        gateway = gw
    return Lab(scopes=scopes, pva=pva, gateway=gateway)


def load_lab(path: str | Path) -> Lab:
    """Read a lab YAML file (see the module doc). Raises :class:`LabError`."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except OSError as ex:
        raise LabError(f"{path}: cannot read: {ex.strerror}") from None
    except yaml.YAMLError as ex:
        raise LabError(f"{path}: not valid YAML: {ex}") from None
    if not isinstance(data, dict):
        raise LabError(f"{path}: expected a mapping with scopes:, got {type(data).__name__}")
    unknown = set(data) - {"scopes", "pva", "ports", "gateway"}
    if unknown:
        raise LabError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} (allowed: scopes, pva, ports, gateway)")
    ports = data.get("ports") or {}
    if not isinstance(ports, dict) or set(ports) - {"ca", "pva"}:
        raise LabError(f"{path}: ports: expected {{ca: N, pva: N}}, got {ports!r}")
    gateway = data.get("gateway")
    if gateway is not None and not isinstance(gateway, dict):
        gateway = {}
    pva = data.get("pva", True)
    if not isinstance(pva, bool):
        raise LabError(f"{path}: pva: expected true or false, got {pva!r}")
    return build_lab(data.get("scopes") or [], pva=pva,
                     ca_base=_port(ports.get("ca", DEFAULT_CA_BASE), "ports.ca"),
                     pva_base=_port(ports.get("pva", DEFAULT_PVA_BASE), "ports.pva"),
                     gateway=gateway, base_dir=p.parent)


def gateway_config(lab: Lab, interface: str = _env.LOOPBACK) -> dict[str, Any]:
    """The ``pvagw`` JSON configuration: one client searching every IOC's PVA UDP port, one
    server on ``interface`` at the gateway's ports (``statusprefix`` PVs included)."""
    assert lab.gateway is not None
    gw = lab.gateway
    return {
        "version": 2,
        "readOnly": False,
        "clients": [{
            "name": "lab",
            "provider": "pva",
            "addrlist": " ".join(f"{interface}:{s.pva_udp_port}" for s in lab.scopes),
            "autoaddrlist": False,
        }],
        "servers": [{
            "name": "labgw",
            "clients": ["lab"],
            "interface": [interface],
            "addrlist": interface,
            "autoaddrlist": False,
            "serverport": gw["port"],
            "bcastport": gw["udp_port"],
            "statusprefix": gw["status_prefix"],
        }],
    }


# ------------------------------------------------------------------------------ running

class Supervisor:
    """Start the lab's processes, report any that end, stop all of them by PID."""

    def __init__(self, lab: Lab, workdir: Path, serve_network: bool = False) -> None:
        self.lab = lab
        self.workdir = workdir
        self.serve_network = serve_network
        self.procs: dict[str, subprocess.Popen] = {}
        self.stopping = threading.Event()

    def _ioc_env(self, s: Scope) -> dict[str, str]:
        env = dict(os.environ)
        if not self.serve_network:
            env.update(_env.LOOPBACK_ENV)
        env["EPICS_CA_SERVER_PORT"] = str(s.ca_port)
        env["EPICS_PVAS_SERVER_PORT"] = str(s.pva_port)
        env["EPICS_PVAS_BROADCAST_PORT"] = str(s.pva_udp_port)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for s in self.lab.scopes:
            args = [sys.executable, "-m", "picodaq_ioc", "--prefix", s.prefix]
            if s.config:
                args += ["--config", s.config]
            if self.lab.pva:
                args.append("--pva")
            if self.serve_network:
                args.append("--serve-network")
            name = s.prefix.strip(":").replace(":", "_")
            # one autosave file per scope (two scopes may share a configuration file)
            args += ["--autosave", str(self.workdir / f"{name}.autosave.json")]
            args += self.lab.extra_args
            s.log = str(self.workdir / f"{name}.log")
            with open(s.log, "w") as logf:
                proc = subprocess.Popen(args, env=self._ioc_env(s), stdout=logf, stderr=subprocess.STDOUT)
            s.pid = proc.pid
            self.procs[s.prefix] = proc
            log.info("%s: pid %d, CA port %d, PVA ports %d/%d, log %s", s.prefix, proc.pid, s.ca_port,
                     s.pva_port, s.pva_udp_port, s.log)
        gw_info = None
        if self.lab.gateway:
            cfg_path = self.workdir / "pvagw.json"
            cfg_path.write_text(json.dumps(gateway_config(self.lab), indent=2))
            gw_log = self.workdir / "pvagw.log"
            env = dict(os.environ)
            env.update(_env.LOOPBACK_ENV)
            with open(gw_log, "w") as logf:
                proc = subprocess.Popen([sys.executable, "-m", "p4p.gw", str(cfg_path)], env=env,
                                        stdout=logf, stderr=subprocess.STDOUT)
            self.procs["gateway"] = proc
            gw_info = {**self.lab.gateway, "pid": proc.pid, "config": str(cfg_path), "log": str(gw_log)}
            log.info("gateway: pid %d, PVA ports %d/%d, config %s", proc.pid, self.lab.gateway["port"],
                     self.lab.gateway["udp_port"], cfg_path)
        info = {"scopes": [asdict(s) for s in self.lab.scopes], "gateway": gw_info,
                "client_env": self.lab.client_env()}
        (self.workdir / "lab.json").write_text(json.dumps(info, indent=2))

    def watch(self, poll: float = 0.5) -> None:
        """Until stopped: report children that end (the others keep running)."""
        reported: set[str] = set()
        while not self.stopping.wait(poll):
            for name, proc in self.procs.items():
                if name not in reported and proc.poll() is not None:
                    reported.add(name)
                    log.warning("%s ended (exit status %s); the rest of the lab keeps running",
                                name, proc.returncode)
            if len(reported) == len(self.procs):
                log.error("every process of the lab ended")
                return

    def stop(self, timeout: float = 30.0) -> None:
        self.stopping.set()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="picodaq-lab", description=(
        "Start a lab of several picodaq IOCs on this host (own prefix and ports each), "
        "optionally behind one PV Access gateway (p4p's pvagw)."))
    p.add_argument("--lab", metavar="FILE", help="lab YAML file (scopes, ports, gateway)")
    p.add_argument("--config", action="append", default=[], metavar="FILE",
                   help="configuration of one scope (repeat; prefixes LAB1:, LAB2:, ...)")
    p.add_argument("--prefix", action="append", default=[], metavar="P",
                   help="prefix of the n-th --config (default LAB<n>:)")
    p.add_argument("--ca-port", type=int, default=DEFAULT_CA_BASE, help="CA port of the first IOC (+1 each)")
    p.add_argument("--pva-port", type=int, default=DEFAULT_PVA_BASE,
                   help="PVA TCP port of the first IOC (UDP = +1; +2 per IOC)")
    p.add_argument("--no-pva", action="store_true", help="serve Channel Access only (no gateway possible)")
    p.add_argument("--gateway", action="store_true", help="start pvagw in front of the IOCs")
    p.add_argument("--gateway-port", type=int, nargs=2, default=list(DEFAULT_GATEWAY), metavar=("TCP", "UDP"),
                   help="the gateway's PVA ports (default 5075 5076)")
    p.add_argument("--workdir", default="picodaq-lab", help="logs, pvagw.json and lab.json (default ./picodaq-lab)")
    p.add_argument("--serve-network", action="store_true",
                   help="let the IOCs serve the interfaces of the EPICS_CAS_/EPICS_PVAS_ environment")
    p.add_argument("--print-config", action="store_true", help="print the lab and the pvagw configuration and exit")
    return p


def lab_from_args(args: argparse.Namespace) -> Lab:
    if args.lab and args.config:
        raise LabError("give either --lab FILE or --config FILE ..., not both")
    if args.lab:
        return load_lab(args.lab)
    if len(args.prefix) > len(args.config):
        raise LabError(f"--prefix given {len(args.prefix)} times for {len(args.config)} --config")
    entries = [{"config": c, **({"prefix": args.prefix[i]} if i < len(args.prefix) else {})}
               for i, c in enumerate(args.config)]
    gateway = {"port": args.gateway_port[0], "udp_port": args.gateway_port[1]} if args.gateway else None
    return build_lab(entries, pva=not args.no_pva, ca_base=args.ca_port, pva_base=args.pva_port,
                     gateway=gateway)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    try:
        lab = lab_from_args(args)
    except LabError as ex:
        print(f"picodaq-lab: error: {ex}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps({"scopes": [asdict(s) for s in lab.scopes],
                          "gateway": gateway_config(lab) if lab.gateway else None,
                          "client_env": lab.client_env()}, indent=2))
        return 0
    sup = Supervisor(lab, Path(args.workdir), serve_network=args.serve_network)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sup.stopping.set())
    sup.start()
    print("client environment:\n" + "\n".join(f"export {k}='{v}'" for k, v in lab.client_env().items()),
          flush=True)
    try:
        sup.watch()
    finally:
        sup.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
