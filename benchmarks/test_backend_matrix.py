"""Per-tile latency per backend x precision x tile size (64/128/256) x batch (1/4/8), and how
time grows with image size (1, 4, 16 megapixels out).

The matrix uses the ``small`` preset (set ``SRBENCH_PRESET=srresnet`` for the paper's model; on a
2-core CPU that takes about ten times longer). Run on an idle machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from srgan_runtime.backends.support import supported
from srgan_runtime.core.generator import macs_per_lr_pixel
from srgan_train.archs import build_generator
from srgan_train.checkpoint import save_generator
from srgan_train.config import preset_config

PRESET = os.environ.get("SRBENCH_PRESET", "small")
THREADS = 2
# The support table's CPU rows on fp32 files (an fp16 ONNX file on the CPU is a parity check,
# not a speed option; INT8 files have their own benchmark, benchmarks/int8.py).
ROWS = [(r.backend, r.precision) for r in supported(device="cpu")
        if r.kind in ("generator", "onnx")]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from srgan_export import OnnxExportOptions, export_onnx

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("matrix")
    gen = d / f"{PRESET}.safetensors"
    save_generator(build_generator(preset_config(PRESET, 4)).eval(), gen, preset=PRESET, step=0)
    onnx_path = d / f"{PRESET}.onnx"
    export_onnx(gen, onnx_path, OnnxExportOptions(verify=False))
    return gen, onnx_path


def _backend(model, backend: str, precision: str):
    from srgan_runtime.backends import open_backend

    if backend == "openvino":
        pytest.importorskip("openvino")
    gen, onnx_path = model
    return open_backend(gen if backend == "torch" else onnx_path, backend, "cpu", precision,
                        THREADS)


@pytest.mark.parametrize("batch", [1, 4, 8])
@pytest.mark.parametrize("tile", [64, 128, 256])
@pytest.mark.parametrize(("backend", "precision"), ROWS, ids=[f"{b}-{p}" for b, p in ROWS])
def test_tile_matrix(benchmark, model, backend: str, precision: str, tile: int,
                     batch: int) -> None:
    b = _backend(model, backend, precision)
    if benchmark.disabled:  # smoke mode checks the path, not the speed: keep it small
        tile, batch = 32, 1  # (bf16 is emulated, ~100x slower, on CPUs without AVX512_BF16)
    x = np.random.default_rng(0).random((batch, 3, tile, tile), dtype=np.float32)
    benchmark.extra_info.update(backend=backend, precision=precision, tile=tile, batch=batch,
                                preset=PRESET, threads=THREADS)
    benchmark.pedantic(b.run, args=(x,), rounds=3, iterations=1, warmup_rounds=1)
    if benchmark.stats is not None:
        per_tile = benchmark.stats.stats.median / batch
        macs = macs_per_lr_pixel(preset_config(PRESET, 4))
        benchmark.extra_info.update(
            ms_per_tile=per_tile * 1e3,
            mp_per_s=(tile * 4) ** 2 / per_tile / 1e6,
            gflops=2 * macs * tile * tile / per_tile / 1e9,
        )


@pytest.mark.parametrize("megapixels_out", [1, 4, 16])
def test_time_grows_linearly_with_image_size(benchmark, model, megapixels_out: int) -> None:
    from srgan_runtime import Upscaler

    side = int((megapixels_out * 1e6) ** 0.5) // 4
    if benchmark.disabled:  # smoke mode: the same path on a small image
        side = 64
    img = np.random.default_rng(1).integers(0, 256, (side, side, 3), dtype=np.uint8)
    up = Upscaler(model[0], backend="torch", device="cpu", precision="bf16", tile=256, batch=4,
                  threads=THREADS)
    benchmark.extra_info.update(megapixels_out=megapixels_out, lr_side=side, preset=PRESET)
    benchmark.pedantic(up.upscale, args=(img,), rounds=1, iterations=1, warmup_rounds=0)
    if benchmark.stats is not None:
        benchmark.extra_info["mp_per_s"] = (side * 4) ** 2 / 1e6 / benchmark.stats.stats.median
