"""Per-tile latency of every PyTorch path the toolkit has, on one device, side by side:

* ``eager-fp32`` (TF32 convolutions, torch's default on CUDA), ``eager-fp16``, ``eager-bf16``
  (autocast, what ``srrun --backend torch --precision`` runs);
* ``compiled-fp16`` (``srrun --compile default``), ``graphs-fp16`` (``--compile
  reduce-overhead``: CUDA graphs), ``autotune-fp16`` (``--compile max-autotune``: autotuned
  kernels and CUDA graphs), through the runtime's own ``TorchBackend``;
* ``aoti-fp16`` (``srexport aoti --precision fp16`` then the ``aoti`` backend).

Each row: the network alone on a device-resident batch (no host copies), timed with CUDA events
(``time.perf_counter`` on the CPU) after warm-up; compile time apart; parity of item 0 against
PyTorch fp32 on the CPU on a real image crop (Set5 where found); GFLOP/s from the counted
multiply-adds and the percentage of this device's measured fp16 matmul rate (on a CPU dry run:
its best matmul rate) and of its own precision's rate.

Eager rows run first at every tile x batch; compiled rows follow in priority order (the middle
shape first) while ``--budget-s`` lasts, so a short device lease still returns the headline
rows. Results: OUTDIR/gpu_kernels.json and OUTDIR/gpu_kernels.txt, rewritten after every row.

    python benchmarks/gpu_kernels.py OUTDIR [--device cuda] [--model default]
        [--tiles 128,256,512] [--batches 1,8,32] [--paths ...] [--budget-s 420]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

EAGER = ("eager-fp32", "eager-fp16", "eager-bf16")
COMPILED = ("compiled-fp16", "graphs-fp16", "aoti-fp16", "autotune-fp16")
MODES = {"compiled": "default", "graphs": "reduce-overhead", "autotune": "max-autotune"}
PRECISIONS = ("fp32", "fp16", "bf16")


@dataclass
class Result:
    path: str
    tile: int
    batch: int
    status: str = "ok"  # ok | oom | failed | not run
    reason: str = ""
    ms_per_batch: float | None = None
    ms_per_tile: float | None = None
    out_mpix_per_s: float | None = None
    tflops: float | None = None
    pct_ref_matmul: float | None = None
    pct_own_matmul: float | None = None
    parity_db: float | None = None
    compile_s: float | None = None


def _crop(tile: int, data: Path) -> np.ndarray:
    """A real LR crop of ``tile`` pixels (reflect-padded where the image is smaller)."""
    from srgan_runtime.core.fitting import pad_to
    from srgan_runtime.core.imageio import load_rgb

    for name in ("baby.png", "bird.png"):
        p = data / "Set5" / "LR_bicubic" / "X4" / name
        if p.is_file():
            img = load_rgb(p)
            break
    else:
        img = (np.random.default_rng(0).random((tile, tile, 3)) * 255).astype(np.uint8)
    img = pad_to(img, max(tile, img.shape[0]), max(tile, img.shape[1]))[:tile, :tile]
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None].astype(np.float32) / 255)


class Timer:
    def __init__(self, device: str) -> None:
        import torch

        self.torch, self.cuda = torch, device.startswith("cuda")

    def __call__(self, fn, min_runs: int = 5, min_s: float = 0.5) -> float:
        """Median-free mean seconds per call over at least ``min_runs`` calls and ``min_s``."""
        torch = self.torch
        for _ in range(2):
            fn()
        if self.cuda:
            torch.cuda.synchronize()
        runs, total = 0, 0.0
        while runs < min_runs or total < min_s:
            n = max(1, min_runs)
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(
                    enable_timing=True)
                start.record()
                for _ in range(n):
                    fn()
                end.record()
                end.synchronize()
                total += start.elapsed_time(end) / 1e3
            else:
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                total += time.perf_counter() - t0
            runs += n
            if runs >= 200:
                break
        return total / runs


def _quantized(y) -> np.ndarray:
    return np.clip(np.rint(y.float().cpu().numpy()[0] * 255), 0, 255).astype(np.uint8)


def _open(path: str, model: Path, device: str, tile: int, batch: int, tmp: Path):
    """The callable a path runs (device tensor in, device tensor out) and its compile time."""
    from srgan_runtime.backends.pytorch import TorchBackend
    from srgan_runtime.core.modelinfo import describe

    info = describe(model)
    kind, precision = path.split("-")
    if kind == "eager":
        backend = TorchBackend(info, device, precision)
        return backend.forward_device, 0.0
    if kind == "aoti":
        from srgan_export.aoti import AotiOptions, export_aoti
        from srgan_runtime.backends.aoti import AotiBackend

        pkg = tmp / f"m-{precision}-{batch}x{tile}.pt2"
        t0 = time.perf_counter()
        export_aoti(model, pkg, AotiOptions(device=device, precision=precision, tile=tile,
                                            batch=batch, verify=False, overwrite=True))
        return AotiBackend(describe(pkg), device).forward_device, time.perf_counter() - t0
    backend = TorchBackend(info, device, precision, compile=MODES[kind], tile_hint=(batch, tile))
    return backend.forward_device, backend.warmup()


def run(args) -> dict:
    import torch

    from srgan_export.bench import counted_macs_per_lr_pixel, measure_limits
    from srgan_runtime.core.errors import first_line
    from srgan_runtime.core.machine import machine_info
    from srgan_runtime.core.metrics import psnr
    from srgan_runtime.core.modelinfo import describe, resolve_weights

    t_start = time.perf_counter()
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "packages"
    tmp.mkdir(exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(out / "inductor-cache"))
    model = resolve_weights(args.model)
    info = describe(model)
    macs = counted_macs_per_lr_pixel(info)
    device = args.device
    limits = measure_limits(0, device)
    # The reference rate: the fp16 matmul rate on CUDA; on a CPU (a dry run) its best matmul.
    fp16_rate = limits.get("gpu_matmul_fp16_tflops") or max(
        limits.get("cpu_matmul_fp32_gflops", 0), limits.get("cpu_matmul_bf16_gflops", 0)) / 1e3
    doc: dict = {"machine": machine_info(), "limits": limits, "device": device,
                 "model": str(model), "preset": info.preset, "macs_per_lr_pixel": macs,
                 "tf32": {"cudnn": torch.backends.cudnn.allow_tf32,
                          "matmul": torch.backends.cuda.matmul.allow_tf32},
                 "torch": torch.__version__, "rows": []}
    if device.startswith("cuda"):
        doc["gpu"] = torch.cuda.get_device_name(0)
    tiles = [int(t) for t in args.tiles.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    paths = args.paths.split(",")
    refs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    timer = Timer(device)
    data = Path(os.environ.get("SR_DATA_DIR", "../shared/data"))
    cpu_ref = TorchBackendRef(info)

    def reference(tile: int):
        if tile not in refs:
            x = _crop(tile, data)
            refs[tile] = (x, _quantized(cpu_ref(x)))
        return refs[tile]

    def order():
        mid = sorted(batches)[len(batches) // 2]
        shapes = [(t, b) for t in tiles for b in batches]
        for p in paths:
            if p.startswith("eager-"):
                for t, b in shapes:
                    yield p, t, b
        priority = sorted(shapes, key=lambda s: (s[1] != mid, abs(s[0] - 256), s[1]))
        for t, b in priority:  # every compiled path at a shape before the next shape
            for p in paths:
                if not p.startswith("eager-"):
                    yield p, t, b

    for path, tile, batch in order():
        row = Result(path, tile, batch)
        doc["rows"].append(row)
        if not path.startswith("eager-") and time.perf_counter() - t_start > args.budget_s:
            row.status, row.reason = "not run", f"past the {args.budget_s:.0f} s budget"
            continue
        precision = path.split("-")[1]
        try:
            fn, row.compile_s = _open(path, model, device, tile, batch, tmp)
            x1, ref = reference(tile)
            x = torch.from_numpy(np.repeat(x1, batch, axis=0)).to(device)
            row.parity_db = round(float(psnr(_quantized(fn(x)).transpose(1, 2, 0),
                                             ref.transpose(1, 2, 0))), 2)
            secs = timer(lambda fn=fn, x=x: fn(x))
            row.ms_per_batch = round(secs * 1e3, 3)
            row.ms_per_tile = round(secs * 1e3 / batch, 4)
            row.out_mpix_per_s = round(batch * (tile * info.scale) ** 2 / secs / 1e6, 2)
            row.tflops = round(2 * macs * tile * tile * batch / secs / 1e12, 3)
            own = {"fp32": limits.get("gpu_matmul_fp32_tflops"),
                   "bf16": limits.get("gpu_matmul_bf16_tflops"),
                   "fp16": limits.get("gpu_matmul_fp16_tflops")}.get(precision)
            if fp16_rate:
                row.pct_ref_matmul = round(100 * row.tflops / fp16_rate, 1)
            if own:
                row.pct_own_matmul = round(100 * row.tflops / own, 1)
        except Exception as exc:  # one row's failure (OOM included) must not lose the others
            text = first_line(exc)[:200]
            oom = "out of memory" in text.lower() or type(exc).__name__.endswith("MemoryError")
            row.status = "oom" if oom else "failed"
            row.reason = f"{type(exc).__name__}: {text}"
        finally:
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
            torch._dynamo.reset()  # compiled graphs of the last shape: not needed again
        _write(out, doc)
        print(_line(row), flush=True)
    doc["summary"] = summary(doc["rows"], fp16_rate, device)
    doc["seconds"] = round(time.perf_counter() - t_start, 1)
    _write(out, doc)
    return doc


class TorchBackendRef:
    """PyTorch fp32 on the CPU: the parity reference."""

    def __init__(self, info) -> None:
        from srgan_runtime.backends.pytorch import TorchBackend

        self.backend = TorchBackend(info, "cpu", "fp32")

    def __call__(self, x: np.ndarray):
        import torch

        return self.backend.forward_device(torch.from_numpy(x))


def summary(rows: list[Result], fp16_rate: float, device: str = "cuda") -> dict:
    """The best path per output pixel, its share of the fp16 matmul rate, and its speed-up
    over the best eager fp32 (TF32) row; the issue's goals are judged on CUDA only."""
    ok = [r for r in rows if r.status == "ok" and r.ms_per_tile]
    if not ok:
        return {}

    def px_time(r: Result) -> float:
        return r.ms_per_tile / r.tile**2

    cuda = device.startswith("cuda")
    best = min(ok, key=px_time)
    fp32 = [r for r in ok if r.path == "eager-fp32"]
    base = min(fp32, key=px_time) if fp32 else None
    return {
        "best": f"{best.path} tile {best.tile} batch {best.batch}",
        "best_tflops": best.tflops,
        "best_pct_ref_matmul": best.pct_ref_matmul,
        "goal_40pct_met": (bool(best.pct_ref_matmul and best.pct_ref_matmul >= 40)
                           if cuda else None),
        "best_eager_fp32": f"tile {base.tile} batch {base.batch}" if base else None,
        "speedup_vs_eager_fp32": round(px_time(base) / px_time(best), 2) if base else None,
        "goal_5x_met": bool(base and px_time(base) / px_time(best) >= 5) if cuda else None,
        "reference_matmul_tflops": fp16_rate,
    }


