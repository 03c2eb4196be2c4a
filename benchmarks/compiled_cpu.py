"""The compiled PyTorch paths on the CPU, side by side with eager PyTorch and OpenVINO (the CPU
default): per-tile time through each backend's ``run`` (host copies and quantization included,
as ``srrun`` pays them), rounds interleaved so that load drifts hit every row alike; compile
time apart; parity of each against eager fp32 on real images (Set5 where found).

    python benchmarks/compiled_cpu.py [--model default] [--tile 256] [--rounds 5]
        [--json benchmarks/results/compiled-cpu-<machine>.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _rows(model: Path, tile: int, tmp: Path, threads: int) -> dict:
    from srgan_export.aoti import AotiOptions, export_aoti
    from srgan_runtime.backends import open_backend
    from srgan_runtime.core.modelinfo import onnx_variant

    rows: dict = {}
    rows["torch eager fp32"] = (open_backend(model, "torch", "cpu", "fp32", threads), 0.0)
    backend = open_backend(model, "torch", "cpu", "fp32", threads, compile="default",
                           tile_hint=(1, tile))
    rows["torch compiled fp32 (--compile)"] = (backend, backend.warmup())
    t0 = time.perf_counter()
    pkg = tmp / "model.pt2"
    export_aoti(model, pkg, AotiOptions(tile=tile, batch=1, verify=False))
    rows["aoti fp32 (srexport aoti)"] = (open_backend(pkg, "aoti", "cpu", "fp32"),
                                         time.perf_counter() - t0)
    onnx = onnx_variant(model)
    if onnx is None:
        from srgan_export import OnnxExportOptions, export_onnx

        onnx = tmp / "model.onnx"
        export_onnx(model, onnx, OnnxExportOptions(verify=False))
    try:
        rows["openvino fp32 (CPU default)"] = (open_backend(onnx, "openvino", "cpu", "fp32",
                                                           threads), 0.0)
    except Exception as exc:  # openvino not installed: the other rows still mean something
        print(f"openvino: {exc}", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    from srgan_runtime.core.machine import machine_info
    from srgan_runtime.core.modelinfo import describe, resolve_weights

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    model = resolve_weights(args.model)
    data = Path(os.environ.get("SR_DATA_DIR", "../shared/data"))
    x = np.random.default_rng(0).random((1, 3, args.tile, args.tile), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="compiled-cpu-") as tmp:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(tmp) / "inductor"))
        rows = _rows(model, args.tile, Path(tmp), args.threads)
        times: dict[str, list[float]] = {k: [] for k in rows}
        for _ in range(2):  # warm-up
            for backend, _ in rows.values():
                backend.run(x)
        for _ in range(args.rounds):
            for name, (backend, _) in rows.items():
                t = time.perf_counter()
                backend.run(x)
                times[name].append(time.perf_counter() - t)
        # Parity on real images fitted to one tile (every path takes that shape).
        from srgan_export.parity import compare_outputs, fit_to_profile, verification_inputs

        shape = (1, 3, args.tile, args.tile)
        inputs, _ = verification_inputs(describe(model).scale, None, data)
        cases = fit_to_profile(inputs, shape, shape)
        eager = rows["torch eager fp32"][0]
        refs = [eager.run_float(c).astype(np.float64) for _, c in cases]
        out = []
        base = float(np.median(times["torch eager fp32"]))
        for name, (backend, compile_s) in rows.items():
            worst = min(compare_outputs(n, r, backend.run_float(c)).psnr
                        for (n, c), r in zip(cases, refs, strict=True))
            med = float(np.median(times[name]))
            out.append({"path": name, "ms_per_tile": round(med * 1e3, 1),
                        "iqr_ms": round(float(np.subtract(*np.percentile(times[name],
                                                                         [75, 25]))) * 1e3, 1),
                        "speedup_vs_eager": round(base / med, 3),
                        "out_mpix_per_s": round((args.tile * 4) ** 2 / med / 1e6, 3),
                        "compile_s": round(compile_s, 1),
                        "parity_db_vs_eager": (round(worst, 2) if np.isfinite(worst)
                                               else "identical")})
    doc = {"machine": machine_info(), "model": str(model), "tile": args.tile, "batch": 1,
           "rounds": args.rounds, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "rows": out}
    for r in out:
        print(f"{r['path']:<34} {r['ms_per_tile']:>8.1f} ms/tile (IQR {r['iqr_ms']:.1f}) "
              f"x{r['speedup_vs_eager']:.2f} vs eager  compile {r['compile_s']:.1f} s  "
              f"parity {r['parity_db_vs_eager']} dB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
