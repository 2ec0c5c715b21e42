"""Broken copies of every example configuration fail with one clear message (API and CLI).

For each file in configs/ and each picoDAQ file in configs/legacy/ three broken copies are
generated: an unknown (misspelt) key, a value of the wrong type, and an out-of-range value.
Each must raise ConfigError naming the file holding the bad value, the key and the value,
and ``python -m picodaq_ioc.config.check`` must exit non-zero with that message on stderr
and no traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from config_files import CONFIGS, LEGACY, NATIVE, ROOT

from picodaq_ioc.config import ConfigError, load_config
from picodaq_ioc.config.legacy import BUFFER_KEYS, DEVICE_KEYS
from picodaq_ioc.config.loader import read_mapping

KINDS = ("bad_key", "bad_type", "out_of_range")


@dataclass
class Broken:
    load: Path  # file to load
    holder: Path  # file that holds the bad value (named in the message)
    key: str
    value: object  # None: the message need not show a value (unknown key)
    problem: str


def _dump(path: Path, data: dict) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def make_broken(src: Path, kind: str, tmp: Path) -> Broken:
    if src.is_relative_to(CONFIGS / "legacy"):
        return _make_legacy(src, kind, tmp)
    data = read_mapping(src)
    dst = tmp / src.name
    data.setdefault("channels", {"A": {}})  # files may rely on the defaults
    data.setdefault("trigger", {})
    ch = next(iter(data["channels"]))
    if kind == "bad_key":
        data["channels"][ch]["rnage"] = data["channels"][ch].pop("range", 0.2)
        b = Broken(dst, dst, f"channels.{ch}.rnage", None, "did you mean 'range'")
    elif kind == "bad_type":
        data["trigger"]["level"] = "high"
        b = Broken(dst, dst, "trigger.level", "high", "expected a number")
    else:
        data["channels"][ch]["range"] = 100.0
        b = Broken(dst, dst, f"channels.{ch}.range", 100.0, "largest input range")
    _dump(dst, data)
    return b


def _make_legacy(src: Path, kind: str, tmp: Path) -> Broken:
    # copy the whole legacy tree so that DeviceFile/BMfile references resolve
    root = tmp / "legacy"
    shutil.copytree(CONFIGS / "legacy", root)
    load = root / src.relative_to(CONFIGS / "legacy")
    data = read_mapping(load)
    holder = load
    if "DeviceFile" in data:
        holder = load.parent / data["DeviceFile"]
    target = read_mapping(holder)
    if any(k in target for k in DEVICE_KEYS if k != "verbose"):
        if kind == "bad_key":
            target["ChanRnages"] = [0.1]
            b = Broken(load, holder, "ChanRnages", None, "did you mean 'ChanRanges'")
        elif kind == "bad_type":
            target["trgThr"] = "high"
            b = Broken(load, holder, "trgThr", "high", "expected a number")
        else:
            target["ChanRanges"] = [100.0] + list(target.get("ChanRanges", [0.03, 0.35]))[1:]
            b = Broken(load, holder, "ChanRanges[0]", 100.0, "largest input range")
    else:
        assert any(k in target for k in BUFFER_KEYS)
        if kind == "bad_key":
            target["NBufers"] = 4
            b = Broken(load, holder, "NBufers", None, "did you mean 'NBuffers'")
        elif kind == "bad_type":
            target["NBuffers"] = "many"
            b = Broken(load, holder, "NBuffers", "many", "expected an integer")
        else:
            target["NBuffers"] = 1
            b = Broken(load, holder, "NBuffers", 1, "out of range")
    _dump(holder, target)
    return b


CASES = [(p, k) for p in NATIVE + LEGACY for k in KINDS]
IDS = [f"{p.relative_to(CONFIGS)}-{k}" for p, k in CASES]


def expected_head(b: Broken) -> str:
    head = f"{b.holder}: {b.key}: "
    return head


@pytest.mark.parametrize("src, kind", CASES, ids=IDS)
def test_broken_copy_fails_clearly(tmp_path, src, kind):
    load_config(src)  # the original is fine
    b = make_broken(src, kind, tmp_path)
    with pytest.raises(ConfigError) as ei:
        load_config(b.load)
    e, msg = ei.value, str(ei.value)
    assert e.path == str(b.holder) and e.key == b.key
    assert msg.startswith(expected_head(b)), msg
    if b.value is not None:
        assert e.value == b.value and f"(got {b.value!r})" in msg
    assert b.problem in msg and e.allowed
    assert "\n" not in msg  # one line


def test_check_cli_rejects_every_broken_copy(tmp_path):
    broken = []
    for i, (src, kind) in enumerate(CASES):
        d = tmp_path / f"c{i}"
        d.mkdir()
        broken.append(make_broken(src, kind, d))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # one process for all files (check_main takes many): one error line per file, in order
    r = subprocess.run([sys.executable, "-m", "picodaq_ioc.config.check", *[str(b.load) for b in broken]],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == len(broken)
    for line, b in zip(lines, broken, strict=True):
        assert line.startswith("error: " + expected_head(b)), (line, b)
        if b.value is not None:
            assert f"(got {b.value!r})" in line


def test_check_cli_single_broken_file_exit_code(tmp_path):
    b = make_broken(CONFIGS / "kamiokanne.yaml", "out_of_range", tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "picodaq_ioc.config.check", str(b.load)],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == (
        f"error: {b.load}: channels.A.range: exceeds the largest input range of the 2000a (got 100.0); "
        "allowed: ±20 mV, ±50 mV, ±100 mV, ±200 mV, ±500 mV, ±1 V, ±2 V, ±5 V, ±10 V, ±20 V")


def test_check_cli_accepts_all_examples():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    files = [str(p) for p in NATIVE + LEGACY]
    r = subprocess.run([sys.executable, "-m", "picodaq_ioc.config.check", *files],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("  OK\n") == len(files)
    # the applied settings are shown as the device takes them
    assert "interval 4 ns (timebase 1; requested 4 ns), 4000 samples = 16 µs, n_pre 200" in r.stdout
    assert "range ±50 mV (requested ±30 mV)" in r.stdout


def test_check_main_in_process(capsys, tmp_path):
    from picodaq_ioc.config.check import check_main

    assert check_main([str(CONFIGS / "demo.yaml"), "--json"]) == 0
    out = capsys.readouterr().out
    import json

    a = json.loads(out)
    assert a["n_samples"] == 208 and a["channels"]["B"]["range_v"] == 0.5
    missing = tmp_path / "missing.yaml"
    assert check_main([str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"error: {missing}: file not found" in err
