"""The matplotlib displays, headless (Agg), against a live IOC over Channel Access.

Each test drives a display's ``update()`` like the GUI timer would and checks what is drawn
against the PVs read independently with ``caget``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "clients"))

from picodaq_clients.testing import IOCProcess, ca_server, wait_for  # noqa: E402

PREFIX = "TCLI:"
pytestmark = pytest.mark.ca


CONFIG = ROOT / "configs" / "muon_lifetime.yaml"  # simulator, real-time, pulse filter + voltmeter


def start_ioc(prefix: str, workdir: Path) -> IOCProcess:
    """The IOC with a private copy of the config: its autosave file lands in ``workdir``."""
    config = workdir / f"{prefix[:-1]}.yaml"
    if not config.exists():
        shutil.copy(CONFIG, config)
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "picodaq_ioc", "--config", str(config), "--prefix", prefix]
    return IOCProcess(cmd, env=env, log_path=str(workdir / f"{prefix[:-1]}.log"), cwd=str(workdir)).start()


@pytest.fixture(scope="module")
def ioc(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ioc")
    log = workdir / f"{PREFIX[:-1]}.log"
    proc = start_ioc(PREFIX, workdir)
    try:
        with ca_server(proc.port):
            import epics

            assert wait_for(lambda: epics.caget(PREFIX + "State_RBV", timeout=0.5) is not None, 30), \
                f"IOC did not come up: {log.read_text() if log.exists() else ''}"
            yield proc
            epics.caput(PREFIX + "Acquire", 0, wait=True, timeout=5)
    finally:
        proc.stop()


def caget(name: str, **kw):
    import epics

    v = epics.caget(PREFIX + name, timeout=5, **kw)
    assert v is not None, f"caget {PREFIX}{name} failed"
    return v


def caput(name: str, value, wait: bool = True) -> None:
    import epics

    assert epics.caput(PREFIX + name, value, wait=wait, timeout=10) == 1, f"caput {PREFIX}{name}"


def run_then_stop(min_events: int = 30) -> None:
    """Acquire until at least ``min_events`` events, then stop (PVs are static afterwards)."""
    caput("NumEvents", 0)
    caput("Acquire", 1, wait=False)
    assert wait_for(lambda: caget("Stats:Events_RBV") >= min_events, 30)
    caput("Acquire", 0)
    assert wait_for(lambda: caget("State_RBV", as_string=True) in ("Stopped", "Idle"), 10)


def settle(display, names: list[str], timeout: float = 15.0, quiet: float = 0.6) -> None:
    """Wait until the analysis has processed every event and the display's cache holds what
    ``caget`` reads for each of ``names``, with no monitor update for ``quiet`` seconds."""
    import time

    differ: list[str] = []
    state = {"counts": None, "since": 0.0}

    def same() -> bool:
        if caget("Stats:Processed_RBV") != caget("Stats:Events_RBV"):
            differ[:] = ["analysis still processing"]
            return False
        counts = [display.cache.updates(n) for n in names]
        now = time.monotonic()
        if counts != state["counts"]:
            state["counts"], state["since"] = counts, now
        differ.clear()
        for n in names:
            mine = display.cache.value(n)
            ref = caget(n)
            if mine is None or not np.array_equal(np.asarray(mine, dtype=float), np.asarray(ref, dtype=float),
                                                  equal_nan=True):
                differ.append(f"{n}: monitor {mine!r} caget {ref!r}")
        return not differ and now - state["since"] >= quiet

    assert wait_for(same, timeout), f"monitors did not deliver: {differ}"


@pytest.fixture
def close_after():
    opened = []
    yield opened.append
    for d in opened:
        d.cache.close()
        d.close()


def test_oscilloscope_draws_the_pv_arrays(ioc, tmp_path, close_after):
    from picodaq_clients.osci import Oscilloscope

    caput("A:Enable", 1)
    caput("B:Enable", 1)
    range_a = caget("A:Range_RBV")
    caput("A:Range", 0.15)
    osci = Oscilloscope(PREFIX)
    close_after(osci)
    run_then_stop()
    names = ["TimeAxis_RBV", "A:Waveform_RBV", "B:Waveform_RBV", "A:Range_RBV", "B:Range_RBV",
             "Stats:Events_RBV", "A:Enable_RBV", "B:Enable_RBV", "Trigger:Level_RBV", "EventNumber_RBV"]
    settle(osci, names)
    osci.update()
    assert osci.online and osci.offline_text == ""
    assert set(osci.lines) == {"A", "B"}
    t = caget("TimeAxis_RBV")
    unit, scale = osci.time_unit
    for c in "AB":
        w = caget(f"{c}:Waveform_RBV")
        n = min(len(t), len(w))
        x, y = osci.lines[c].get_data()
        np.testing.assert_array_equal(y, w[:n])
        np.testing.assert_allclose(x, t[:n] * scale)
        rng, off = caget(f"{c}:Range_RBV"), caget(f"{c}:Offset_RBV")
        assert osci.axes[c].get_ylim() == pytest.approx((-rng - off, rng - off))
    # the 0.15 V request was snapped by the device; the display shows what was applied
    assert caget("A:Range_RBV") != 0.15
    title = osci._suptitle.get_text()
    assert f"event {caget('EventNumber_RBV')} " in title
    src = caget("Trigger:Source_RBV", as_string=True)
    level = caget("Trigger:Level_RBV")
    assert f"Trigger: {src}" in title
    assert osci.trigger_line is not None and osci.trigger_line.axes is osci.axes[src]
    assert osci.trigger_line.get_ydata()[0] == pytest.approx(level)
    assert [zl.get_xdata()[0] for zl in osci.zero_lines] == [0.0, 0.0]
    assert osci.axes["B"].get_xlabel() == f"time ({unit})"
    png = tmp_path / "osci.png"
    osci.savefig(str(png))
    assert png.stat().st_size > 10_000

    # disabling a channel removes its panel
    caput("B:Enable", 0)
    assert wait_for(lambda: osci.enabled_channels() == ("A",), 10)
    osci.update()
    assert list(osci.lines) == ["A"]
    caput("B:Enable", 1)

    # a range below the muon pulses (-0.2 V on average): the ADC clips, the panel says so
    offset_a = caget("A:Offset_RBV")
    caput("A:Offset", 0.0)  # ±0.4 V offset is not allowed on the ±50 mV range
    assert wait_for(lambda: caget("A:Offset_RBV") == 0.0, 10)
    caput("A:Range", 0.05)
    assert wait_for(lambda: caget("A:Range_RBV") == pytest.approx(0.05), 10)
    caput("Acquire", 1, wait=False)
    assert wait_for(lambda: osci.cache.string("A:Overflow_RBV") == "Yes", 30)
    caput("Acquire", 0)
    osci.update()
    assert osci.axes["A"].get_ylabel().endswith("OVER RANGE")
    assert osci.axes["A"].yaxis.label.get_color() == "red"
    caput("A:Range", range_a)  # the configured window, for the pulse filter in later tests
    caput("A:Offset", offset_a)
    assert wait_for(lambda: caget("A:Offset_RBV") == pytest.approx(offset_a), 10)


def test_voltmeter_bars_and_history(ioc, close_after):
    from picodaq_clients.vmeter import VoltMeter

    vm = VoltMeter(PREFIX, interval=1.0)
    close_after(vm)
    run_then_stop()
    settle(vm, ["VMeter:A:Mean_RBV", "VMeter:A:RMS_RBV", "A:Enable_RBV", "B:Enable_RBV",
                "VMeter:Updates_RBV"])
    # the config's voltmeter measures channel A only: B (enabled) has no VMeter PVs and no bar
    assert caget("B:Enable_RBV", as_string=True) == "On"
    assert vm.enabled_channels() == ("A",)
    for k in range(3):
        vm.update(now=100.0 + k)
    mean_a, rms_a = caget("VMeter:A:Mean_RBV"), caget("VMeter:A:RMS_RBV")
    assert vm.mean_bars[0].get_height() == pytest.approx(mean_a)
    assert vm.rms_bars[0].get_height() == pytest.approx(rms_a)
    assert f"A: mean {mean_a:+.4f} V" in vm.text.get_text()
    assert f"readings: {caget('VMeter:Updates_RBV')}" in vm.text.get_text()
    assert vm.mean_bars[1].get_height() == 0.0 and "B:" not in vm.text.get_text()
    x, y = vm.hist_lines["A"].get_data()
    assert np.isfinite(y).sum() == 3 and y[-1] == pytest.approx(mean_a)
    np.testing.assert_allclose(x[-3:], [-2.0, -1.0, 0.0])


def test_rate_meter_history_follows_rate_pvs(ioc, close_after):
    from picodaq_clients.rates import RateMeter

    rm = RateMeter(PREFIX, interval=0.2)
    close_after(rm)
    caput("Acquire", 1, wait=False)
    assert wait_for(lambda: rm.cache.all_connected(rm.required), 10)
    seen = []
    assert wait_for(lambda: rm.cache.value("Stats:TriggerRate_RBV", 0) > 0, 20)
    # sample while running: every history point is the monitored PV value at that frame
    for k in range(5):
        # next frame once the IOC has published a new rate value
        last = rm.cache.updates("Stats:TriggerRate_RBV")
        assert wait_for(lambda last=last: rm.cache.updates("Stats:TriggerRate_RBV") > last, 10)
        before = rm.cache.value("Stats:TriggerRate_RBV")
        rm.update(1000.0 + 0.2 * k)
        after = rm.cache.value("Stats:TriggerRate_RBV")  # a monitor may land during the frame
        drawn = rm.lines["Stats:TriggerRate_RBV"].get_data()[1][-1]
        assert drawn in (before, after)
        seen.append(drawn)
    x, y = rm.lines["Stats:TriggerRate_RBV"].get_data()
    np.testing.assert_array_equal(y[-5:], seen)
    np.testing.assert_allclose(x[-5:], [-0.8, -0.6, -0.4, -0.2, 0.0], atol=1e-9)
    assert max(seen) > 0
    caput("Acquire", 0)
    settle(rm, ["Stats:Events_RBV", "Stats:RunTime_RBV"])
    rm.update(2000.0)
    assert f"events {caget('Stats:Events_RBV')}" in rm._suptitle.get_text()


def test_rate_meter_draws_the_ioc_rate_history(ioc, close_after):
    from picodaq_clients.rates import RateMeter

    rm = RateMeter(PREFIX, source="ioc")
    close_after(rm)
    caput("Acquire", 1, wait=False)
    # at least three completed 1 s bins in the IOC's history
    assert wait_for(lambda: np.isfinite(caget("Rates:History_RBV")).sum() >= 3, 30)
    caput("Acquire", 0)
    settle(rm, ["Rates:History_RBV", "Rates:HistoryTime_RBV"])
    rm.update()
    x, y = rm.ioc_line.get_data()
    np.testing.assert_array_equal(y, caget("Rates:History_RBV"))
    np.testing.assert_array_equal(x, caget("Rates:HistoryTime_RBV"))
    assert rm.ax.get_xlabel() == "time since run start (s)"
    assert not rm.lines["Stats:TriggerRate_RBV"].get_visible()


def _panels_with_lines(fig) -> list:
    """Axes of ``fig`` that draw lines (plots; bar and button axes have none)."""
    return [ax for ax in fig.axes if ax.get_lines()]


def test_saved_displays_show_data_in_every_panel(ioc, tmp_path, close_after):
    """``--save`` after a run (the same ``save_when_ready`` path): every plot panel of the rate
    meter (both sources), the buffer manager and the voltmeter has a visible line with data,
    legend entries have lines, and the voltmeter's right-hand axis label is inside the image."""
    from picodaq_clients.base import save_when_ready
    from picodaq_clients.bufman import BufferManagerPanel
    from picodaq_clients.rates import RateMeter
    from picodaq_clients.vmeter import VoltMeter

    # a short run: until the IOC's rate history holds two completed bins (1 s of trigger time each).
    # The history is cleared first and seen empty: until the new run's first batch is analysed
    # the IOC still shows the previous run's history, which must not satisfy the wait.
    caput("Rates:Reset", 1)
    assert wait_for(lambda: not np.isfinite(caget("Rates:History_RBV", use_monitor=False)).any(), 10)
    caput("NumEvents", 0)
    caput("Acquire", 1, wait=False)
    assert wait_for(lambda: np.isfinite(caget("Rates:History_RBV", use_monitor=False)).sum() >= 2, 60)
    caput("Acquire", 0)
    assert wait_for(lambda: caget("State_RBV", as_string=True) in ("Stopped", "Idle"), 10)
    # default history intervals (1 s, voltmeter 0.5 s), as the console commands use them
    displays = {"rates": RateMeter(PREFIX), "rates_ioc": RateMeter(PREFIX, source="ioc"),
                "bufman": BufferManagerPanel(PREFIX), "vmeter": VoltMeter(PREFIX)}
    for name, d in displays.items():
        close_after(d)
        png = tmp_path / f"{name}.png"
        assert save_when_ready(d, str(png), frames=3, timeout=30), name
        assert png.stat().st_size > 10_000
        panels = _panels_with_lines(d.fig)
        assert panels, name
        for ax in panels:
            drawn = [ln for ln in ax.get_lines() if ln.get_visible()
                     and np.isfinite(np.asarray(ln.get_ydata(), dtype=float)).sum() >= 2]
            assert drawn, f"{name}: panel {ax.get_ylabel()!r} shows no line with data"
            legend = ax.get_legend()
            if legend is not None:
                for handle in legend.legend_handles:
                    if hasattr(handle, "get_ydata"):  # a line entry: it must stand for a drawn line
                        assert any(ln.get_label() == handle.get_label() for ln in drawn), \
                            f"{name}: legend entry {handle.get_label()!r} has no line"
    assert len(displays["rates"].history.t[np.isfinite(displays["rates"].history.t)]) >= 2
    x, y = displays["rates_ioc"].ioc_line.get_data()
    np.testing.assert_array_equal(y, caget("Rates:History_RBV"))
    assert [h.get_label() for h in displays["rates_ioc"].ax.get_legend().legend_handles] == ["Rates:History_RBV"]
    vm = displays["vmeter"]
    renderer = vm.fig.canvas.get_renderer()
    label = vm.ax_hist.yaxis.label.get_window_extent(renderer)
    assert label.x1 <= vm.fig.bbox.x1 and label.x0 >= 0, "right-axis label cut off"
    assert "Live time:" in displays["bufman"].info_text.get_text()
    assert "Lifetime" not in displays["bufman"].info_text.get_text()


