"""Parity of an exported model against the PyTorch generator, judged in image metrics.

Elementwise tolerances (Polygraphy's default 1e-5) raise false alarms for FP16; what matters for
an SR model is the picture, so the gate is PSNR/SSIM between the two outputs after rounding to
uint8, plus a hard NaN/Inf check. The smallest elementwise tolerance that would have passed is
reported too. Comparison functions are numpy only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from srgan_runtime.core.files import list_images
from srgan_runtime.core.fitting import fit_batch, unfit_output
from srgan_runtime.core.imageio import load_rgb, to_nchw
from srgan_runtime.core.metrics import psnr, ssim, to_uint8
from srgan_runtime.core.modelinfo import ModelInfo
from srgan_runtime.core.synth import texture


@dataclass(frozen=True)
class Gate:
    """Minimum PSNR (dB) and SSIM between the candidate's and the reference's uint8 output."""

    min_psnr: float
    min_ssim: float = 0.0

    @classmethod
    def for_precision(cls, precision: str) -> Gate:
        return GATES.get(precision, GATES["fp16"])


# INT8's gate is looser: weights and activations keep 8 bits, so the output differs from fp32
# by about a grey level (bundled default: 49.8 dB on Set14; benchmarks/int8.py); its quality
# against HR is what the INT8 benchmark reports.
GATES = {"fp32": Gate(60.0), "fp16": Gate(45.0, 0.999), "bf16": Gate(45.0, 0.999),
         "int8": Gate(40.0, 0.99)}


@dataclass(frozen=True)
class CaseResult:
    """One input batch compared."""

    name: str
    shape: tuple[int, ...]
    max_abs: float  # on raw (unclamped) outputs; inf when non-finite values appeared
    psnr: float  # on uint8-rounded outputs; inf when identical, NaN when not comparable
    ssim: float | None  # None when the output is smaller than the 11x11 window
    finite: bool  # both outputs free of NaN/Inf
    reference_finite: bool = True


@dataclass
class ParityReport:
    """All cases of one comparison and the gate they are judged by."""

    label: str
    gate: Gate
    cases: list[CaseResult] = field(default_factory=list)

    @property
    def finite(self) -> bool:
        return all(c.finite for c in self.cases)

    @property
    def worst_psnr(self) -> float:
        """The lowest PSNR; NaN when an output was not finite (no PSNR describes that)."""
        if not self.finite:
            return float("nan")
        return min((c.psnr for c in self.cases), default=float("inf"))

    @property
    def worst_ssim(self) -> float | None:
        vals = [c.ssim for c in self.cases if c.ssim is not None]
        return min(vals) if vals else None

    @property
    def max_abs(self) -> float:
        return max((c.max_abs for c in self.cases), default=0.0)

    @property
    def passed(self) -> bool:
        if not self.cases or not self.finite or self.worst_psnr < self.gate.min_psnr:
            return False
        s = self.worst_ssim
        return self.gate.min_ssim <= 0 or s is None or s >= self.gate.min_ssim

    def lines(self) -> list[str]:
        """Human-readable table and verdict."""
        out = [f"{'case':<22} {'shape':<18} {'max|d|':>10} {'PSNR dB':>9} {'SSIM':>8}"]
        for c in self.cases:
            ps = "non-finite" if not c.finite else "inf" if math.isinf(c.psnr) else \
                f"{c.psnr:.2f}"
            ss = "-" if c.ssim is None else f"{c.ssim:.6f}"
            shape = "x".join(str(v) for v in c.shape)
            flag = "" if c.finite else "  NaN/Inf!"
            out.append(f"{c.name:<22} {shape:<18} {c.max_abs:>10.3g} {ps:>9} {ss:>8}{flag}")
        verdict = "PASS" if self.passed else "FAIL"
        gate = f"PSNR >= {self.gate.min_psnr:g} dB"
        if self.gate.min_ssim:
            gate += f", SSIM >= {self.gate.min_ssim:g}"
        if not self.finite:
            bad = [c for c in self.cases if not c.finite]
            whose = ("the reference (PyTorch) too: the weights are broken"
                     if any(not c.reference_finite for c in bad) else "the candidate only")
            out.append(f"{verdict} {self.label}: non-finite output (NaN/Inf) in {len(bad)} of "
                       f"{len(self.cases)} case(s), {whose}; gate: {gate}, finite outputs")
            return out
        ws = self.worst_ssim
        worst = "inf" if math.isinf(self.worst_psnr) else f"{self.worst_psnr:.2f}"
        out.append(
            f"{verdict} {self.label}: worst PSNR {worst} dB"
            + (f", worst SSIM {ws:.6f}" if ws is not None else "")
            + f", max|d| {self.max_abs:.3g} (smallest atol that passes elementwise: "
            f"{self.max_abs:.3g}); gate: {gate}, finite outputs"
        )
        return out

    def to_dict(self) -> dict:
        return {
            "label": self.label, "passed": self.passed, "finite": self.finite,
            "worst_psnr": _num(self.worst_psnr), "worst_ssim": self.worst_ssim,
            "max_abs": _num(self.max_abs), "min_atol": _num(self.max_abs),
            "gate": {"min_psnr": self.gate.min_psnr, "min_ssim": self.gate.min_ssim},
            "cases": [
                {"name": c.name, "shape": list(c.shape), "max_abs": _num(c.max_abs),
                 "psnr": _num(c.psnr), "ssim": c.ssim, "finite": c.finite}
                for c in self.cases
            ],
        }


def _num(v: float) -> float | str:
    return v if math.isfinite(v) else str(v)


def compare_outputs(name: str, ref: np.ndarray, out: np.ndarray) -> CaseResult:
    """Compare two NCHW float outputs in [0, 1] (raw, unclamped)."""
    if ref.shape != out.shape:
        raise ValueError(f"{name}: output shape {out.shape} != reference {ref.shape}")
    out64 = out.astype(np.float64)
    ref_finite = bool(np.isfinite(ref).all())
    if not (ref_finite and np.isfinite(out64).all()):  # no PSNR or SSIM means anything here
        return CaseResult(name, tuple(ref.shape), float("inf"), float("nan"), None, False,
                          ref_finite)
    max_abs = float(np.abs(out64 - ref).max())
    out8 = to_uint8(out64)
    ref8 = to_uint8(ref)
    p = psnr(out8, ref8)
    s: float | None = None
    if min(ref.shape[2:]) >= 11:
        vals = [ssim(ref8[i, c], out8[i, c]) for i in range(ref.shape[0])
                for c in range(ref.shape[1])]
        s = float(np.mean(vals))
    return CaseResult(name, tuple(ref.shape), max_abs, p, s, True)


def run_parity(
    label: str,
    gate: Gate,
    cases: list[tuple[str, np.ndarray]],
    reference: Callable[[np.ndarray], np.ndarray],
    candidate: Callable[[np.ndarray], np.ndarray],
) -> ParityReport:
    """Run both models on each named NCHW float32 input batch and compare."""
    report = ParityReport(label, gate)
    for name, x in cases:
        report.cases.append(compare_outputs(name, reference(x), candidate(x)))
    return report


# --- inputs -------------------------------------------------------------------------------------

def default_data_dir() -> Path:
    """``SR_DATA_DIR`` or ``../shared/data`` (relative to the working directory)."""
    return Path(os.environ.get("SR_DATA_DIR", "../shared/data"))


def _real_images(scale: int, data_dir: Path | None) -> tuple[list[tuple[str, np.ndarray]], str]:
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    for sub in (f"Set5/LR_bicubic/X{scale}", "Set5/LR_bicubic/X4"):
        folder = root / sub
        if folder.is_dir():
            imgs = [(p.stem, load_rgb(p)) for p in list_images(folder)]
            if imgs:
                return imgs, str(folder)

    rng = np.random.default_rng(0)
    imgs = [(f"texture{i}", texture(rng, 72 + 9 * i, 96 - 7 * i)) for i in range(3)]
    return imgs, "generated textures (Set5 not found)"


def _fit(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Crop (centre) or reflect-pad an HWC image to exactly h x w."""
    ph, pw = max(0, h - img.shape[0]), max(0, w - img.shape[1])
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="reflect" if
                     min(img.shape[:2]) > max(ph, pw) else "edge")
    y0, x0 = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return img[y0:y0 + h, x0:x0 + w]


