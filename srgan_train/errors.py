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
