"""A bounded load test of ``srrun serve`` on loopback: N requests to ``POST /api/upscale``, C at
a time, against a server this script starts (a real process under waitress). Reports every
status, p50/p95/max latency of the results, failures (5xx or anything but an image, 429 or 503),
and the server's peak resident memory (VmHWM) before and after.

    python benchmarks/serve_load.py [--requests 50] [--concurrency 8] [--model fast]
        [--size 96x80] [--queue 8] [--workers 1] [--json benchmarks/results/serve-load-<m>.json]
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


def start_server(args: list[str], port: int, timeout: float = 120.0) -> subprocess.Popen:
    """``srrun serve`` in its own process; returns once /healthz answers."""
    proc = subprocess.Popen([sys.executable, "-m", "srgan_runtime.cli", "serve", "--port",
                             str(port), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
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


def png_bytes(w: int, h: int, seed: int = 0) -> bytes:
    from PIL import Image

    arr = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def post_image(url: str, data: bytes, name: str = "load.png",
               timeout: float = 300.0) -> tuple[int, str, bytes, float]:
    """A multipart POST of one image; (status, content type, body, seconds)."""
    boundary = "srrunloadtestboundary7f3a"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"{name}\"\r\nContent-Type: image/png\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read(), \
                time.perf_counter() - t0
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read(), time.perf_counter() - t0


def load_test(base: str, pid: int, requests: int, concurrency: int, size: tuple[int, int],
              scale: int) -> dict:
    """Run the requests; a dict of the figures (see the module docstring)."""
    from PIL import Image

    imgs = [png_bytes(*size, seed=i % 4) for i in range(requests)]
    rss_before = peak_rss_mb(pid)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda d: post_image(f"{base}/api/upscale", d), imgs))
    wall = time.perf_counter() - t0
    statuses: dict[str, int] = {}
    ok_times, failures = [], []
    for status, ctype, body, secs in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status == 200 and ctype.startswith("image/"):
            w, h = Image.open(io.BytesIO(body)).size
            if (w, h) != (size[0] * scale, size[1] * scale):
                failures.append(f"200 with a {w}x{h} image")
            ok_times.append(secs)
        elif status in (429, 503):
            if "error" not in json.loads(body):
                failures.append(f"{status} without a JSON error")
        else:
            failures.append(f"{status} {body[:120]!r}")
    pct = (lambda q: round(float(np.percentile(ok_times, q)), 3)) if ok_times else (
        lambda q: None)
    return {"requests": requests, "concurrency": concurrency, "input": f"{size[0]}x{size[1]}",
            "statuses": statuses, "results": len(ok_times), "failures": failures,
            "p50_s": pct(50), "p95_s": pct(95), "max_s": pct(100), "wall_s": round(wall, 2),
            "server_peak_rss_mb_before": rss_before, "server_peak_rss_mb_after": peak_rss_mb(pid)}


def main(argv: list[str] | None = None) -> int:
    from srgan_runtime.core.machine import machine_info
    from srgan_runtime.core.modelinfo import describe

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--model", default="fast")
    ap.add_argument("--size", default="96x80")
    ap.add_argument("--queue", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args, extra = ap.parse_known_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    port = free_port()
    proc = start_server(["--model", args.model, "--queue", str(args.queue), "--workers",
                         str(args.workers), *extra], port)
    try:
        res = load_test(f"http://127.0.0.1:{port}", proc.pid, args.requests, args.concurrency,
                        (w, h), describe(args.model).scale)
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
