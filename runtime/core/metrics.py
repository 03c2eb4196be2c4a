"""Standard super-resolution metrics in plain numpy (no torch).

The protocol matches the published x4 tables: SR output rounded to uint8, HR cropped to the
SR size, the Y channel of ITU-R BT.601 (MATLAB ``rgb2ycbcr``), ``scale`` pixels cropped from every
border, PSNR in float64 and SSIM with an 11x11 Gaussian window (sigma 1.5) over the valid region.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Round and clip a float image in [0, 1] to uint8 (never truncate)."""
    return np.clip(np.rint(np.asarray(img, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def rgb_to_y(img: np.ndarray, peak: float = 255.0) -> np.ndarray:
    """BT.601 luma of an HxWx3 (or HxW grey) image with values in [0, peak], returned in the
    [16, 235] range scaled to ``peak`` (for 8-bit input: exactly MATLAB's ``rgb2ycbcr`` Y)."""
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[..., None].repeat(3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected HxW or HxWx3 image, got shape {arr.shape}")
    y = arr[..., :3] @ _Y_WEIGHTS
    return y + 16.0 * peak / 255.0


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop height and width down to multiples of ``scale``."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def shave(img: np.ndarray, border: int) -> np.ndarray:
    """Remove ``border`` pixels from every side."""
    if border <= 0:
        return img
    return img[border:-border, border:-border]


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB between two same-shaped arrays (inf when identical)."""
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape:
        raise ValueError(f"shape mismatch: {a64.shape} vs {b64.shape}")
    mse = float(np.mean((a64 - b64) ** 2))
    if mse == 0.0:
        return float("inf")
    return 10.0 * float(np.log10(peak * peak / mse))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation with a symmetric 1-D kernel on both axes."""
    k = g.size
    rows = np.lib.stride_tricks.sliding_window_view(img, k, axis=0) @ g
    return np.lib.stride_tricks.sliding_window_view(rows, k, axis=1) @ g


def ssim(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """SSIM (Wang et al. 2004) of two single-channel images: 11x11 Gaussian window, sigma 1.5,
    K1 = 0.01, K2 = 0.03, mean over the valid region. Channels are averaged for HxWxC input."""
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape:
        raise ValueError(f"shape mismatch: {a64.shape} vs {b64.shape}")
    if a64.ndim == 3:
        return float(np.mean([ssim(a64[..., c], b64[..., c], peak) for c in range(a64.shape[2])]))
    if min(a64.shape) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels, got {a64.shape}")
    g = _gaussian_window()
    c1 = (0.01 * peak) ** 2
    c2 = (0.03 * peak) ** 2
    mu_a = _filter_valid(a64, g)
    mu_b = _filter_valid(b64, g)
    saa = _filter_valid(a64 * a64, g) - mu_a * mu_a
    sbb = _filter_valid(b64 * b64, g) - mu_b * mu_b
    sab = _filter_valid(a64 * b64, g) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * sab + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (saa + sbb + c2)
    return float(np.mean(num / den))


@dataclass(frozen=True)
class SRScore:
    """Y-channel PSNR/SSIM of one image under the standard protocol, plus RGB PSNR."""

    psnr: float
    ssim: float
    psnr_rgb: float


def score_sr(sr: np.ndarray, hr: np.ndarray, scale: int, peak: float = 255.0) -> SRScore:
    """Score an SR result against its HR image under the standard protocol.

    ``sr`` is uint8 (or uint16 with ``peak=65535``) HxWx3/HxW at exactly LR size x scale; ``hr``
    is the full HR image, which is cropped to ``sr``'s size (``HR[:h_lr*s, :w_lr*s]``).
    """
    sr = np.asarray(sr)
    hr = np.asarray(hr)
    if not np.issubdtype(sr.dtype, np.integer):
        raise TypeError("round SR output to integers before scoring (metrics.to_uint8)")
    h, w = sr.shape[:2]
    if hr.shape[0] < h or hr.shape[1] < w:
        raise ValueError(f"HR {hr.shape[:2]} is smaller than SR {sr.shape[:2]}")
    hr = hr[:h, :w]
    if sr.ndim != hr.ndim:
        # One side grey, the other RGB: compare in RGB.
        sr = sr if sr.ndim == 3 else np.repeat(sr[..., None], 3, axis=2)
        hr = hr if hr.ndim == 3 else np.repeat(hr[..., None], 3, axis=2)
    y_sr = shave(rgb_to_y(sr, peak), scale)
    y_hr = shave(rgb_to_y(hr, peak), scale)
    return SRScore(
        psnr=psnr(y_sr, y_hr, peak),
        ssim=ssim(y_sr, y_hr, peak),
        psnr_rgb=psnr(shave(sr, scale), shave(hr, scale), peak),
    )