def test_bufman_buttons_drive_run_state(ioc, tmp_path, close_after):
    from picodaq_clients.bufman import BufferManagerPanel

    bm = BufferManagerPanel(PREFIX)
    close_after(bm)
    assert wait_for(lambda: bm.cache.all_connected(bm.required), 10)
    caput("NumEvents", 0)
    for label, state in (("Start", "Running"), ("Pause", "Paused"), ("Resume", "Running"),
                         ("Stop", "Stopped")):
        bm.click(label)
        assert bm.last_command == f"{label} sent"
        assert wait_for(lambda state=state: caget("State_RBV", as_string=True) == state, 10), label
        assert wait_for(lambda state=state: bm.cache.string("State_RBV") == state, 10)
        bm.update()
        assert bm.state_text.get_text() == f"state: {state}"
    settle(bm, ["Stats:Triggers_RBV", "Stats:RunTime_RBV", "Buffer:FillLevel_RBV",
                "Stats:LiveFraction_RBV"])
    bm.update()
    info = bm.info_text.get_text()
    assert f"Triggers: {caget('Stats:Triggers_RBV')}" in info
    assert f"TRun: {caget('Stats:RunTime_RBV'):.1f} s" in info
    assert bm.fill_bar.get_width() == pytest.approx(caget("Buffer:FillLevel_RBV"))
    assert bm.live_bar.get_width() == pytest.approx(caget("Stats:LiveFraction_RBV"))
    bm.savefig(str(tmp_path / "bufman.png"))


