"""Other projects' architectures through spandrel, one row each, in one run: what works
(load, ONNX fp32 and fp16 under the export gate, OpenVINO parity, seamless tiling at the
measured radius) on the small random-weight models of tests/foreign_models.py, and the CPU
speed of each architecture at its published size (random weights: speed does not depend on
them) at a 256-pixel LR tile in PyTorch fp32, with GFLOP/s from counted multiply-adds.

    python benchmarks/foreign.py --json benchmarks/results/foreign-<machine>.json

Run it on an idle machine: the speed rows are single-tile medians.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the random-weight builders live with the tests


def _published(arch: str):
    """Each architecture at the size its best-known checkpoint has (random weights)."""
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel.architectures.HAT import HAT
    from spandrel.architectures.OmniSR import OmniSR
    from spandrel.architectures.RCAN import RCAN
    from spandrel.architectures.SPAN import SPAN
    from spandrel.architectures.SwinIR import SwinIR

    return {
        "ESRGAN": ("RealESRGAN_x4plus (64nf 23nb)",
                   lambda: ESRGAN(num_filters=64, num_blocks=23, scale=4)),
        "Compact": ("realesr-general-x4v3 (64nf 32nc)",
                    lambda: Compact(num_feat=64, num_conv=32, upscale=4)),
        "SwinIR": ("SwinIR lightweight x4 (60 dim, 4x6 blocks, window 8)",
                   lambda: SwinIR(img_size=64, embed_dim=60, depths=[6] * 4, num_heads=[6] * 4,
                                  window_size=8, mlp_ratio=2.0, upscale=4,
                                  upsampler="pixelshuffledirect")),
        "HAT": ("HAT-S x4 (144 dim, 6x6 blocks, window 16)",
                lambda: HAT(img_size=64, embed_dim=144, depths=[6] * 6, num_heads=[6] * 6,
                            window_size=16, compress_ratio=24, squeeze_factor=24,
                            mlp_ratio=2.0, upscale=4)),
        "SPAN": ("SPAN x4 (48nf)", lambda: SPAN(num_in_ch=3, num_out_ch=3, upscale=4)),
        "OmniSR": ("Omni-SR x4 (64nf, 5 blocks, window 8)",
                   lambda: OmniSR(num_feat=64, block_num=1, window_size=8, res_num=5,
                                  up_scale=4)),
        "RCAN": ("RCAN x4 (64nf 10rg 20rb)",
                 lambda: RCAN(scale=4, n_resgroups=10, n_resblocks=20, n_feats=64)),
    }[arch]


def _works(case, folder: Path, image: np.ndarray) -> dict:
    """The capability columns on the small model of ``case``."""
    from srgan_export.onnx_export import OnnxExportOptions, export_onnx
    from srgan_runtime.core.errors import UserError
    from srgan_runtime.core.metrics import psnr
    from srgan_runtime.core.modelinfo import describe
    from srgan_runtime.upscaler import Upscaler

    path = folder / case.filename
    case.build(path)
    info = describe(path)
    row: dict = {"case": case.name, "arch": info.arch, "scale": info.scale,
                 "channels": info.channels, "loads": True, "summary": info.summary()}
    whole = Upscaler(path, backend="torch", tile=0).upscale(image)
    tiled_up = Upscaler(path, backend="torch", tile=40)
    row["radius"] = tiled_up.overlap
    from srgan_runtime.radius import effective_radius

    row["radius_measured"] = effective_radius(tiled_up.backend) is not None
    row["tiled_vs_whole_db"] = round(float(psnr(tiled_up.upscale(image), whole)), 2)
    for precision in ("fp32", "fp16"):
        out = folder / f"{case.name}-{precision}.onnx"
        try:
            res = export_onnx(path, out, OnnxExportOptions(
                fp16=precision == "fp16", data_dir=folder / "none", measure_radius=False))
            row[f"onnx_{precision}"] = (f"{'dynamic' if res.info.dynamic else 'fixed '}"
                                        f"{res.info.static_shape.replace(',', 'x')}, "
                                        f"{res.parity.worst_psnr:.1f} dB")
        except UserError as exc:
            row[f"onnx_{precision}"] = f"no: {exc}"
    onnx = folder / f"{case.name}-fp32.onnx"
    if onnx.exists():
        ref_img = image
        if describe(onnx).static is not None:
            _, h, w = describe(onnx).static
            ref_img = np.resize(image, (h, w, 3)).astype(np.uint8)
        ref = Upscaler(path, backend="torch", tile=0).upscale(ref_img)
        got = Upscaler(onnx, backend="openvino", tile=0).upscale(ref_img)
        row["openvino_db"] = round(float(psnr(got, ref)), 2)
    return row


def _speed(arch: str, tile: int, rounds: int, folder: Path) -> dict:
    import torch

    from srgan_export.bench import counted_macs_per_lr_pixel
    from srgan_runtime.backends import open_backend

    label, build = _published(arch)
    path = folder / f"{arch}-published.pth"
    torch.manual_seed(0)
    torch.save(build().state_dict(), path)
    backend = open_backend(path, "torch", "cpu", "fp32")
    x = np.random.default_rng(0).random((1, 3, tile, tile), dtype=np.float32)
    backend.run(x)  # warm-up
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        backend.run(x)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    macs = counted_macs_per_lr_pixel(backend.info)
    params = sum(p.numel() for p in backend.model.parameters())
    return {"arch": arch, "config": label, "params_m": round(params / 1e6, 2),
            "tile": tile, "s_per_tile": round(med, 3),
            "mp_per_s": round(tile * tile * backend.scale**2 / med / 1e6, 4),
            "gmacs_per_lr_mp": round(macs / 1e3, 1),
            "gflops": round(2 * macs * tile**2 / med / 1e9, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--archs", default="ESRGAN,Compact,SwinIR,HAT,SPAN,OmniSR,RCAN")
    ap.add_argument("--cases", default="", help="small cases to check (default: all)")
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    warnings.simplefilter("ignore")

    from foreign_models import CASES

    from srgan_runtime.core.foreign import import_spandrel
    from srgan_runtime.core.machine import machine_info
    from srgan_runtime.core.synth import texture

    spandrel = import_spandrel()
    image = texture(np.random.default_rng(5), 52, 68)
    wanted = {c for c in args.cases.split(",") if c}
    works, speed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            if wanted and case.name not in wanted:
                continue
            t = time.perf_counter()
            works.append(_works(case, Path(tmp), image))
            print(f"{case.name}: {works[-1]} ({time.perf_counter() - t:.0f} s)", flush=True)
        for arch in [a for a in args.archs.split(",") if a]:
            speed.append(_speed(arch, args.tile, args.rounds, Path(tmp)))
            print(f"{arch}: {speed[-1]}", flush=True)
    doc = {"machine": machine_info(), "spandrel": spandrel.__version__, "works": works,
           "speed": speed}
    if args.json.exists():  # a partial run (--cases / --archs) updates the rows it ran
        old = json.loads(args.json.read_text())
        for key, field in (("works", "case"), ("speed", "arch")):
            done = {r[field] for r in doc[key]}
            doc[key] = [r for r in old.get(key, []) if r[field] not in done] + doc[key]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
