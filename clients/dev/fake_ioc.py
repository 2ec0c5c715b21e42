"""A small stand-in IOC (caproto) serving the client-facing part of the picodaq PV contract.

For developing and testing the display clients without the real ``picodaq-ioc``; it is
*not* the product. It fakes a trigger stream (Poisson, ~50 Hz) with exponential pulses on
noise, the run-control state machine with put-completion on ``Acquire``, statistics,
``VMeter:`` and ``Pulse:`` histograms.

Run::

    EPICS_CA_SERVER_PORT=5077 python clients/dev/fake_ioc.py --prefix FAKE:
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import numpy as np
from caproto._data import (
    ChannelDouble,
    ChannelEnum,
    ChannelInteger,
    ChannelString,
)
from caproto.asyncio.server import start_server

RANGES = [0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0]
STATES = ["Idle", "Running", "Paused", "Stopped", "Error"]
CHANNELS = "ABCD"


class FakeDAQ:
    """State of the fake acquisition plus its pvdb."""

    def __init__(self, prefix: str, rate: float, seed: int = 1) -> None:
        self.prefix = prefix
        self.rate = rate
        self.rng = np.random.default_rng(seed)
        self.db: dict[str, object] = {}
        self.events = 0
        self.triggers = 0
        self.run_time = 0.0
        self.target: int | None = None
        self.done = asyncio.Event()
        self.decays: list[float] = []
        self.heights: list[float] = []
        self._build()

    # -- pvdb ----------------------------------------------------------------------------
    def _add(self, name: str, chan) -> None:
        self.db[self.prefix + name] = chan

    def _setting(self, name: str, chan_cls, value, **kw) -> None:
        rbv = chan_cls(value=value, **kw)
        daq = self

        class Setpoint(chan_cls):
            async def verify_value(self, v):
                v = await super().verify_value(v)
                await daq.apply(name, v, rbv)
                return v

        self._add(name, Setpoint(value=value, **kw))
        self._add(name + "_RBV", rbv)

    def _build(self) -> None:
        d = self._add
        d("Model_RBV", ChannelString(value="2204A"))
        d("Backend_RBV", ChannelString(value="fake"))
        d("Serial_RBV", ChannelString(value="FAKE-0001"))
        d("StatusMessage_RBV", ChannelString(value="ready"))
        daq = self

        class Acquire(ChannelEnum):
            async def verify_value(self, v):
                v = await super().verify_value(v)
                if v == "Start":
                    n = int(daq.db[daq.prefix + "NumEvents"].value)
                    await daq.start(n)
                    if n > 0:
                        await daq.done.wait()
                        return "Stop"
                else:
                    await daq.set_state("Stopped")
                return v

        class Pause(ChannelEnum):
            async def verify_value(self, v):
                v = await super().verify_value(v)
                state = daq.state()
                if v == "Pause" and state == "Running":
                    await daq.set_state("Paused")
                elif v == "Run" and state == "Paused":
                    await daq.set_state("Running")
                return v

        d("Acquire", Acquire(value="Stop", enum_strings=["Stop", "Start"]))
        d("NumEvents", ChannelInteger(value=0))
        d("Pause", Pause(value="Run", enum_strings=["Run", "Pause"]))
        d("State_RBV", ChannelEnum(value="Idle", enum_strings=STATES))
        self._setting("SampleInterval", ChannelDouble, 8e-9, units="s", precision=3)
        self._setting("NumSamples", ChannelInteger, 500)
        self._setting("PreTrigger", ChannelDouble, 0.2, units="")
        self._setting("NumSegments", ChannelInteger, 1)
        d("TimeAxis_RBV", ChannelDouble(value=self.time_axis(8e-9, 500, 0.2), units="s", precision=9))
        for c in CHANNELS:
            self._setting(f"{c}:Enable", ChannelEnum, "On" if c in "AB" else "Off",
                          enum_strings=["Off", "On"])
            self._setting(f"{c}:Range", ChannelDouble, 0.5 if c == "A" else 0.2, units="V", precision=3)
            self._setting(f"{c}:Coupling", ChannelEnum, "DC", enum_strings=["AC", "DC"])
            self._setting(f"{c}:Offset", ChannelDouble, 0.0, units="V", precision=3)
            d(f"{c}:Waveform_RBV", ChannelDouble(value=np.zeros(500), units="V", precision=4,
                                                  max_length=100000))
            d(f"{c}:Overflow_RBV", ChannelEnum(value="No", enum_strings=["No", "Yes"]))
            if c in "AB":  # like the real voltmeter module: only its configured channels
                for q in ("Mean", "RMS", "Std", "PkPk", "Min", "Max"):
                    d(f"VMeter:{c}:{q}_RBV", ChannelDouble(value=0.0, units="V", precision=5))
        self._setting("Trigger:Enable", ChannelEnum, "On", enum_strings=["Off", "On"])
        self._setting("Trigger:Source", ChannelEnum, "A", enum_strings=["A", "B", "C", "D", "Ext"])
        self._setting("Trigger:Level", ChannelDouble, -0.05, units="V", precision=3)
        self._setting("Trigger:Direction", ChannelEnum, "Falling",
                      enum_strings=["Rising", "Falling", "Above", "Below"])
        self._setting("Trigger:Delay", ChannelInteger, 0)
        self._setting("Trigger:AutoTimeout", ChannelDouble, 0.0, units="s")
        self._setting("Buffer:Size", ChannelInteger, 16)
        d("Buffer:Filled_RBV", ChannelInteger(value=0))
        d("Buffer:FillLevel_RBV", ChannelDouble(value=0.0, units="%", precision=1))
        for n in ("Triggers_RBV", "Events_RBV"):
            d("Stats:" + n, ChannelInteger(value=0))
        for n, u in (("TriggerRate_RBV", "Hz"), ("EventRate_RBV", "Hz"), ("RunTime_RBV", "s"),
                     ("LiveTime_RBV", "s"), ("LiveFraction_RBV", "%")):
            d("Stats:" + n, ChannelDouble(value=0.0, units=u, precision=3))
        d("VMeter:Updates_RBV", ChannelInteger(value=0))
        d("Acquire_RBV", ChannelEnum(value="Done", enum_strings=["Done", "Acquiring"]))
        d("Pause_RBV", ChannelEnum(value="Run", enum_strings=["Run", "Pause"]))
        d("EventNumber_RBV", ChannelInteger(value=0))
        d("Waveform:MaxRate", ChannelDouble(value=10.0, units="Hz"))
        d("Waveform:Rate_RBV", ChannelDouble(value=0.0, units="Hz"))
        d("ArrayCounter_RBV", ChannelInteger(value=0))
        self.height_edges = np.linspace(0, 0.5, 51)
        self.decay_edges = np.linspace(0, 20e-6, 41)
        d("Pulse:Heights_RBV", ChannelInteger(value=np.zeros(50, int), max_length=50))
        d("Pulse:HeightBins_RBV", ChannelDouble(value=self.centres(self.height_edges), units="V"))
        d("Pulse:DecayTimes_RBV", ChannelInteger(value=np.zeros(40, int), max_length=40))
        d("Pulse:DecayBins_RBV", ChannelDouble(value=self.centres(self.decay_edges), units="s"))
        d("Pulse:Background_RBV", ChannelDouble(value=float("nan"), precision=4))
        d("Pulse:FitEntries_RBV", ChannelInteger(value=0))
        d("Pulse:FitMin_RBV", ChannelDouble(value=0.5e-6, units="s", precision=9))
        d("Pulse:FitMax_RBV", ChannelDouble(value=20e-6, units="s", precision=9))
        d("Pulse:Lifetime_RBV", ChannelDouble(value=float("nan"), units="s", precision=9))
        d("Pulse:LifetimeErr_RBV", ChannelDouble(value=float("nan"), units="s", precision=9))
        d("Pulse:Rate_RBV", ChannelDouble(value=0.0, units="Hz"))
        d("Pulse:DoublePulses_RBV", ChannelInteger(value=0))
        d("Pulse:Accepted_RBV", ChannelInteger(value=0))
        d("Pulse:Validated_RBV", ChannelInteger(value=0))

    @staticmethod
    def centres(edges: np.ndarray) -> np.ndarray:
        return 0.5 * (edges[1:] + edges[:-1])

    @staticmethod
    def time_axis(dt: float, n: int, pre: float) -> np.ndarray:
        return (np.arange(n) - int(round(pre * n))) * dt

    # -- behaviour -------------------------------------------------------------------------
    def state(self) -> str:
        return self.db[self.prefix + "State_RBV"].value

    async def set_state(self, s: str) -> None:
        await self.db[self.prefix + "State_RBV"].write(s)

    async def start(self, n: int) -> None:
        self.target = self.events + n if n > 0 else None
        self.done.clear()
        await self.set_state("Running")

    async def apply(self, name: str, v, rbv) -> None:
        if name.endswith(":Range"):
            v = min((r for r in RANGES if r >= v - 1e-12), default=RANGES[-1])
        await rbv.write(v)
        if name in ("SampleInterval", "NumSamples", "PreTrigger"):
            p = self.prefix
            t = self.time_axis(self.db[p + "SampleInterval_RBV"].value, self.db[p + "NumSamples_RBV"].value,
                               self.db[p + "PreTrigger_RBV"].value)
            await self.db[p + "TimeAxis_RBV"].write(t)

    async def loop(self, period: float = 0.1) -> None:
        p = self.prefix
        t_last = time.monotonic()
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            dt, t_last = now - t_last, now
            if self.state() != "Running":
                await self.db[p + "Stats:TriggerRate_RBV"].write(0.0)
                await self.db[p + "Stats:EventRate_RBV"].write(0.0)
                continue
            k = int(self.rng.poisson(self.rate * dt))
            if self.target is not None:
                k = min(k, self.target - self.events)
            self.triggers += k
            self.events += k
            self.run_time += dt
            t = self.db[p + "TimeAxis_RBV"].value
            for c in CHANNELS:
                noise = 0.005 * self.rng.standard_normal(len(t))
                amp = self.rng.uniform(0.05, 0.3)
                pulse = np.where(t >= 0, -amp * np.exp(-np.clip(t, 0, None) / 5e-7), 0.0)
                w = noise + pulse
                await self.db[p + f"{c}:Waveform_RBV"].write(w)
                if c in "AB":
                    for q, v in (("Mean", w.mean()), ("RMS", np.sqrt(np.mean(w * w))), ("Std", w.std()),
                                 ("PkPk", np.ptp(w)), ("Min", w.min()), ("Max", w.max())):
                        await self.db[p + f"VMeter:{c}:{q}_RBV"].write(float(v))
            await self.db[p + "VMeter:Updates_RBV"].write(self.db[p + "VMeter:Updates_RBV"].value + 1)
            await self.db[p + "EventNumber_RBV"].write(self.events)
            self.heights.extend(self.rng.uniform(0.05, 0.3, k))
            self.decays.extend(self.rng.exponential(2.2e-6, k // 3 + 1))
            await self.db[p + "ArrayCounter_RBV"].write(self.db[p + "ArrayCounter_RBV"].value + 1)
            await self.db[p + "Stats:Triggers_RBV"].write(self.triggers)
            await self.db[p + "Stats:Events_RBV"].write(self.events)
            await self.db[p + "Stats:TriggerRate_RBV"].write(k / dt)
            await self.db[p + "Stats:EventRate_RBV"].write(k / dt)
            await self.db[p + "Stats:RunTime_RBV"].write(self.run_time)
            await self.db[p + "Stats:LiveTime_RBV"].write(0.9 * self.run_time)
            await self.db[p + "Stats:LiveFraction_RBV"].write(90.0)
            fill = float(self.rng.integers(0, 16))
            await self.db[p + "Buffer:Filled_RBV"].write(int(fill))
            await self.db[p + "Buffer:FillLevel_RBV"].write(100 * fill / 16)
            await self.db[p + "Waveform:Rate_RBV"].write(1 / period)
            await self.db[p + "Pulse:Heights_RBV"].write(np.histogram(self.heights, self.height_edges)[0])
            dec = np.asarray(self.decays)
            await self.db[p + "Pulse:DecayTimes_RBV"].write(np.histogram(dec, self.decay_edges)[0])
            sel = dec[(dec >= 0.5e-6) & (dec < 20e-6)]
            if len(sel) > 5:
                # truncation ignored: a stand-in, not the real unbinned fit
                tau = float(sel.mean() - 0.5e-6)
                await self.db[p + "Pulse:Lifetime_RBV"].write(tau)
                await self.db[p + "Pulse:LifetimeErr_RBV"].write(tau / np.sqrt(len(sel)))
                await self.db[p + "Pulse:Background_RBV"].write(0.05)
                await self.db[p + "Pulse:FitEntries_RBV"].write(len(sel))
            await self.db[p + "Pulse:DoublePulses_RBV"].write(len(dec))
            if self.target is not None and self.events >= self.target:
                self.target = None
                await self.set_state("Stopped")
                self.done.set()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prefix", default="PICO:")
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--list-pvs", action="store_true")
    args = ap.parse_args(argv)
    daq = FakeDAQ(args.prefix, args.rate)
    if args.list_pvs:
        print("\n".join(daq.db))
        return
    assert os.environ.get("EPICS_CAS_INTF_ADDR_LIST", "127.0.0.1") == "127.0.0.1"

    async def startup(pvdb):
        asyncio.get_running_loop().create_task(daq.loop())
        print("fake IOC ready", flush=True)

    async def main_async():
        await asyncio.gather(start_server(daq.db, interfaces=["127.0.0.1"]), startup(daq.db))

    asyncio.run(main_async())


if __name__ == "__main__":
    main()