def test_histograms_show_spectra_and_lifetime_fit(ioc, close_after):
    from picodaq_clients.hists import Histograms, bin_edges

    hs = Histograms(PREFIX)
    close_after(hs)
    caput("NumEvents", 0)
    caput("Acquire", 1)  # completes when the run started and its (reset) analysis PVs are shown
    # run until the live fit has a lifetime (muon decays in the simulated water tank)
    assert wait_for(lambda: np.isfinite(caget("Pulse:Lifetime_RBV")) and caget("Pulse:FitEntries_RBV") >= 10,
                    90)
    caput("Acquire", 0)
    names = ["Pulse:Heights_RBV", "Pulse:HeightBins_RBV", "Pulse:DecayTimes_RBV",
             "Pulse:DecayBins_RBV", "Pulse:Lifetime_RBV", "Pulse:LifetimeErr_RBV",
             "Pulse:Background_RBV", "Pulse:FitEntries_RBV", "Pulse:FitMin_RBV", "Pulse:FitMax_RBV"]
    settle(hs, names)
    hs.update()
    counts, edges = hs.height_steps.get_data()[:2]
    h = caget("Pulse:Heights_RBV")
    np.testing.assert_array_equal(counts, h)
    np.testing.assert_allclose(edges, bin_edges(caget("Pulse:HeightBins_RBV"), len(h)))
    d = caget("Pulse:DecayTimes_RBV")
    dcounts, dedges = hs.decay_steps.get_data()[:2]
    np.testing.assert_array_equal(dcounts, d)
    unit, scale = hs.time_unit
    np.testing.assert_allclose(dedges, bin_edges(caget("Pulse:DecayBins_RBV"), len(d)) * scale)
    tau, err = caget("Pulse:Lifetime_RBV"), caget("Pulse:LifetimeErr_RBV")
    assert np.isfinite(tau) and d.sum() > 0
    assert f"τ = {tau * scale:.3f} ± {err * scale:.3f} {unit}" in hs.d_text.get_text()
    # the drawn curve is the IOC's fit (window, background, entries) in counts per bin
    t, y = hs.fit_line.get_data()
    assert hs.fit_kind == "ioc"
    f, n_fit = caget("Pulse:Background_RBV"), caget("Pulse:FitEntries_RBV")
    a, b = caget("Pulse:FitMin_RBV"), caget("Pulse:FitMax_RBV")
    width = np.mean(np.diff(bin_edges(caget("Pulse:DecayBins_RBV"), len(d))))
    ts = t / scale
    expected = n_fit * width * ((1 - f) * np.exp(-ts / tau) / (tau * (np.exp(-a / tau) - np.exp(-b / tau)))
                                + f / (b - a))
    assert ts[0] == pytest.approx(a) and ts[-1] == pytest.approx(b)
    np.testing.assert_allclose(y, expected, rtol=1e-9)


