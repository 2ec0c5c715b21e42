"""Common base of the IOC's PV groups: access to the controller held by the root group."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from caproto import SkipWrite
from caproto.server import PVGroup

from ...scope.types import Applied
from ..caproto_ctrl import TYPE_MAP, TYPE_MAP_READ_ONLY

if TYPE_CHECKING:
    from ..controller import Controller


class PicoGroup(PVGroup):
    """A PVGroup that reaches the IOC root (``self.root``) and its controller (``self.ctl``).

    Its PVs answer DBR_CTRL/DBR_GR reads of any type as RSRV does (:mod:`..caproto_ctrl`)."""

    type_map = TYPE_MAP
    type_map_read_only = TYPE_MAP_READ_ONLY

    @property
    def root(self) -> Any:
        g: Any = self
        while getattr(g, "parent", None) is not None:
            g = g.parent
        return g

    @property
    def ctl(self) -> Controller:
        ctl = getattr(self.root, "ctl", None)
        if ctl is None:
            raise RuntimeError("the IOC has no device session (definition-only instance)")
        return ctl

    async def show_requested(self, ctl: Controller) -> None:
        """Write the setpoints from the controller's requested settings (no putters)."""

    async def show_applied(self, applied: Applied) -> None:
        """Write the readbacks from what the device applied."""


async def init_write(pv: Any, value: Any) -> None:
    """Write a setpoint without running its putter (initial values, mirrors)."""
    await pv.write(value, verify_value=False)


async def show_setpoint(pv: Any, value: Any) -> None:
    """Show the requested ``value`` on a setpoint PV (no putter; no update when unchanged)."""
    if pv.value != value:
        await pv.write(value, verify_value=False)


def shown(applied: Applied | None, value: Any) -> Any:
    """What a settings putter returns after handing its change to the controller.

    Applied (the put is in the applied state): ``SkipWrite``, because the setpoint was already
    written when the controller published the request in force that includes the put (the
    latest value of each field; this put's own value may have been superseded meanwhile).
    None (held by ``Settings:Defer`` or staged by the autosave restore): ``value``, so the
    setpoint shows the held request until it is applied or refused.
    """
    return value if applied is None else SkipWrite
