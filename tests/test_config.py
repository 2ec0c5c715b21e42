"""Configuration loading: example files, legacy picoDAQ key mapping, JSON, model checks, conversion."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from config_files import CONFIGS, LEGACY, NATIVE, ROOT

from picodaq_ioc.config import Config, ConfigError, load_config, scope_settings
from picodaq_ioc.config.check import applied_settings
from picodaq_ioc.config.convert import record_samples
from picodaq_ioc.scope import models
from picodaq_ioc.scope.types import Coupling, Direction, SweepType, WaveType


def write(tmp_path: Path, name: str, data: dict | str) -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return p


# ----------------------------------------------------------------------------- example files


def test_required_examples_exist():
    names = {p.name for p in NATIVE}
    assert {"demo.yaml", "kamiokanne.yaml", "cosmo_coincidence.yaml", "sipm.yaml", "noise.yaml",
            "geiger.yaml"} <= names
    assert {"DAQconfig.yaml", "PSconfig.yaml", "BMconfig.yaml", "DAQ_Kanne.yaml", "PMpulse.yaml",
            "picoOsci.yaml"} <= {p.name for p in LEGACY}


@pytest.mark.parametrize("path", NATIVE + LEGACY, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_example_loads_and_applies(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert cfg.source_file == str(path)
    chans, tb, tr, sg = scope_settings(cfg)
    assert any(c.enabled for c in chans.values())
    a = applied_settings(cfg)
    n_on = sum(c.enabled for c in chans.values())
    fastest = models.timebase_formula(cfg.device.model, variant=cfg.device.variant).min_index(n_on)
    # the slowest timebase not slower than requested, or the fastest the unit has
    assert a["sample_interval_s"] <= tb.sample_interval_s * (1 + 1e-9) or a["timebase_index"] == fastest
    assert 0 <= a["n_pre"] <= a["n_samples"]


def test_kamiokanne_scenario():
    cfg = load_config(CONFIGS / "kamiokanne.yaml")
    a = applied_settings(cfg)
    assert [c for c, ch in a["channels"].items() if ch["enabled"]] == ["A"]
    assert a["n_samples"] == 4000
    assert math.isclose(a["sample_interval_s"], 4e-9)
    assert math.isclose(a["record_s"], 16e-6)
    assert a["n_pre"] == 200
    assert cfg.trigger.direction is Direction.FALLING and cfg.trigger.level == pytest.approx(-0.045)
    (muon,) = cfg.simulation.sources
    assert muon.kind == "muon" and muon.decay_fraction > 0
    assert muon.lifetime == pytest.approx(2.197e-6)


def test_cosmo_three_panels_as_picodaq():
    cfg = load_config(CONFIGS / "cosmo_coincidence.yaml")
    a = applied_settings(cfg)
    assert [c for c, ch in a["channels"].items() if ch["enabled"]] == ["A", "B", "C"]
    # 16 us / 3500 requested -> 4 ns x 4000 samples (pico-python keeps the duration)
    assert math.isclose(a["sample_interval_s"], 4e-9) and a["n_samples"] == 4000
    kinds = [s.kind for s in cfg.simulation.sources]
    assert kinds.count("muon") == 1 and kinds.count("sipm") == 3
    muon = cfg.simulation.sources[kinds.index("muon")]
    assert muon.channels == ["A", "B", "C"] and len(muon.channel_delays) == 3


def test_demo_siggen_loopback_and_noise():
    cfg = load_config(CONFIGS / "demo.yaml")
    _, _, tr, sg = scope_settings(cfg)
    assert sg.enabled and sg.frequency_hz == 100e3 and sg.stop_frequency_hz is None
    assert cfg.simulation.siggen_channel == "B"
    assert any(s.kind == "noise" and s.channels == ["A"] for s in cfg.simulation.sources)
    # the demo triggers on pulses at a realistic rate, not on every period of the sine
    # (issue 11: ~1400 events/s kept a core busy with nobody watching)
    assert tr.source == "A"
    pulses = [s for s in cfg.simulation.sources if s.kind == "muon"]
    assert len(pulses) == 1 and pulses[0].channels == ["A"] and pulses[0].rate <= 50


def test_built_in_default_is_the_demo():
    from picodaq_ioc.config.loader import validate_data
    from picodaq_ioc.ioc.cli import DEFAULT_CONFIG

    demo, default = load_config(CONFIGS / "demo.yaml"), validate_data(DEFAULT_CONFIG, "<built-in>")
    assert scope_settings(demo) == scope_settings(default)
    assert demo.simulation == default.simulation


def test_noise_is_free_running():
    _, _, tr, _ = scope_settings(load_config(CONFIGS / "noise.yaml"))
    assert tr.enabled is False


# ----------------------------------------------------------------------------- legacy key mapping


def test_legacy_defaults_are_picodaqs(tmp_path):
    cfg = load_config(write(tmp_path, "ps.yaml", {"PSmodel": "2000a"}))
    chans, tb, tr, sg = scope_settings(cfg)
    assert [c for c, v in chans.items() if v.enabled] == ["A", "B"]
    assert chans["A"].range_v == 30e-3 and chans["B"].range_v == 0.35
    assert chans["A"].coupling is Coupling.AC and chans["B"].offset_v == 0.0
    assert cfg.timebase.duration == 10e-6 and cfg.timebase.samples == 200
    assert tb.sample_interval_s == pytest.approx(10e-6 / 199.9)
    assert tb.pretrigger_fraction == 0.05
    assert tr.enabled and tr.source == "A" and tr.direction is Direction.RISING
    assert tr.threshold_v == pytest.approx(30e-3 / 2)  # trgThr = ChanRanges[0]/2
    assert tr.auto_trigger_s == pytest.approx(1.0)  # trgTO 1000 ms
    assert tr.delay_samples == 0
    assert sg.enabled and sg.frequency_hz == 100e3 and sg.pk_to_pk_v == 0.4
    assert sg.waveform is WaveType.SINE and sg.sweep is SweepType.UP_DOWN and sg.offset_v == 0
    assert sg.stop_frequency_hz == pytest.approx(900e3)  # 9 * frqSG
    assert sg.dwell_time_s == pytest.approx(10 / 100e3)
    assert cfg.buffer.n_buffers == 16 and cfg.buffer.log_time == 60 and cfg.buffer.log_file is None


def test_legacy_sampletime_is_total_duration(tmp_path):
    cfg = load_config(write(tmp_path, "ps.yaml", {"sampleTime": 16e-6, "Nsamples": 3500,
                                                  "picoChannels": ["A"], "ChanRanges": [0.5]}))
    assert cfg.timebase.sample_interval == pytest.approx(16e-6 / 3499.9)
    # 2000a, one channel: fastest interval <= 4.57 ns is 4 ns, duration kept -> 4000 samples
    assert record_samples(cfg) == 4000
    a = applied_settings(cfg)
    assert a["sample_interval_s"] == pytest.approx(4e-9) and a["n_samples"] == 4000


def test_legacy_10us_200_gives_48ns_208(tmp_path):
    a = applied_settings(load_config(write(tmp_path, "ps.yaml", {"sampleTime": 10e-6, "Nsamples": 200})))
    assert a["sample_interval_s"] == pytest.approx(48e-9) and a["n_samples"] == 208


@pytest.mark.parametrize("to_ms, expect", [(5000, 5.0), (250, 0.25), (0, None)])
def test_legacy_trgto_ms_to_s(tmp_path, to_ms, expect):
    _, _, tr, _ = scope_settings(load_config(write(tmp_path, "ps.yaml", {"trgTO": to_ms})))
    assert tr.auto_trigger_s == (pytest.approx(expect) if expect is not None else None)


def test_legacy_siggen_keys(tmp_path):
    cfg = load_config(write(tmp_path, "ps.yaml", {
        "frqSG": 10e3, "PkToPkSG": 1.0, "waveTypeSG": "Square", "offsetVoltageSG": 0.2, "swpSG": "Down",
        "stopFreqSG": 20e3, "dwellTimeSG": 0.01}))
    _, _, _, sg = scope_settings(cfg)
    assert sg.enabled and sg.frequency_hz == 10e3 and sg.pk_to_pk_v == 1.0 and sg.offset_v == 0.2
    assert sg.waveform is WaveType.SQUARE and sg.sweep is SweepType.DOWN
    assert sg.stop_frequency_hz == 20e3 and sg.dwell_time_s == 0.01
    _, _, _, sg = scope_settings(load_config(write(tmp_path, "ps2.yaml", {"frqSG": 10e3})))
    assert sg.stop_frequency_hz == pytest.approx(90e3) and sg.dwell_time_s == pytest.approx(1e-3)
    _, _, _, sg = scope_settings(load_config(write(tmp_path, "ps3.yaml", {"frqSG": 0})))
    assert sg.enabled is False


def test_legacy_channels_and_trigger(tmp_path):
    cfg = load_config(write(tmp_path, "ps.yaml", {
        "PSmodel": "2000a", "picoChannels": ["A", "B", "C"], "ChanRanges": [0.2, 0.2, 0.5],
        "ChanModes": ["AC", "DC", "AC"], "ChanOffsets": [0.14, 0.0, -0.1], "trgChan": "C",
        "trgThr": -0.03, "trgTyp": "Falling", "trgDelay": 5, "trgActive": True, "pretrig": 0.1}))
    chans, tb, tr, _ = scope_settings(cfg)
    assert [c for c, v in chans.items() if v.enabled] == ["A", "B", "C"] and chans["D"].enabled is False
    assert chans["B"].coupling is Coupling.DC and chans["C"].range_v == 0.5
    assert chans["A"].offset_v == 0.14 and chans["C"].offset_v == -0.1
    assert (tr.source, tr.threshold_v, tr.direction, tr.delay_samples) == ("C", -0.03, Direction.FALLING, 5)
    assert tb.pretrigger_fraction == 0.1


def test_legacy_model_2000_forces_pretrig_zero(tmp_path):
    cfg = load_config(write(tmp_path, "ps.yaml", "PSmodel: 2000\npretrig: 0.1\nfrqSG: 0\n"))
    assert cfg.device.model == "2000" and cfg.timebase.pretrigger == 0.0
    assert any("Pretrig sampling disabled on device 2000" in n for n in cfg.notices)


def test_legacy_ignored_keys_give_notices(tmp_path):
    cfg = load_config(write(tmp_path, "ps.yaml", {"ChanColors": ["red", "blue"], "mode": ["osci"],
                                                  "verbose": 2}))
    assert cfg.buffer.verbose == 2
    assert any("ChanColors" in n for n in cfg.notices) and any("mode" in n for n in cfg.notices)


def test_legacy_buffer_file(tmp_path):
    cfg = load_config(write(tmp_path, "bm.yaml", {"NBuffers": 64, "LogFile": "BMsum", "verbose": 0,
                                                  "logTime": 30, "BMmodules": ["mpOsci"]}))
    b = cfg.buffer
    assert (b.n_buffers, b.log_file, b.verbose, b.log_time) == (64, "BMsum", 0, 30)
    assert any("BMmodules" in n for n in cfg.notices)


def test_legacy_daq_file_relative_paths(tmp_path):
    sub = tmp_path / "cfg"
    sub.mkdir()
    write(sub, "dev.yaml", {"picoChannels": ["A"], "ChanRanges": [0.5], "trgTO": 2000, "frqSG": 0})
    write(sub, "bm.yaml", {"NBuffers": 8})
    daq = write(tmp_path, "run.daq", {"DeviceFile": "cfg/dev.yaml", "BMfile": "cfg/bm.yaml",
                                      "DAQmodules": ["mpRMeter"]})
    cfg = load_config(daq)
    assert cfg.buffer.n_buffers == 8 and cfg.trigger.auto_timeout == 2.0 and list(cfg.channels) == ["A"]


def test_legacy_picocosmo_pffile_to_analysis(tmp_path):
    write(tmp_path, "dev.yaml", {"picoChannels": ["A"], "ChanRanges": [0.5]})
    write(tmp_path, "pf.yaml", {"pulseShape": [{"taur": 2e-8, "pheight": -0.04}], "NminCoincidence": 1})
    cfg = load_config(write(tmp_path, "c.daq", {"DeviceFile": "dev.yaml", "PFfile": "pf.yaml"}))
    (an,) = cfg.analysis
    assert an.module == "pulse" and an.model_dump()["NminCoincidence"] == 1
    # runCosmoDAQ.py defaults: generator off, trgTO 5000 ms
    _, _, tr, sg = scope_settings(cfg)
    assert sg.enabled is False and tr.auto_trigger_s == 5.0


def test_legacy_anascript_user_code_rejected(tmp_path):
    write(tmp_path, "dev.yaml", {"frqSG": 0})
    p = write(tmp_path, "daq.yaml", {"DeviceFile": "dev.yaml", "ANAscript": "myAnalysis.py"})
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    e = ei.value
    assert e.key == "ANAscript" and e.value == "myAnalysis.py" and e.path == str(p)
    assert "not executed" in str(e) and "analysis:" in str(e)


def test_legacy_known_anascript_maps_to_builtin():
    cfg = load_config(CONFIGS / "legacy" / "DAQ_Kanne.yaml")
    assert [a.module for a in cfg.analysis] == ["pulse"]
    assert any("not executed" in n for n in cfg.notices)


def test_legacy_with_native_simulation(tmp_path):
    cfg = load_config(write(tmp_path, "ps.yaml", {
        "picoChannels": ["A", "B"], "frqSG": 100e3,
        "simulation": {"seed": 7, "realtime": False, "siggen_channel": "B",
                       "sources": [{"kind": "noise", "channels": ["A"], "rms": 0.002}]}}))
    assert cfg.simulation.seed == 7 and cfg.simulation.siggen_channel == "B"


def test_legacy_mixed_with_native_section_rejected(tmp_path):
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, "ps.yaml", {"PSmodel": "2000a", "channels": {"A": {}}}))
    assert ei.value.key == "channels" and "unknown" in str(ei.value)


def test_legacy_errors_name_the_referenced_file(tmp_path):
    dev = write(tmp_path, "dev.yaml", {"picoChannels": ["A", "B"], "ChanRanges": [0.1, "big"]})
    daq = write(tmp_path, "daq.yaml", {"DeviceFile": "dev.yaml"})
    with pytest.raises(ConfigError) as ei:
        load_config(daq)
    assert ei.value.path == str(dev) and ei.value.key == "ChanRanges[1]" and ei.value.value == "big"


def test_legacy_missing_referenced_file(tmp_path):
    p = write(tmp_path, "daq.yaml", {"DeviceFile": "nowhere.yaml"})
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert ei.value.key == "DeviceFile" and "not found" in str(ei.value) and ei.value.path == str(p)


def test_legacy_trgto_error_in_ms(tmp_path):
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, "ps.yaml", {"trgTO": -1}))
    assert ei.value.key == "trgTO" and ei.value.value == -1 and "ms" in ei.value.allowed
    assert "3.6e+06" in ei.value.allowed  # 3600 s expressed in ms


# ----------------------------------------------------------------------------- JSON


def test_json_native_equals_yaml(tmp_path):
    data = yaml.load((CONFIGS / "kamiokanne.yaml").read_text(), Loader=__import__(
        "picodaq_ioc.config.files", fromlist=["_Loader"])._Loader)
    p = tmp_path / "k.json"
    p.write_text(json.dumps(data))
    assert load_config(p).model_dump() == load_config(CONFIGS / "kamiokanne.yaml").model_dump()


def test_json_legacy(tmp_path):
    p = tmp_path / "picoDAQtest.json"
    p.write_text(json.dumps({"picoChannels": ["A", "B"], "ChanRanges": [0.03, 0.35], "Nsamples": 200,
                             "sampleTime": 10e-6, "trgChan": "B", "trgThr": 0.1, "trgActive": False,
                             "frqSG": 100e3, "mode": "test"}))
    cfg = load_config(p)
    assert cfg.trigger.source == "B" and cfg.trigger.enabled is False


def test_json_syntax_error_names_line(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"device": {"model": "2000a",}\n}')
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert str(p) in str(ei.value) and "line 1" in str(ei.value)


def test_unknown_extension_is_yaml(tmp_path):
    p = write(tmp_path, "x.cfg", "device: {model: 3000a}\n")
    assert load_config(p).device.model == "3000a"


def test_yaml_exponent_without_dot_is_float(tmp_path):
    cfg = load_config(write(tmp_path, "x.yaml", "timebase: {sample_interval: 4e-9, samples: 100}\n"))
    assert cfg.timebase.sample_interval == 4e-9


# ----------------------------------------------------------------------------- error messages


def test_missing_file():
    with pytest.raises(ConfigError) as ei:
        load_config("/nonexistent/dir/x.yaml")
    assert "/nonexistent/dir/x.yaml" in str(ei.value) and "not found" in str(ei.value)


def test_yaml_syntax_error_names_line(tmp_path):
    p = write(tmp_path, "x.yaml", "device:\n  model: [2000a\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert "YAML syntax error" in str(ei.value) and "line" in str(ei.value)


def test_top_level_must_be_mapping(tmp_path):
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, "x.yaml", "- 1\n- 2\n"))
    assert "mapping" in str(ei.value)


def test_empty_file_gives_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "x.yaml", ""))
    assert cfg.device.model == "2000a" and list(cfg.channels) == ["A"]


@pytest.mark.parametrize("doc, key, value, allowed_part, problem_part", [
    ({"channels": {"A": {"rnage": 0.5}}}, "channels.A.rnage", None, "range", "did you mean 'range'"),
    ({"trigger": {"direction": "Fallling"}}, "trigger.direction", "Fallling", "Falling", "did you mean 'Falling'"),
    ({"triger": {}}, "triger", None, "trigger", "did you mean 'trigger'"),
    ({"channels": {"A": {"range": "wide"}}}, "channels.A.range", "wide", "a number", "expected a number"),
    ({"timebase": {"samples": 1}}, "timebase.samples", 1, ">= 2", "out of range"),
    ({"channels": {"A": {"coupling": "XY"}}}, "channels.A.coupling", "XY", "'DC50'", "not one of"),
    ({"device": {"model": "9000"}}, "device.model", "9000", "'4000a'", "not one of"),
    ({"channels": {"A": {"range": 100.0}}}, "channels.A.range", 100.0, "±20 V", "largest input range"),
    ({"device": {"model": "2000"}, "channels": {"D": {}}, "timebase": {"pretrigger": 0}},
     "channels.D", "D", "A, B", "does not exist on the 2000"),
    ({"channels": {"A": {"range": 0.1, "offset": 1.0}}}, "channels.A.offset", 1.0, "±0.25 V", "offset"),
    ({"channels": {"A": {}}, "trigger": {"source": "B"}}, "trigger.source", "B", "A", "not an enabled channel"),
    ({"device": {"model": "2000"}, "timebase": {"pretrigger": 0.1}}, "timebase.pretrigger", 0.1, "0",
     "no pre-trigger"),
    ({"timebase": {"samples": 40_000_000}}, "timebase.samples", 40_000_000, "<= 33554432", "memory"),
    ({"siggen": {"enabled": True, "frequency": 5e6}}, "siggen.frequency", 5e6, "1e+06 Hz", "out of range"),
    ({"trigger": {"level": 0.5}}, "trigger.level", 0.5, "-0.2 .. 0.2 V", "outside"),
    ({"channels": {"A": {"range": float("nan")}}}, "channels.A.range", None, "finite", ""),
    ({"simulation": {"sources": [{"kind": "noise", "rate": 5}]}}, "simulation.sources[0].rate", 5,
     "rms", "does not apply to a noise source"),
    ({"simulation": {"sources": [{"kind": "muon", "channels": ["A", "B"], "channel_delays": [0]}]}},
     "simulation.sources[0].channel_delays", [0], "one delay", "1 values for 2 channels"),
    ({"simulation": {"sources": [{"kind": "laser"}]}}, "simulation.sources[0].kind", "laser", "'muon'", "not one of"),
    ({"timebase": {"sample_interval": 1e-9, "duration": 1e-5}}, "timebase.sample_interval", 1e-9,
     "only one of", "disagrees"),
])
def test_native_error_messages(tmp_path, doc, key, value, allowed_part, problem_part):
    p = write(tmp_path, "bad.yaml", doc)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    e = ei.value
    msg = str(e)
    assert e.path == str(p) and msg.startswith(f"{p}: {key}: ")
    assert e.key == key
    if value is not None:
        assert e.value == value and f"(got {value!r})" in msg
    assert e.allowed is not None and allowed_part in e.allowed
    assert problem_part in msg
    assert "Traceback" not in msg and "pydantic" not in msg.lower()


def test_enums_case_insensitive(tmp_path):
    cfg = load_config(write(tmp_path, "x.yaml", {"channels": {"a": {"coupling": "ac"}},
                                                 "trigger": {"direction": "falling", "source": "a"}}))
    assert cfg.channels["A"].coupling is Coupling.AC and cfg.trigger.direction is Direction.FALLING


# ----------------------------------------------------------------------------- conversion


def test_scope_settings_conversion(tmp_path):
    cfg = load_config(write(tmp_path, "x.yaml", {
        "device": {"model": "4000a"}, "channels": {"C": {"range": 1.0, "coupling": "DC50", "offset": 0.1}},
        "timebase": {"sample_interval": 1e-7, "samples": 500, "pretrigger": 0.2, "segments": 10},
        "trigger": {"source": "C", "level": 0.05, "auto_timeout": 0},
        "siggen": {"enabled": True, "frequency": 0}}))
    chans, tb, tr, sg = scope_settings(cfg)
    assert list(chans) == list("ABCDEFGH")
    assert [c for c, v in chans.items() if v.enabled] == ["C"]
    assert chans["C"].coupling is Coupling.DC50 and chans["C"].range_v == 1.0 and chans["C"].offset_v == 0.1
    assert (tb.sample_interval_s, tb.n_samples, tb.pretrigger_fraction, tb.n_segments) == (1e-7, 500, 0.2, 10)
    assert tr.auto_trigger_s is None and tr.source == "C"
    assert sg.enabled is False  # frequency 0 = off


def test_disabled_listed_channel_stays_disabled(tmp_path):
    cfg = load_config(write(tmp_path, "x.yaml", {"channels": {"A": {}, "B": {"enabled": False}}}))
    chans, *_ = scope_settings(cfg)
    assert chans["A"].enabled and not chans["B"].enabled


def test_docs_native_table_matches_model():
    from picodaq_ioc.config.docgen import render_region

    text = (ROOT / "docs" / "configuration.md").read_text()
    assert render_region() in text, "run: python -m picodaq_ioc.config.docgen --write docs/configuration.md"


def test_docs_list_every_legacy_key():
    from picodaq_ioc.config.legacy import ALL_LEGACY_KEYS

    text = (ROOT / "docs" / "configuration.md").read_text()
    missing = [k for k in ALL_LEGACY_KEYS if f"| `{k}` |" not in text]
    assert missing == []


def test_legacy_pffile_translation(tmp_path):
    write(tmp_path, "dev.yaml", {"picoChannels": ["A", "B", "C"], "ChanRanges": [0.2, 0.2, 0.2],
                                 "trgThr": -0.03, "trgTyp": "Falling"})
    write(tmp_path, "pf.yaml", {
        "pulseShape": [{"pheight": -0.04, "taur": 2e-8, "tauon": 1e-8, "tauf": 1.5e-7, "delay": 0.0},
                       {"pheight": -0.04, "taur": 2e-8, "tauon": 1e-8, "tauf": 1.5e-7, "delay": -0.04}],
        "trgPulseShape": [{"pheight": -0.045, "taur": 2e-8, "tauon": 1e-8, "tauf": 1.5e-7}],
        "NminCoincidence": 2, "modules": ["RMeter"], "logFile": "pFilt", "histograms": [[0, 1, 10, 5, "x", 0]]})
    cfg = load_config(write(tmp_path, "c.daq", {"DeviceFile": "dev.yaml", "PFfile": "pf.yaml"}))
    p = cfg.analysis[0].model_dump()
    assert p["trgPulseShape"]["pheight"] == -0.045  # picoCosmo uses the first entry of the list
    # per-shape delay in microseconds -> one delay per channel in seconds (channel i: shape min(i, n-1))
    assert p["delay"] == pytest.approx([0.0, -0.04e-6, -0.04e-6])
    assert all("delay" not in s for s in p["pulseShape"])
    assert not {"modules", "logFile", "histograms"} & set(p)
    assert any("modules" in n and "histograms" in n for n in cfg.notices)


def test_legacy_flat_picodaq_pf_keys(tmp_path):
    write(tmp_path, "dev.yaml", {"picoChannels": ["A"], "ChanRanges": [0.5]})
    write(tmp_path, "pf.yaml", (CONFIGS / "legacy" / "pFconfig.yaml").read_text())
    cfg = load_config(write(tmp_path, "c.daq", {"DeviceFile": "dev.yaml", "PFfile": "pf.yaml"}))
    (shape,) = cfg.analysis[0].model_dump()["pulseShape"]
    assert shape["pheight"] == -0.045 and shape["tauf"] == 128e-9 and shape["mode"] == 0


@pytest.mark.parametrize("path", [p for p in LEGACY if p.suffix == ".daq" or "DAQ" in p.name],
                         ids=lambda p: p.name)
def test_legacy_analysis_entries_build_modules(path):
    from picodaq_ioc.analysis.registry import create_module

    cfg = load_config(path)
    for i, section in enumerate(cfg.analysis):
        assert create_module(section, i).prefix


def test_legacy_native_device_section(tmp_path):
    cfg = load_config(write(tmp_path, "ps.yaml", {"PSmodel": "5000a", "frqSG": 0,
                                                  "device": {"backend": "picoscope", "serial": "AB123/0001"}}))
    assert (cfg.device.model, cfg.device.backend, cfg.device.serial) == ("5000a", "picoscope", "AB123/0001")
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, "ps2.yaml", {"PSmodel": "5000a", "device": {"model": "2000a"}}))
    assert ei.value.key == "device.model" and "PSmodel" in str(ei.value)


@pytest.mark.parametrize("doc, key", [
    ({"channels": {"A": {"range": True}}}, "channels.A.range"),
    ({"timebase": {"samples": True}}, "timebase.samples"),
    ({"ChanRanges": [True, 0.35]}, "ChanRanges[0]"),
    ({"channels": {"Z": {}}}, "channels.Z"),
])
def test_booleans_are_not_numbers_and_bad_names(tmp_path, doc, key):
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, "x.yaml", doc))
    assert ei.value.key == key
