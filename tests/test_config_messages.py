"""Messages about picoDAQ/picoCosmo files name what the user wrote (issue 15)."""

from __future__ import annotations

from pathlib import Path

import pytest

from picodaq_ioc.config.loader import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]

PS4000 = """\
PSmodel: '4000'
picoChannels: [A]
ChanModes: [DC]
ChanRanges: [2.0]
sampleTime: 1.0E-3
Nsamples: 1000
trgChan: A
trgThr: 0.1
frqSG: 50.E+3
"""


def test_implied_stop_frequency_names_frqSG_and_the_default(tmp_path):
    f = tmp_path / "ps4.yaml"
    f.write_text(PS4000)
    with pytest.raises(ConfigError) as ei:
        load_config(f)
    msg = str(ei.value)
    assert "frqSG:" in msg and "stopFreqSG:" not in msg.split("(")[0]
    assert "stopFreqSG = 9 x frqSG = 450000 Hz" in msg


def test_explicit_stop_frequency_is_used_and_named(tmp_path):
    f = tmp_path / "ps4.yaml"
    f.write_text(PS4000 + "stopFreqSG: 60.E+3\n")
    cfg = load_config(f)
    assert cfg.siggen.stop_frequency == 60e3
    f.write_text(PS4000 + "stopFreqSG: 9.E+5\n")
    with pytest.raises(ConfigError) as ei:
        load_config(f)
    assert str(ei.value).split(": ")[1] == "stopFreqSG" and "9 x frqSG" not in str(ei.value)


PICOCOSMO_PF = """\
# picoCosmo config/PFKanne.yaml style, with its output keys
logFile: pFilt
logFile2: dpFilt
rawFile: rawDP
pictFile: pictDP
pulseShape:
 - pheight: -0.035
   taur   : 20.E-9
   tauon  : 12.E-9
   tauf   : 128.E-9
timingPrecision: 2
NminCoincidence: 1
doublePulse: true
"""


@pytest.mark.parametrize("source", ["inline", "configs/legacy/picocosmo/config/PFKanne.yaml",
                                    "configs/legacy/pFconfig.yaml"])
def test_pulse_filter_file_is_recognised(tmp_path, source):
    if source == "inline":
        f = tmp_path / "PFKanne.yaml"
        f.write_text(PICOCOSMO_PF)
    else:
        f = ROOT / source
    with pytest.raises(ConfigError) as ei:
        load_config(f)
    msg = str(ei.value)
    assert "this is a pulse-filter file" in msg and "under `analysis:`" in msg and "PFfile" in msg
    assert "unknown key" not in msg and "did you mean" not in msg


def test_a_daq_file_with_a_logfile_is_not_taken_for_a_pulse_filter(tmp_path):
    f = tmp_path / "bm.yaml"
    f.write_text(PS4000.replace("frqSG: 50.E+3", "frqSG: 0") + "LogFile: BMsum\nNBuffers: 8\n")
    assert load_config(f).buffer.n_buffers == 8