def test_exp_curve_recovers_amplitudes():
    from picodaq_clients.hists import exp_curve

    edges = np.linspace(0.0, 10.0, 21)
    tau, amp, bkg = 2.0, 500.0, 3.0
    counts = amp * tau * (np.exp(-edges[:-1] / tau) - np.exp(-edges[1:] / tau)) + bkg * np.diff(edges)
    _, _, a, b = exp_curve(edges, counts, tau)
    assert a == pytest.approx(amp) and b == pytest.approx(bkg)


def test_dashboard_renders_all_parts(ioc, tmp_path, close_after):
    from picodaq_clients.dashboard import Dashboard

    db = Dashboard(PREFIX)
    close_after(db)
    assert wait_for(lambda: db.cache.all_connected(db.required), 15)
    db.update()
    assert db.online and db.offline_text == ""
    assert db.osci.lines and db.bufman.state_text.get_text().startswith("state: ")
    png = tmp_path / "dash.png"
    db.savefig(str(png))
    assert png.stat().st_size > 50_000


def test_display_shows_disconnect_and_recovers(tmp_path):
    """Kill the IOC (SIGKILL by PID) under a running display, restart it on the same port."""
    from picodaq_clients.osci import Oscilloscope

    prefix = "TKILL:"
    ioc2 = start_ioc(prefix, tmp_path)
    try:
        with ca_server(ioc2.port):
            osci = Oscilloscope(prefix)

            def online() -> bool:
                osci.update()
                return osci.online

            assert wait_for(online, 30)
            ioc2.kill()
            assert not ioc2.alive()

            def offline() -> bool:
                osci.update()
                return not osci.online

            assert wait_for(offline, 30)
            assert osci.offline_text.startswith("DISCONNECTED\n" + prefix)
            osci.savefig(str(tmp_path / "disconnected.png"))
            ioc2.start()  # same port, same prefix, no client restart
            assert wait_for(online, 60)
            assert osci.offline_text == ""
            import epics

            # fresh data flows through the old subscriptions
            before = osci.cache.updates("A:Waveform_RBV")
            assert epics.caput(prefix + "Acquire", 1, wait=True, timeout=5) == 1
            assert wait_for(lambda: osci.cache.updates("A:Waveform_RBV") > before + 2, 30)
            epics.caput(prefix + "Acquire", 0, wait=True, timeout=5)
            osci.cache.close()
            osci.close()
    finally:
        ioc2.stop()


