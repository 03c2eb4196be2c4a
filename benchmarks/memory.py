"""Peak resident memory of whole ``srrun upscale`` processes, by backend and input size, at the
default settings (``--max-memory auto``: what the run adds stays within the output picture +
512 MiB), with the time each took. What a run adds is its peak less the peak of the same command
on an 8x8 input (interpreter, libraries, model and backend: what any run holds).

    python benchmarks/memory.py --json benchmarks/results/memory-<machine>.json

Each run is its own process, which reports its own peak (``VmHWM``) at exit, so it counts
everything: interpreter, libraries, model, decode, tiles, canvas and encoder. (``wait4``'s
``ru_maxrss`` would not do: Linux carries the spawning process's peak across exec.) Inputs are
procedural PNGs of 256^2, 512^2 and 1024^2 (1, 4 and 16 MP out at x4) and 2048^2 (67 MP out).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MiB = 1 << 20
HEADROOM_MIB = 512


def _srrun(args: list[str]) -> tuple[float, float, str]:
    """Peak RSS (MiB, reported by the process itself at exit) and seconds of one srrun
    process, and its stderr."""
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak"
        cmd = [sys.executable, str(Path(__file__).with_name("report_peak.py")), str(peak_file),
               "srgan_runtime.cli", "upscale", *args, "--no-progress"]
        t = time.perf_counter()
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        secs = time.perf_counter() - t
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stderr[-2000:]}")
        return int(peak_file.read_text()) / MiB, secs, r.stderr


def main() -> None:
    from srgan_runtime.core.machine import machine_info
    from srgan_runtime.core.synth import write_textures

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="openvino,onnxruntime,torch")
    ap.add_argument("--sides", default="256,512,1024,2048", help="LR input sides")
    ap.add_argument("--model", default="default")
    ap.add_argument("--extra", default="", help="more srrun options, e.g. '--max-memory off'")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    sides = [int(s) for s in args.sides.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="srbench-mem-") as tmp:
        for side in sides:
            write_textures(Path(tmp) / f"in{side}", 1, (side, side), seed=side)
        for backend in args.backends.split(","):
            # Warm the per-model caches (footprint, exports) so that runs measure steady use.
            src = next((Path(tmp) / f"in{sides[0]}").iterdir())
            _srrun([str(src), "-o", str(Path(tmp) / "warm.png"), "--overwrite", "--backend",
                    backend, "--model", args.model, *args.extra.split()])
            write_textures(Path(tmp) / "in8", 1, (8, 8), seed=8)
            base, _, _ = _srrun([str(next((Path(tmp) / "in8").iterdir())), "-o",
                                 str(Path(tmp) / "base.png"), "--overwrite", "--backend",
                                 backend, "--model", args.model, *args.extra.split()])
            for side in sides:
                src = next((Path(tmp) / f"in{side}").iterdir())
                out = Path(tmp) / f"out-{backend}-{side}.png"
                peak, secs, err = _srrun([str(src), "-o", str(out), "--backend", backend,
                                          "--model", args.model, *args.extra.split()])
                from PIL import Image

                with Image.open(out) as im:
                    w, h = im.size
                out_mib = w * h * 3 / MiB
                tile = next((ln.split("tile ")[1].split()[0].rstrip(":")
                             for ln in err.splitlines()
                             if ln.startswith("INFO: tile ") and "leaves ~" in ln), "default")
                row = {"backend": backend, "input": f"{side}x{side}", "output_mp": round(
                    w * h / 1e6, 2), "output_mib": round(out_mib, 1),
                    "peak_rss_mib": round(peak, 1), "over_output_mib": round(peak - out_mib, 1),
                    "baseline_mib": round(base, 1), "added_mib": round(peak - base, 1),
                    "added_within_output_plus_512": peak - base <= out_mib + HEADROOM_MIB,
                    "seconds": round(secs, 1), "tile": tile}
                rows.append(row)
                print(f"{backend:12s} {side:5d}^2 -> {w * h / 1e6:6.1f} MP: peak {peak:7.1f} MiB"
                      f" (output {out_mib:6.1f} + {peak - out_mib:6.1f}; added "
                      f"{peak - base:6.1f} over {base:5.0f}), {secs:6.1f} s, "
                      f"tile {tile}", flush=True)
                out.unlink()
    doc = {"machine": machine_info(), "model": args.model, "extra": args.extra,
           "budget": f"added within output + {HEADROOM_MIB} MiB", "rows": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
