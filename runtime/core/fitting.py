"""Fitting a batch to what an architecture accepts, pure numpy: padding to its size
requirements (minimum side, multiple of a window, square), feeding a grey (1-channel) network
each colour plane, and undoing both on the output. Every backend and the parity references
use these, so all of them see the same input."""

from __future__ import annotations

import numpy as np


def pad_to(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad an HxWxC (or CxHxW via ``axes``) image at the bottom/right to at least height x
    width: reflect where the image is large enough, else edge."""
    ph, pw = max(0, height - img.shape[0]), max(0, width - img.shape[1])
    if not ph and not pw:
        return img
    pads = [(0, ph), (0, pw)] + [(0, 0)] * (img.ndim - 2)
    mode = "reflect" if img.shape[0] > ph and img.shape[1] > pw else "edge"
    return np.pad(img, pads, mode=mode)


def required_size(height: int, width: int, minimum: int = 1, multiple: int = 1,
                  square: bool = False) -> tuple[int, int]:
    """The smallest input size >= ``height`` x ``width`` that an architecture accepts: at least
    ``minimum`` per side, a multiple of ``multiple`` (window attention), square where asked."""
    h, w = max(height, minimum), max(width, minimum)
    if square:
        h = w = max(h, w)
    return -(-h // multiple) * multiple, -(-w // multiple) * multiple


def fit_batch(batch: np.ndarray, channels: int = 3, minimum: int = 1, multiple: int = 1,
              square: bool = False) -> tuple[np.ndarray, tuple[int, int, int, int, int]]:
    """An NCHW RGB batch as a model takes it: a 1-channel model gets each colour plane as its
    own item (so colour survives a grey model); sides padded at the bottom/right (reflect) to
    :func:`required_size`. Returns the batch and ``(N, H, W, padded H, padded W)`` for
    :func:`unfit_output`."""
    n, c, h, w = batch.shape
    if channels == 1 and c != 1:
        batch = batch.reshape(n * c, 1, h, w)
    ph, pw = required_size(h, w, minimum, multiple, square)
    if (ph, pw) != (h, w):
        hwc = pad_to(batch.transpose(2, 3, 0, 1), ph, pw)  # H, W, N, C: pad_to's layout
        batch = np.ascontiguousarray(hwc.transpose(2, 3, 0, 1))
    return batch, (n, h, w, ph, pw)


def unfit_output(y, shape: tuple[int, int, int, int, int], scale: int):
    """Undo :func:`fit_batch` on a model's NCHW output (numpy array or torch tensor): crop the
    padding's share and fold per-plane items back into RGB. An output that is not ``scale``
    times the fitted input comes back as it is, for the caller's shape check to report (a
    wrong ``--scale`` must not be cropped into a plausible-looking image)."""
    n, h, w, ph, pw = shape
    if tuple(y.shape[2:]) != (ph * scale, pw * scale):
        return y
    y = y[:, :, : h * scale, : w * scale]
    if y.shape[0] != n:
        y = y.reshape(n, y.shape[0] // n * y.shape[1], h * scale, w * scale)
    return y
