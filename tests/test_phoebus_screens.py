"""The Phoebus screens: well-formed, known widget types, only PVs the IOC serves, up to date."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PHOEBUS = ROOT / "clients" / "phoebus"
SCREENS = ("main.bob", "channel.bob", "scope.bob", "analysis.bob", "overview.bob", "overview_row.bob")
#: screens a user opens with ``?P=...`` (the others are embedded, or take P1, P2, ...)
TOP_SCREENS = ("main.bob", "scope.bob", "analysis.bob")
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
DEFAULT_P = "PICO:"


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


# -- Phoebus's macro rules, restated from its source (org.phoebus.framework.macros) -------------
#: Macros.MACRO_NAME_PATTERN
MACRO_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-\[\]]*")


def _closing(text: str, pos: int) -> int:
    """MacroHandler.findClosingBrace: index of the brace closing the one at ``pos``, or -1."""
    closing = {"(": ")", "{": "}"}.get(text[pos] if pos < len(text) else "")
    if closing is None:
        return -1
    pos += 1
    while pos < len(text):
        c = text[pos]
        if c == "\\":
            pos += 2
            continue
        if c == closing:
            return pos
        if c in "({":
            pos = _closing(text, pos)
            if pos < 0:
                return -1
        pos += 1
    return -1


def replace(text: str, macros: dict[str, str]) -> str:
    """MacroHandler.replace: ``$(NAME)``/``${NAME}``, ``$(NAME=default)`` (default only when
    NAME is undefined), nested macros, unresolved ones left as written; a macro that never
    resolves (``P=$(P)``) is an error, as in Phoebus (100 recursions)."""
    def step(recursions: int, text: str, start_at: int) -> str:
        if recursions > 100:
            raise ValueError(f"recursive macro {text!r} with {macros}")
        start = text.find("$", start_at)
        while start > 0 and text[start - 1] == "\\":
            start = text.find("$", start + 1)
        if start < 0 or start + 1 >= len(text):
            return text
        end = _closing(text, start + 1)
        if end < 0:
            return text
        name, sep, default = text[start + 2:end].partition("=")
        if MACRO_NAME.fullmatch(name):
            value = macros.get(name, default if sep else None)
            if value is not None:
                return step(recursions + 1, text[:start] + value + text[end + 1:], 0)
        return step(recursions + 1, text, start + 2)
    return step(0, text, 0).replace("\\$", "$")


def with_macros(base: dict[str, str], element: ET.Element) -> dict[str, str]:
    """Macros of a display or container widget: its own ``<macros>`` (values expanded against
    ``base``) override ``base`` ("a macro defined in a display file will override a macro
    defined on the command line"; a container's override the containing display's)."""
    own = element.find("macros")
    if own is None:
        return dict(base)
    return base | {m.tag: replace(m.text or "", base) for m in own}


@dataclass
class Resolved:
    """What Phoebus would connect to and open for one display and its input macros."""

    pvs: list[tuple[str, ET.Element]] = field(default_factory=list)  # (PV name, widget)
    opens: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (file, macros passed)


def resolve(name: str, given: dict[str, str], out: Resolved | None = None) -> Resolved:
    """Resolve the PV names of ``name`` opened with ``given`` macros (``?P=LAB1:``), following
    groups and embedded displays; open-display actions are recorded with the macros they
    pass (their ``<macros>`` expanded against the widget's macros -- nothing else is inherited)."""
    out = Resolved() if out is None else out
    root = parse(name)

    def walk(parent: ET.Element, macros: dict[str, str]) -> None:
        for w in parent.findall("widget"):
            mine = with_macros(macros, w)
            for tag in PV_TAGS:
                for e in w.iter(tag):
                    if e.text and e.text.strip() and not _inside_child_widget(w, e):
                        out.pvs.append((replace(e.text.strip(), mine), w))
            for a in w.findall("actions/action"):
                if a.get("type") == "open_display":
                    out.opens.append((a.findtext("file"), with_macros({}, _expanded(a, mine))))
            if w.get("type") == "embedded":
                resolve(w.findtext("file"), mine, out)
            walk(w, mine)

    walk(root, with_macros(given, root))
    return out


def _expanded(action: ET.Element, macros: dict[str, str]) -> ET.Element:
    """``action`` with its macro values expanded against ``macros`` (Macros.expandValues)."""
    m = ET.Element("x")
    own = ET.SubElement(m, "macros")
    for e in action.findall("macros/*"):
        ET.SubElement(own, e.tag).text = replace(e.text or "", macros)
    return m


def _inside_child_widget(widget: ET.Element, element: ET.Element) -> bool:
    """Is ``element`` a property of a widget nested in ``widget`` (handled by the walk)?"""
    return any(element in set(child.iter()) for child in widget.findall("widget"))


def reachable(screen: str, given: dict[str, str]) -> dict[tuple[str, tuple], Resolved]:
    """Every display reached from ``screen`` through open-display actions, with its macros."""
    seen: dict[tuple[str, tuple], Resolved] = {}
    todo = [(screen, given)]
    while todo:
        name, macros = todo.pop()
        key = (name, tuple(sorted(macros.items())))
        if key in seen:
            continue
        seen[key] = r = resolve(name, macros)
        todo += r.opens
    return seen


def char_array_pvs() -> set[str]:
    """Leaves of the CHAR waveforms (long strings) in the db/ files generated from the IOC."""
    leaves, current = set(), None
    for db in (ROOT / "db").glob("*.db"):
        for line in db.read_text().splitlines():
            if line.startswith("record("):
                current = line.split('"$(P)')[1].split('"')[0]
            elif 'field(FTVL, "CHAR")' in line:
                leaves.add(current)
    return leaves


def pv_refs(root: ET.Element) -> list[str]:
    return [e.text.strip() for tag in PV_TAGS for e in root.iter(tag) if e.text and e.text.strip()]


def served_refs(screen: str) -> set[str]:
    """The PV names of ``screen`` (and what it embeds) opened with ``P`` = the test prefix."""
    return {n for n, _ in resolve(screen, {"P": PREFIX}).pvs}


@pytest.mark.parametrize("screen", SCREENS)
def test_screen_is_wellformed_with_known_widgets(screen):
    root = parse(screen)
    assert root.tag == "display" and root.get("version") == "2.0.0"
    assert root.find("macros") is None, "a display-level macro would override the caller's P"
    width, height = int(root.findtext("width")), int(root.findtext("height"))
    widgets = list(root.iter("widget"))
    assert len(widgets) > (20 if screen in TOP_SCREENS else 5)
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


@pytest.mark.parametrize("screen", TOP_SCREENS)
def test_screen_references_only_served_pvs(screen, served):
    refs = served_refs(screen)
    assert refs, "no PVs"
    unknown = sorted(refs - served)
    assert not unknown, f"{screen} uses PVs the IOC does not serve: {unknown}"


def test_main_screen_has_every_setting_with_readback(served):
    refs = served_refs("main.bob")
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
    assert {(f"$(P={DEFAULT_P})Acquire", "1"), (f"$(P={DEFAULT_P})Acquire", "0"),
            (f"$(P={DEFAULT_P})Pause", "1"), (f"$(P={DEFAULT_P})Pause", "0")} <= writes


def test_scope_plots_waveforms_against_time_axis():
    traces = parse("scope.bob").findall(".//widget[@type='xyplot']/traces/trace")
    pairs = {(t.findtext("x_pv"), t.findtext("y_pv")) for t in traces}
    assert pairs == {(f"$(P={DEFAULT_P})TimeAxis_RBV", f"$(P={DEFAULT_P}){c}:Waveform_RBV") for c in "ABCD"}


def test_analysis_has_spectra_and_lifetime():
    root = parse("analysis.bob")
    ys = {t.findtext("y_pv") for t in root.findall(".//widget[@type='xyplot']/traces/trace")}
    assert {f"$(P={DEFAULT_P}){x}" for x in ("Pulse:Heights_RBV", "Pulse:DecayTimes_RBV",
                                             "Rates:History_RBV")} <= ys
    refs = served_refs("analysis.bob")
    assert {PREFIX + x for x in ("Pulse:Lifetime_RBV", "Pulse:LifetimeErr_RBV", "VMeter:A:Mean_RBV")} <= refs


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


@pytest.mark.parametrize("screen", TOP_SCREENS)
@pytest.mark.parametrize("given, prefix", [({"P": "LAB1:"}, "LAB1:"), ({}, DEFAULT_P)])
def test_the_callers_prefix_reaches_every_pv_and_every_opened_display(screen, given, prefix):
    """``main.bob?P=LAB1:`` shows LAB1: everywhere, also in the displays its buttons open (and
    theirs); opened without P, the default PICO: is used."""
    displays = reachable(screen, given)
    assert {name for name, _ in displays} == {"main.bob", "scope.bob", "analysis.bob"}
    for (name, macros), r in displays.items():
        assert dict(macros).get("P", prefix) == prefix, f"{name} opened with {macros}"
        assert r.pvs, name
        wrong = sorted(n for n, _ in r.pvs if not n.startswith(prefix) or "$" in n)
        assert not wrong, f"{name} opened from {screen}?{given}: {wrong}"
        for file, passed in r.opens:
            assert passed.get("P") == prefix, f"{name}: open {file} passes {passed}"


def test_channel_block_is_one_screen_embedded_four_times():
    embeds = parse("main.bob").findall(".//widget[@type='embedded']")
    assert sorted((e.findtext("file"), e.findtext("macros/C")) for e in embeds) == \
        [("channel.bob", c) for c in "ABCD"]
    pvs = [n for n, _ in resolve("main.bob", {"P": "LAB1:"}).pvs]
    for c in "ABCD":
        assert {f"LAB1:{c}:{leaf}" for leaf in ("Enable", "Range_RBV", "Coupling", "Offset_RBV",
                                                 "Overflow_RBV")} <= set(pvs)


def test_overview_has_one_row_per_prefix():
    given = {"P1": "LAB1:", "P2": "LAB2:"}
    r = resolve("overview.bob", given)
    rows = parse("overview.bob").findall("widget[@type='embedded']")
    assert len(rows) >= 2
    for i, row in enumerate(rows, start=1):
        prefix = given.get(f"P{i}", f"PICO{i}:")
        mine = resolve("overview_row.bob", with_macros(given, row))
        assert {n for n, _ in mine.pvs} >= {prefix + "State_RBV", prefix + "Stats:EventRate_RBV"}
        assert all(n.startswith(prefix) for n, _ in mine.pvs), mine.pvs
        assert mine.opens == [("main.bob", {"P": prefix})]
    assert len(r.opens) == len(rows)


@pytest.mark.parametrize("screen", SCREENS)
def test_char_array_text_has_string_format(screen):
    """Phoebus shows a CHAR waveform as ``[83, 116, ...]`` unless the format is STRING (6)."""
    strings = char_array_pvs()
    assert {"StatusMessage_RBV", "Pulse:ModuleStatus_RBV"} <= strings
    checked = 0
    for name, w in resolve(screen, {"P": "LAB1:", "C": "A"}).pvs:
        if name[len("LAB1:"):] in strings:
            assert w.get("type") in ("textupdate", "textentry"), (name, w.get("type"))
            assert w.findtext("format") == "6", f"{screen}: {name} without string format"
            checked += 1
    if screen in ("main.bob", "analysis.bob", "overview_row.bob"):
        assert checked, f"{screen} shows no status message"


def _rgb(w: ET.Element, tag: str) -> tuple[int, int, int] | None:
    c = w.find(f"{tag}/color")
    return None if c is None else (int(c.get("red")), int(c.get("green")), int(c.get("blue")))


@pytest.mark.parametrize("screen", SCREENS)
def test_leds_are_coloured_by_meaning(screen):
    """Faults and overflows are never green when on (Phoebus's default on colour is green)."""
    for name, w in resolve(screen, {"P": "LAB1:", "C": "A"}).pvs:
        if w.get("type") != "led":
            continue
        on = _rgb(w, "on_color")
        assert on is not None, f"{screen}: {name} has the default (green) on colour"
        if any(k in name for k in ("Overflow", "Fault", "Error", "Alarm", "Lost", "Dropped")):
            r, g, b = on
            assert r > 2 * g and r > 2 * b, f"{screen}: fault LED {name} is not red: {on}"


def test_macro_rules_as_phoebus_applies_them():
    """The resolver above follows Phoebus: defaults only when undefined, display macros win."""
    assert replace("$(P=PICO:)A", {}) == "PICO:A"
    assert replace("$(P=PICO:)A", {"P": "LAB1:"}) == "LAB1:A"
    assert replace("${P}A$(Q)", {"P": "X:"}) == "X:A$(Q)"
    with pytest.raises(ValueError):
        replace("$(P)", {"P": "$(P)"})
    display = ET.fromstring("<display><macros><P>PICO:</P></macros></display>")
    assert with_macros({"P": "LAB1:"}, display) == {"P": "PICO:"}
