"""Saying in one line what is wrong with a model file's tensors: how they differ from what a
network expects (the missing, the unexpected and the wrongly shaped ones, by name; for other
projects' checkpoints read from the text of PyTorch's ``load_state_dict`` error, which puts the
useful part on the lines after its first), or which hold NaN or infinity. No torch here."""

from __future__ import annotations

import errno
import re
from collections.abc import Sequence
from pathlib import Path

from .errors import UserError, first_line

Shape = Sequence[int]

_KEYS = re.compile(r'"([^"]+)"')
_SIZE = re.compile(r"size mismatch for ([^:]+): copying a param with shape "
                   r"torch\.Size\(\[([^\]]*)\]\) from checkpoint, the shape in current model "
                   r"is torch\.Size\(\[([^\]]*)\]\)")


def _names(keys: Sequence[str]) -> str:
    return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")


def mismatch_text(missing: Sequence[str], unexpected: Sequence[str],
                  shapes: Sequence[tuple[str, Shape, Shape]], expected_by: str) -> str:
    """``missing N tensor(s): a, b; N unexpected tensor(s): c; d is [..] in the file, [..]
    for <expected_by>``; at most four names and three shapes spelled out."""
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} tensor(s): {_names(list(missing))}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected tensor(s): {_names(list(unexpected))}")
    for name, found, want in list(shapes)[:3]:
        parts.append(f"{name} is {list(found)} in the file, {list(want)} for {expected_by}")
    if len(shapes) > 3:
        parts.append(f"{len(shapes) - 3} more shape mismatch(es)")
    return "; ".join(parts)


def parse_load_error(text: str) -> tuple[list[str], list[str], list[tuple[str, Shape, Shape]]]:
    """Missing keys, unexpected keys and shape mismatches from the text of PyTorch's
    ``load_state_dict`` error (all empty when the text is not one)."""
    missing: list[str] = []
    unexpected: list[str] = []
    for line in text.splitlines():
        if "Missing key(s)" in line:
            missing += _KEYS.findall(line)
        elif "Unexpected key(s)" in line:
            unexpected += _KEYS.findall(line)

    def dims(s: str) -> list[int]:
        return [int(d) for d in s.split(",") if d.strip()]

    shapes = [(m[1], dims(m[2]), dims(m[3])) for m in _SIZE.finditer(text)]
    return missing, unexpected, shapes


def load_failure(exc: BaseException, expected_by: str) -> str:
    """Why building a network from a file's tensors failed, in one line that names tensors
    where it can (never only the first line of PyTorch's multi-line message)."""
    missing, unexpected, shapes = parse_load_error(str(exc))
    if missing or unexpected or shapes:
        return f"its tensors do not fit {expected_by}: " + mismatch_text(
            missing, unexpected, shapes, "the network")
    if isinstance(exc, KeyError):
        return (f"tensor {first_line(exc)} is missing: the file is incomplete, or its layout "
                "is not one this architecture's loader knows")
    if isinstance(exc, OSError) and exc.errno in (errno.EINVAL, errno.EIO):
        return "the file is damaged or truncated"
    if isinstance(exc, IndexError | ValueError | TypeError | AttributeError):
        return (f"its tensors are not what {expected_by} expects ({type(exc).__name__}: "
                f"{first_line(exc)})")
    return f"{type(exc).__name__}: {first_line(exc)}"


def refuse_nonfinite(path: Path, names: list[str]) -> None:
    """Refuse a model whose weights hold NaN or infinity, naming the tensors: every output
    would be NaN, and finding out would cost an export, a verification and a failed run."""
    if names:
        shown = ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")
        raise UserError(f"{path}: {len(names)} weight tensor(s) hold NaN or infinite values "
                        f"({shown}): the weights are broken (a diverged training run?)")


__all__ = ["load_failure", "mismatch_text", "parse_load_error", "refuse_nonfinite"]
