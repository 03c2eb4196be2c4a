"""A PNG encoder that streams: rows are filtered and compressed a strip at a time, straight from
the caller's array into the file.

Why not Pillow: its encoder first copies the whole picture into its own layout (4 bytes a
pixel for RGB: +268 MB for an 8192x8192 output, more than the output itself), which breaks the
runtime's memory budget. pypng streams but writes every row unfiltered (larger files) in pure
Python. Here each strip's rows get libpng's adaptive choice (the filter whose output has the
smallest sum of absolute values), computed with numpy over the strip.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> grey, grey+alpha, RGB, RGBA
IDAT_BYTES = 1 << 20
STRIP_BYTES = 1 << 20  # raw bytes per strip: the encoder's working memory is ~30x this


def _chunk(out: BinaryIO, kind: bytes, payload: bytes) -> None:
    out.write(struct.pack(">I", len(payload)) + kind + payload)
    out.write(struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def _filtered(rows: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    """The strip's rows (n, W bytes; ``prev`` = the raw row above the first) with the best
    filter per row, as (n, 1 + W) bytes including each row's filter type."""
    x = rows.astype(np.int16)
    up = np.concatenate([prev[None].astype(np.int16), x[:-1]])
    left = np.zeros_like(x)
    left[:, bpp:] = x[:, :-bpp]
    upleft = np.zeros_like(x)
    upleft[:, bpp:] = up[:, :-bpp]
    # Paeth's predictor: the neighbour closest to left + up - upleft (ties: left, up, upleft).
    pa = np.abs(up - upleft)
    pb = np.abs(left - upleft)
    pc = np.abs(left + up - 2 * upleft)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    candidates = np.stack([x, x - left, x - up, x - ((left + up) >> 1), x - paeth])
    candidates += 128
    candidates &= 0xFF
    candidates -= 128  # each byte as the signed value libpng's heuristic sums
    cost = np.abs(candidates).sum(axis=2, dtype=np.int64)  # (5 filters, n rows)
    best = cost.argmin(axis=0)
    out = np.empty((rows.shape[0], rows.shape[1] + 1), np.uint8)
    out[:, 0] = best
    out[:, 1:] = candidates[best, np.arange(rows.shape[0])] & 0xFF
    return out


def write_png(out: BinaryIO, pixels: np.ndarray, level: int = 6, icc_profile: bytes | None = None,
              exif: bytes | None = None) -> None:
    """Write ``pixels`` (H x W, or H x W x 1-4 channels; uint8 or uint16) as a PNG to ``out``.
    The extra memory is a few strips of ``STRIP_BYTES``, whatever the picture's size."""
    arr = pixels if pixels.ndim == 3 else pixels[..., None]
    h, w, ch = arr.shape
    if ch not in _COLOUR_TYPE or arr.dtype not in (np.uint8, np.uint16) or h < 1 or w < 1:
        raise ValueError(f"cannot write a {arr.dtype} {w}x{h}x{ch} picture as PNG")
    depth = 8 * arr.dtype.itemsize
    bpp = ch * arr.dtype.itemsize
    out.write(SIGNATURE)
    _chunk(out, b"IHDR", struct.pack(">IIBBBBB", w, h, depth, _COLOUR_TYPE[ch], 0, 0, 0))
    if icc_profile:
        _chunk(out, b"iCCP", b"icc\x00\x00" + zlib.compress(icc_profile))
    if exif:
        _chunk(out, b"eXIf", exif)
    comp = zlib.compressobj(level)
    pending = bytearray()
    prev = np.zeros(w * bpp, np.uint8)
    strip = max(1, STRIP_BYTES // (w * bpp))
    for y in range(0, h, strip):
        block = arr[y:y + strip]
        if depth == 16:
            block = block.astype(">u2")  # PNG stores 16-bit samples big-endian
        rows = np.ascontiguousarray(block).view(np.uint8).reshape(block.shape[0], w * bpp)
        pending += comp.compress(_filtered(rows, prev, bpp).tobytes())
        prev = rows[-1].copy()
        while len(pending) >= IDAT_BYTES:
            _chunk(out, b"IDAT", bytes(pending[:IDAT_BYTES]))
            del pending[:IDAT_BYTES]
    pending += comp.flush()
    if pending:
        _chunk(out, b"IDAT", bytes(pending))
    _chunk(out, b"IEND", b"")
