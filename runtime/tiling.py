"""Tile planning and stitching, pure numpy.

Tiles are ``tile`` LR pixels square including ``overlap`` pixels of context on each side; only
each tile's core is kept ("crop" stitching). Every tile has the same shape: the last row and
column are shifted back inside the image instead of shrinking, which fixed-shape engines and
CUDA graphs need. With ``overlap`` >= the generator's receptive radius every kept pixel saw its
whole receptive field, so the tiled result equals the whole-image result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Span:
    """One tile along one axis: input ``[start, start+size)``, kept core ``[lo, hi)``."""

    start: int
    size: int
    lo: int
    hi: int


def plan_axis(length: int, tile: int, overlap: int, align: int = 1) -> list[Span]:
    """Split ``length`` pixels into same-size tiles whose cores cover it exactly once. With
    ``align``, every tile starts at a multiple of it (``length`` and ``tile`` must be
    multiples too): window attention then partitions a tile as it partitions the image."""
    if length < 1:
        raise ValueError("length must be >= 1")
    if tile <= 0 or tile >= length:
        return [Span(0, length, 0, length)]
    if 2 * overlap >= tile:
        raise ValueError(f"overlap {overlap} leaves no core in a {tile}-pixel tile "
                         f"(need 2*overlap < tile)")
    if align > 1 and (tile % align or length % align or tile - 2 * overlap < align):
        raise ValueError(f"aligned tiling needs length and tile multiples of {align} and a "
                         f"core of at least {align}")
    spans: list[Span] = []
    lo = 0
    while lo < length:
        start = max(0, min((lo - overlap) // align * align, length - tile))
        hi = length if start + tile >= length else start + tile - overlap
        spans.append(Span(start, tile, lo, hi))
        lo = hi
        if len(spans) > length:  # pragma: no cover - guards the loop
            raise RuntimeError("tile planning did not converge")
    return spans


def even_tile(length: int, tile: int, overlap: int, align: int = 1) -> int:
    """The smallest tile side <= ``tile`` (a multiple of ``align``) that needs no more tiles
    than ``tile`` does, so that no tile is mostly recomputed context."""
    if tile <= 0 or tile >= length or 2 * overlap >= tile:
        return tile
    n = -(-(length - 2 * overlap) // (tile - 2 * overlap))
    even = -(-(length - 2 * overlap) // n) + 2 * overlap
    return min(tile, -(-even // align) * align)


@dataclass(frozen=True)
class Tile:
    y: Span
    x: Span


def plan_tiles(height: int, width: int, tile: int, overlap: int, even: bool = False,
               align: int = 1) -> list[Tile]:
    """All tiles of an image, row by row, all of one shape. With ``even`` (backends with
    dynamic shapes) the tile shrinks per axis to split the image evenly; ``align``: see
    :func:`plan_axis`."""
    th = even_tile(height, tile, overlap, align) if even else tile
    tw = even_tile(width, tile, overlap, align) if even else tile
    return [Tile(ys, xs) for ys in plan_axis(height, th, overlap, align)
            for xs in plan_axis(width, tw, overlap, align)]


def extract(img: np.ndarray, t: Tile) -> np.ndarray:
    """The HxWxC input region of a tile."""
    return img[t.y.start:t.y.start + t.y.size, t.x.start:t.x.start + t.x.size]


def paste(canvas: np.ndarray, sr_tile: np.ndarray, t: Tile, scale: int) -> None:
    """Copy a tile's upscaled core (HxWxC, already in the canvas dtype) into the canvas."""
    y0, y1 = (t.y.lo - t.y.start) * scale, (t.y.hi - t.y.start) * scale
    x0, x1 = (t.x.lo - t.x.start) * scale, (t.x.hi - t.x.start) * scale
    canvas[t.y.lo * scale:t.y.hi * scale, t.x.lo * scale:t.x.hi * scale] = sr_tile[y0:y1, x0:x1]


def seam_score(tiled: np.ndarray, whole: np.ndarray, tiles: list[Tile], scale: int) -> float:
    """Mean absolute tiled-vs-whole difference on the pixel rows/columns next to tile
    boundaries, divided by the same difference elsewhere (1.0 = seams are invisible in the
    statistics; inf when the difference is zero elsewhere but not at seams; 0 when equal)."""
    diff = np.abs(tiled.astype(np.float64) - whole.astype(np.float64))
    if diff.ndim == 3:
        diff = diff.mean(axis=2)
    mask = np.zeros(diff.shape, dtype=bool)
    for t in tiles:
        for b in (t.y.lo, t.y.hi):
            if 0 < b < diff.shape[0] // scale:
                mask[max(0, b * scale - 2):b * scale + 2, :] = True
        for b in (t.x.lo, t.x.hi):
            if 0 < b < diff.shape[1] // scale:
                mask[:, max(0, b * scale - 2):b * scale + 2] = True
    at, off = diff[mask], diff[~mask]
    if at.size == 0 or at.mean() == 0:
        return 0.0
    if off.size == 0 or off.mean() == 0:
        return float("inf")
    return float(at.mean() / off.mean())


def aligned_tile(tile: int, overlap: int, multiple: int) -> int:
    """``tile`` rounded down to a multiple of the window, keeping a core of a window or
    more (0, the whole image, stays 0)."""
    if not tile:
        return 0
    need = -(-(2 * overlap + multiple) // multiple) * multiple
    return max(tile // multiple * multiple, need)
