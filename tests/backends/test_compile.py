"""The compiled PyTorch path (torch.compile, inductor's C++ backend on this CPU): parity with
eager, static shapes, the compile time reported apart, and the refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from srgan_runtime import Upscaler
from srgan_runtime.backends import open_backend
from srgan_runtime.core.errors import UserError
from srgan_runtime.core.metrics import psnr


@pytest.fixture(scope="module")
def compiled(generator_file: Path, tmp_path_factory: pytest.TempPathFactory):
    mp = pytest.MonkeyPatch()
    mp.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path_factory.mktemp("inductor")))
    backend = open_backend(generator_file, "torch", "cpu", "fp32", compile="auto",
                           tile_hint=(2, 32))
    yield backend
    mp.undo()


def test_compiled_matches_eager_with_a_static_shape(compiled, generator_file: Path) -> None:
    eager = open_backend(generator_file, "torch", "cpu", "fp32")
    assert compiled.fixed_shape == (2, 32, 32) and eager.fixed_shape is None
    assert compiled.compile_mode == "default"  # auto on the CPU
    assert compiled.warmup() > 0 and "s to compile" in compiled.describe()
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    a, b = compiled.run_float(x), eager.run_float(x)
    assert np.abs(a - b).max() < 1e-4
    np.testing.assert_array_equal(compiled.run(x).pixels, eager.run(x).pixels)


def test_compiled_upscaler_full_tiles_only(compiled, generator_file: Path) -> None:
    """The upscaler sends the compiled shape only (padded edge tiles, padded last batch):
    one compile, and the picture matches eager PyTorch on the same tiling."""
    img = (np.random.default_rng(1).random((41, 70, 3)) * 255).astype(np.uint8)
    calls = []
    run = compiled.run
    compiled.run = lambda batch, bits=8: calls.append(batch.shape) or run(batch, bits)
    try:
        up = Upscaler(backend=compiled, overlap=4, cache=False)
        out = up.upscale(img)
    finally:
        del compiled.run
    assert up.tile == 32 and up.batch == 2 and set(calls) == {(2, 3, 32, 32)}
    eager = open_backend(generator_file, "torch", "cpu", "fp32")
    eager._fixed = compiled.fixed_shape  # the same tiling, computed eagerly
    assert psnr(out, Upscaler(backend=eager, overlap=4, cache=False).upscale(img)) > 60


def test_compile_refusals(generator_file: Path) -> None:
    with pytest.raises(UserError, match="applies to --backend torch"):
        open_backend(generator_file, "onnxruntime", "cpu", "fp32", compile="auto")
    with pytest.raises(UserError, match="--compile-mode"):
        open_backend(generator_file, "torch", "cpu", "fp32", compile="fastest")
