"""Exceptions raised by scope backends. Backends raise nothing else."""

from __future__ import annotations


class ScopeError(Exception):
    """Base class of every backend error."""


class DriverNotAvailable(ScopeError):
    """The driver (pico-python or the Pico SDK C library) is not installed."""


class DeviceNotFound(ScopeError):
    """No scope (or not the requested serial) is connected (PICO_NOT_FOUND)."""


class DeviceDisconnected(ScopeError):
    """The unit stopped answering mid-run (PICO_NOT_RESPONDING, PICO_INVALID_HANDLE, USB)."""


class InvalidConfig(ScopeError, ValueError):
    """A setting was rejected. ``field`` names it, ``allowed`` says what would be accepted."""

    def __init__(self, message: str, field: str | None = None, allowed: str | None = None,
                 driver_code: str | None = None):
        super().__init__(message)
        self.field = field
        self.allowed = allowed
        self.driver_code = driver_code


class Busy(ScopeError):
    """The driver is busy with another call (PICO_DRIVER_FUNCTION / PICO_BUSY)."""


class Timeout(ScopeError):
    """A driver call did not complete in time."""
