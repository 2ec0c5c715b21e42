"""Every channel a client can reach: each PV and each field of its record (``PV.DESC``...).

caproto serves ``PV.FIELD`` from the record's ``fields`` (looked up on first use, not in the
``pvdb``). Rules that hold for a PV (access security, put log) must hold for its fields too,
as in RSRV, where a record's access security group covers all its fields.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["with_fields"]


def with_fields(pvdb: Mapping[str, Any]) -> Iterator[tuple[str, Any, str]]:
    """``(channel name, ChannelData, record name)`` for every PV of ``pvdb`` and every field
    of it (``VAL`` is the PV itself and is not repeated)."""
    for name, chan in list(pvdb.items()):
        yield name, chan, name
        for field_name, field in (getattr(chan, "fields", None) or {}).items():
            if field is not chan:
                yield f"{name}.{field_name}", field, name
