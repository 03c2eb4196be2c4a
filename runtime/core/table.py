"""Plain-text tables for the CLIs (``srbench``, ``srtrain eval``): one renderer, so columns line
up the same way everywhere."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

RULE = None  # a row that is a horizontal rule


def cell(value: object, spec: str) -> str:
    """``value`` formatted by ``spec`` (e.g. ``>9.1f``); None prints ``-``, infinity ``inf``."""
    width = int("".join(ch for ch in spec.split(".")[0] if ch.isdigit()) or 0)
    if value is None:
        return "-".rjust(width)
    if isinstance(value, float) and math.isinf(value):
        return "inf".rjust(width)
    return format(value, spec)


def text_table(columns: Sequence[tuple[str, str]],
               rows: Iterable[Sequence[object] | None]) -> list[str]:
    """Lines of a table: ``columns`` are (title, format spec); ``rows`` hold one value per
    column (``RULE`` for a rule). Titles take each spec's alignment and width."""
    def title(name: str, spec: str) -> str:
        align = spec[0] if spec[:1] and spec[0] in "<>^" else ">"
        width = int("".join(ch for ch in spec.split(".")[0] if ch.isdigit()) or 0)
        return format(name, f"{align}{width}")

    head = " ".join(title(n, s) for n, s in columns)
    lines = [head, "-" * len(head)]
    for row in rows:
        if row is RULE:
            lines.append("-" * len(head))
            continue
        lines.append(" ".join(cell(v, s) for v, (_, s) in zip(row, columns, strict=False)))
    return lines
