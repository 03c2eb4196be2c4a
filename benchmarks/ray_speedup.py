"""The Ray path against the local path on the same folder, side by side, in fresh processes
(`srrun upscale DIR` vs `srrun upscale DIR --ray --ray-workers W`), alternating: wall time of
the whole command (Ray's cluster start and each worker's model load included) and the job's own
seconds from its summary line.

    python benchmarks/ray_speedup.py [--images 16] [--size 192x160] [--workers 2] [--rounds 2]
        [--json benchmarks/results/ray-speedup-<machine>.json]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(args: list[str]) -> tuple[float, float]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "srgan_runtime.cli", "upscale", *args,
                        "--no-progress"], capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(r.stdout + r.stderr)
    job = float(re.search(r"MP out in ([0-9.]+) s", r.stdout).group(1))
    return wall, job


def main(argv: list[str] | None = None) -> int:
    from srgan_runtime.core.machine import machine_info
    from srgan_runtime.core.synth import write_textures

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--size", default="192x160", help="HxW of the generated inputs")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    h, w = (int(v) for v in args.size.split("x"))
    rows: dict[str, list] = {"local": [], "ray": []}
    with tempfile.TemporaryDirectory(prefix="ray-speedup-") as tmp:
        src = Path(tmp) / "in"
        write_textures(src, args.images, (h, w), seed=9)
        for _ in range(args.rounds):
            for kind in ("local", "ray"):
                out = Path(tmp) / kind
                shutil.rmtree(out, ignore_errors=True)
                extra = ["--ray", "--ray-workers", str(args.workers)] if kind == "ray" else []
                rows[kind].append(_run([str(src), "-o", str(out), *extra]))
    best = {k: (min(v[0] for v in rows[k]), min(v[1] for v in rows[k])) for k in rows}
    doc = {"machine": machine_info(), "images": args.images, "size_hw": [h, w],
           "workers": args.workers, "rounds": rows,
           "best_wall_s": {k: round(v[0], 2) for k, v in best.items()},
           "best_job_s": {k: round(v[1], 2) for k, v in best.items()},
           "speedup_wall": round(best["local"][0] / best["ray"][0], 3),
           "speedup_job": round(best["local"][1] / best["ray"][1], 3),
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(json.dumps({k: v for k, v in doc.items() if k != "machine"}, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
