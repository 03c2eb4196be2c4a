"""Side-by-side crops (bicubic | model(s) | HR) of one image, labelled with whole-image scores.

Pure numpy plus Pillow for the labels; the caller supplies the upscaled images, so any backend
(or a saved result) can be compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from srgan_runtime.core.errors import UserError
from srgan_runtime.core.metrics import score_sr

GAP = 6  # pixels of white between panels
LABEL_HEIGHT = 34


@dataclass(frozen=True)
class Box:
    """A crop rectangle in HR pixels."""

    x: int
    y: int
    w: int
    h: int

    @classmethod
    def parse(cls, text: str) -> Box:
        """``X,Y,W,H`` (HR pixels)."""
        try:
            x, y, w, h = (int(v) for v in text.split(","))
        except ValueError:
            raise UserError(f"--box {text!r}: expected X,Y,W,H in HR pixels, e.g. 100,80,96,96"
                            ) from None
        if min(x, y) < 0 or min(w, h) < 1:
            raise UserError(f"--box {text!r}: needs X,Y >= 0 and W,H >= 1")
        return cls(x, y, w, h)

    def check_inside(self, height: int, width: int) -> None:
        if self.x + self.w > width or self.y + self.h > height:
            raise UserError(f"--box {self.x},{self.y},{self.w},{self.h} does not fit in the "
                            f"{width}x{height} (scale-cropped) HR image")

    def crop(self, img: np.ndarray) -> np.ndarray:
        return img[self.y:self.y + self.h, self.x:self.x + self.w]


@dataclass(frozen=True)
class Panel:
    label: str
    image: np.ndarray  # uint8 HxWx3 at HR size


def _zoom(img: np.ndarray, k: int) -> np.ndarray:
    """Nearest-neighbour enlargement, so the viewer sees the model's pixels, not a resampler's."""
    return np.repeat(np.repeat(img, k, axis=0), k, axis=1)


def _rgb(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2)


def score_label(name: str, sr: np.ndarray, hr: np.ndarray, scale: int) -> str:
    """``name`` plus the whole image's Y PSNR / SSIM under the standard protocol."""
    s = score_sr(sr, hr, scale)
    return f"{name}  {s.psnr:.2f} dB / {s.ssim:.4f}"


def comparison_strip(panels: list[Panel], box: Box, zoom: int = 2) -> np.ndarray:
    """One row of crops, each enlarged ``zoom`` times, with a label bar under each."""
    from PIL import Image, ImageDraw, ImageFont

    if not panels:
        raise ValueError("nothing to compare")
    if zoom < 1:
        raise UserError("--zoom must be >= 1")
    h0, w0 = panels[0].image.shape[:2]
    box.check_inside(h0, w0)
    pw, ph = box.w * zoom, box.h * zoom
    width = len(panels) * pw + (len(panels) - 1) * GAP
    canvas = np.full((ph + LABEL_HEIGHT, width, 3), 255, dtype=np.uint8)
    for i, p in enumerate(panels):
        if p.image.shape[:2] != (h0, w0):
            raise ValueError(f"panel {p.label!r} is {p.image.shape[:2]}, expected {(h0, w0)}")
        x0 = i * (pw + GAP)
        canvas[:ph, x0:x0 + pw] = _zoom(_rgb(box.crop(p.image)), zoom)
    im = Image.fromarray(canvas)
    draw = ImageDraw.Draw(im)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1: one bitmap size
        font = ImageFont.load_default()
    for i, p in enumerate(panels):
        x0 = i * (pw + GAP)
        for k, line in enumerate(p.label.split("  ", 1)):
            draw.text((x0 + 2, ph + 2 + 16 * k), line, fill=(0, 0, 0), font=font)
    return np.asarray(im)
