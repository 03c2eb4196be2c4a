"""The runtime without torch: these tests import nothing of torch or the training package, so
``.ci/run`` runs this file in a second virtual environment that has only the ``[onnx]`` and
``[openvino]`` extras (``make test-runtime``). In the full environment they run too, with
torch hidden from the subprocesses where the point is its absence."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srgan_runtime.core.errors import UserError
from srgan_runtime.core.metrics import psnr
from srgan_runtime.core.modelinfo import bundled_models, describe, onnx_variant

pytestmark = pytest.mark.torchfree

REF = Path(__file__).resolve().parents[1] / "data" / "reference"
HAS_TORCH = importlib.util.find_spec("torch") is not None
# Run Python with torch unimportable (``import torch`` raises ImportError), as if not installed.
NO_TORCH = "import sys; sys.modules['torch'] = None; "

needs_ort = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                               reason="onnxruntime is not installed (the [onnx] extra)")


def _python(code: str, hide_torch: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", (NO_TORCH if hide_torch else "") + code],
                          capture_output=True, text=True, timeout=300)


def _cli(module: str, *args: str) -> subprocess.CompletedProcess:
    code = f"import runpy, sys; sys.argv = ['x', *{list(args)!r}]; " \
           f"runpy.run_module({module!r}, run_name='__main__')"
    return _python(code)


def _lr() -> np.ndarray:
    with Image.open(REF / "lr.png") as im:
        return np.asarray(im.convert("RGB"))


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_bundled_models_ship_matching_onnx_files(precision: str) -> None:
    """Each bundled generator ships an fp32 ONNX copy and an INT8 one (--precision int8)."""
    from srgan_runtime.core.files import file_sha256

    models = bundled_models()
    assert "default" in models and not any("." in n for n in models)
    for name, gen in models.items():
        onnx_path = onnx_variant(gen, precision)
        assert onnx_path is not None, f"{name}: no {precision} ONNX file beside the generator"
        if importlib.util.find_spec("onnx") is None:
            continue
        g, o = describe(gen), describe(onnx_path)
        assert o.source_sha256 == file_sha256(gen), f"{onnx_path.name} is stale: re-export it"
        assert (g.scale, g.channels, g.receptive_radius) == (o.scale, o.channels,
                                                             o.receptive_radius)
        assert g.format == "generator" and o.format == "onnx" and o.precision == precision
        assert o.effective_radius is not None


def test_describe_needs_no_torch() -> None:
    code = ("from srgan_runtime import describe; import sys, json; "
            "i = describe('default'); o = describe(i.path.replace('.safetensors', '.onnx')); "
            "print(json.dumps([i.as_dict(), o.as_dict(), 'torch' in sys.modules]))")
    r = _python(code, hide_torch=False)
    assert r.returncode == 0, r.stderr
    gen, onnx_info, torch_loaded = json.loads(r.stdout)
    assert not torch_loaded
    assert gen["scale"] == onnx_info["scale"] == 4
    assert gen["precisions"] == ["fp32", "fp16", "bf16"] and gen["receptive_radius"] > 0


@needs_ort
def test_import_and_onnxruntime_upscale_never_import_torch() -> None:
    code = ("import sys, numpy as np; from srgan_runtime import Upscaler; "
            "up = Upscaler('default', backend='onnxruntime', tile=96, batch=2); "
            "y = up.upscale(np.zeros((20, 24, 3), np.uint8)); "
            "bad = [m for m in ('torch', 'srgan_train', 'srgan_export') if m in sys.modules]; "
            "print(y.shape, bad)")
    # Not hidden: the assertion is that nothing imports torch even where it is installed.
    r = _python(code, hide_torch=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "(80, 96, 3) []"


@needs_ort
def test_srrun_upscale_with_the_bundled_default_and_an_onnx_model(tmp_path: Path) -> None:
    src = tmp_path / "photo.png"
    Image.fromarray(_lr()).save(src)
    r = _cli("srgan_runtime.cli", "upscale", str(src), "-o", str(tmp_path / "out.png"),
             "--no-progress")
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "out.png") as im:
        assert im.size == (208, 160)
    onnx_path = onnx_variant(bundled_models()["default"])
    r = _cli("srgan_runtime.cli", "upscale", str(src), "-o", str(tmp_path / "o2.png"),
             "--model", str(onnx_path), "--backend", "onnxruntime", "--no-progress")
    assert r.returncode == 0, r.stderr
    r = _cli("srgan_runtime.cli", "upscale", str(src), "-o", str(tmp_path / "o3.png"),
             "--model", "default", "--backend", "torch", "--no-progress")
    assert r.returncode == 2 and "torch is not installed" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_srrun_models_lists_and_describes() -> None:
    r = _cli("srgan_runtime.cli", "models")
    assert r.returncode == 0, r.stderr
    assert "default: x4 srgan_generator (large) generator" in r.stdout and "(+ .onnx)" in r.stdout
    r = _cli("srgan_runtime.cli", "models", "default", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["default"]["receptive_radius"] == 40


def test_bad_input_gets_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    r = _cli("srgan_runtime.cli", "upscale", str(bad), "-o", str(tmp_path / "o.png"),
             "--no-progress")
    assert r.returncode == 1 and "broken.png" in r.stderr and "Traceback" not in r.stderr
    r = _cli("srgan_runtime.cli", "upscale", str(bad), "-o", str(tmp_path / "o.png"),
             "--model", "no-such-model")
    assert r.returncode == 2 and "no such file, run folder or bundled model" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    with pytest.raises(UserError, match="unknown model type"):
        describe(bad)


def test_a_foreign_checkpoint_without_torch_says_what_to_install(tmp_path: Path) -> None:
    ckpt = tmp_path / "RealESRGAN_x4plus.pth"
    ckpt.write_bytes(b"PK\x03\x04 not opened: torch is missing")
    r = _cli("srgan_runtime.cli", "models", str(ckpt))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "need torch and spandrel" in r.stderr and "[torch,spandrel]" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("prog", ["srgan_train.cli", "srgan_export.cli"])
def test_training_and_export_say_torch_is_needed(prog: str) -> None:
    r = _cli(prog, "--help")
    assert r.returncode == 2
    assert r.stderr.strip().endswith("(srrun runs ONNX models without torch)")
    assert len(r.stderr.strip().splitlines()) == 1


@needs_ort
def test_onnx_path_matches_the_stored_pytorch_reference() -> None:
    """The bundled ONNX file in ONNX Runtime against the bundled generator's PyTorch fp32
    output, stored when the ONNX file was made (tests/data/reference)."""
    from srgan_runtime import Upscaler

    up = Upscaler(onnx_variant(bundled_models()["default"]), backend="onnxruntime", tile=0)
    out = up.upscale(_lr())
    with Image.open(REF / "lr_default_x4_torch_fp32.png") as im:
        ref = np.asarray(im)
    assert out.shape == ref.shape
    assert psnr(out, ref) >= 55.0
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (torch-free environment)")
def test_stored_reference_is_still_what_pytorch_computes() -> None:
    from srgan_runtime import Upscaler

    out = Upscaler("default", backend="torch", device="cpu", tile=0).upscale(_lr())
    with Image.open(REF / "lr_default_x4_torch_fp32.png") as im:
        ref = np.asarray(im)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


@needs_ort
def test_serve_app_without_torch() -> None:
    """`srrun serve`'s app with the bundled default through its ONNX copy, torch hidden."""
    if importlib.util.find_spec("flask") is None:
        pytest.skip("the [serve] extra (flask, waitress) is not installed")
    r = _python(
        "import io, numpy as np; from PIL import Image\n"
        "from srgan_runtime.serve.app import ServeConfig, create_app\n"
        "from srgan_runtime.settings import UpscaleSettings\n"
        "app = create_app(ServeConfig(models=('default',), "
        "upscale=UpscaleSettings(backend='onnxruntime')))\n"
        "buf = io.BytesIO(); Image.fromarray(np.full((20, 24, 3), 99, np.uint8)).save(buf, 'PNG')\n"
        "r = app.test_client().post('/api/upscale', data={'image': (io.BytesIO(buf.getvalue()),"
        " 'a.png')}, content_type='multipart/form-data')\n"
        "import sys; assert 'torch' not in [m for m in sys.modules if sys.modules[m]]\n"
        "print(r.status_code, Image.open(io.BytesIO(r.data)).size)\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[-2] == "200 (96, 80)"
