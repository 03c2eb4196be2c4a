"""INT8 against bf16 and fp32 on the CPU, side by side in one run: per-tile speed of each backend
and precision, parity with PyTorch fp32, quality against HR on Set5/Set14/BSD100, and the
trade-off of which layers stay in float (srgan_export.quantize).

    python benchmarks/int8.py --json benchmarks/results/int8-<machine>.json

Timings interleave the candidates (one call of each per round, median of the rounds) so that a
change in machine load hits all of them alike; run it on an idle machine all the same.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROWS = [("openvino", "fp32", "onnx"), ("openvino", "bf16", "onnx"),
        ("openvino", "int8", "int8"), ("onnxruntime", "fp32", "onnx"),
        ("onnxruntime", "int8", "int8"), ("torch", "fp32", "generator")]


def _interleaved(fns: dict[str, callable], rounds: int) -> dict[str, float]:
    """Median seconds per call of each function, measured round-robin."""
    for fn in fns.values():
        fn()  # warm-up: compilation, first allocation
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def _score(pairs, run) -> dict[str, float]:
    from srgan_train.evaluate import evaluate

    m = evaluate(pairs, 4, run).mean()
    return {"psnr": round(m["psnr"], 4), "ssim": round(m["ssim"], 5)}


def _whole(backend):
    from srgan_runtime import Upscaler

    return Upscaler(backend=backend, tile=0).upscale


def _float_layer_tradeoff(onnx_path: Path, data: Path, x: np.ndarray, args, backends: dict,
                          pairs14: list, fp32_14: dict) -> dict:
    """Each choice of layers kept in float: its speed against fp32 and its PSNR loss."""
    import onnx

    from srgan_export.quantize import (
        CalibrationOptions,
        calibration_batches,
        float_nodes,
        quantize_int8,
    )
    from srgan_runtime.backends import open_backend

    model = onnx.load(str(onnx_path))
    by_name = {n.name: n for n in model.graph.node}
    kept = float_nodes(model)
    head = [k for k in kept if by_name[k].op_type == "Conv"
            and by_name[k].input[0] == model.graph.input[0].name]
    skip = [k for k in kept if k not in head]
    producer = {o: n for n in model.graph.node for o in n.output}
    final = producer[model.graph.output[0].name]
    residual = next(producer[i] for i in final.input if producer[i].name not in skip)
    tail = [producer[residual.input[0]].name] if residual.op_type == "DepthToSpace" else []
    choices = {"nothing": [], "skip branch + final add": skip,
               "skip + input conv (shipped)": skip + head,
               "skip + input conv + output conv": skip + head + tail}
    batches = calibration_batches(data / "T91" / "HR", 4, CalibrationOptions())
    tradeoff = {}
    with tempfile.TemporaryDirectory() as tmp:
        variants = {}
        for label, keep in choices.items():
            path = Path(tmp) / f"v{len(variants)}.onnx"
            quantize_int8(onnx_path, path, batches, keep)
            variants[label] = open_backend(path, "openvino", "cpu", "int8")
        vsecs = _interleaved({k: (lambda b=b: b.run_float(x)) for k, b in variants.items()}
                             | {"fp32": lambda: backends["openvino fp32"].run_float(x)},
                             args.rounds)
        for label, b in variants.items():
            s = _score(pairs14, _whole(b))
            tradeoff[label] = {"kept_float": choices[label],
                               "ms_per_tile": round(1000 * vsecs[label] / args.batch, 1),
                               "x_vs_fp32": round(vsecs["fp32"] / vsecs[label], 3),
                               "psnr": s["psnr"],
                               "loss_db": round(fp32_14["psnr"] - s["psnr"], 4)}

    return tradeoff


def _print(args, check: str, speed: dict, parity: dict, quality: dict, tradeoff: dict) -> None:
    print(f"per {args.tile}x{args.tile} tile, batch {args.batch} ({args.rounds} rounds):")
    for k, v in speed.items():
        print(f"  {k:18s} {v['ms_per_tile']:8.1f} ms  {v['x_vs_openvino_bf16']:.2f}x of "
              f"openvino bf16   parity on {check} {parity[k]:.2f} dB")
    for name, q in quality.items():
        print(f"  {name}: fp32 {q['fp32']['psnr']:.3f} dB / {q['fp32']['ssim']:.4f}, int8 "
              f"{q['int8']['psnr']:.3f} dB / {q['int8']['ssim']:.4f}, loss {q['loss_db']:.3f} dB")
    for label, t in tradeoff.items():
        print(f"  float: {label:34s} {t['ms_per_tile']:7.1f} ms ({t['x_vs_fp32']:.2f}x fp32), "
              f"{check} loss {t['loss_db']:.3f} dB")


def main() -> None:
    from srgan_export.parity import compare_outputs
    from srgan_runtime.backends import open_backend
    from srgan_runtime.core.imageio import to_nchw
    from srgan_runtime.core.machine import machine_info
    from srgan_runtime.core.modelinfo import bundled_models, onnx_variant
    from srgan_train.evaluate import load_eval_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--sets", default="Set5,Set14,BSD100", help="quality against HR")
    ap.add_argument("--check-set", default="Set14", help="parity and the float-layer choices")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    data = Path(args.data)

    gen = bundled_models()["default"]
    files = {"generator": gen, "onnx": onnx_variant(gen), "int8": onnx_variant(gen, "int8")}
    backends = {f"{b} {p}": open_backend(files[k], b, "cpu", p) for b, p, k in ROWS}

    # 1. Per-tile speed, side by side.
    x = np.random.default_rng(0).random((args.batch, 3, args.tile, args.tile), np.float32)
    secs = _interleaved({k: (lambda b=b: b.run_float(x)) for k, b in backends.items()},
                        args.rounds)
    base = secs["openvino bf16"]
    speed = {k: {"ms_per_tile": round(1000 * s / args.batch, 1),
                 "x_vs_openvino_bf16": round(base / s, 3)} for k, s in secs.items()}

    # 2. Parity with PyTorch fp32 (whole images).
    check = args.check_set
    pairs14, _ = load_eval_set(data / check, 4)
    ref = backends["torch fp32"]
    parity = {}
    for k, b in backends.items():
        worst = min(compare_outputs(p.name, ref.run_float(to_nchw(p.lr)).astype(np.float64),
                                    b.run_float(to_nchw(p.lr))).psnr for p in pairs14)
        parity[k] = round(worst, 2)

    # 3. Quality against HR: fp32 vs int8 in OpenVINO.
    quality = {}
    sets = {name: load_eval_set(data / name, 4)[0] for name in args.sets.split(",")}
    for name, pairs in sets.items():
        q = {p: _score(pairs, _whole(backends[f"openvino {p}"])) for p in ("fp32", "int8")}
        q["loss_db"] = round(q["fp32"]["psnr"] - q["int8"]["psnr"], 4)
        quality[name] = q

    # 4. Which layers stay float: each choice's speed and loss on the check set.
    fp32_14 = quality.get(check, {}).get("fp32") or _score(
        pairs14, _whole(backends["openvino fp32"]))
    tradeoff = _float_layer_tradeoff(files["onnx"], data, x, args, backends, pairs14, fp32_14)

    doc = {"machine": machine_info(), "model": str(gen.name),
           "settings": {"tile": args.tile, "batch": args.batch, "rounds": args.rounds,
                        "calibration": "T91 HR, 64 crops of 64x64 LR"},
           "check_set": check, "speed": speed, "parity_vs_torch_fp32_worst_db": parity,
           "quality_vs_hr": quality, "float_layers_tradeoff": tradeoff}
    _print(args, check, speed, parity, quality, tradeoff)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