def verification_inputs(
    scale: int, static: tuple[int, int, int] | None = None, data_dir: Path | None = None
) -> tuple[list[tuple[str, np.ndarray]], str]:
    """Named NCHW float32 batches of real LR images (Set5) at several sizes, odd ones and a
    multi-image batch included; fixed to ``static = (B, H, W)`` for static exports."""
    imgs, source = _real_images(scale, data_dir)
    cases: list[tuple[str, np.ndarray]] = []
    if static is not None:
        b, h, w = static
        batch = np.concatenate([to_nchw(_fit(imgs[i % len(imgs)][1], h, w)) for i in range(b)])
        cases.append((f"static {b}x{h}x{w}", batch))
        return cases, source
    name0, img0 = imgs[0]
    cases.append((f"{name0} (whole)", to_nchw(img0)))
    odd = next(((n, im) for n, im in imgs if im.shape[0] % 2 or im.shape[1] % 2), imgs[-1])
    cases.append((f"{odd[0]} (whole)", to_nchw(odd[1])))
    cases.append((f"{imgs[1 % len(imgs)][0]} 37x53 crop",
                  to_nchw(_fit(imgs[1 % len(imgs)][1], 37, 53))))
    batch = np.concatenate([to_nchw(_fit(im, 24, 31)) for _, im in imgs[:3]])
    cases.append(("batch of 3, 24x31", batch))
    cases.append(("7x5 crop", to_nchw(_fit(imgs[-1][1], 7, 5))))
    return cases, source


