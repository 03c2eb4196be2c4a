"""Errors that the command-line tools report as one line (no traceback)."""

from __future__ import annotations

import math


class UserError(Exception):
    """A problem with the user's input: reported as one line, exit code 2."""


class ImageError(UserError):
    """An image file that cannot be read or has an unusable mode."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class SkippedImage(ImageError):
    """An input that is deliberately not processed (e.g. an animated image): counted as
    skipped with its reason, not as a failure."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name when it has none
    (``MemoryError()`` has an empty message)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def range_problem(value: object, lo: float | None = None, hi: float | None = None,
                  lo_open: bool = False, hi_open: bool = False) -> str | None:
    """Why ``value`` is not a finite number in the interval, or None. ``float()`` accepts
    "nan" and "inf", and NaN passes no comparison, so finiteness is checked first."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return f"{value!r} is not a number"
    bad = not math.isfinite(x)
    if lo is not None:
        bad = bad or (x <= lo if lo_open else x < lo)
    if hi is not None:
        bad = bad or (x >= hi if hi_open else x > hi)
    if not bad:
        return None
    left = ("(" if lo_open or lo is None else "[") + ("-inf" if lo is None else f"{lo:g}")
    right = ("inf" if hi is None else f"{hi:g}") + (")" if hi_open or hi is None else "]")
    return f"{value} is not a finite number in {left}, {right}"
