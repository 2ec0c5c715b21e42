"""Autosave: which PVs are settings, save on change (debounced, atomic), restore, corrupt files."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from picodaq_ioc.ioc.autosave import (
    FORMAT,
    AutosaveError,
    AutosaveManager,
    default_path,
    install_autosave,
    read_file,
    setting_names,
)


class _Group(PVGroup):
    Range = pvproperty(value=0.5, upper_ctrl_limit=20.0, lower_ctrl_limit=0.01)
    Range_RBV = pvproperty(value=0.5, read_only=True)
    Coupling = pvproperty(value="DC", dtype=ChannelType.ENUM, enum_strings=["AC", "DC"])
    Coupling_RBV = pvproperty(value="DC", dtype=ChannelType.ENUM, enum_strings=["AC", "DC"], read_only=True)
    Samples = pvproperty(value=200)
    Samples_RBV = pvproperty(value=200, read_only=True)
    Acquire = pvproperty(value=0)
    Acquire_RBV = pvproperty(value=0, read_only=True)
    Triggers_RBV = pvproperty(value=0, read_only=True)
    NumEvents = pvproperty(value=0)  # no _RBV twin: not a setting
    Waveform = pvproperty(value=[0.0] * 100, dtype=float, max_length=100)
    Waveform_RBV = pvproperty(value=[0.0] * 100, dtype=float, max_length=100, read_only=True)
    StatusMessage_RBV = pvproperty(value="", dtype=ChannelType.STRING, read_only=True)
    Level = pvproperty(value=0.0)
    Level_RBV = pvproperty(value=0.0, read_only=True)

    @Range.putter
    async def Range(self, instance, value):
        await self.Range_RBV.write(value)
        return value

    @Level.putter
    async def Level(self, instance, value):
        # depends on another setting: only allowed while Samples > 500 (exercises the second pass)
        if self.Samples.value <= 500:
            raise ValueError("Level needs Samples > 500")
        return value


def test_setting_names() -> None:
    g = _Group(prefix="P:")
    assert setting_names(g.pvdb, prefix="P:") == ["P:Range", "P:Coupling", "P:Samples", "P:Level"]


def test_default_path(tmp_path) -> None:
    assert default_path(tmp_path / "demo.yaml") == tmp_path / "demo.autosave.json"
    assert default_path(None, tmp_path) == tmp_path / "picodaq-ioc.autosave.json"


def test_save_restore_roundtrip(tmp_path) -> None:
    path = tmp_path / "x.autosave.json"
    cfg = tmp_path / "x.yaml"
    cfg.write_text("device: {}\n")

    async def first() -> None:
        g = _Group(prefix="P:")
        mgr = AutosaveManager(g.pvdb, path, prefix="P:", config_path=cfg)
        await g.Range.write(2.0)
        await g.Coupling.write("AC")
        await g.Samples.write(1000)
        await g.Level.write(0.25)
        mgr.save()

    asyncio.run(first())
    doc = json.loads(path.read_text())
    assert doc["format"] == FORMAT and doc["prefix"] == "P:" and doc["config"] == str(cfg)
    assert doc["settings"] == {"Range": 2.0, "Coupling": "AC", "Samples": 1000, "Level": 0.25}
    assert len(doc["config_sha256"]) == 64

    # restore under another prefix; Level comes before Samples in the file order, so its first
    # write is refused and the second pass applies it
    doc["settings"] = {"Level": 0.25, "Range": 2.0, "Coupling": "AC", "Samples": 1000}
    path.write_text(json.dumps(doc))

    async def second() -> AutosaveManager:
        g = _Group(prefix="Q:")
        mgr = AutosaveManager(g.pvdb, path, prefix="Q:", config_path=cfg)
        n = await mgr.restore()
        assert n == 4
        assert (g.Range.value, g.Range_RBV.value, g.Coupling.value, g.Samples.value, g.Level.value) == (
            2.0, 2.0, "AC", 1000, 0.25)
        assert g.StatusMessage_RBV.value == "autosave: 4 restored"
        return mgr

    mgr = asyncio.run(second())
    assert mgr.refused == {}


def test_restore_refused_value_is_reported_not_fatal(tmp_path, caplog) -> None:
    path = tmp_path / "a.autosave.json"
    path.write_text(json.dumps({"format": FORMAT, "settings": {"Range": 1e9, "Samples": 300,
                                                                "NoSuch": 1, "Acquire": 1}}))

    async def run() -> None:
        g = _Group(prefix="P:")
        mgr = AutosaveManager(g.pvdb, path, prefix="P:")
        assert await mgr.restore() == 1
        assert g.Samples.value == 300 and g.Range.value == 0.5 and g.Acquire.value == 0
        assert list(mgr.refused) == ["P:Range"]
        assert g.StatusMessage_RBV.value == "autosave: 1 restored, 1 refused: Range"

    with caplog.at_level(logging.INFO, logger="picodaq_ioc.ioc.autosave"):
        asyncio.run(run())
    assert "could not restore P:Range = 1000000000.0" in caplog.text
    assert "P:NoSuch is not a setting" in caplog.text and "P:Acquire is not a setting" in caplog.text


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{not json", "not valid JSON at line 1"),
        ("[1, 2]", "top level must be an object"),
        ('{"format": "other"}', "unknown format 'other'"),
        (json.dumps({"format": FORMAT, "settings": [1]}), "'settings' must be an object"),
        (json.dumps({"format": FORMAT, "settings": {"Range": {"x": 1}}}), "settings.Range: value must be"),
        ("\udcff", "cannot read"),
        ("[" * 100000, "not valid JSON"),
    ],
)
def test_corrupt_file_reported_and_ignored(tmp_path, caplog, content: str, fragment: str) -> None:
    path = tmp_path / "c.autosave.json"
    if content == "\udcff":
        path.write_bytes(b"\xff\xfe\x00garbage")
    else:
        path.write_text(content)
    with pytest.raises(AutosaveError, match=fragment.replace("(", r"\(")):
        read_file(path)

    async def run() -> None:
        g = _Group(prefix="P:")
        mgr = AutosaveManager(g.pvdb, path, prefix="P:")
        assert await mgr.restore() == 0
        assert g.StatusMessage_RBV.value.startswith("autosave file ignored")
        assert g.Range.value == 0.5

    asyncio.run(run())
    assert "autosave file ignored" in caplog.text
    assert (tmp_path / "c.autosave.json.bad").read_bytes() == path.read_bytes()


def test_poll_debounce_and_max_delay(tmp_path) -> None:
    path = tmp_path / "d.autosave.json"

    async def run() -> None:
        g = _Group(prefix="P:")
        mgr = AutosaveManager(g.pvdb, path, prefix="P:", debounce=1.0, max_delay=5.0)
        assert mgr.poll(now=0.0) is True  # first poll writes the initial state
        assert mgr.saves == 1
        assert mgr.poll(now=0.5) is False  # nothing changed
        await g.Range.write(1.0)
        assert mgr.poll(now=1.0) is False  # changed, not quiet yet
        assert mgr.poll(now=1.5) is False
        assert mgr.poll(now=2.0) is True  # quiet for 1 s
        assert read_file(path)["settings"]["Range"] == 1.0
        # a value changing every poll is still saved after max_delay
        t = 3.0
        saved_at = None
        for i in range(20):
            await g.Samples.write(300 + i)
            if mgr.poll(now=t):
                saved_at = t
                break
            t += 0.5
        assert saved_at == 3.0 + 5.0
        # atomic writes leave no temporary files behind
        assert sorted(p.name for p in tmp_path.iterdir()) == ["d.autosave.json", "d.autosave.json.savB"]

    asyncio.run(run())


def test_flush_saves_pending_change(tmp_path) -> None:
    path = tmp_path / "f.autosave.json"

    async def run() -> None:
        g = _Group(prefix="P:")
        mgr = install_autosave(g, g.pvdb, path, restore=False)
        assert mgr.names[0] == "P:Range"
        mgr.poll(now=0.0)
        await g.Range.write(3.0)
        mgr.flush()
        assert read_file(path)["settings"]["Range"] == 3.0
        # the manager registered itself as a caproto server hook on one channel
        hooked = [c for c in g.pvdb.values() if getattr(c, "server_startup", None) == mgr.server_startup]
        assert len(hooked) == 1

    asyncio.run(run())


def test_no_restore_keeps_old_file_until_a_change(tmp_path) -> None:
    path = tmp_path / "n.autosave.json"
    path.write_text(json.dumps({"format": FORMAT, "settings": {"Range": 7.0}}))

    async def run() -> None:
        g = _Group(prefix="P:")
        mgr = AutosaveManager(g.pvdb, path, prefix="P:", restore=False, debounce=0.5)
        assert mgr.poll(now=0.0) is False and mgr.poll(now=10.0) is False
        assert read_file(path)["settings"] == {"Range": 7.0}
        await g.Samples.write(999)
        mgr.poll(now=11.0)
        assert mgr.poll(now=11.5) is True
        assert read_file(path)["settings"] == {"Range": 0.5, "Coupling": "DC", "Samples": 999, "Level": 0.0}

    asyncio.run(run())


def test_savB_holds_the_previous_good_file_and_is_the_fallback(tmp_path, caplog) -> None:
    """autosave's .savB: each save first copies the last good file; a corrupt file is restored
    from it."""
    from picodaq_ioc.ioc.autosave import backup_path

    path = tmp_path / "b.autosave.json"

    async def run() -> None:
        g = _Group(prefix="P:")
        mgr = AutosaveManager(g.pvdb, path, prefix="P:")
        await g.Samples.write(300)
        mgr.save()
        assert not backup_path(path).exists()  # nothing to back up before the first save
        first = path.read_text()
        await g.Samples.write(400)
        mgr.save()
        assert backup_path(path).read_text() == first
        path.write_text("{broken")  # corrupt: the next save must not back it up
        await g.Samples.write(500)
        mgr.save()
        assert backup_path(path).read_text() == first
        path.write_text("{broken again")
        h = _Group(prefix="P:")
        restorer = AutosaveManager(h.pvdb, path, prefix="P:")
        assert await restorer.restore() == 1 and h.Samples.value == 300
        assert "restored from b.autosave.json.savB" in restorer.problem
        assert h.StatusMessage_RBV.value.startswith("autosave: 1 restored (autosave file ign")

    with caplog.at_level(logging.INFO, logger="picodaq_ioc.ioc.autosave"):
        asyncio.run(run())
    assert "restoring from the backup" in caplog.text


def test_dated_backups_rotate(tmp_path) -> None:
    from picodaq_ioc.ioc.autosave import KEEP_DATED, dated_backup

    path = tmp_path / "d.autosave.json"
    assert dated_backup(path) is None  # no file yet
    path.write_text(json.dumps({"format": FORMAT, "settings": {}}))
    t0 = 1_790_000_000.0
    made = [dated_backup(path, now=t0 + 3600 * i) for i in range(KEEP_DATED + 3)]
    left = sorted(p.name for p in tmp_path.glob("d.autosave.json_*"))
    assert left == sorted(p.name for p in made[-KEEP_DATED:])
    assert all(p.read_text() == path.read_text() for p in made[-KEEP_DATED:])


def test_describe_restore_says_what_will_be_restored(tmp_path) -> None:
    from picodaq_ioc.ioc.autosave import describe_restore

    path = tmp_path / "e.autosave.json"
    assert "does not exist yet: nothing is restored" in describe_restore(path)
    path.write_text(json.dumps({"format": FORMAT, "saved": "2026-12-06T01:00:00Z",
                                "settings": {"A:Range": 0.2, "A:Coupling": "AC"}}))
    line = describe_restore(path)
    assert "will restore 2 settings over this file's values at start: A:Range=0.2, A:Coupling='AC'" in line
    assert "--no-restore" in line
    assert "nothing is restored" in describe_restore(path, restore=False)
    path.write_text("{")
    assert "unusable and will be ignored" in describe_restore(path)


def test_check_prints_the_autosave_line(tmp_path) -> None:
    import shutil
    import subprocess
    import sys

    from conftest import REPO

    cfg = tmp_path / "demo.yaml"
    shutil.copy(REPO / "configs" / "muon_lifetime.yaml", cfg)
    (tmp_path / "demo.autosave.json").write_text(json.dumps({"format": FORMAT, "settings": {"A:Range": 0.2}}))
    r = subprocess.run([sys.executable, "-m", "picodaq_ioc", "--check", "--config", str(cfg)],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith(f"autosave: {tmp_path / 'demo.autosave.json'}") and "A:Range=0.2" in last
    r = subprocess.run([sys.executable, "-m", "picodaq_ioc", "--check", "--config", str(cfg), "--no-autosave"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.stdout.strip().splitlines()[-1] == "autosave: off (--no-autosave)"
