"""The one way to import an optional dependency (torch, ONNX, OpenVINO, Ray, ...): at the
moment it is needed, so that a missing extra disables only what needs it, and with one line
that says what to install where it is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import UserError


def optional(module: str, install: str, where: object = None) -> ModuleType:
    """``module`` imported, or :class:`UserError` naming it and what to install
    (``where``: the file or option that needed it, for the message's start)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        start = f"{where}: " if where is not None else ""
        raise UserError(f"{start}{module} is not installed: {install}") from None
