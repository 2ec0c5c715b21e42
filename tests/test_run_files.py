"""Where run files go: ``output_dir`` / ``--output-dir`` and unique BMsum summary files."""

from __future__ import annotations

from fakes import FakeScope

from picodaq_ioc.config.schema import Config
from picodaq_ioc.session import DaqSession


def test_bmsum_files_go_to_the_output_dir_with_unique_names(tmp_path):
    cfg = Config.model_validate({"channels": {"A": {"range": 0.2}}, "timebase": {"samples": 16},
                                 "buffer": {"log_file": "BMsum"}, "output_dir": str(tmp_path / "out")})
    paths = []
    with DaqSession.from_config(cfg, backend=FakeScope(rate=5000.0)) as s1, \
            DaqSession.from_config(cfg, backend=FakeScope(rate=5000.0)) as s2:
        for s in (s1, s2, s1):  # two buffer managers ending runs in the same second
            s.start(max_events=10)
            assert s.bm.wait_stopped(30)
            s.stop()
            paths.append(s.bm.summary_path)
    assert paths[0] == paths[2] != paths[1]
    files = sorted((tmp_path / "out").glob("BMsum_*.sum"))
    assert [str(p) for p in files] == sorted({paths[0], paths[1]})
    lines = [p.read_text().splitlines() for p in files]
    assert sorted(len(x) for x in lines) == [1, 2]  # one line per run, in its buffer manager's file
    assert all(line.startswith("Run Summary:") and "Nev=10" in line for x in lines for line in x)