def fit_to_profile(cases: list[tuple[str, np.ndarray]], lo: tuple[int, ...],
                   hi: tuple[int, ...]) -> list[tuple[str, np.ndarray]]:
    """Crop/pad (and trim the batch of) each NCHW case into ``lo <= shape <= hi``."""
    out = []
    for name, x in cases:
        b = min(max(x.shape[0], lo[0]), hi[0])
        h = min(max(x.shape[2], lo[2]), hi[2])
        w = min(max(x.shape[3], lo[3]), hi[3])
        if (b, h, w) == (x.shape[0], x.shape[2], x.shape[3]):
            out.append((name, x))
            continue
        imgs = [x[i % x.shape[0]].transpose(1, 2, 0) for i in range(b)]
        fitted = np.stack([_fit(im, h, w).transpose(2, 0, 1) for im in imgs])
        out.append((f"{name} -> {b}x{h}x{w}", np.ascontiguousarray(fitted, dtype=np.float32)))
    return out


def torch_reference(model, device: str = "cpu", info: ModelInfo | None = None
                    ) -> Callable[[np.ndarray], np.ndarray]:
    """The PyTorch fp32 network as a numpy function (the parity reference); with ``info``,
    inputs are fitted to the architecture as every backend fits them (size requirements,
    grey models plane by plane)."""
    import torch

    model = model.float().eval().to(device)

    def run(x: np.ndarray) -> np.ndarray:
        shape = None
        if info is not None:
            x, shape = fit_batch(x, info.channels, info.min_input_size, info.input_multiple,
                                 info.square_only)
        with torch.inference_mode():
            y = model(torch.from_numpy(np.ascontiguousarray(x)).to(device)).float().cpu().numpy()
        if shape is not None:
            y = unfit_output(y, shape, info.scale)
        return y.astype(np.float64)

    return run
