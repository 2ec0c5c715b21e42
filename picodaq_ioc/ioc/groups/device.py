"""Device identity and status: ``Model_RBV``, ``Backend_RBV``, ``Serial_RBV``, ``StatusMessage_RBV``."""

from __future__ import annotations

import importlib.metadata

from caproto import AlarmSeverity, AlarmStatus

from ...scope.types import Applied
from ..pvspec import float_pv, int_pv, long_string_pv, set_alarm, string_pv, write_if_changed
from .base import PicoGroup


class DeviceGroup(PicoGroup):
    """Identity of the opened scope (prefix ``$(P)``)."""

    model = string_pv("Model_RBV", "Scope model")
    family = string_pv("Family_RBV", "Scope model family (API series)")
    backend = string_pv("Backend_RBV", "Backend: sim or picoscope")
    driver = string_pv("Driver_RBV", "Driver (sim, ps2000a, ...)")
    serial = string_pv("Serial_RBV", "Scope serial number")
    version = string_pv("SoftwareVersion_RBV", "picodaq-ioc version")
    max_rate = float_pv("MaxSampleRate_RBV", "Maximum sample rate of the scope", units="Hz", precision=0,
                        read_only=True)
    adc_bits = int_pv("Resolution_RBV", "ADC resolution", units="bit", read_only=True)
    max_adc = int_pv("MaxADC_RBV", "ADC code of positive full scale", read_only=True)
    status = long_string_pv("StatusMessage_RBV", "Last status or error message (caget -S)")

    async def show_info(self, info, backend: str) -> None:
        try:
            version = importlib.metadata.version("picodaq-ioc")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        await self.model.write(str(info.model)[:39])
        await self.family.write(str(info.family)[:39])
        await self.backend.write(backend[:39])
        await self.driver.write(str(info.driver)[:39])
        await self.serial.write(str(info.serial)[:39])
        await self.version.write(str(version)[:39])
        await self.max_rate.write(float(info.max_sample_rate_hz))

    async def show_applied(self, applied: Applied) -> None:
        await write_if_changed(self.adc_bits, int(applied.resolution_bits))
        await write_if_changed(self.max_adc, int(applied.max_adc))

    async def set_status(self, message: str, severity: AlarmSeverity = AlarmSeverity.NO_ALARM,
                         status: AlarmStatus = AlarmStatus.STATE) -> None:
        """Show ``message`` with ``severity`` (MAJOR for device errors)."""
        # plain ASCII without quotes: caget -S shows other bytes and quotes as escapes
        message = message.replace("\n", " ").replace("'", "").replace('"', "").replace("\u00b1", "+/-").replace("\u2026", "...")
        message = message.encode("ascii", "replace").decode("ascii")[:255]
        if self.status.value != message:
            await self.status.write(message)
        await set_alarm(self.status, severity, status)
