"""``Settings:Defer`` (+ ``_RBV``): change several settings from Channel Access atomically.

While ``Settings:Defer`` is On, every settings put (of any client) is held instead of being
applied: it completes at once (also with a put-callback) and its setpoint shows the held
value, the ``_RBV`` still what the device has. Putting Off applies all held puts as ONE
configuration change, entirely or not at all (like the motor record's deferred moves,
``$(P)DeferMoves``; areaDetector itself has no such PV); its put-callback completes when that
change is applied and shown. When the device refuses the combination, ``Defer`` = Off fails
with the reason, nothing of it is applied and the setpoints show the request in force again.
See docs/settings.md.
"""

from __future__ import annotations

from ..controller import PutRefused
from ..pvspec import enum_pv, pair, plain, write_if_changed
from .base import PicoGroup, show_setpoint

ON_OFF = ("Off", "On")


class SettingsGroup(PicoGroup):
    """Deferred (atomic) settings changes (prefix ``$(P)Settings:``)."""

    defer, defer_rbv = pair(enum_pv, "Defer", "Hold settings puts until Off, then apply them as one change",
                            strings=ON_OFF)

    @defer.putter
    async def defer(self, instance, value):
        if value not in ON_OFF:
            raise PutRefused(f"Settings:Defer: {plain(value)!r} is not one of Off, On")
        try:
            await self.ctl.set_defer(value == "On")
        except Exception:
            await show_setpoint(self.defer, "Off")  # the held puts are gone either way
            raise
        finally:
            await write_if_changed(self.defer_rbv, "On" if self.ctl.deferring else "Off")
        return value
