"""PV Access is optional: without p4p the IOC runs as before and ``--pva`` says what is missing.

p4p is hidden from the child process by a module ``p4p`` first on ``PYTHONPATH`` that raises
ImportError, as in an installation without the ``pva`` extra.
"""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO


def _env_without_p4p(tmp_path) -> dict[str, str]:
    (tmp_path / "p4p.py").write_text("raise ImportError('p4p is not installed (test)')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO), env.get("PYTHONPATH", "")])
    return env


def test_pva_option_without_p4p_is_a_clear_error(tmp_path):
    env = _env_without_p4p(tmp_path)
    r = subprocess.run([sys.executable, "-m", "picodaq_ioc", "--prefix", "NOP4P:", "--pva", "--no-autosave"],
                       capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "needs p4p" in r.stderr and "pip install 'picodaq-ioc[pva]'" in r.stderr
    assert "Traceback" not in r.stderr


def test_ca_only_ioc_does_not_need_p4p(tmp_path):
    env = _env_without_p4p(tmp_path)
    r = subprocess.run([sys.executable, "-c", "import picodaq_ioc.ioc.cli, picodaq_ioc.ioc.lab, sys; "
                        "sys.exit('p4p' in sys.modules and sys.modules['p4p'] is not None)"],
                       capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "picodaq_ioc", "--prefix", "NOP4P:", "--list-pvs"],
                       capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 0 and "NOP4P:Acquire" in r.stdout.split(), r.stderr
