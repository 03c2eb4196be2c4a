"""A bounded load test of ``srrun serve`` on loopback: N requests to ``POST /api/upscale``, C at
a time, against a server this script starts (a real process under waitress). The uploads are
real photos (``--photos``, default BSD100's 481x321 originals from the shared data; PNG files
of 100-400 KB), cycled in order. Reports every status, p50/p95/max latency of the results,
failures (5xx or anything but an image of the right size, 429 or 503), and the server's peak
resident memory (VmHWM) before and after.

    python benchmarks/serve_load.py [--requests 50] [--concurrency 8] [--model default]
        [--photos DIR] [--queue 8] [--workers 1] [--json benchmarks/results/serve-load-<m>.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: list[str], port: int, timeout: float = 120.0,
                 env: dict[str, str] | None = None) -> subprocess.Popen:
    """``srrun serve`` in its own process; returns once /healthz answers."""
    proc = subprocess.Popen([sys.executable, "-m", "srgan_runtime.cli", "serve", "--port",
                             str(port), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env=None if env is None else {**os.environ, **env})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"srrun serve exited {proc.returncode}: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("srrun serve did not answer /healthz in time")


def stop_server(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def post_image(url: str, data: bytes, name: str = "load.png", timeout: float = 300.0,
               model: str | None = None) -> tuple[int, str, bytes, float]:
    """A multipart POST of one image (and a model field); (status, content type, body,
    seconds)."""
    boundary = "srrunloadtestboundary7f3a"
    fields = b""
    if model:
        fields = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n"
                  f"{model}\r\n").encode()
    body = fields + (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
                     f"filename=\"{name}\"\r\nContent-Type: image/png\r\n\r\n").encode() \
        + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read(), \
                time.perf_counter() - t0
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read(), time.perf_counter() - t0


def default_photos() -> Path:
    """BSD100's originals in the shared data (``SR_DATA_DIR`` or ``../shared/data``)."""
    root = Path(os.environ.get("SR_DATA_DIR", Path(__file__).resolve().parents[2] / "shared"
                               / "data"))
    return root / "BSD100" / "HR"


def photo_uploads(folder: Path, count: int) -> list[tuple[str, bytes, tuple[int, int]]]:
    """``count`` uploads cycled from the photos in ``folder`` (sorted): name, bytes, size."""
    from PIL import Image

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg"))
    if not files:
        raise SystemExit(f"no photos in {folder}")
    out = []
    for k in range(count):
        path = files[k % len(files)]
        with Image.open(path) as im:
            out.append((path.name, path.read_bytes(), im.size))
    return out


def load_test(base: str, pid: int, uploads: list[tuple[str, bytes, tuple[int, int]]],
              concurrency: int, scale: int, model: str | None = None) -> dict:
    """Send the uploads, ``concurrency`` at a time; a dict of the figures (see the module
    docstring)."""
    from PIL import Image

    url = f"{base}/api/upscale"
    rss_before = peak_rss_mb(pid)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda u: post_image(url, u[1], u[0], model=model), uploads))
    wall = time.perf_counter() - t0
    statuses: dict[str, int] = {}
    ok_times, failures = [], []
    for (name, _, size), (status, ctype, body, secs) in zip(uploads, results, strict=True):
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status == 200 and ctype.startswith("image/"):
            w, h = Image.open(io.BytesIO(body)).size
            if (w, h) != (size[0] * scale, size[1] * scale):
                failures.append(f"{name}: 200 with a {w}x{h} image")
            ok_times.append(secs)
        elif status in (429, 503):
            if "error" not in json.loads(body):
                failures.append(f"{status} without a JSON error")
        else:
            failures.append(f"{name}: {status} {body[:120]!r}")
    pct = (lambda q: round(float(np.percentile(ok_times, q)), 3)) if ok_times else (
        lambda q: None)
    sizes = sorted({f"{w}x{h}" for _, _, (w, h) in uploads})
    kb = [len(data) / 1000 for _, data, _ in uploads]
    return {"requests": len(uploads), "concurrency": concurrency,
            "inputs": f"{len(sizes)} size(s): {', '.join(sizes[:4])}"
                      + (" ..." if len(sizes) > 4 else ""),
            "upload_kb": [round(min(kb)), round(max(kb))], "statuses": statuses,
            "results": len(ok_times), "failures": failures,
            "p50_s": pct(50), "p95_s": pct(95), "max_s": pct(100), "wall_s": round(wall, 2),
            "server_peak_rss_mb_before": rss_before, "server_peak_rss_mb_after": peak_rss_mb(pid)}


def main(argv: list[str] | None = None) -> int:
    from srgan_runtime.core.machine import machine_info
    from srgan_runtime.core.modelinfo import describe

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--model", default="default")
    ap.add_argument("--photos", type=Path, default=None,
                    help="folder of photos to upload [default: the shared data's BSD100/HR]")
    ap.add_argument("--queue", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args, extra = ap.parse_known_args(argv)
    uploads = photo_uploads(args.photos or default_photos(), args.requests)
    port = free_port()
    proc = start_server(["--model", args.model, "--queue", str(args.queue), "--workers",
                         str(args.workers), *extra], port)
    try:
        res = load_test(f"http://127.0.0.1:{port}", proc.pid, uploads, args.concurrency,
                        describe(args.model).scale)
    finally:
        log = stop_server(proc)
    res.update(model=args.model, queue=args.queue, workers=args.workers, server_args=extra,
               machine=machine_info(), date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    print(json.dumps({k: v for k, v in res.items() if k != "machine"}, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    if os.environ.get("SERVE_LOAD_LOG"):
        print(log)
    return 1 if res["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
