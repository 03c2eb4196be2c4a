"""Runtime speed: per-tile latency per backend and precision, the folder pipeline against a
Real-ESRGAN-style loop, and peak memory for a large image.

Run on an idle machine (``make bench``); ``--benchmark-disable`` runs each once (smoke mode).
Set ``SRBENCH_FULL=1`` for the 4096x4096 memory measurement (minutes on a 2-core CPU).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from srgan_train.archs import build_generator
from srgan_train.checkpoint import save_generator
from srgan_train.config import preset_config

TILE = 128
PAD = 10  # Real-ESRGAN's default tile_pad
THREADS = 2
MACS_PER_LR_PIXEL = {"srresnet": 2.22e6}  # engines.md 0b (multiply-adds per LR pixel)
DATA = Path(os.environ.get("SR_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="module")
def srresnet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An srresnet x4 generator (seeded random weights: speed does not depend on training)
    and its fp32 ONNX export."""
    from srgan_export import OnnxExportOptions, export_onnx

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("bench")
    gen = d / "srresnet.safetensors"
    save_generator(build_generator(preset_config("srresnet", 4)).eval(), gen, preset="srresnet",
                   step=0)
    onnx_path = d / "srresnet.onnx"
    export_onnx(gen, onnx_path, OnnxExportOptions(verify=False))
    return gen, onnx_path


def _plain_torch(gen: Path):
    """PyTorch eager fp32 NCHW, as a plain script runs it (the baseline)."""
    from srgan_train.checkpoint import load_generator

    model = load_generator(gen).model
    torch.set_num_threads(THREADS)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    return run


VARIANTS = [
    ("torch-eager-fp32-nchw", None, None),
    ("torch", "fp32", "gen"),
    ("torch", "bf16", "gen"),
    ("onnxruntime", "fp32", "onnx"),
    ("onnxruntime-extended", "fp32", "onnx"),
    ("openvino", "fp32", "onnx"),
    ("openvino", "bf16", "onnx"),
]


@pytest.mark.parametrize(("backend", "precision", "kind"), VARIANTS,
                         ids=[f"{b}-{p}" if p else b for b, p, _ in VARIANTS])
def test_tile_latency(benchmark, srresnet, backend: str, precision: str | None,
                      kind: str | None) -> None:
    gen, onnx_path = srresnet
    x = np.random.default_rng(0).random((1, 3, TILE, TILE), dtype=np.float32)
    if kind is None:
        fn = _plain_torch(gen)
    else:
        if backend == "openvino":
            pytest.importorskip("openvino")
        from srgan_runtime import describe
        from srgan_runtime.backends import open_backend
        from srgan_runtime.backends.onnxrt import OrtBackend

        if backend == "onnxruntime-extended":  # ORT_ENABLE_EXTENDED instead of ALL (NCHWc)
            b = OrtBackend(describe(onnx_path), "cpu", THREADS, opt_level="extended")
        else:
            b = open_backend(gen if kind == "gen" else onnx_path, backend, "cpu", precision,
                             THREADS)
        fn = b.run_float
    benchmark.extra_info.update(backend=backend, precision=precision or "fp32", tile=TILE,
                                batch=1, threads=THREADS, preset="srresnet")
    benchmark.pedantic(fn, args=(x,), rounds=5, iterations=1, warmup_rounds=1)
    if benchmark.stats is not None:
        flop = 2 * MACS_PER_LR_PIXEL["srresnet"] * TILE * TILE
        benchmark.extra_info["gflops"] = flop / benchmark.stats.stats.median / 1e9


def _images(limit: int) -> list[Path]:
    folder = DATA / "Set14" / "LR_bicubic" / "X4"
    if not folder.is_dir():
        pytest.skip(f"Set14 LR X4 not found at {folder}")
    return sorted(folder.glob("*.png"))[:limit]


