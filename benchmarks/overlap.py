"""Choose the tile overlap by measurement: for several overlaps, tiled-vs-whole PSNR, seam score
and throughput on real images.

    python benchmarks/overlap.py --engine GEN --data ../shared/data/Set14 --tile 128 \
        --json benchmarks/results/overlap-<machine>.json

Throughput needs an idle machine; the PSNR and seam columns do not.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from srgan_runtime import Upscaler
    from srgan_runtime.core.files import list_images
    from srgan_runtime.core.imageio import load_rgb
    from srgan_runtime.core.machine import machine_info
    from srgan_runtime.core.metrics import psnr
    from srgan_runtime.tiling import plan_tiles, seam_score

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", required=True)
    ap.add_argument("--images", default="../shared/data/Set14/HR",
                    help="Folder of input images (upscaled as they are).")
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--overlaps", default="0,4,8,12,16,24,auto")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    folder = Path(a.images)
    files = list_images(folder)[: a.limit or None]
    images = [(p.stem, load_rgb(p)) for p in files]
    kw = dict(backend=a.backend, device="cpu", precision=a.precision, threads=a.threads)
    whole_up = Upscaler(a.engine, tile=0, **kw)
    wholes = [whole_up.upscale(img) for _, img in images]
    radius = whole_up.backend.receptive_radius
    rows = []
    for spec in a.overlaps.split(","):
        ov = radius if spec == "auto" else int(spec)
        if 2 * ov >= a.tile:
            continue
        up = Upscaler(a.engine, tile=a.tile, overlap=ov, batch=a.batch, **kw)
        up.upscale(images[0][1])  # warm-up
        t0 = time.perf_counter()
        outs = [r.colour for _, r, _ in up.upscale_many(
            (k, __import__("srgan_runtime").Picture(img)) for k, (_, img) in enumerate(images))]
        secs = time.perf_counter() - t0
        psnrs, seams, tile_px, img_px = [], [], 0, 0
        for (_, img), out, whole in zip(images, outs, wholes, strict=True):
            tiles = plan_tiles(img.shape[0], img.shape[1], a.tile, ov)
            psnrs.append(psnr(out, whole))
            seams.append(seam_score(out, whole, tiles, up.scale))
            tile_px += sum(t.y.size * t.x.size for t in tiles)
            img_px += img.shape[0] * img.shape[1]
        mp = sum(o.shape[0] * o.shape[1] for o in outs) / 1e6
        finite = [p for p in psnrs if np.isfinite(p)]
        rows.append({
            "overlap": ov, "auto": spec == "auto", "tile": a.tile,
            "worst_psnr_vs_whole": min(psnrs), "mean_psnr_vs_whole":
                float(np.mean(finite)) if finite else float("inf"),
            "worst_seam_score": max(seams), "compute_overhead": tile_px / img_px,
            "seconds": secs, "mp_per_s": mp / secs,
        })
        r = rows[-1]
        tag = " (auto)" if r["auto"] else ""
        print(f"overlap {ov:>3}{tag:7} worst {r['worst_psnr_vs_whole']:7.2f} dB"
              f"  seam {r['worst_seam_score']:6.2f}  overhead x{r['compute_overhead']:.2f}"
              f"  {r['mp_per_s']:.3f} MP/s", flush=True)
    doc = {"machine": machine_info(), "engine": a.engine, "images": str(folder),
           "receptive_radius": radius, "backend": whole_up.backend.describe(),
           "date": time.strftime("%Y-%m-%d"), "rows": rows}
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=2, default=str))


if __name__ == "__main__":
    main()
