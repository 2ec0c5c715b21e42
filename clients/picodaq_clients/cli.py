"""Console entry points: check the client dependencies, then run the display's ``main``.

Without the ``clients`` extra (matplotlib, pyepics) a command prints what to install
instead of an import traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence

__all__ = ["bufman", "dashboard", "hists", "osci", "rates", "run_display", "vmeter"]

REQUIRED = {"matplotlib": "matplotlib", "epics": "pyepics", "numpy": "numpy"}


def missing_dependencies() -> list[str]:
    """Distribution names of the client dependencies that cannot be imported."""
    return [dist for mod, dist in REQUIRED.items() if importlib.util.find_spec(mod) is None]


def run_display(module: str, argv: Sequence[str] | None = None) -> int:
    """Run ``picodaq_clients.<module>.main(argv)`` after checking the dependencies."""
    missing = missing_dependencies()
    if missing:
        print(f"picodaq-{module}: missing {', '.join(missing)}; install the client extra: "
              f"pip install 'picodaq-ioc[clients]'", file=sys.stderr)
        return 2
    return int(importlib.import_module(f"picodaq_clients.{module}").main(argv) or 0)


def osci(argv: Sequence[str] | None = None) -> int:
    """``picodaq-osci``."""
    return run_display("osci", argv)


def vmeter(argv: Sequence[str] | None = None) -> int:
    """``picodaq-vmeter``."""
    return run_display("vmeter", argv)


def rates(argv: Sequence[str] | None = None) -> int:
    """``picodaq-rates``."""
    return run_display("rates", argv)


def bufman(argv: Sequence[str] | None = None) -> int:
    """``picodaq-bufman``."""
    return run_display("bufman", argv)


def hists(argv: Sequence[str] | None = None) -> int:
    """``picodaq-hists``."""
    return run_display("hists", argv)


def dashboard(argv: Sequence[str] | None = None) -> int:
    """``picodaq-dashboard``."""
    return run_display("dashboard", argv)