def realesrgan_style_loop(gen: Path, files: list[Path], out: Path, tile: int,
                          pad: int = 10) -> None:
    """One image at a time, tiles one by one with ``pad`` px of context, PyTorch eager fp32,
    output pasted per tile (the loop of Real-ESRGAN's ``tile_process``), PNG written."""
    from PIL import Image

    from srgan_train.checkpoint import load_generator

    model = load_generator(gen).model
    s = 4
    for f in files:
        img = np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255.0
        x = torch.from_numpy(img.transpose(2, 0, 1))[None]
        h, w = img.shape[:2]
        canvas = torch.zeros(1, 3, h * s, w * s)
        for y0 in range(0, h, tile):
            for x0 in range(0, w, tile):
                y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
                py0, px0 = max(0, y0 - pad), max(0, x0 - pad)
                py1, px1 = min(h, y1 + pad), min(w, x1 + pad)
                with torch.no_grad():
                    o = model(x[:, :, py0:py1, px0:px1])
                canvas[:, :, y0 * s:y1 * s, x0 * s:x1 * s] = o[
                    :, :, (y0 - py0) * s:(y1 - py0) * s, (x0 - px0) * s:(x1 - px0) * s]
        arr = (canvas[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        # Real-ESRGAN writes with cv2.imwrite, whose PNG default is zlib level 1 (srrun's too).
        Image.fromarray(arr).save(out / f"{f.stem}.png", compress_level=1)


@pytest.mark.parametrize("variant", ["realesrgan-loop-fp32", "srrun-torch-bf16",
                                     "srrun-openvino-bf16"])
def test_folder_pipeline(benchmark, srresnet, tmp_path: Path, variant: str) -> None:
    from srgan_runtime.pipeline import run_job
    from srgan_runtime.upscaler import Upscaler

    gen, onnx_path = srresnet
    files = _images(14 if os.environ.get("SRBENCH_FULL") else 3)
    torch.set_num_threads(THREADS)
    benchmark.extra_info.update(images=len(files), tile=TILE, variant=variant)

    def once() -> None:
        out = tmp_path / f"o{time.perf_counter_ns()}"
        out.mkdir()
        if variant == "realesrgan-loop-fp32":
            realesrgan_style_loop(gen, files, out, TILE, PAD)
            return
        backend = variant.split("-")[1]
        if backend == "openvino":
            pytest.importorskip("openvino")
        engine = onnx_path if backend == "openvino" else gen
        # The same 128-pixel tiles and 10 pixels of context as the loop: tile input 148.
        up = Upscaler(engine, backend=backend, device="cpu", precision="bf16",
                      tile=TILE + 2 * PAD, overlap=PAD, batch=4, threads=THREADS)
        run_job(up, [(f, f.parent) for f in files], out, progress=False)

    benchmark.pedantic(once, rounds=1, iterations=1, warmup_rounds=0)


def test_peak_memory_large_image(benchmark, tmp_path: Path) -> None:
    """Peak RSS of ``srrun upscale`` (small preset, x4, tile 256, batch 4) on one large image,
    in a child process; output bytes reported beside it."""
    from PIL import Image

    side = 4096 if os.environ.get("SRBENCH_FULL") else 512
    torch.manual_seed(0)
    gen = tmp_path / "small.safetensors"
    save_generator(build_generator(preset_config("small", 4)).eval(), gen, preset="small", step=0)
    rng = np.random.default_rng(0)
    src = tmp_path / "big.png"
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(src)
    cmd = [sys.executable, "-m", "srgan_runtime.cli", "upscale", str(src), "-o",
           str(tmp_path / "big_x4.png"), "--engine", str(gen), "--tile", "256", "--batch", "4",
           "--threads", str(THREADS), "--no-progress", "--max-pixels", str(side * side + 1)]

    def once() -> None:
        (tmp_path / "big_x4.png").unlink(missing_ok=True)
        subprocess.run(cmd, check=True, capture_output=True)

    benchmark.pedantic(once, rounds=1, iterations=1)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out_mb = (side * 4) ** 2 * 3 / 2**20
    benchmark.extra_info.update(side=side, peak_rss_mb=round(peak_mb, 1),
                                output_mb=round(out_mb, 1),
                                over_output_mb=round(peak_mb - out_mb, 1))
