"""Channel Access display clients for picodaq-ioc (matplotlib), plus an ophyd device.

The clients are separate processes that talk to the IOC only over Channel Access
(pyepics); they never import :mod:`picodaq_ioc` and may run on another machine.

Displays (each a class with ``update(now)`` that can be driven headless, and a console
command): :class:`~picodaq_clients.osci.Oscilloscope` (``picodaq-osci``),
:class:`~picodaq_clients.vmeter.VoltMeter` (``picodaq-vmeter``),
:class:`~picodaq_clients.rates.RateMeter` (``picodaq-rates``),
:class:`~picodaq_clients.bufman.BufferManagerPanel` (``picodaq-bufman``),
:class:`~picodaq_clients.hists.Histograms` (``picodaq-hists``) and
:class:`~picodaq_clients.dashboard.Dashboard` (``picodaq-dashboard``).
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
