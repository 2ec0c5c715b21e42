"""Import pico-python lazily and construct its scope object without its construction bugs.

* pico-python is imported only here, when a unit is opened.
* The scope classes are subclassed so that ``handle`` exists before the C library is
  loaded and ``__del__`` never raises ("Exception ignored in __del__ ... AttributeError /
  PICO_INVALID_HANDLE" from the originals, research notes §1.2-1.3).
* Variant checks that pico-python does after opening (PS2000a ``Unrecognised variant``,
  PS4000 ``Timebase functions have not been written``) only concern pico-python's own
  timebase helpers, which this backend does not use; they are tolerated.
* ``PICODAQ_PICOSDK_PATH`` (a directory) makes the library load from there by absolute
  path instead of by name through the dynamic loader's search path.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import platform
from collections.abc import Iterator
from typing import Any

from ..errors import DeviceNotFound, DriverNotAvailable
from .drivers import DriverSpec
from .status import NOT_FOUND_CODES, map_error, pico_code

LIBRARY_PATH_ENV = "PICODAQ_PICOSDK_PATH"

_SAFE_CLASSES: dict[str, type] = {}


def install_hint(spec: DriverSpec) -> str:
    """One line telling what to install and how to make the library findable."""
    return (f"install the Pico SDK package '{spec.sdk_package}' (Pico Technology Linux repository, "
            f"https://www.picotech.com/downloads/linux; it puts {spec.library_file} in /opt/picoscope/lib) "
            f"and make the library findable: run 'sudo ldconfig /opt/picoscope/lib', or set "
            f"LD_LIBRARY_PATH=/opt/picoscope/lib, or set {LIBRARY_PATH_ENV} to the directory that holds "
            f"{spec.library_file}")


def import_picopython(spec: DriverSpec) -> Any:
    """The pico-python module of ``spec`` (``DriverNotAvailable`` if pico-python is missing)."""
    try:
        return importlib.import_module(f"picoscope.{spec.module}")
    except ImportError as exc:
        raise DriverNotAvailable(
            f"the PicoScope backend needs pico-python, which is not installed ({exc}): "
            "pip install 'picodaq-ioc[hw]' (or pip install 'picoscope>=0.7.33')") from None


def _safe_del(self: Any) -> None:
    """A ``__del__`` that closes quietly (pico-python's raises from close())."""
    handle = getattr(self, "handle", None)
    if handle is None or handle <= 0:
        return
    try:
        self.close()
    except Exception:
        pass


def safe_class(spec: DriverSpec) -> type:
    """pico-python's class for ``spec`` with a safe ``__init__``/``__del__``."""
    if spec.family in _SAFE_CLASSES:
        return _SAFE_CLASSES[spec.family]
    base = getattr(import_picopython(spec), spec.cls)

    def __init__(self: Any, serialNumber: str | None = None, connect: bool = True) -> None:
        self.handle = None
        try:
            base.__init__(self, serialNumber, connect)
        except ValueError as exc:
            if "Unrecognised variant" not in str(exc):  # PS2000a: only its timebase lambdas
                raise
        except NotImplementedError:  # PS4000: only its timebase helpers
            pass

    cls = type(f"Safe{spec.cls}", (base,), {"__init__": __init__, "__del__": _safe_del,
                                             "__module__": __name__})
    _SAFE_CLASSES[spec.family] = cls
    return cls


@contextlib.contextmanager
def _library_path(spec: DriverSpec) -> Iterator[None]:
    """While constructing, load ``spec``'s library from ``$PICODAQ_PICOSDK_PATH`` if set."""
    directory = os.environ.get(LIBRARY_PATH_ENV)
    if not directory or platform.system() != "Linux":
        yield
        return
    loader = ctypes.cdll
    inner = loader.LoadLibrary
    had_own = "LoadLibrary" in vars(loader)

    def load(name: str) -> Any:
        if os.path.basename(str(name)) == spec.linux_soname:
            name = os.path.join(directory, spec.linux_soname)
        return inner(name)

    loader.LoadLibrary = load  # type: ignore[method-assign]
    try:
        yield
    finally:
        if had_own:
            loader.LoadLibrary = inner  # type: ignore[method-assign]
        else:
            del loader.LoadLibrary


def construct(spec: DriverSpec, serial: str | None) -> Any:
    """Load the library and open a unit; our exceptions only, nothing from ``__del__``."""
    cls = safe_class(spec)
    obj = cls.__new__(cls)
    where = f" with serial {serial!r}" if serial else ""
    try:
        with _library_path(spec):
            # ps2000 cannot open by serial: open the first unit and compare below
            cls.__init__(obj, None if spec.old_api else serial)
    except OSError as exc:
        if getattr(obj, "lib", None) is None:
            obj.handle = None
            raise DriverNotAvailable(
                f"PicoScope driver library {spec.library_file} could not be loaded ({exc}); "
                + install_hint(spec)) from None
        _discard(obj)
        err = map_error(exc, driver=spec.lib, action="OpenUnit", opening=True)
        if pico_code(exc) in NOT_FOUND_CODES or pico_code(exc) is None:
            err = DeviceNotFound(f"no PicoScope{where} found by the {spec.lib} driver")
        raise err from None
    except Exception as exc:
        _discard(obj)
        raise map_error(exc, driver=spec.lib, action="OpenUnit", opening=True) from None
    if obj.handle is None or obj.handle <= 0:
        _discard(obj)
        raise DeviceNotFound(f"no PicoScope{where} found by the {spec.lib} driver")
    if spec.old_api and serial is not None:
        try:
            found = obj.getUnitInfo("BatchAndSerial")
        except Exception:
            found = None
        if found != serial:
            _discard(obj)
            raise DeviceNotFound(f"no PicoScope{where} found by the {spec.lib} driver"
                                 + (f" (the connected unit is {found!r})" if found else ""))
    return obj


def _discard(obj: Any) -> None:
    """Close a half-constructed object quietly and make its ``__del__`` a no-op."""
    handle = getattr(obj, "handle", None)
    if handle is not None and handle > 0 and getattr(obj, "lib", None) is not None:
        try:
            obj.close()
        except Exception:
            pass
    obj.handle = None
