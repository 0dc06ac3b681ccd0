"""The backend switch: which implementation of each compiled extension runs.

PFILTER_PUREPYTHON is read here, once, when pfilter is first imported: set to anything but ""
or "0", every extension (pfilter._vm, pfilter._classify, pfilter.capture._reader, _writer,
_fastcopy) is left unused and its pure-Python twin runs instead (pfilter._pyvm,
pfilter.capture._pyscan, pfilter.capture._pywriter; the fast path is off). An extension that
is not built falls back the same way. Every module that has such a pair asks here, so the
setting has one meaning everywhere.

Imports nothing from pfilter.

    _scan = pick("pfilter.capture._reader", "pfilter.capture._pyscan")   # extension or twin
    _vm = native("pfilter._vm")                                         # extension or None
"""
from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType

#: True when PFILTER_PUREPYTHON asked for the pure-Python twins (read at import).
PURE = os.environ.get("PFILTER_PUREPYTHON", "") not in ("", "0")


def native(name: str) -> ModuleType | None:
    """The compiled extension `name` ("pfilter._vm"), or None under PFILTER_PUREPYTHON=1 or
    when it is not built."""
    if PURE:
        return None
    try:
        return _import(name)
    except ImportError:
        return None


def pick(extension: str, twin: str) -> ModuleType:
    """The extension module when it is in use (see native()), else its pure-Python twin, which
    has the same functions with the same results."""
    module = native(extension)
    return module if module is not None else _import(twin)


def _import(name: str) -> ModuleType:
    """importlib.import_module(name) without importing importlib (the command's start-up)."""
    __import__(name)
    return sys.modules[name]
