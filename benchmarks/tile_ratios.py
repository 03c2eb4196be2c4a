"""Per-tile speed ratios measured side by side: every backend against PyTorch eager fp32 NCHW
(a plain script), in interleaved rounds within one process, with the machine's matmul peaks
measured in the same run and each backend's parity against the fp32 baseline.

    python benchmarks/tile_ratios.py --json benchmarks/results/tile_ratios-<machine>.json

The srresnet preset with seeded random weights (speed does not depend on training); 128x128 LR
tiles; 2 threads. Needs an idle machine: a background job skews every ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

VARIANTS = [  # (label, backend, precision, engine kind)
    ("torch eager fp32 NCHW (baseline)", None, "fp32", "gen"),
    ("torch fp32 channels_last", "torch", "fp32", "gen"),
    ("torch bf16 channels_last", "torch", "bf16", "gen"),
    ("onnxruntime fp32", "onnxruntime", "fp32", "onnx"),
    ("openvino f32", "openvino", "fp32", "onnx"),
    ("openvino bf16", "openvino", "bf16", "onnx"),
]


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    import torch

    from srgan_export import OnnxExportOptions, export_onnx
    from srgan_export.bench import measure_limits
    from srgan_export.parity import Gate, compare_outputs
    from srgan_runtime.backends import open_backend
    from srgan_runtime.core.generator import macs_per_lr_pixel
    from srgan_runtime.core.machine import machine_info
    from srgan_train.archs import build_generator
    from srgan_train.checkpoint import load_generator, save_generator
    from srgan_train.config import preset_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="srresnet")
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--tiles", type=int, default=4, help="Tiles per timed call (batch 1 each).")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    tmp = Path(tempfile.mkdtemp(prefix="tile_ratios"))
    torch.manual_seed(0)
    cfg = preset_config(args.preset, 4)
    gen = tmp / "g.safetensors"
    save_generator(build_generator(cfg).eval(), gen, preset=args.preset, step=0)
    onnx_path = tmp / "g.onnx"
    export_onnx(gen, onnx_path, OnnxExportOptions(verify=False))

    rng = np.random.default_rng(0)
    x = rng.random((args.tiles, 1, 3, args.tile, args.tile), dtype=np.float32)
    eager = load_generator(gen).model.eval()

    def plain(t: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return eager(torch.from_numpy(t)).numpy()

    runners = {}
    for label, backend, precision, kind in VARIANTS:
        if backend is None:
            runners[label] = plain
            continue
        try:
            b = open_backend(gen if kind == "gen" else onnx_path, backend, "cpu", precision,
                             args.threads)
        except Exception as exc:  # an absent optional backend: report, go on
            print(f"skip {label}: {exc}", file=sys.stderr)
            continue
        runners[label] = b.run_float  # the model call itself, float output like the baseline

    ref = [plain(t) for t in x]
    parity = {}
    for label, run in runners.items():  # warm-up (first-shape costs) and parity
        outs = [run(t) for t in x]
        r = compare_outputs(label, np.concatenate(ref), np.concatenate(outs))
        gate = Gate.for_precision("bf16" if "bf16" in label else "fp32")
        ok = r.psnr >= gate.min_psnr and (gate.min_ssim is None or (r.ssim or 0) >= gate.min_ssim)
        parity[label] = {"psnr_db": round(r.psnr, 2) if np.isfinite(r.psnr) else "identical",
                         "ssim": round(r.ssim, 6) if r.ssim is not None else None,
                         "parity_gate_passed": bool(ok)}

    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(args.rounds):
        for label, run in runners.items():
            times[label].append(_timed(lambda run=run: [run(t) for t in x]) / args.tiles)

    limits = measure_limits(args.threads, "cpu")
    peak32, peak16 = limits["cpu_matmul_fp32_gflops"], limits["cpu_matmul_bf16_gflops"]
    flop = 2 * macs_per_lr_pixel(cfg) * args.tile**2
    base = statistics.median(times[VARIANTS[0][0]])
    rows = []
    for label, ts in times.items():
        med = statistics.median(ts)
        gflops = flop / med / 1e9
        peak = peak16 if "bf16" in label else peak32
        rows.append({"variant": label, "ms_per_tile": round(med * 1e3, 1),
                     "rounds_ms": [round(t * 1e3, 1) for t in ts],
                     "speedup": round(base / med, 3), "gflops": round(gflops, 1),
                     "pct_of_matmul_peak": round(100 * gflops / peak, 1), **parity[label]})
    result = {"machine": machine_info(), "preset": args.preset, "tile": args.tile,
              "threads": args.threads, "rounds": args.rounds, "tiles_per_round": args.tiles,
              "flop_per_tile": flop, "matmul_peak_gflops": {"fp32": round(peak32, 1),
                                                            "bf16": round(peak16, 1)},
              "rows": rows}
    print(f"{args.preset} x4, {args.tile}x{args.tile} LR tile, {args.threads} threads, median of "
          f"{args.rounds} interleaved rounds; matmul peak fp32 {peak32:.1f}, bf16 {peak16:.1f} "
          "GFLOP/s")
    for r in rows:
        print(f"{r['variant']:34s} {r['ms_per_tile']:8.1f} ms {r['speedup']:6.2f}x "
              f"{r['gflops']:7.1f} GFLOP/s {r['pct_of_matmul_peak']:5.1f}% peak  "
              f"parity {r['psnr_db']} dB / {r['ssim']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
