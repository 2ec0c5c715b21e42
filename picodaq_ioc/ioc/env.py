"""EPICS / caproto environment defaults of the IOC (imported before caproto).

The IOC serves loopback only unless the user opts in: :func:`apply_loopback_env`
*overrides* the address lists (a stray ``EPICS_CAS_INTF_ADDR_LIST`` in the user's
shell must not open the IOC to a network by accident); ``--serve-network`` skips it
and leaves the user's EPICS environment in charge.

caproto reads its ``CAPROTO_*`` tuning knobs when ``caproto`` is first imported, so
:func:`apply_caproto_defaults` runs when ``picodaq_ioc.ioc`` is imported (user values win).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

LOOPBACK = "127.0.0.1"

#: Address variables forced to loopback (CA and PVA twins).
LOOPBACK_ENV: dict[str, str] = {
    "EPICS_CA_AUTO_ADDR_LIST": "NO",
    "EPICS_CA_ADDR_LIST": LOOPBACK,
    "EPICS_CAS_INTF_ADDR_LIST": LOOPBACK,
    "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
    "EPICS_CAS_BEACON_ADDR_LIST": LOOPBACK,
    "EPICS_PVA_AUTO_ADDR_LIST": "NO",
    "EPICS_PVA_ADDR_LIST": LOOPBACK,
    "EPICS_PVAS_INTF_ADDR_LIST": LOOPBACK,
    "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
    "EPICS_PVAS_BEACON_ADDR_LIST": LOOPBACK,
}

#: caproto tuning knobs the IOC sets unless the user did. None any more: the IOC serves with
#: :mod:`picodaq_ioc.ioc.ca_server`, whose per-client send task neither batches by size
#: (``CAPROTO_SERVER_SUB_BATCH_THRESH``) nor queues more than one update per subscription
#: (``CAPROTO_MAX_SUBSCRIPTION_BACKLOG``); with caproto's own loop those knobs made overload
#: collapse (issue 11: most queued updates discarded).
CAPROTO_DEFAULTS: dict[str, str] = {}


def apply_caproto_defaults(env: MutableMapping[str, str] | None = None) -> None:
    """Set the caproto tuning knobs unless the user set them (call before importing caproto)."""
    env = os.environ if env is None else env
    for key, value in CAPROTO_DEFAULTS.items():
        env.setdefault(key, value)


def apply_loopback_env(env: MutableMapping[str, str] | None = None) -> None:
    """Force every EPICS address list to 127.0.0.1 (interfaces, search and beacons)."""
    env = os.environ if env is None else env
    env.update(LOOPBACK_ENV)


def client_env(port: int, base: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a CA client talking to an IOC on ``127.0.0.1:port`` only."""
    env = dict(os.environ if base is None else base)
    env.update(LOOPBACK_ENV)
    env["EPICS_CA_ADDR_LIST"] = f"{LOOPBACK}:{port}"
    env["EPICS_CA_SERVER_PORT"] = str(port)
    env.setdefault("EPICS_CA_MAX_ARRAY_BYTES", "100000000")
    return env
