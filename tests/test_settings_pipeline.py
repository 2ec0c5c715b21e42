"""One settings pipeline: concurrent puts are merged into the current request, coalesced,
applied once, and completed only when the applied state (as the PVs show it) includes them.

Unit tests of :class:`~picodaq_ioc.daq.settings.SettingsPipeline` with a slow fake device,
then the IOC over real Channel Access (served in-process, so the test can also read what the
simulated scope really applied): concurrent put-callbacks to three trigger PVs, 20 rounds,
with a run waiting for a trigger and with a run triggering; and ``Settings:Defer``.
"""

from __future__ import annotations

import threading
import time

import pytest
from ca_tools import caget, caput
from conftest import Monitor, wait_for
from inproc_ioc import inproc_ioc

from picodaq_ioc.daq.settings import Change, Settings, SettingsPipeline
from picodaq_ioc.scope.errors import InvalidConfig
from picodaq_ioc.scope.types import ChannelConfig, Direction, SigGenConfig, TimebaseConfig, TriggerConfig


# ------------------------------------------------------------------ the pipeline alone
class SlowDevice:
    """``configure`` takes ``delay`` s; refuses ranges above 10 V; records every call."""

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay
        self.calls: list[Settings] = []
        self.lock = threading.Lock()
        self.entered = threading.Event()  # set when configure() runs
        self.gate = threading.Event()  # configure() waits for it (set: never waits)
        self.gate.set()

    def configure(self, channels, timebase, trigger, siggen):
        self.entered.set()
        assert self.gate.wait(30)
        time.sleep(self.delay)  # the device being reconfigured (the window in which puts pile up)
        if any(c.range_v > 10.0 for c in channels.values()):
            bad = max(c.range_v for c in channels.values())
            raise InvalidConfig(f"range {bad} too large", field="range_v", allowed="<= 10")
        with self.lock:
            self.calls.append(Settings(dict(channels), timebase, trigger, siggen))
        return Settings(dict(channels), timebase, trigger, siggen)  # stands in for Applied


def _settings() -> Settings:
    return Settings({"A": ChannelConfig(), "B": ChannelConfig()}, TimebaseConfig(), TriggerConfig(),
                    SigGenConfig())


