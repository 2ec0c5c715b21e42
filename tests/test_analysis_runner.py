"""AnalysisRunner on a real BufferManager (replayed toy events): every event reaches every
module, a raising module is reported and does not hold up the DAQ, start() follows runs
and configuration generations, summaries are written."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import yaml

from picodaq_ioc.analysis.base import AnalysisConfigError, AnalysisModule, ResultSpec
from picodaq_ioc.analysis.runner import AnalysisRunner
from picodaq_ioc.analysis.toys import ReplayScope, make_applied, make_batch, trapezoids
from picodaq_ioc.daq.buffer_manager import BufferManager
from picodaq_ioc.scope.types import ChannelConfig, Direction, TimebaseConfig, TriggerConfig

DT, NS, NPRE = 4e-9, 1000, 50


def _replay(n=256, seed=1) -> ReplayScope:
    rng = np.random.default_rng(seed)
    a = make_applied(dt=DT, n_samples=NS, n_pre=NPRE)
    t0 = np.full((n, 2), np.nan)
    t0[:, 0] = NPRE * DT - 8e-9
    t0[::4, 1] = t0[::4, 0] + rng.uniform(0.5e-6, 3e-6, len(t0[::4]))
    v = trapezoids(NS, DT, t0, np.full((n, 2), -0.04), 20e-9, 12e-9, 128e-9) + rng.normal(0, 5e-4, (n, NS))
    return ReplayScope(make_batch(a, v[:, None, :]).raw, rate=1000.0)


def _bm(scope, level=-0.02) -> BufferManager:
    bm = BufferManager(scope, n_buffers=32)
    chans = {c: ChannelConfig(enabled=c == "A", range_v=0.5) for c in "ABCD"}
    bm.configure(chans, TimebaseConfig(DT, NS, NPRE / NS, 16),
                 TriggerConfig(source="A", threshold_v=level, direction=Direction.FALLING))
    return bm


class Spy(AnalysisModule):
    prefix = "Spy"
    specs = (ResultSpec("Events_RBV", "int", "events"),)

    def __init__(self, fail_at: int | None = None, name: str = "spy") -> None:
        super().__init__()
        self.name, self.prefix = name, name.capitalize()
        self.fail_at = fail_at
        self.starts: list[tuple[int, float]] = []
        self.events: list[np.ndarray] = []

    def start(self, applied, run) -> None:
        self.starts.append((applied.config_generation, run.run_start_time))

    def process(self, batch) -> None:
        if self.fail_at is not None and batch.event_number[-1] >= self.fail_at:
            raise ZeroDivisionError("spy failed on purpose")
        self.events.append(np.array(batch.event_number))

    def results(self) -> dict[str, Any]:
        return {"Events_RBV": int(sum(len(e) for e in self.events))}


def _run(bm, n) -> Any:
    bm.start(max_events=n)
    assert bm.wait_stopped(60.0)
    return bm.stop()


def test_all_modules_see_every_event_and_summary(tmp_path) -> None:
    bm = _bm(_replay())
    spy = Spy(name="spy")
    r = AnalysisRunner(bm, [{"module": "pulse", "threshold": 0.5, "pulseShape": [{"pheight": -0.04}]},
                            {"module": "voltmeter", "channels": ["A"]}, {"module": "rates"}, spy],
                       output_dir=tmp_path)
    assert list(r.modules) == ["pulse", "voltmeter", "rates", "spy"]
    run = r.begin_run()
    summary = _run(bm, 2000)
    assert summary.events == 2000
    ev = np.concatenate(spy.events)
    assert np.array_equal(ev, np.arange(1, 2001))  # in order, each once
    res = r.results("pulse")
    assert res["Events_RBV"] == 2000 and res["Accepted_RBV"] == 2000
    assert res["DoublePulses_RBV"] == 2000 // 4  # every 4th replayed event has a second pulse
    assert r.results("rates")["Events_RBV"] == 2000
    assert r.results("voltmeter")["Updates_RBV"] == 2000
    assert r.status() == {"pulse": "OK", "voltmeter": "OK", "rates": "OK", "spy": "OK"}
    out = r.end_run()
    assert out["pulse"]["accepted"] == 2000 and out["spy"]["events"] == 2000
    doc = yaml.safe_load(open(r.summary_file))
    assert doc["modules"]["pulse"]["double_pulses"] == 500 and doc["run_number"] == 1
    stamp = run.extra["stamp"]
    assert r.summary_file.endswith(f"{stamp}_analysis_summary.yaml")
    assert (tmp_path / f"{stamp}_pulse_accepted.csv").exists()
    assert r.end_run() == {}  # idempotent
    # a late end_run() after begin_run() of the next run (no events yet) keeps the new run open
    nxt = r.begin_run()
    assert r.end_run() == {} and r.run is nxt
    r.close()
    bm.close()


def test_failing_module_is_reported_and_does_not_hold_the_daq(tmp_path) -> None:
    bm = _bm(_replay())
    bad = Spy(fail_at=300, name="bad")
    good = Spy(name="good")
    lines: list[str] = []
    r = AnalysisRunner(bm, [bad, good], output_dir=tmp_path, log_fn=lines.append)
    summary = _run(bm, 3000)
    assert summary.events == 3000 and summary.processed == 3000
    assert np.array_equal(np.concatenate(good.events), np.arange(1, 3001))
    assert "ZeroDivisionError: spy failed on purpose" in r.errors["bad"]
    assert r.status()["bad"].startswith("process: ZeroDivisionError")
    assert r.status()["good"] == "OK"
    assert any("'bad' failed" in ln for ln in lines)
    out = r.end_run()
    assert "ZeroDivisionError" in out["bad"]["error"]
    # the next run retries the module (it still fails at event 300)
    _run(bm, 100)
    assert "bad" not in r.errors and len(bad.starts) == 2
    r.close()
    bm.close()


def test_start_on_new_run_and_on_generation_change(tmp_path) -> None:
    scope = _replay()
    bm = _bm(scope)
    spy = Spy(name="spy")
    r = AnalysisRunner(bm, [spy, {"module": "pulse", "threshold": 0.5, "pulseShape": [{"pheight": -0.04}]}],
                       output_dir=tmp_path)
    bm.add_run_listener(r)  # runs begin and end with the buffer manager's (as DaqSession does)
    _run(bm, 500)
    assert len(list(tmp_path.glob("*_analysis_summary.yaml"))) == 1  # run 1 finished at its end
    gen1 = bm.applied.config_generation
    # reconfigure while running: the next batch carries a new generation -> start() again
    bm.start()
    assert bm.wait_processed(200, timeout=30)
    chans = {c: ChannelConfig(enabled=c == "A", range_v=0.5) for c in "ABCD"}
    bm.configure(chans, TimebaseConfig(DT, NS, NPRE / NS, 16),
                 TriggerConfig(source="A", threshold_v=-0.03, direction=Direction.FALLING))
    gen2 = bm.applied.config_generation
    assert gen2 != gen1
    assert bm.wait_processed(bm.stats().events + 100, timeout=30)
    bm.stop()
    gens = [g for g, _ in spy.starts]
    assert gens[0] == gen1 and gens[-1] == gen2 and len(spy.starts) == 3
    # run 2 was finished at its end too; a late end_run() changes nothing
    files = sorted(tmp_path.glob("*_analysis_summary.yaml"))
    assert len(files) == 2
    r.end_run()
    files = sorted(tmp_path.glob("*_analysis_summary.yaml"))
    assert len(files) == 2 and files[0].name != files[1].name
    docs = {d["run_number"]: d for d in (yaml.safe_load(open(f)) for f in files)}
    assert docs[1]["modules"]["pulse"]["events"] == 500
    assert docs[2]["modules"]["pulse"]["events"] == bm.stats().events
    assert r.results("pulse")["Events_RBV"] == bm.stats().events  # counters restarted with run 2
    r.close()
    bm.close()


def test_runner_config_errors(tmp_path) -> None:
    with pytest.raises(AnalysisConfigError, match="duplicate module name"):
        AnalysisRunner(None, [{"module": "rates"}, {"module": "rates", "prefix": "R2"}])
    with pytest.raises(AnalysisConfigError, match=r"'prefix' = 'Rates'.*already used by module 'rates'"):
        AnalysisRunner(None, [{"module": "rates"}, {"module": "rates", "name": "r2"}])
    with pytest.raises(AnalysisConfigError, match=r"analysis\[1\] 'p' \(pulse\): parameter 'threshold'"):
        AnalysisRunner(None, [{"module": "rates"}, {"module": "pulse", "name": "p", "threshold": "high"}])


def test_module_failing_in_start_is_reported_and_skipped(tmp_path) -> None:
    """A pulse shape that cannot be sampled at the record's interval: start() fails with a
    clear error, the module is skipped (not finished) and the DAQ completes."""
    bm = _bm(_replay())
    r = AnalysisRunner(bm, [{"module": "pulse", "pulseShape": [{"taur": 1e-9, "tauon": 0.0, "tauf": 1e-9,
                                                                "pheight": -0.04}]}, Spy(name="spy")],
                       output_dir=tmp_path)
    summary = _run(bm, 500)
    assert summary.events == summary.processed == 500
    assert r.errors["pulse"].startswith("start: AnalysisConfigError")
    assert "cannot be sampled at the sample interval 4 ns" in r.errors["pulse"]
    out = r.end_run()
    assert out["pulse"]["events"] == 0 and "cannot be sampled" in out["pulse"]["error"]
    assert out["spy"]["events"] == 500
    r.close()
    bm.close()
