"""Default Channel Access environment of the clients: loopback unless the user says otherwise.

The clients talk to the IOC over Channel Access; where they search is the user's EPICS
environment (``EPICS_CA_ADDR_LIST`` ...). When nothing is set, the defaults keep every search
on the local machine (the IOC also binds to loopback by default), so a first start never
broadcasts on a lab network. Set ``EPICS_CA_ADDR_LIST`` (and ``EPICS_CA_AUTO_ADDR_LIST``) to
reach an IOC on another host.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

LOOPBACK = "127.0.0.1"

#: Applied with ``setdefault``: a value the user set wins.
CLIENT_ENV_DEFAULTS: dict[str, str] = {
    "EPICS_CA_AUTO_ADDR_LIST": "NO",
    "EPICS_CA_ADDR_LIST": LOOPBACK,
    "EPICS_PVA_AUTO_ADDR_LIST": "NO",
    "EPICS_PVA_ADDR_LIST": LOOPBACK,
}


def apply_client_env(env: MutableMapping[str, str] | None = None) -> None:
    """Fill in loopback CA search defaults (call before the first Channel Access call).

    Parameters
    ----------
    env : mapping, optional
        The environment to update (default ``os.environ``).
    """
    env = os.environ if env is None else env
    for key, value in CLIENT_ENV_DEFAULTS.items():
        env.setdefault(key, value)
