"""File and disk errors of the put log and autosave are reported once, clearly (issue 11).

The tests run as any user (root included), so "unwritable" is made with paths that no user
can write: a file used as a directory, a directory used as a file.
"""

from __future__ import annotations

import logging
import sys

from reliability_helpers import REPO, ca_env, connect_when_ready, free_port, run_client, wait_until

from picodaq_ioc.ioc.autosave import AutosaveManager


def test_putlog_at_an_unwritable_path_is_one_line_and_exit_2(tmp_path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    target = blocker / "put.log"
    rc, out, err = run_client([sys.executable, "-m", "picodaq_ioc", "--putlog", str(target), "--no-autosave"],
                              ca_env(free_port()) | {"PYTHONPATH": str(REPO)})
    assert rc == 2, (rc, err[-2000:])
    lines = [ln for ln in err.splitlines() if "--putlog" in ln]
    assert lines == [f"picodaq-ioc: error: --putlog {target}: cannot open for appending: File exists ({blocker})"], err
    assert "Traceback" not in err


class _Chan:
    def __init__(self, value) -> None:
        self.value = value
        self.fields = {}


def test_a_failing_save_is_logged_once_and_recovery_once(tmp_path, caplog) -> None:
    blocker = tmp_path / "full_disk"
    blocker.write_text("x")  # saving below a file fails like a full disk: every retry
    pvdb = {"P:Setting": _Chan(1.0), "P:Setting_RBV": _Chan(1.0)}  # a setting: writable with a readback
    mgr = AutosaveManager(pvdb, blocker / "s.json", prefix="P:", restore=False, debounce=0.0, max_delay=0.0)
    with caplog.at_level(logging.INFO, logger="picodaq_ioc.ioc.autosave"):
        mgr.poll(now=0.0)  # first poll: remembers the state (--no-restore)
        for i in range(1, 20):
            pvdb["P:Setting"].value = float(i)
            mgr.poll(now=float(i))
        errors = [r for r in caplog.records if "cannot write" in r.getMessage()]
        assert len(errors) == 1 and errors[0].levelno == logging.ERROR
        assert mgr.save_error is not None and mgr.save_error.endswith(f"File exists ({blocker})")
        blocker.unlink()
        blocker.mkdir()  # space again
        pvdb["P:Setting"].value = 99.0
        assert mgr.poll(now=100.0)
    assert mgr.save_error is None
    assert sum("written again" in r.getMessage() for r in caplog.records) == 1


def test_unwritable_autosave_path_is_shown_once_with_an_alarm(ioc_factory, tmp_path) -> None:
    """``--autosave`` naming a directory: nothing can be read or written there. The IOC says so
    once (no false claim of a ``.bad`` copy) and shows it in StatusMessage_RBV with an alarm."""
    target = tmp_path / "a_directory.json"
    target.mkdir()
    h = ioc_factory(None, ["--autosave", str(target)])
    c = connect_when_ready(h.port, h.pv("StatusMessage_RBV"), user="files")
    try:
        assert c.put(h.pv("A:Range"), 0.2)[0]  # a change to save
        wait_until(lambda: "cannot write" in c.value(h.pv("StatusMessage_RBV"))
                   and c.severity(h.pv("StatusMessage_RBV")) == 2, 20,
                   what=f"status {c.value(h.pv('StatusMessage_RBV'))!r}")
        beat = int(c.value(h.pv("IOC:HEARTBEAT")))
        # several save attempts later (1 Hz heartbeat, saves retried every few seconds) ...
        assert c.put(h.pv("A:Range"), 0.5)[0]
        wait_until(lambda: int(c.value(h.pv("IOC:HEARTBEAT"))) >= beat + 8, 30, what="8 s of retries")
    finally:
        c.close()
    log = h.log()
    assert log.count("autosave: cannot write") == 1, log[-3000:]
    assert "copy kept as" not in log and "no copy kept" in log
    assert h.alive()
