"""What a plain ``srrun upscale DIR -o OUT`` costs, side by side with the previous defaults and a
Real-ESRGAN-style loop (``RealESRGANer.enhance`` without tiling: whole image, fp32, PyTorch),
each as a whole process (start-up and model load included), on the same folder.

    python benchmarks/defaults.py --images ../shared/data/Set14/HR --count 8 \
        --json benchmarks/results/defaults-<machine>.json

Run it on an idle machine: the ratios are only meaningful side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# A Real-ESRGAN-style inference loop on the same weights: load, then per image a whole-image
# fp32 forward pass, clamp, round, save.
REFERENCE_LOOP = r"""
import sys, numpy as np, torch
from pathlib import Path
from PIL import Image
from srgan_train.checkpoint import load_generator
src, dst, model = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
torch.set_num_threads(int(sys.argv[4]) or torch.get_num_threads())
net = load_generator(Path(model)).model.eval()
dst.mkdir(parents=True, exist_ok=True)
for p in sorted(src.iterdir()):
    img = np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255.0
    x = torch.from_numpy(img.transpose(2, 0, 1)).unsqueeze(0)
    with torch.inference_mode():
        y = net(x).squeeze(0).clamp_(0, 1).mul_(255).round_().byte()
    Image.fromarray(y.permute(1, 2, 0).numpy()).save(dst / (p.stem + ".png"))
"""


def _run(cmd: list[str]) -> tuple[float, float]:
    """Seconds and peak resident MiB (reported by the process itself at exit) of one process
    (``python -m MODULE ...`` or ``python -c CODE ...``)."""
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak"
        wrapped = [cmd[0], str(Path(__file__).with_name("report_peak.py")), str(peak_file),
                   *(cmd[2:] if cmd[1] == "-m" else cmd[1:])]
        t = time.perf_counter()
        r = subprocess.run(wrapped, capture_output=True, text=True)
        secs = time.perf_counter() - t
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd[:4])}...: exit {r.returncode}\n{r.stderr[-2000:]}")
        return secs, int(peak_file.read_text()) / 2**20


def main() -> None:
    import numpy as np
    from PIL import Image

    from srgan_runtime.core.machine import machine_info
    from srgan_runtime.core.metrics import psnr
    from srgan_runtime.core.modelinfo import onnx_variant, resolve_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default="../shared/data/Set14/HR")
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--model", default="default")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    model = str(resolve_model(a.model))
    srrun = [sys.executable, "-m", "srgan_runtime.cli", "upscale"]
    with tempfile.TemporaryDirectory(prefix="defaults-") as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for p in sorted(Path(a.images).iterdir())[: a.count]:
            Image.open(p).convert("RGB").save(src / (p.stem + ".png"))
        mp_in = sum(np.prod(Image.open(p).size) for p in src.iterdir()) / 1e6
        configs = {
            "real-esrgan-style loop (whole image, fp32, PyTorch)":
                [sys.executable, "-c", REFERENCE_LOOP, str(src), f"{tmp}/ref", model,
                 str(a.threads)],
            "srrun, previous defaults (--backend torch --precision fp32 --seamless --batch 4 "
            "--max-memory off)":
                [*srrun, str(src), "-o", f"{tmp}/prev", "--model", model, "--backend", "torch",
                 "--precision", "fp32", "--seamless", "--batch", "4", "--max-memory", "off",
                 "--no-progress"],
            "srrun, defaults": [*srrun, str(src), "-o", f"{tmp}/now", "--model", model,
                                "--no-progress"],
        }
        if onnx_variant(Path(model), "int8") is not None:
            configs["srrun --precision int8 (the bundled INT8 copy)"] = [
                *srrun, str(src), "-o", f"{tmp}/int8", "--model", model, "--precision", "int8",
                "--no-progress"]
        if a.threads:
            for k in list(configs)[1:]:
                configs[k] += ["--threads", str(a.threads)]
        # One untimed default run first: it fills the user cache (the measured radius / ONNX
        # export), which a user pays once per model, not per run.
        _run(configs["srrun, defaults"])
        shutil.rmtree(f"{tmp}/now")
        rows = []
        for label, cmd in configs.items():
            secs, peak = _run(cmd)
            rows.append({"config": label, "seconds": round(secs, 2),
                         "peak_rss_mib": round(peak, 1)})
            print(f"{label}: {secs:.1f} s, peak {peak:.0f} MiB", flush=True)
        base = rows[0]["seconds"]
        for r in rows:
            r["speedup_vs_loop"] = round(base / r["seconds"], 2)
        def worst_vs_loop(folder: str) -> float:
            scores = []
            for p in sorted(Path(f"{tmp}/ref").iterdir()):
                ref = np.asarray(Image.open(p))
                out = np.asarray(Image.open(next(Path(folder).glob(f"{p.stem}_x*.png"))))
                scores.append(psnr(out, ref))
            return min(scores)

        worst = worst_vs_loop(f"{tmp}/now")
        print(f"defaults vs loop output: worst {worst:.2f} dB")
        worst_int8 = worst_vs_loop(f"{tmp}/int8") if Path(f"{tmp}/int8").is_dir() else None
        if worst_int8 is not None:
            print(f"int8 vs loop output: worst {worst_int8:.2f} dB")
        for r in rows:
            print(f"{r['config']}: {r['seconds']} s, {r['speedup_vs_loop']}x the loop")
    if a.json:
        doc = {"machine": machine_info(), "model": model, "images": a.images,
               "count": a.count, "lr_megapixels": round(mp_in, 3), "threads": a.threads,
               "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows,
               "defaults_vs_loop_worst_psnr": round(worst, 2),
               "int8_vs_loop_worst_psnr": None if worst_int8 is None else round(worst_int8, 2)}
        Path(a.json).write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
