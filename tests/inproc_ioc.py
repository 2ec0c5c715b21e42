"""The IOC served from a thread of the test process (loopback, its own port and prefix).

Like the subprocess IOC of ``conftest.ioc_factory`` (same classes, same composition as
``picodaq_ioc.ioc.cli.run``), but the test can also look at the device itself
(``handle.session.backend.applied``: what the scope really has) while talking to the IOC
over real Channel Access (pyepics: ``handle.use_pyepics()``). Used by the settings-pipeline
tests and benchmarks/bench_settings.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ca_tools import free_port, loopback_env, run_tool, wait_for


@dataclass
class InprocIoc:
    prefix: str
    port: int
    env: dict[str, str]
    session: Any
    ctl: Any
    group: Any

    def pv(self, name: str) -> str:
        return self.prefix + name

    def use_pyepics(self):
        """pyepics pointed at this IOC (see ``conftest.IocHandle.use_pyepics``)."""
        from conftest import IocHandle  # noqa: PLC0415

        h = IocHandle(proc=None, prefix=self.prefix, port=self.port, env=self.env,  # type: ignore[arg-type]
                      log_path=None, config_path=None)  # type: ignore[arg-type]
        return h.use_pyepics()


@contextlib.contextmanager
def inproc_ioc(config: Mapping[str, Any], *, max_rate: float = 10.0) -> Iterator[InprocIoc]:
    """Serve ``config`` (a config mapping) until the block ends."""
    from picodaq_ioc.config.loader import validate_data
    from picodaq_ioc.ioc import caproto_fixes
    from picodaq_ioc.ioc.app import build_ioc_class
    from picodaq_ioc.ioc.ca_server import IsolatedContext
    from picodaq_ioc.ioc.controller import Controller
    from picodaq_ioc.ioc.publisher import WaveformPublisher
    from picodaq_ioc.session import DaqSession

    port = free_port()
    env = loopback_env(port)
    saved = {k: os.environ.get(k) for k in env if k.startswith("EPICS_")}
    os.environ.update({k: v for k, v in env.items() if k.startswith("EPICS_")})
    prefix = f"INP{uuid.uuid4().hex[:6].upper()}:"
    caproto_fixes.apply()
    session = DaqSession.from_config(validate_data(dict(config)))
    cls = build_ioc_class(session.info, max_samples=4096)
    group = cls(prefix=prefix)
    ctl = Controller(session)
    group.attach(ctl, WaveformPublisher(session.bm, max_rate=max_rate), "sim")
    loop = asyncio.new_event_loop()

    async def serve() -> None:
        ctx = IsolatedContext(group.pvdb, ["127.0.0.1"])  # the IOC's server, made in its loop
        group.server_context = ctx
        await ctx.run(log_pv_names=False, startup_hook=group.__ainit__)

    server = loop.create_task(serve())
    thread = threading.Thread(target=loop.run_until_complete, args=(server,), name="inproc-ioc", daemon=True)
    thread.start()
    try:
        wait_for(lambda: run_tool("caget", ["-t", "-w", "1", prefix + "State_RBV"], env).returncode == 0,
                 30, 0.1, "the in-process IOC")
        yield InprocIoc(prefix, port, env, session, ctl, group)
    finally:
        loop.call_soon_threadsafe(server.cancel)
        thread.join(30)
        rest = asyncio.all_tasks(loop)  # the IOC's own tasks (status loop, settings publisher ...)
        for t in rest:
            t.cancel()
        loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
        loop.close()
        group.publisher.stop()
        ctl.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
