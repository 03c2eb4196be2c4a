"""Errors that the command-line tools report as one line (no traceback)."""

from __future__ import annotations


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
