"""A new backend is one module: a toy numpy nearest-neighbour backend, declared by a
distribution of its own through the ``srgan_toolkit.backends`` entry point, runs through
``srrun upscale`` with no file of the toolkit changed; registered in-process, it runs through
the library. (An in-tree backend is its module plus one line in ``registry.BUILTIN``.)"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TOY = textwrap.dedent('''
    import numpy as np

    from srgan_runtime.backends import Backend, BackendSpec


    class Nearest(Backend):
        name = "nearest"

        def _run(self, batch):
            s = self.scale
            return batch.repeat(s, axis=2).repeat(s, axis=3)


    def _problem(device, precision, stored):
        if device != "cpu" or precision != "fp32":
            return "the nearest backend runs fp32 on the CPU"
        return None


    SPEC = BackendSpec("nearest", runs="onnx", how="any ONNX file (only its scale is read)",
                       library="numpy", missing="numpy is missing", problem=_problem,
                       open=lambda info, o: Nearest(info, o.precision, o.device))
''')


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    """A folder holding the toy module and its distribution's metadata (as pip would
    install it), for PYTHONPATH."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "toy_nearest.py").write_text(TOY)
    dist = site / "toy_nearest-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-nearest\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[srgan_toolkit.backends]\n"
                                           "nearest = toy_nearest:SPEC\n")
    return site


def _srrun(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-m", "srgan_runtime.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_plugin_backend_runs_through_srrun_upscale(plugin_path: Path, set5: Path,
                                                    tmp_path: Path) -> None:
    src = next((set5 / "LR_bicubic" / "X4").glob("*.png"))
    out = tmp_path / "out.png"
    r = _srrun(plugin_path, "-v", "upscale", str(src), "-o", str(out), "--backend",
               "nearest", "--tile", "64", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "nearest cpu fp32" in r.stderr
    lr = np.asarray(Image.open(src).convert("RGB"))
    assert np.array_equal(np.asarray(Image.open(out)), lr.repeat(4, axis=0).repeat(4, axis=1))
    help_text = _srrun(plugin_path, "upscale", "--help").stdout
    assert "nearest: onnx, onnx-fp16 on cpu fp32" in help_text


def test_a_plugin_backend_is_refused_where_its_spec_says(plugin_path: Path,
                                                        tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.new("RGB", (16, 16)).save(src)
    r = _srrun(plugin_path, "upscale", str(src), "-o", str(tmp_path / "o.png"), "--backend",
               "nearest", "--precision", "bf16")
    assert r.returncode == 2 and "the nearest backend runs fp32 on the CPU" in r.stderr


def test_a_backend_registered_in_process_runs_through_the_library(tmp_path: Path) -> None:
    from srgan_runtime import Upscaler
    from srgan_runtime.backends import register_backend
    from srgan_runtime.backends.registry import _specs

    namespace: dict = {}
    exec(compile(TOY, "toy_nearest", "exec"), namespace)
    before = dict(_specs)
    register_backend(namespace["SPEC"])
    try:
        up = Upscaler("default", backend="nearest", tile=32, max_memory=0)
        img = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
        assert np.array_equal(up.upscale(img), img.repeat(4, axis=0).repeat(4, axis=1))
    finally:
        _specs.clear()
        _specs.update(before)
