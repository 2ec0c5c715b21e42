"""Generate the Phoebus display files ``main.bob``, ``scope.bob`` and ``analysis.bob``.

The screens are laid out from the IOC's PV names (issue 3 contract + analysis modules) and
every PV is checked against what the IOC serves (``picodaq-ioc --list-pvs`` for the demo
and the muon-lifetime configurations): a widget whose PV the IOC does not serve is left out
and reported. Run after changing the PV set and commit the output::

    python clients/phoebus/make_screens.py

Open in Phoebus with the macro ``P`` (default ``PICO:``)::

    phoebus -resource "file:$PWD/clients/phoebus/main.bob?P=LAB1:"
    phoebus -resource "file:$PWD/clients/phoebus/overview.bob?P1=LAB1:&P2=LAB2:"

Macro rules (Phoebus ``app/display/editor/doc/macros.rst`` and
``org.phoebus.framework.macros.MacroHandler``): a macro defined in a display file overrides
the one given on the command line, so no screen defines ``P``; instead every PV name is
``$(P=PICO:)leaf`` -- Phoebus's ``$(NAME=default)`` form, where the default applies only
when no caller set ``P``. Open-display actions pass ``P`` on explicitly with the same
default (a plain ``P=$(P)`` would hand the child the literal ``$(P)`` when the caller gave no
``P``, which Phoebus then rejects as a recursive macro). The channel block is one screen,
``channel.bob``, embedded four times with ``C=A`` ... ``C=D`` (as ADCore's screens do).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LIST_PREFIX = "PICO:"
#: default of the ``P`` macro when the caller gives none
DEFAULT_P = "PICO:"
#: the ``P`` macro with its default, as written into every PV name and every open-display action
P_MACRO = f"$(P={DEFAULT_P})"
#: the channel macro of ``channel.bob`` (``C=A`` when opened on its own)
C_MACRO = "$(C=A)"
#: number of rows (IOCs) of ``overview.bob``; row ``i`` shows prefix ``$(P<i>=PICO<i>:)``
OVERVIEW_ROWS = 4
CONFIGS = (None, ROOT / "configs" / "muon_lifetime.yaml")

#: setpoint leaves that are enums (combo box with the IOC's enum strings)
ENUM_LEAVES = {"Enable", "Coupling", "Source", "Direction", "Waveform", "Acquire", "Pause"}

#: LED "on" colour by meaning (faults and overflows red, pause amber, running green)
LED_ON = {"Overflow_RBV": (255, 0, 0), "Pause_RBV": (255, 170, 0), "Acquire_RBV": (0, 200, 0)}
LED_OFF = (60, 60, 60)

COLOURS = {"A": (0, 0, 255), "B": (220, 0, 0), "C": (0, 160, 0), "D": (200, 160, 0)}

#: vertical pitch of label/setpoint/readback rows in a group
ROW = 25

WIDGET_VERSIONS = {
    "label": "2.0.0", "textupdate": "2.0.0", "textentry": "3.0.0", "combo": "2.0.0",
    "action_button": "3.0.0", "led": "2.0.0", "progressbar": "2.0.0", "xyplot": "3.0.0",
    "group": "2.0.0", "embedded": "2.0.0",
}


def pv(leaf: str) -> str:
    """The PV name of ``leaf`` in a screen: the one place PV names are built."""
    return f"{P_MACRO}{leaf}"


def char_arrays(db_dir: Path = ROOT / "db") -> set[str]:
    """Leaves served as CHAR waveforms (long strings), from the generated ``db/*.db``: text
    widgets showing them need Phoebus's string format, else they show ``[83, 116, ...]``."""
    record = re.compile(r'record\(\w+, "\$\(P\)([^"]+)"\)\s*\{([^}]*)\}')
    return {m.group(1) for db in db_dir.glob("*.db") for m in record.finditer(db.read_text())
            if 'field(FTVL, "CHAR")' in m.group(2)}


def served_pvs(prefix: str = LIST_PREFIX) -> set[str]:
    """PV names (without prefix) the IOC serves, from ``--list-pvs`` of each configuration."""
    names: set[str] = set()
    for cfg in CONFIGS:
        cmd = [sys.executable, "-m", "picodaq_ioc", "--prefix", prefix, "--list-pvs"]
        if cfg is not None:
            cmd += ["--config", str(cfg)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
        names |= {line.strip()[len(prefix):] for line in out.splitlines() if line.startswith(prefix)}
    return names


class Screen:
    """A ``.bob`` display being built with :mod:`xml.etree`."""

    def __init__(self, name: str, width: int, height: int, served: set[str],
                 channels: Iterable[str] = ("",)) -> None:
        self.root = ET.Element("display", version="2.0.0")
        self._sub(self.root, "name", name)
        self._sub(self.root, "width", width)
        self._sub(self.root, "height", height)
        self.served = served
        self.strings = char_arrays()
        #: values of the ``C`` macro this screen is used with (``channel.bob``: A..D)
        self.channels = tuple(channels)
        self.skipped: list[str] = []
        self.count = 0

    @staticmethod
    def _sub(parent: ET.Element, tag: str, text: object = None, **attrib: str) -> ET.Element:
        e = ET.SubElement(parent, tag, **attrib)
        if text is not None:
            e.text = str(text).lower() if isinstance(text, bool) else str(text)
        return e

    def ok(self, *leaves: str) -> bool:
        """Are the ``leaves`` served (for every channel the screen is used with)?"""
        missing = [x.replace(C_MACRO, c) for x in leaves for c in self.channels
                   if x.replace(C_MACRO, c) not in self.served]
        self.skipped += missing
        return not missing

    def widget(self, kind: str, x: int, y: int, w: int, h: int, *, parent: ET.Element | None = None,
               name: str | None = None, **props: object) -> ET.Element:
        self.count += 1
        e = ET.SubElement(self.root if parent is None else parent, "widget", type=kind,
                          version=WIDGET_VERSIONS[kind])
        self._sub(e, "name", name or f"{kind}_{self.count}")
        for k, v in (("x", x), ("y", y), ("width", w), ("height", h)):
            self._sub(e, k, v)
        for k, v in props.items():
            if v is None:
                continue
            if isinstance(v, ET.Element):
                e.append(v)
            else:
                self._sub(e, k, v)
        return e

    # -- building blocks ----------------------------------------------------------------------
    def label(self, x, y, w, text, *, parent=None, h=20, bold=False):
        e = self.widget("label", x, y, w, h, parent=parent, text=text)
        if bold:
            font = self._sub(e, "font")
            ET.SubElement(font, "font", family="Liberation Sans", style="BOLD", size="16.0")
        return e

    def readback(self, x, y, w, leaf, *, parent=None, h=20):
        if self.ok(leaf):
            fmt = 6 if leaf.replace(C_MACRO, self.channels[0]) in self.strings else None  # STRING
            return self.widget("textupdate", x, y, w, h, parent=parent, pv_name=pv(leaf),
                               format=fmt, show_units=True)
        return None

    def setpoint(self, x, y, w, leaf, *, parent=None, h=20):
        if not self.ok(leaf):
            return None
        last = leaf.split(":")[-1]
        if last in ENUM_LEAVES:
            return self.widget("combo", x, y, w, h, parent=parent, pv_name=pv(leaf),
                               items_from_pv=True)
        return self.widget("textentry", x, y, w, h, parent=parent, pv_name=pv(leaf),
                           show_units=True)

    def setting_row(self, x, y, leaf, label, *, parent=None, lw=110, sw=110, rw=110):
        """Label, setpoint, readback ``_RBV``."""
        self.label(x, y, lw, label, parent=parent)
        self.setpoint(x + lw + 5, y, sw, leaf, parent=parent)
        if rw and leaf + "_RBV" in self.served:  # some settings have no readback (NumEvents)
            self.readback(x + lw + sw + 10, y, rw, leaf + "_RBV", parent=parent)

    def readback_row(self, x, y, leaf, label, *, parent=None, lw=130, rw=140):
        if leaf in self.served:
            self.label(x, y, lw, label, parent=parent)
        self.readback(x + lw + 5, y, rw, leaf, parent=parent)

    def setting_rows(self, x, y, rows, *, prefix="", parent=None, lw=110, sw=110, rw=110):
        """A :meth:`setting_row` per ``(leaf, label)``, one below the other (``prefix`` + leaf)."""
        for i, (leaf, label) in enumerate(rows):
            self.setting_row(x, y + ROW * i, prefix + leaf, label, parent=parent, lw=lw, sw=sw, rw=rw)

    def readback_rows(self, x, y, rows, *, parent=None, lw=130, rw=140, per_column=None, column_dx=0):
        """A :meth:`readback_row` per ``(leaf, label)``, one below the other; a new column
        ``column_dx`` to the right after every ``per_column`` rows (default: one column)."""
        n = per_column or max(len(rows), 1)
        for i, (leaf, label) in enumerate(rows):
            self.readback_row(x + column_dx * (i // n), y + ROW * (i % n), leaf, label, parent=parent,
                              lw=lw, rw=rw)

    def group(self, x, y, w, h, title) -> ET.Element:
        return self.widget("group", x, y, w, h, name=title)

    def write_button(self, x, y, w, text, leaf, value, *, parent=None, h=28):
        if not self.ok(leaf):
            return None
        actions = ET.Element("actions")
        a = ET.SubElement(actions, "action", type="write_pv")
        self._sub(a, "pv_name", pv(leaf))
        self._sub(a, "value", value)
        self._sub(a, "description", text)
        return self.widget("action_button", x, y, w, h, parent=parent, name=f"{text} button",
                           actions=actions, text=text)

    def open_button(self, x, y, w, text, file, *, parent=None, h=28):
        """A button opening ``file`` in a new tab, passing ``P`` on."""
        actions = ET.Element("actions")
        a = ET.SubElement(actions, "action", type="open_display")
        self._sub(a, "file", file)
        self._sub(self._sub(a, "macros"), "P", P_MACRO)
        self._sub(a, "target", "tab")
        self._sub(a, "description", text)
        return self.widget("action_button", x, y, w, h, parent=parent, name=f"open {file}",
                           actions=actions, text=text)

    @staticmethod
    def _colour(tag: str, rgb: tuple[int, int, int]) -> ET.Element:
        e = ET.Element(tag)
        ET.SubElement(e, "color", red=str(rgb[0]), green=str(rgb[1]), blue=str(rgb[2]), alpha="255")
        return e

    def led(self, x, y, leaf, *, parent=None, size=20):
        """An LED coloured by what "on" means (:data:`LED_ON`; a leaf without a meaning fails)."""
        if not self.ok(leaf):
            return None
        on = LED_ON[leaf.split(":")[-1]]
        return self.widget("led", x, y, size, size, parent=parent, pv_name=pv(leaf),
                           on_color=self._colour("on_color", on),
                           off_color=self._colour("off_color", LED_OFF))

    def embed(self, x, y, w, h, file, macros: dict[str, str], *, parent=None, name=None):
        """An embedded display (``file``) with ``macros`` (no resizing)."""
        m = ET.Element("macros")
        for k, v in macros.items():
            self._sub(m, k, v)
        return self.widget("embedded", x, y, w, h, parent=parent, name=name or f"{file} {macros}",
                           file=file, macros=m, resize=0)

    def progress(self, x, y, w, leaf, *, parent=None, h=20, maximum=100.0):
        if self.ok(leaf):
            return self.widget("progressbar", x, y, w, h, parent=parent, pv_name=pv(leaf),
                               limits_from_pv=False, minimum=0.0, maximum=maximum)
        return None

    def xyplot(self, x, y, w, h, title, traces: Iterable[tuple[str, str, str, tuple[int, int, int], int]],
               x_title: str, y_title: str, name: str) -> ET.Element | None:
        """``traces``: (name, x leaf, y leaf, rgb, trace_type: 1 line, 2 step, 5 bars)."""
        tr = ET.Element("traces")
        for tname, xl, yl, rgb, ttype in traces:
            if not self.ok(xl, yl):
                continue
            t = ET.SubElement(tr, "trace")
            self._sub(t, "name", tname)
            self._sub(t, "x_pv", pv(xl))
            self._sub(t, "y_pv", pv(yl))
            self._sub(t, "err_pv", "")
            self._sub(t, "axis", 0)
            self._sub(t, "trace_type", ttype)
            col = self._sub(t, "color")
            ET.SubElement(col, "color", red=str(rgb[0]), green=str(rgb[1]), blue=str(rgb[2]), alpha="255")
            self._sub(t, "line_width", 1)
            self._sub(t, "point_type", 0)
            self._sub(t, "point_size", 4)
            self._sub(t, "visible", True)
        if len(tr) == 0:
            return None
        xa = ET.Element("x_axis")
        self._axis(xa, x_title)
        ya = ET.Element("y_axes")
        self._axis(ET.SubElement(ya, "y_axis"), y_title)
        return self.widget("xyplot", x, y, w, h, name=name, title=title, show_toolbar=True,
                           show_legend=True, x_axis=xa, y_axes=ya, traces=tr)

    def _axis(self, axis: ET.Element, title: str) -> None:
        """Properties of an autoscaled linear plot axis with grid."""
        for k, v in (("title", title), ("autoscale", True), ("log_scale", False), ("minimum", 0.0),
                     ("maximum", 1.0), ("show_grid", True), ("visible", True)):
            self._sub(axis, k, v)

    def write(self, path: Path) -> None:
        ET.indent(self.root, space="  ")
        path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n'
                        "<!-- generated by clients/phoebus/make_screens.py; edit the generator -->\n"
                        + ET.tostring(self.root, encoding="unicode") + "\n")


# -- the three screens --------------------------------------------------------------------------
def main_screen(served: set[str]) -> Screen:
    s = Screen(f"picodaq {P_MACRO}", 1230, 895, served)
    s.label(10, 8, 600, f"picodaq  {P_MACRO}  - PicoScope pulse DAQ", h=28, bold=True)
    s.open_button(860, 8, 170, "Scope ...", "scope.bob")
    s.open_button(1040, 8, 170, "Analysis ...", "analysis.bob")

    g = s.group(10, 45, 400, 180, "Device")
    s.readback_rows(5, 5, (("Model_RBV", "model"), ("Backend_RBV", "backend"), ("Serial_RBV", "serial"),
                           ("StatusMessage_RBV", "status"), ("IOC:HEARTBEAT", "heartbeat")),
                    parent=g, lw=90, rw=280)

    g = s.group(420, 45, 390, 180, "Run control")
    s.write_button(5, 5, 85, "Start", "Acquire", 1, parent=g)
    s.write_button(95, 5, 85, "Stop", "Acquire", 0, parent=g)
    s.write_button(185, 5, 85, "Pause", "Pause", 1, parent=g)
    s.write_button(275, 5, 85, "Resume", "Pause", 0, parent=g)
    s.readback_row(5, 45, "State_RBV", "state", parent=g, lw=90, rw=150)
    s.led(255, 45, "Acquire_RBV", parent=g)
    s.led(280, 45, "Pause_RBV", parent=g)
    s.setting_row(5, 75, "NumEvents", "events/run", parent=g, lw=90, sw=100, rw=100)
    s.readback_row(5, 100, "EventNumber_RBV", "event number", parent=g, lw=90, rw=150)
    s.readback_row(5, 125, "ArrayCounter_RBV", "arrays sent", parent=g, lw=90, rw=150)

    g = s.group(820, 45, 400, 180, "Timebase")
    s.setting_rows(5, 5, (("SampleInterval", "sample interval"), ("NumSamples", "samples"),
                          ("PreTrigger", "pre-trigger"), ("NumSegments", "segments")),
                   parent=g, lw=110, sw=120, rw=140)
    s.readback_row(5, 105, "SampleRate_RBV", "sample rate", parent=g, lw=110, rw=140)
    s.readback_row(5, 127, "Duration_RBV", "record length", parent=g, lw=110, rw=140)

    g = s.group(10, 235, 1210, 200, "Channels (setpoint / readback)")
    for i, (_, lab) in enumerate(CHANNEL_ROWS + (("Overflow_RBV", "overflow"),)):
        s.label(5, 25 + 27 * i, 80, lab, parent=g)
    for j, c in enumerate("ABCD"):
        s.embed(90 + 275 * j, 0, CHANNEL_SIZE[0], CHANNEL_SIZE[1], "channel.bob", {"C": c}, parent=g,
                name=f"channel {c}")

    g = s.group(10, 445, 600, 190, "Trigger")
    s.setting_rows(5, 5, (("Enable", "enable"), ("Source", "source"), ("Level", "level"),
                          ("Direction", "direction"), ("Delay", "delay"), ("AutoTimeout", "auto timeout")),
                   prefix="Trigger:", parent=g, lw=110, sw=200, rw=200)

    g = s.group(620, 445, 600, 190, "Signal generator")
    s.setting_rows(5, 5, (("Enable", "enable"), ("Waveform", "waveform"), ("Frequency", "frequency"),
                          ("Amplitude", "amplitude"), ("Offset", "offset")),
                   prefix="SigGen:", parent=g, lw=110, sw=200, rw=200)

    g = s.group(10, 645, 400, 240, "Buffer and publishing")
    s.setting_row(5, 5, "Buffer:Size", "ring slots", parent=g, lw=110, sw=110, rw=130)
    s.readback_row(5, 30, "Buffer:Filled_RBV", "filled", parent=g, lw=110, rw=130)
    s.label(5, 55, 110, "fill level", parent=g)
    s.progress(120, 55, 245, "Buffer:FillLevel_RBV", parent=g)
    s.readback_row(5, 80, "Buffer:FillLevel_RBV", "fill level %", parent=g, lw=110, rw=130)
    s.setting_row(5, 110, "Waveform:MaxRate", "max publish", parent=g, lw=110, sw=110, rw=0)
    s.readback_row(5, 135, "Waveform:Rate_RBV", "publish rate", parent=g, lw=110, rw=130)
    s.setting_row(5, 165, "Settings:Defer", "defer settings", parent=g, lw=110, sw=110, rw=130)
    s.setting_row(5, 190, "HDF:Capture", "HDF5 capture", parent=g, lw=110, sw=110, rw=130)

    g = s.group(420, 645, 800, 240, "Statistics")
    rows = (("Stats:Triggers_RBV", "triggers"), ("Stats:Events_RBV", "events"),
            ("Stats:TriggerRate_RBV", "trigger rate"), ("Stats:EventRate_RBV", "event rate"),
            ("Stats:MeanTriggerRate_RBV", "mean trigger rate"), ("Stats:RunTime_RBV", "run time"),
            ("Stats:LiveTime_RBV", "live time"), ("Stats:DeadTime_RBV", "dead time"),
            ("Stats:LiveFraction_RBV", "live fraction"), ("Stats:Processed_RBV", "processed"),
            ("Stats:Discarded_RBV", "discarded"), ("Stats:ConfigGeneration_RBV", "config generation"))
    s.readback_rows(5, 5, rows, parent=g, lw=130, rw=200, per_column=6, column_dx=390)
    s.label(5, 160, 130, "live fraction", parent=g)
    s.progress(140, 160, 590, "Stats:LiveFraction_RBV", parent=g)
    s.write_button(5, 185, 180, "Reset statistics", "Stats:Reset", 1, parent=g, h=24)
    return s


#: the rows of the channel block (``channel.bob``)
CHANNEL_ROWS = (("Enable", "enable"), ("Range", "range"), ("Coupling", "coupling"), ("Offset", "offset"))
#: size of ``channel.bob`` (width, height)
CHANNEL_SIZE = (270, 160)


def channel_screen(served: set[str]) -> Screen:
    """One channel's settings (setpoint + readback) and overflow LED, for the macro ``C``."""
    s = Screen(f"channel {C_MACRO}", *CHANNEL_SIZE, served, channels="ABCD")
    s.label(0, 0, 260, f"Channel {C_MACRO}")
    for i, (leaf, _) in enumerate(CHANNEL_ROWS):
        s.setpoint(0, 25 + 27 * i, 125, f"{C_MACRO}:{leaf}")
        s.readback(130, 25 + 27 * i, 135, f"{C_MACRO}:{leaf}_RBV")
    s.led(0, 25 + 27 * len(CHANNEL_ROWS), f"{C_MACRO}:Overflow_RBV")
    return s


#: columns of an ``overview.bob`` row: (leaf, heading, width)
OVERVIEW_COLUMNS = (("State_RBV", "state", 110), ("EventNumber_RBV", "event", 100),
                    ("Stats:TriggerRate_RBV", "trigger rate", 120), ("Stats:EventRate_RBV", "event rate", 120),
                    ("Stats:LiveFraction_RBV", "live fraction", 110), ("Buffer:FillLevel_RBV", "buffer %", 90),
                    ("StatusMessage_RBV", "status", 280))
ROW_SIZE = (1150, 30)


def overview_row_screen(served: set[str]) -> Screen:
    """One IOC (prefix ``P``) in one line: prefix, running LED, rates, status, and a button to
    its ``main.bob``."""
    s = Screen(f"picodaq row {P_MACRO}", *ROW_SIZE, served)
    s.label(0, 5, 90, P_MACRO)
    s.led(95, 5, "Acquire_RBV")
    x = 125
    for leaf, _, w in OVERVIEW_COLUMNS:
        s.readback(x, 5, w - 5, leaf)
        x += w
    s.open_button(x, 1, ROW_SIZE[0] - x - 5, "Main ...", "main.bob", h=28)
    return s


def overview_screen(served: set[str]) -> Screen:
    """Several IOCs, one row per prefix: ``overview.bob?P1=LAB1:&P2=LAB2:`` (rows ``i`` without
    ``P<i>`` show ``PICO<i>:``)."""
    s = Screen("picodaq overview", ROW_SIZE[0] + 20, 90 + 35 * OVERVIEW_ROWS, served)
    s.label(10, 8, 700, "picodaq overview  - one row per IOC prefix (macros P1, P2, ...)", h=28, bold=True)
    s.label(10, 45, 90, "prefix")
    s.label(95 + 10, 45, 30, "run")
    x = 135
    for _, heading, w in OVERVIEW_COLUMNS:
        s.label(x, 45, w - 5, heading)
        x += w
    for i in range(1, OVERVIEW_ROWS + 1):
        s.embed(10, 35 + 35 * i, *ROW_SIZE, "overview_row.bob", {"P": f"$(P{i}=PICO{i}:)"}, name=f"row {i}")
    return s


def sub_screen(name: str, heading: str, height: int, served: set[str]) -> Screen:
    """A screen opened from the main one: full width, heading, and a button back to ``main.bob``."""
    s = Screen(name, 1230, height, served)
    s.label(10, 8, 700, f"picodaq  {P_MACRO}  - {heading}", h=28, bold=True)
    s.open_button(1040, 8, 170, "Main ...", "main.bob")
    return s


def scope_screen(served: set[str]) -> Screen:
    s = sub_screen(f"picodaq scope {P_MACRO}", "waveforms against TimeAxis_RBV", 760, served)
    s.xyplot(10, 45, 900, 560, "Waveforms",
             [(f"{c}", "TimeAxis_RBV", f"{c}:Waveform_RBV", COLOURS[c], 1) for c in "ABCD"],
             "time relative to trigger (s)", "voltage (V)", "Waveforms plot")
    g = s.group(920, 45, 300, 560, "Channels")
    for j, c in enumerate("ABCD"):
        y = 5 + 95 * j
        s.label(5, y, 270, f"Channel {c}", parent=g)
        s.setpoint(5, y + 22, 100, f"{c}:Enable", parent=g)
        s.readback(110, y + 22, 80, f"{c}:Enable_RBV", parent=g)
        s.led(200, y + 22, f"{c}:Overflow_RBV", parent=g)
        s.setpoint(5, y + 47, 100, f"{c}:Range", parent=g)
        s.readback(110, y + 47, 120, f"{c}:Range_RBV", parent=g)
    s.label(5, 390, 270, "Trigger", parent=g)
    s.setpoint(5, 412, 100, "Trigger:Source", parent=g)
    s.readback(110, 412, 120, "Trigger:Source_RBV", parent=g)
    s.setpoint(5, 437, 100, "Trigger:Level", parent=g)
    s.readback(110, 437, 120, "Trigger:Level_RBV", parent=g)
    s.setpoint(5, 462, 100, "Trigger:Direction", parent=g)
    s.readback(110, 462, 120, "Trigger:Direction_RBV", parent=g)
    g = s.group(10, 615, 1210, 135, "Acquisition")
    s.write_button(5, 5, 100, "Start", "Acquire", 1, parent=g)
    s.write_button(110, 5, 100, "Stop", "Acquire", 0, parent=g)
    s.readback_row(230, 5, "State_RBV", "state", parent=g, lw=60, rw=120)
    s.readback_row(430, 5, "EventNumber_RBV", "event", parent=g, lw=60, rw=120)
    s.readback_row(630, 5, "Stats:EventRate_RBV", "event rate", parent=g, lw=80, rw=140)
    s.setting_row(5, 45, "SampleInterval", "sample interval", parent=g, lw=110, sw=120, rw=140)
    s.setting_row(420, 45, "NumSamples", "samples", parent=g, lw=80, sw=100, rw=120)
    s.setting_row(780, 45, "PreTrigger", "pre-trigger", parent=g, lw=90, sw=100, rw=120)
    s.setting_row(5, 72, "Waveform:MaxRate", "max publish", parent=g, lw=110, sw=120, rw=0)
    s.readback_row(420, 72, "Waveform:Rate_RBV", "publish rate", parent=g, lw=80, rw=120)
    return s


def analysis_screen(served: set[str]) -> Screen:
    s = sub_screen(f"picodaq analysis {P_MACRO}", "pulse analysis, lifetime, voltmeter", 820, served)
    s.xyplot(10, 45, 600, 360, "Pulse heights",
             [("accepted", "Pulse:HeightBins_RBV", "Pulse:Heights_RBV", (0, 90, 200), 5),
              ("noise", "Pulse:HeightBins_RBV", "Pulse:NoiseHeights_RBV", (150, 150, 150), 2)],
             "pulse height (V)", "entries", "Pulse height spectrum")
    s.xyplot(620, 45, 600, 360, "Decay times (second pulse delay)",
             [("decays", "Pulse:DecayBins_RBV", "Pulse:DecayTimes_RBV", (130, 0, 160), 5)],
             "delay (s)", "entries", "Decay time histogram")
    g = s.group(10, 415, 600, 250, "Pulse filter")
    rows = (("Pulse:Events_RBV", "events analysed"), ("Pulse:Validated_RBV", "validated"),
            ("Pulse:Accepted_RBV", "accepted"), ("Pulse:Rate_RBV", "accepted rate"),
            ("Pulse:MeanRate_RBV", "mean accepted rate"), ("Pulse:DoublePulses_RBV", "double pulses"),
            ("Pulse:ModuleStatus_RBV", "module status"))
    s.readback_rows(5, 5, rows, parent=g, lw=150, rw=250)
    s.write_button(5, 185, 200, "Reset pulse filter", "Pulse:Reset", 1, parent=g, h=24)
    g = s.group(620, 415, 600, 250, "Muon lifetime (unbinned ML fit)")
    rows = (("Pulse:Lifetime_RBV", "lifetime"), ("Pulse:LifetimeErr_RBV", "error"),
            ("Pulse:Background_RBV", "background fraction"), ("Pulse:FitEntries_RBV", "delays in window"),
            ("Pulse:FitMin_RBV", "window from"), ("Pulse:FitMax_RBV", "window to"))
    s.readback_rows(5, 5, rows, parent=g, lw=150, rw=250)
    g = s.group(10, 675, 600, 140, "Voltmeter")
    vm_chans = [c for c in "ABCD" if f"VMeter:{c}:Mean_RBV" in served]
    for k, q in enumerate(("Mean", "RMS", "Std", "PkPk", "Min", "Max")):
        s.label(60 + 88 * k, 0, 85, q, parent=g)
    for i, c in enumerate(vm_chans):
        s.label(5, 22 + 25 * i, 50, c, parent=g)
        for k, q in enumerate(("Mean", "RMS", "Std", "PkPk", "Min", "Max")):
            s.readback(60 + 88 * k, 22 + 25 * i, 85, f"VMeter:{c}:{q}_RBV", parent=g)
    s.readback_row(5, 22 + 25 * max(len(vm_chans), 1), "VMeter:Updates_RBV", "readings", parent=g,
                   lw=80, rw=120)
    s.xyplot(620, 675, 600, 140, "Rate history",
             [("rate", "Rates:HistoryTime_RBV", "Rates:History_RBV", (0, 120, 0), 1)],
             "time since run start (s)", "rate (Hz)", "Rate history")
    return s


#: every generated screen and its builder
SCREENS = {"main.bob": main_screen, "channel.bob": channel_screen, "scope.bob": scope_screen,
           "analysis.bob": analysis_screen, "overview.bob": overview_screen,
           "overview_row.bob": overview_row_screen}


def build(out_dir: Path = HERE, served: set[str] | None = None) -> dict[str, list[str]]:
    """Write the screens; returns the skipped (not served) PVs per file."""
    served = served_pvs() if served is None else served
    skipped = {}
    for fname, fn in SCREENS.items():
        scr = fn(served)
        scr.write(out_dir / fname)
        skipped[fname] = sorted(set(scr.skipped))
    return skipped


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE, help="output directory (default: clients/phoebus)")
    args = ap.parse_args(argv)
    for fname, missing in build(args.out).items():
        print(f"wrote {args.out / fname}" + (f"  (left out, not served: {', '.join(missing)})"
                                               if missing else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