def _line(r: Result) -> str:
    def f(v, fmt):
        return format(v, fmt) if v is not None else "-"

    return (f"{r.path:<14} {r.tile:>4} x{r.batch:<3} {r.status:<7} "
            f"{f(r.ms_per_tile, '9.3f')} ms/tile {f(r.out_mpix_per_s, '8.1f')} MP/s "
            f"{f(r.tflops, '7.2f')} TFLOP/s {f(r.pct_ref_matmul, '5.1f')}% ref-mm  "
            f"parity {f(r.parity_db, '6.1f')} dB  compile {f(r.compile_s, '5.1f')} s {r.reason}")


def _write(out: Path, doc: dict) -> None:
    rows = [asdict(r) if isinstance(r, Result) else r for r in doc["rows"]]
    text = json.dumps({**doc, "rows": rows}, indent=2, default=str)
    tmp = out / "gpu_kernels.json.tmp"
    tmp.write_text(text)
    tmp.replace(out / "gpu_kernels.json")
    lines = [f"{doc.get('gpu', doc['machine'].get('cpu'))}, torch {doc['torch']}, model "
             f"{doc['preset']} ({doc['macs_per_lr_pixel'] / 1e3:.1f} kMAC/LR px), limits "
             f"{doc['limits']}"]
    lines += [_line(r) if isinstance(r, Result) else str(r) for r in doc["rows"]]
    if doc.get("summary"):
        lines.append(f"summary: {doc['summary']}")
    (out / "gpu_kernels.txt").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", default="default")
    ap.add_argument("--tiles", default="128,256,512")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--paths", default=",".join(EAGER + COMPILED))
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="Start no compiled row after this many seconds.")
    args = ap.parse_args(argv)
    kinds = ("eager", "aoti", *MODES)
    unknown = [p for p in args.paths.split(",")
               if p.partition("-")[0] not in kinds or p.partition("-")[2] not in PRECISIONS]
    if unknown:
        ap.error(f"unknown paths {sorted(unknown)}")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print("gpu_kernels: no CUDA GPU here (use --device cpu for a dry run)",
                  file=sys.stderr)
            return 2
    doc = run(args)
    print(f"summary: {doc.get('summary')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
