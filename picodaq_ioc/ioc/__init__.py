"""The caproto IOC: the only layer of picodaq_ioc that knows EPICS.

Importing this package sets caproto's tuning environment defaults before caproto is
imported (see :mod:`picodaq_ioc.ioc.env`).
"""

from .env import apply_caproto_defaults

apply_caproto_defaults()