def test_console_commands_save_png_for_several_iocs(ioc, tmp_path):
    """``picodaq-osci --prefix P1 --prefix P2 --save`` as a user would run it, two IOCs."""
    second = start_ioc("TCLI2:", tmp_path)
    try:
        env = dict(second.env)
        env["EPICS_CA_ADDR_LIST"] = f"127.0.0.1:{ioc.port} 127.0.0.1:{second.port}"
        env["MPLBACKEND"] = "Agg"
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "clients"), env.get("PYTHONPATH", "")])
        for mod in ("osci", "bufman"):
            out = tmp_path / f"{mod}_{{prefix}}.png"
            r = subprocess.run([sys.executable, "-m", f"picodaq_clients.{mod}", "--prefix", PREFIX,
                                "--prefix", "TCLI2:", "--save", str(out), "--timeout", "30"],
                               env=env, capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stdout + r.stderr
            for p in ("TCLI", "TCLI2"):
                png = tmp_path / f"{mod}_{p}.png"
                assert png.stat().st_size > 10_000
                assert f"saved {png} (online)" in r.stdout
    finally:
        second.stop()


def test_console_entry_point_names_missing_dependencies(monkeypatch, capsys):
    from picodaq_clients import cli

    monkeypatch.setitem(cli.REQUIRED, "picodaq_no_such_module", "no-such-dist")
    assert cli.osci(["--prefix", PREFIX]) == 2
    err = capsys.readouterr().err
    assert "picodaq-osci: missing no-such-dist" in err and "pip install 'picodaq-ioc[clients]'" in err


def test_gui_timer_drives_update_at_the_frame_rate(ioc, close_after):
    """The console commands' loop: a matplotlib timer per window calling ``update``."""
    from picodaq_clients.base import run
    from picodaq_clients.bufman import BufferManagerPanel

    bm = BufferManagerPanel(PREFIX)
    close_after(bm)
    anims = run([bm], fps=4.0, show=lambda: None)
    assert len(anims) == 1 and anims[0].event_source.interval == 250
    assert wait_for(lambda: bm.cache.all_connected(bm.required), 10)
    before = bm.frames
    for _ in range(3):
        anims[0]._step()  # what the timer does on each tick
    assert bm.frames >= before + 3 and bm.online  # (the first tick may also draw the init frame)
    assert bm.state_text.get_text() == f"state: {caget('State_RBV', as_string=True)}"


def test_clients_import_no_ioc_code():
    """The clients are separate CA processes: importing every display loads no IOC/server code."""
    code = ("import sys, matplotlib; matplotlib.use('Agg');"
            "import picodaq_clients.dashboard, picodaq_clients.cli, picodaq_clients.ophyd_device;"
            "bad = sorted(m for m in sys.modules if m.startswith(('picodaq_ioc', 'caproto.server', 'ophyd')));"
            "print(bad); sys.exit(1 if bad else 0)")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "clients"))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                       cwd=str(ROOT / "clients"))
    assert r.returncode == 0, r.stdout + r.stderr
