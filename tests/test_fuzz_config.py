"""Malformed configuration files through ``picodaq-ioc --check``: a valid file exits 0 with the
applied settings, anything else exits 2 with a one-line message - never a traceback."""

from __future__ import annotations

import math
import os
import sys

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import REPO, run_client

from picodaq_ioc.ioc import cli

SECTIONS = {
    "device": ["backend", "model", "variant", "serial", "resolution_bits"],
    "channels": ["A", "B", "C", "D", "Z"],
    "timebase": ["sample_interval", "duration", "samples", "pretrigger", "segments"],
    "trigger": ["enabled", "source", "level", "direction", "delay", "auto_timeout"],
    "siggen": ["enabled", "waveform", "frequency", "amplitude", "offset", "sweep", "stop_frequency"],
    "buffer": ["n_buffers", "log_file", "verbose", "log_time"],
    "simulation": ["seed", "realtime", "noise_rms", "sources", "siggen_channel", "rearm_time"],
    "analysis": None,
    "PSmodel": None, "picoChannels": None, "ChanRanges": None, "sampleTime": None, "BMfile": None,
}
CHANNEL_KEYS = ["enabled", "range", "coupling", "offset", "bogus"]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 1e-9, 4e-9, 0.05, 0.2, 1e300, "2000a", "6000", "sim", "picoscope", "A",
                     "EXT", "AC", "DC", "DC50", "Rising", "falling", "Sine", "", "nan", ".inf", "0x10",
                     "1e-6", "yes", "~"]),
    st.text(max_size=12),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)


@st.composite
def configs(draw) -> dict:
    doc: dict = {}
    for sec in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=5, unique=True)):
        keys = SECTIONS[sec]
        if keys is None or draw(st.integers(0, 9)) == 0:
            doc[sec] = draw(values)
            continue
        body: dict = {}
        for key in draw(st.lists(st.sampled_from(keys), max_size=4, unique=True)):
            if sec == "channels":
                body[key] = {k: draw(values) for k in draw(st.lists(st.sampled_from(CHANNEL_KEYS),
                                                                   max_size=3, unique=True))}
            elif key == "sources":
                body[key] = [{"kind": draw(st.sampled_from(["muon", "sipm", "geiger", "noise", "x"])),
                              "rate": draw(values), "channels": draw(values)}]
            else:
                body[key] = draw(values)
        doc[sec] = body
    return doc


def _dump(doc: dict) -> str:
    try:
        return yaml.safe_dump(doc, allow_unicode=True)
    except (yaml.YAMLError, ValueError, RecursionError):
        return repr(doc)


texts = st.one_of(
    configs().map(_dump),
    # structured, then damaged: truncated or with a junk character inserted
    st.tuples(configs().map(_dump), st.integers(0, 400), st.sampled_from(["", ":", "{", "[", "\t", "'", "&a",
                                                                          "*b", "!!python/object:os.system",
                                                                          "\x00", "- ", "\n  x"]))
    .map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1]:]),
    st.text(max_size=200),
    st.binary(max_size=100).map(lambda b: b.decode("latin-1")),
)


def _check(path, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as ei:
        cli.main(["--check", "--config", str(path)])
    out, err = capsys.readouterr()
    code = ei.value.code
    return (0 if code is None else int(code)), out, err


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(text=texts, suffix=st.sampled_from([".yaml", ".json", ".yml", ".cfg"]))
def test_check_never_tracebacks(tmp_path, capsys, text: str, suffix: str) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    code, out, err = _check(path, capsys)
    assert "Traceback" not in out + err
    assert code in (0, 2), (code, out, err)
    if code == 2:
        msg = err.strip()
        assert msg, "exit 2 without a message"
        assert str(path) in msg or "fuzz" in msg, msg  # the message names the file
    else:
        assert out.strip(), "a valid file prints the applied settings"


@pytest.mark.parametrize("value", [math.nan, math.inf, -1, "huge", [1, 2], {"a": 1}])
def test_bad_value_message_names_key(tmp_path, capsys, value) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"timebase": {"samples": value}}))
    code, out, err = _check(path, capsys)
    assert code == 2 and "timebase.samples" in err and "Traceback" not in err


def test_check_as_a_process(tmp_path) -> None:
    """The real command line: exit status and stderr of the process."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("channels: {A: {range: -3}}\ntimebase: [\n")
    rc, out, err = run_client([sys.executable, "-m", "picodaq_ioc", "--check", "--config", str(bad)],
                              env=os.environ.copy() | {"PYTHONPATH": str(REPO)})
    assert rc == 2, (rc, out, err)
    assert "bad.yaml" in err and "Traceback" not in err
    good = REPO / "configs" / "demo.yaml"
    rc, out, err = run_client([sys.executable, "-m", "picodaq_ioc", "--check", "--config", str(good)],
                              env=os.environ.copy() | {"PYTHONPATH": str(REPO)})
    assert rc == 0, err
    assert out.strip()
