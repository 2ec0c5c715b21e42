"""The run lifecycle as events: the buffer manager announces run start and end (with the
summary) to its listeners; the session's analysis runner follows the runs without any
heuristic; a listener that raises does not break the run or the other listeners."""

from __future__ import annotations

import threading

import pytest
import yaml
from test_session import T_WAIT, sim_cfg

from picodaq_ioc.daq.lifecycle import RunCallbacks
from picodaq_ioc.session import DaqSession


class Recorder:
    """A RunListener recording (what, run_id, thread, events processed at that moment)."""

    def __init__(self, bm) -> None:
        self.bm = bm
        self.log: list[tuple] = []
        self.ended = threading.Event()

    def run_started(self, run) -> None:
        self.log.append(("started", run.run_id, run.max_events, self.bm.stats().events))

    def run_ended(self, summary) -> None:
        self.log.append(("ended", summary.run_id, summary.events, summary.processed))
        self.ended.set()


def test_run_events_come_in_order_with_the_summary_before_stop_returns():
    with DaqSession.from_config(sim_cfg()) as s:
        seen: list = []
        s.attach("count", lambda batch: seen.append(len(batch)))
        rec = Recorder(s.bm)
        s.bm.add_run_listener(RunCallbacks(ended=lambda _s: 1 / 0))  # broken: logged, ignored
        s.bm.add_run_listener(rec)
        run1 = s.start(max_events=50)  # stops by itself
        assert rec.ended.wait(T_WAIT)
        assert s.bm.wait_stopped(T_WAIT)
        summary1 = s.stop()
        run2 = s.start()  # until stopped
        assert s.bm.wait_processed(20, timeout=T_WAIT)
        summary2 = s.stop()
        assert (run1.run_id + 1, summary1.run_id, summary2.run_id) == (run2.run_id, run1.run_id, run2.run_id)
        # the start is announced before any event of the run; the end after every event was
        # processed, with that run's summary; stop() returned only after the listeners ran
        assert rec.log == [("started", run1.run_id, 50, 0), ("ended", run1.run_id, 50, 50),
                           ("started", run2.run_id, None, 0),
                           ("ended", run2.run_id, summary2.events, summary2.events)]
        assert sum(seen) == 50 + summary2.events


def test_the_sessions_analysis_runner_follows_the_runs(tmp_path):
    cfg = sim_cfg(analysis=[{"module": "rates"}])
    with DaqSession.from_config(cfg) as s:
        runner = s.attach_analysis(output_dir=tmp_path)
        with pytest.raises(RuntimeError, match="already has"):
            s.attach_analysis()
        for n in (30, 40):  # two runs, nobody calls begin_run/end_run
            s.start(max_events=n)
            assert s.bm.wait_stopped(T_WAIT)
            s.stop()
        files = sorted(tmp_path.glob("*_analysis_summary.yaml"))
        docs = sorted((yaml.safe_load(f.read_text()) for f in files), key=lambda d: d["run_number"])
        assert [(d["run_number"], d["modules"]["rates"]["events"]) for d in docs] == [(1, 30), (2, 40)]
        assert runner.run is None  # both runs finished