def test_concurrent_changes_of_different_fields_are_never_lost():
    dev = SlowDevice()
    p = SettingsPipeline(dev.configure, _settings(), None)
    fields = {"threshold_v": [0.01 * i for i in range(1, 31)], "delay_samples": list(range(1, 31)),
              "direction": [Direction.RISING, Direction.FALLING] * 15}

    def putter(name, values):
        for v in values:
            p.update(Change.of(f"Trigger:{name}", trigger={name: v}), timeout=10)

    threads = [threading.Thread(target=putter, args=item) for item in fields.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    want = {k: v[-1] for k, v in fields.items()}
    got = {k: getattr(p.requested.trigger, k) for k in fields}
    assert got == want
    assert {k: getattr(dev.calls[-1].trigger, k) for k in fields} == want  # the device has it too
    # 90 changes, but each reconfiguration took every change that arrived meanwhile
    assert len(dev.calls) < 90
    p.close()


def test_a_burst_is_coalesced_into_one_reconfiguration_and_the_latest_value_wins():
    dev = SlowDevice(delay=0.0)
    dev.gate.clear()
    p = SettingsPipeline(dev.configure, _settings(), None)
    first = p.submit(Change.of("NumSamples", timebase={"n_samples": 100}))
    assert dev.entered.wait(10)  # the device is being reconfigured for the first change ...
    futs = [p.submit(Change.of("NumSamples", timebase={"n_samples": 101 + i})) for i in range(199)]
    dev.gate.set()  # ... while 199 more arrive
    assert first.result(10).requested.timebase.n_samples == 100
    outcomes = [f.result(10) for f in futs]
    assert p.requested.timebase.n_samples == 299
    # one reconfiguration for the 199, no intermediate configuration reached the device
    assert [c.timebase.n_samples for c in dev.calls] == [100, 299]
    assert {o.batch for o in outcomes} == {2} and outcomes[0].requested.timebase.n_samples == 299
    p.close()


def test_a_refused_change_fails_alone_and_leaves_the_request_in_force():
    dev = SlowDevice(delay=0.05)
    p = SettingsPipeline(dev.configure, _settings(), None)
    blocker = p.submit(Change.of("first", timebase={"n_samples": 300}))
    good = p.submit(Change.of("A:Range", channels={"A": {"range_v": 0.5}}))
    bad = p.submit(Change.of("B:Range", channels={"B": {"range_v": 50.0}}))
    typo = p.submit(Change.of("typo", trigger={"treshold_v": 1.0}))
    later = p.submit(Change.of("Trigger:Level", trigger={"threshold_v": 0.3}))
    blocker.result(10)
    assert good.result(10).requested.channels["A"].range_v == 0.5
    with pytest.raises(InvalidConfig, match="range 50.0"):
        bad.result(10)
    with pytest.raises(InvalidConfig, match="treshold_v: unknown setting") as ei:
        typo.result(10)
    assert "threshold_v" in ei.value.allowed
    assert later.result(10).requested.trigger.threshold_v == 0.3
    req = p.requested
    assert (req.channels["A"].range_v, req.channels["B"].range_v, req.timebase.n_samples,
            req.trigger.threshold_v) == (0.5, ChannelConfig().range_v, 300, 0.3)
    p.close()


def test_an_unchanged_request_does_not_touch_the_device():
    dev = SlowDevice(delay=0.0)
    p = SettingsPipeline(dev.configure, _settings(), None)
    p.update(Change.of("x", trigger={"threshold_v": 0.2}))
    n = len(dev.calls)
    out = p.update(Change.of("again", trigger={"threshold_v": 0.2}))
    assert len(dev.calls) == n and out.requested.trigger.threshold_v == 0.2
    p.close()


def test_an_atomic_change_applies_together_or_not_at_all():
    dev = SlowDevice(delay=0.0)
    p = SettingsPipeline(dev.configure, _settings(), None)
    both = Change.of("A:Range", channels={"A": {"range_v": 5.0}}) + Change.of("B:Range", channels={"B": {"range_v": 20.0}})
    with pytest.raises(InvalidConfig):
        p.update(both)
    assert p.requested == _settings() and dev.calls == []
    p.close()


# ------------------------------------------------------------------ over Channel Access
#: 2000a simulator, muons on A and B (same range on both, so an applied trigger level does not
#: depend on the source), paced to the wall clock like the live IOC.
def _config(level: float, direction: str = "Falling") -> dict:
    return {
        "device": {"backend": "sim", "model": "2000a"},
        "channels": {"A": {"range": 0.2}, "B": {"range": 0.2}},
        "timebase": {"sample_interval": 4.0e-9, "samples": 500, "pretrigger": 0.1},
        "trigger": {"enabled": True, "source": "A", "level": level, "direction": direction, "auto_timeout": 0},
        "buffer": {"n_buffers": 16},
        "simulation": {"seed": 5, "realtime": True,
                       "sources": [{"kind": "muon", "channels": ["A", "B"], "rate": 200.0, "amplitude": -0.08}]},
    }


SOURCES = ("A", "B")  # enum indices 0, 1 of Trigger:Source
DIRECTIONS = tuple(d.value for d in Direction)
ADC_STEP = 0.2 / 32512  # one ADC code of the 0.2 V range of a 2000a (the level is quantised)


def _collapse(seq: list) -> list:
    return [v for i, v in enumerate(seq) if i == 0 or v != seq[i - 1]]


@pytest.mark.ca
@pytest.mark.parametrize("scenario", ["waiting", "triggering"])
def test_concurrent_put_callbacks_never_lose_or_show_intermediate_settings(scenario):
    if scenario == "waiting":  # positive levels: the negative muon pulses never cross them
        levels, dirs = (0.15, 0.18), ("Rising", "Falling")
    else:
        levels, dirs = (-0.02, -0.03), ("Falling", "Below")
    with inproc_ioc(_config(levels[0], dirs[0])) as h:
        epics = h.use_pyepics()
        names = ("Trigger:Level", "Trigger:Source", "Trigger:Direction")
        pvs = {n: epics.PV(h.pv(n), auto_monitor=False) for n in names}
        for pv in pvs.values():
            assert pv.wait_for_connection(10)
        seen: dict[str, list] = {n: [] for n in names}
        mons = [Monitor(epics, h.pv(n + "_RBV"), lambda value=None, n=n, **kw: seen[n].append(value))
                for n in names]
        assert caput(h.env, h.pv("NumEvents"), 0, callback=True).returncode == 0
        assert caput(h.env, h.pv("Acquire"), "Start", callback=True).returncode == 0
        try:
            assert caget(h.env, h.pv("State_RBV")) == "Running"
            finals = {n: [] for n in names}
            for r in range(20):
                want = {"Trigger:Level": levels[(r + 1) % 2], "Trigger:Source": (r + 1) % 2,
                        "Trigger:Direction": DIRECTIONS.index(dirs[(r + 1) % 2])}
                for n in names:  # three put-callbacks in flight at once
                    pvs[n].put(want[n], wait=False, use_complete=True)
                wait_for(lambda: all(pv.put_complete for pv in pvs.values()), 30, 0.005,
                         f"round {r}: put-callbacks")
                # put completion = the applied state, as published, includes the put
                assert caget(h.env, h.pv("Trigger:Source_RBV")) == SOURCES[want["Trigger:Source"]]
                assert caget(h.env, h.pv("Trigger:Direction_RBV")) == dirs[(r + 1) % 2]
                assert float(caget(h.env, h.pv("Trigger:Level_RBV"), "-f", "9")) == pytest.approx(
                    want["Trigger:Level"], abs=ADC_STEP)
                for n in names:
                    finals[n].append(want[n])
            if scenario == "triggering":
                assert int(caget(h.env, h.pv("Stats:Events_RBV"))) > 0
            # afterwards: setpoint == _RBV == what the device applied
            applied = h.session.backend.applied.trigger
            req = h.session.pipeline.requested.trigger
            assert (applied.source, Direction(applied.direction).value) == (req.source, Direction(req.direction).value)
            assert applied.threshold_v == pytest.approx(req.threshold_v, abs=ADC_STEP)
            device = {"Trigger:Source": applied.source, "Trigger:Direction": Direction(applied.direction).value}
            for n, value in device.items():
                assert caget(h.env, h.pv(n)) == caget(h.env, h.pv(n + "_RBV")) == value, n
            assert float(caget(h.env, h.pv("Trigger:Level"), "-f", "9")) == req.threshold_v == levels[0]
            # every readback went old -> final in each round, never through another value
            wait_for(lambda: len(_collapse(seen["Trigger:Source"])) >= 21, 10, 0.05, "the last monitors")
            assert _collapse(seen["Trigger:Source"]) == _collapse([0, *finals["Trigger:Source"]])
            assert _collapse(seen["Trigger:Direction"]) == _collapse(
                [DIRECTIONS.index(dirs[0]), *finals["Trigger:Direction"]])
            lv = _collapse([round(float(v) / ADC_STEP) for v in seen["Trigger:Level"]])
            assert lv == _collapse([round(x / ADC_STEP) for x in (levels[0], *finals["Trigger:Level"])]), lv
        finally:
            for m in mons:
                m.close()
            caput(h.env, h.pv("Acquire"), "Stop", callback=True)


@pytest.mark.ca
def test_settings_defer_applies_held_puts_as_one_change_from_caput():
    with inproc_ioc(_config(-0.02)) as h:
        gen0 = int(caget(h.env, h.pv("Stats:ConfigGeneration_RBV")))
        assert caput(h.env, h.pv("Settings:Defer"), "On", callback=True).returncode == 0
        # Offset 1.0 V is only valid with the 5 V range (0.2 V allows +-0.25 V): together they are fine
        assert caput(h.env, h.pv("A:Offset"), 1.0).returncode == 0  # held
        assert caput(h.env, h.pv("A:Range"), 5.0, callback=True).returncode == 0  # held: completes at once
        assert caget(h.env, h.pv("Settings:Defer_RBV")) == "On"
        assert float(caget(h.env, h.pv("A:Range"))) == 5.0  # the setpoint shows the held request ...
        assert float(caget(h.env, h.pv("A:Range_RBV"))) == 0.2  # ... nothing is applied yet
        r = caput(h.env, h.pv("Settings:Defer"), "Off", callback=True)
        assert r.returncode == 0, r.stdout + r.stderr
        assert float(caget(h.env, h.pv("A:Range_RBV"))) == 5.0
        assert float(caget(h.env, h.pv("A:Offset_RBV"))) == 1.0
        assert float(caget(h.env, h.pv("A:Offset"))) == 1.0  # setpoints show the request
        assert int(caget(h.env, h.pv("Stats:ConfigGeneration_RBV"))) == gen0 + 1  # one change
        assert caget(h.env, h.pv("Settings:Defer_RBV")) == "Off"
        # back, one put at a time (offset first: 1.0 V is not allowed on the 0.2 V range)
        assert caput(h.env, h.pv("A:Offset"), 0.0, callback=True).returncode == 0
        assert caput(h.env, h.pv("A:Range"), 0.2, callback=True).returncode == 0
        # without Defer, an offset that needs a larger range is refused on its own
        assert caput(h.env, h.pv("A:Offset"), 2.0, callback=True).returncode != 0
        # a combination the device refuses: Defer=Off fails naming why, nothing is applied
        assert caput(h.env, h.pv("Settings:Defer"), "On", callback=True).returncode == 0
        assert caput(h.env, h.pv("A:Offset"), 2.0).returncode == 0
        assert caput(h.env, h.pv("NumSamples"), 300).returncode == 0
        r = caput(h.env, h.pv("Settings:Defer"), "Off", callback=True)
        assert r.returncode != 0
        msg = caget(h.env, h.pv("StatusMessage_RBV"), "-S")
        assert "offset" in msg.lower() and "Settings:Defer" in msg, msg
        assert int(caget(h.env, h.pv("NumSamples_RBV"))) == 500
        assert int(caget(h.env, h.pv("NumSamples"))) == 500  # the setpoints show the request in force
        assert float(caget(h.env, h.pv("A:Offset"))) == 0.0
        assert caget(h.env, h.pv("Settings:Defer")) == "Off"
        assert h.session.pipeline.requested.timebase.n_samples == 500
