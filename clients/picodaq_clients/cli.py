"""Console entry points: check the client dependencies, then run the display's ``main``.

Without the ``clients`` extra (matplotlib, pyepics) a command prints what to install
instead of an import traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence

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


def _command(module: str) -> Callable[[Sequence[str] | None], int]:
    """The console entry point ``picodaq-<module>`` (see ``[project.scripts]``)."""

    def command(argv: Sequence[str] | None = None) -> int:
        return run_display(module, argv)

    command.__name__ = command.__qualname__ = module
    command.__doc__ = f"``picodaq-{module}``."
    return command


osci = _command("osci")
vmeter = _command("vmeter")
rates = _command("rates")
bufman = _command("bufman")
hists = _command("hists")
dashboard = _command("dashboard")
