"""Evaluation on a folder of HR images under the standard protocol, with the bicubic baseline."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from srgan_runtime.core.errors import ImageError, UserError
from srgan_runtime.core.imageio import to_nchw, upscale_bicubic
from srgan_runtime.core.metrics import score_sr, to_uint8
from srgan_runtime.core.table import RULE, text_table

from .data import find_pairs, load_pair

log = logging.getLogger(__name__)

# An upscaler maps an HxWx3 uint8 LR image to the (H*s)x(W*s)x3 uint8 SR image.
Upscale = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class EvalPair:
    name: str
    lr: np.ndarray
    hr: np.ndarray


def load_eval_set(root: Path, scale: int) -> tuple[list[EvalPair], list[str]]:
    """LR/HR pairs of an evaluation folder: ``root/LR_bicubic/X<s>`` when present, else LR made
    from HR with Pillow bicubic. Returns the pairs and the errors of unreadable files."""
    pairs: list[EvalPair] = []
    errors: list[str] = []
    for p in find_pairs(Path(root), scale):
        try:
            lr, hr = load_pair(p, scale)
        except ImageError as exc:
            errors.append(str(exc))
            continue
        pairs.append(EvalPair(p.name, lr, hr))
    if not pairs:
        shown = "; ".join(errors[:3]) + (f"; and {len(errors) - 3} more" if len(errors) > 3 else "")
        raise UserError(f"{root}: no usable evaluation images ({len(errors)} refused: {shown})")
    return pairs, errors


@dataclass(frozen=True)
class ImageResult:
    name: str
    psnr: float | None
    ssim: float | None
    bicubic_psnr: float
    bicubic_ssim: float


@dataclass(frozen=True)
class EvalReport:
    scale: int
    images: list[ImageResult]

    def mean(self) -> dict[str, float | None]:
        def avg(key: str) -> float | None:
            vals = [getattr(r, key) for r in self.images]
            if any(v is None for v in vals):
                return None
            return float(np.mean(vals))

        return {k: avg(k) for k in ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")}

    def to_dict(self) -> dict:
        images = [asdict(r) for r in self.images]
        return {"scale": self.scale, "images": images, "mean": self.mean()}


def evaluate(pairs: list[EvalPair], scale: int, upscale: Upscale | None) -> EvalReport:
    """Score ``upscale`` (or only the bicubic baseline when None) on each pair."""
    results = []
    for p in pairs:
        bic = score_sr(upscale_bicubic(p.lr, scale), p.hr, scale)
        if upscale is None:
            psnr_v = ssim_v = None
        else:
            sr = upscale(p.lr)
            want = (p.lr.shape[0] * scale, p.lr.shape[1] * scale)
            if sr.shape[:2] != want:
                raise RuntimeError(f"{p.name}: upscaler returned {sr.shape[:2]}, expected {want}")
            s = score_sr(sr, p.hr, scale)
            psnr_v, ssim_v = s.psnr, s.ssim
        results.append(ImageResult(p.name, psnr_v, ssim_v, bic.psnr, bic.ssim))
    return EvalReport(scale, results)


def dihedral(x, k: int, inverse: bool = False):
    """The k-th of the 8 flips/rotations of an ...xHxW tensor (``inverse`` undoes it)."""
    import torch

    flip, rot = k >= 4, k % 4
    if inverse:
        x = torch.rot90(x, -rot, (-2, -1))
        return torch.flip(x, (-1,)) if flip else x
    x = torch.flip(x, (-1,)) if flip else x
    return torch.rot90(x, rot, (-2, -1))


def torch_upscaler(model, device="cpu", max_lr_pixels: int = 1 << 20,
                   self_ensemble: bool = False) -> Upscale:
    """Whole-image PyTorch upscaling for evaluation (fp32, output rounded to uint8).

    ``self_ensemble``: average the model over the 8 flips/rotations of the input (the "+" rows
    of EDSR-style tables): 8x the compute, a different and better-scoring predictor than the
    model alone, so it is reported as such.
    """
    import torch

    def run(lr: np.ndarray) -> np.ndarray:
        if lr.shape[0] * lr.shape[1] > max_lr_pixels:
            raise UserError(
                f"image {lr.shape[1]}x{lr.shape[0]} is too large for whole-image evaluation"
            )
        x = torch.from_numpy(to_nchw(lr)).to(device)
        with torch.inference_mode():
            if self_ensemble:
                y = sum(dihedral(model(dihedral(x, k)).float(), k, inverse=True)
                        for k in range(8)) / 8
            else:
                y = model(x).float()
            if not bool(torch.isfinite(y).all()):
                # Rounding NaN to a pixel value would score a broken model as a real one.
                raise UserError("the model's output holds NaN/Inf (broken or diverged weights)")
            y = y[0].clamp_(0, 1).cpu().numpy().transpose(1, 2, 0)
        return to_uint8(y)

    return run


def format_table(report: EvalReport, label: str = "model") -> str:
    """A per-image table with the bicubic baseline beside the model, and the mean row."""

    has_model = bool(report.images) and report.images[0].psnr is not None
    columns = [("image", "<16"), ("bicubic PSNR", ">12.4f"), ("SSIM", ">7.4f")]
    if has_model:
        columns += [(f"{label} PSNR", ">12.4f"), ("SSIM", ">7.4f"), ("gain dB", ">+8.3f")]

    def row(name: str, bp, bs, p, s) -> tuple:
        return (name, bp, bs, p, s, p - bp) if has_model else (name, bp, bs)

    m = report.mean()
    rows = [row(r.name[:16], r.bicubic_psnr, r.bicubic_ssim, r.psnr, r.ssim)
            for r in report.images]
    rows += [RULE, row("mean", m["bicubic_psnr"], m["bicubic_ssim"], m["psnr"], m["ssim"])]
    return "\n".join(text_table(columns, rows))
