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


def plan_axis(length: int, tile: int, overlap: int) -> list[Span]:
    """Split ``length`` pixels into same-size tiles whose cores cover it exactly once."""
    if length < 1:
        raise ValueError("length must be >= 1")
    if tile <= 0 or tile >= length:
        return [Span(0, length, 0, length)]
    if 2 * overlap >= tile:
        raise ValueError(f"overlap {overlap} leaves no core in a {tile}-pixel tile "
                         f"(need 2*overlap < tile)")
    spans: list[Span] = []
    lo = 0
    while lo < length:
        start = max(0, min(lo - overlap, length - tile))
        hi = length if start + tile >= length else start + tile - overlap
        spans.append(Span(start, tile, lo, hi))
        lo = hi
        if len(spans) > length:  # pragma: no cover - guards the loop
            raise RuntimeError("tile planning did not converge")
    return spans


def even_tile(length: int, tile: int, overlap: int) -> int:
    """The smallest tile side <= ``tile`` that needs no more tiles than ``tile`` does, so that
    no tile is mostly recomputed context (the last-tile shift-back wastes least)."""
    if tile <= 0 or tile >= length or 2 * overlap >= tile:
        return tile
    n = -(-(length - 2 * overlap) // (tile - 2 * overlap))
    return min(tile, -(-(length - 2 * overlap) // n) + 2 * overlap)


@dataclass(frozen=True)
class Tile:
    y: Span
    x: Span


def plan_tiles(height: int, width: int, tile: int, overlap: int, even: bool = False
               ) -> list[Tile]:
    """All tiles of an image, row by row, all of one shape. With ``even`` (backends with
    dynamic shapes) the tile shrinks per axis to split the image evenly."""
    th = even_tile(height, tile, overlap) if even else tile
    tw = even_tile(width, tile, overlap) if even else tile
    return [Tile(ys, xs) for ys in plan_axis(height, th, overlap)
            for xs in plan_axis(width, tw, overlap)]


def pad_to(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad an HxWxC (or CxHxW via ``axes``) image at the bottom/right to at least height x
    width: reflect where the image is large enough, else edge."""
    ph, pw = max(0, height - img.shape[0]), max(0, width - img.shape[1])
    if not ph and not pw:
        return img
    pads = [(0, ph), (0, pw)] + [(0, 0)] * (img.ndim - 2)
    mode = "reflect" if img.shape[0] > ph and img.shape[1] > pw else "edge"
    return np.pad(img, pads, mode=mode)


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
