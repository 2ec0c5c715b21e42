"""The Phoebus screens: well-formed, known widget types, only PVs the IOC serves, up to date."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PHOEBUS = ROOT / "clients" / "phoebus"
SCREENS = ("main.bob", "scope.bob", "analysis.bob")
PREFIX = "TPHX:"

#: widget type ids of Phoebus display builder (research notes §4)
KNOWN_WIDGETS = {
    "label", "textupdate", "textentry", "combo", "choice", "radio", "checkbox", "bool_button",
    "slide_button", "action_button", "led", "multi_state_led", "byte_monitor", "progressbar", "meter",
    "tank", "thermometer", "spinner", "scaledslider", "scrollbar", "table", "group", "tabs", "navtabs",
    "embedded", "array", "template", "picture", "rectangle", "ellipse", "arc", "polyline", "polygon",
    "symbol", "text-symbol", "webbrowser", "fileselector", "image", "xyplot", "stripchart", "databrowser",
}
PV_TAGS = ("pv_name", "x_pv", "y_pv", "err_pv")


def list_pvs(config: Path | None) -> set[str]:
    cmd = [sys.executable, "-m", "picodaq_ioc", "--prefix", PREFIX, "--list-pvs"]
    if config is not None:
        cmd += ["--config", str(config)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    return {line.strip() for line in r.stdout.splitlines() if line.startswith(PREFIX)}


@pytest.fixture(scope="module")
def served() -> set[str]:
    """Every PV the IOC serves with the demo and the muon-lifetime configuration."""
    return list_pvs(None) | list_pvs(ROOT / "configs" / "muon_lifetime.yaml")


def parse(name: str) -> ET.Element:
    return ET.parse(PHOEBUS / name).getroot()


def pv_refs(root: ET.Element) -> list[str]:
    return [e.text.strip() for tag in PV_TAGS for e in root.iter(tag) if e.text and e.text.strip()]


def expand(name: str) -> str:
    assert "$(P)" in name or "${P}" in name, f"PV {name!r} does not use the $(P) macro"
    return name.replace("$(P)", PREFIX).replace("${P}", PREFIX)


@pytest.mark.parametrize("screen", SCREENS)
def test_screen_is_wellformed_with_known_widgets(screen):
    root = parse(screen)
    assert root.tag == "display" and root.get("version") == "2.0.0"
    assert root.find("macros/P") is not None, "default for the P macro"
    width, height = int(root.findtext("width")), int(root.findtext("height"))
    widgets = list(root.iter("widget"))
    assert len(widgets) > 20
    for w in widgets:
        assert w.get("type") in KNOWN_WIDGETS, w.get("type")
        assert w.get("version"), f"{w.get('type')} without version"
        geo = {k: int(w.findtext(k)) for k in ("x", "y", "width", "height")}
        assert geo["width"] > 0 and geo["height"] > 0
        assert w.findtext("name")
    for w in root.findall("widget"):  # top level: inside the display
        assert int(w.findtext("x")) + int(w.findtext("width")) <= width
        assert int(w.findtext("y")) + int(w.findtext("height")) <= height
    for g in root.iter("widget"):  # children inside their group (below its title bar)
        if g.get("type") == "group":
            gw, gh = int(g.findtext("width")), int(g.findtext("height"))
            for c in g.findall("widget"):
                assert int(c.findtext("x")) + int(c.findtext("width")) <= gw - 10, c.findtext("name")
                assert int(c.findtext("y")) + int(c.findtext("height")) <= gh - 25, c.findtext("name")
    for a in root.iter("action"):
        assert a.get("type") in ("write_pv", "open_display")
        if a.get("type") == "open_display":
            assert (PHOEBUS / a.findtext("file")).is_file()


@pytest.mark.parametrize("screen", SCREENS)
def test_screen_references_only_served_pvs(screen, served):
    refs = {expand(r) for r in pv_refs(parse(screen))}
    assert refs, "no PVs"
    unknown = sorted(refs - served)
    assert not unknown, f"{screen} uses PVs the IOC does not serve: {unknown}"


def test_main_screen_has_every_setting_with_readback(served):
    refs = {expand(r) for r in pv_refs(parse("main.bob"))}
    settings = {n for n in served if n + "_RBV" in served and not n.startswith(PREFIX + "IOC:")}
    assert {PREFIX + "A:Range", PREFIX + "Trigger:Level", PREFIX + "SigGen:Frequency"} <= settings
    missing = sorted(n for n in settings if n not in refs or n + "_RBV" not in refs)
    assert not missing, f"settings without setpoint+readback on main.bob: {missing}"
    for leaf in ("State_RBV", "Stats:TriggerRate_RBV", "Stats:EventRate_RBV", "Stats:LiveFraction_RBV",
                 "Buffer:FillLevel_RBV", "Buffer:Filled_RBV", "NumEvents"):
        assert PREFIX + leaf in refs
    root = parse("main.bob")
    writes = {(a.findtext("pv_name"), a.findtext("value")) for a in root.iter("action")
              if a.get("type") == "write_pv"}
    assert {("$(P)Acquire", "1"), ("$(P)Acquire", "0"), ("$(P)Pause", "1"), ("$(P)Pause", "0")} <= writes


def test_scope_plots_waveforms_against_time_axis():
    traces = parse("scope.bob").findall(".//widget[@type='xyplot']/traces/trace")
    pairs = {(t.findtext("x_pv"), t.findtext("y_pv")) for t in traces}
    assert pairs == {("$(P)TimeAxis_RBV", f"$(P){c}:Waveform_RBV") for c in "ABCD"}


def test_analysis_has_spectra_and_lifetime():
    root = parse("analysis.bob")
    ys = {t.findtext("y_pv") for t in root.findall(".//widget[@type='xyplot']/traces/trace")}
    assert {"$(P)Pulse:Heights_RBV", "$(P)Pulse:DecayTimes_RBV", "$(P)Rates:History_RBV"} <= ys
    refs = set(pv_refs(root))
    assert {"$(P)Pulse:Lifetime_RBV", "$(P)Pulse:LifetimeErr_RBV", "$(P)VMeter:A:Mean_RBV"} <= refs


def test_checked_in_screens_match_the_generator(tmp_path, served):
    sys.path.insert(0, str(PHOEBUS))
    try:
        import make_screens
    finally:
        sys.path.remove(str(PHOEBUS))
    names = {n[len(PREFIX):] for n in served}
    make_screens.build(tmp_path, served=names)
    for screen in SCREENS:
        assert (tmp_path / screen).read_text() == (PHOEBUS / screen).read_text(), \
            f"{screen} is stale: run python clients/phoebus/make_screens.py"
