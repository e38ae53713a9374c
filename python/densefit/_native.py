"""The compiled core if it was built and loads, else ``None`` (one place asks)."""

from __future__ import annotations

from types import ModuleType


def core() -> ModuleType | None:
    try:
        from . import _core
    except ImportError:
        return None
    return _core
