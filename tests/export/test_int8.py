"""INT8: post-training quantization (srgan_export.quantize), its CLI, the bundled INT8 copies and
their quality against HR. Parity with PyTorch per backend is in test_runtime (support table)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import data_root, image_set
from PIL import Image

from srgan_export.quantize import (
    CalibrationOptions,
    calibration_batches,
    calibration_problem,
    float_nodes,
)
from srgan_runtime import Upscaler, open_backend
from srgan_runtime.core.errors import UserError
from srgan_runtime.core.modelinfo import bundled_models, onnx_variant


def run_cli(tool: str, *args: str) -> subprocess.CompletedProcess:
    module = {"srexport": "srgan_export.cli", "srrun": "srgan_runtime.cli"}[tool]
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, timeout=600)


def _textures(folder: Path, n: int, size: tuple[int, int] = (96, 128)) -> Path:
    from srgan_runtime.core.synth import texture

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(texture(rng, *size)).save(folder / f"t{i}.png")
    return folder


def test_float_nodes_are_found_by_the_graph_shape() -> None:
    """The bicubic skip (Pad, depthwise Conv, DepthToSpace), the final Add and the input
    convolution stay float in every bundled model, whatever the exporter named them."""
    import onnx

    for name, gen in bundled_models().items():
        model = onnx.load(str(onnx_variant(gen)))
        kept = float_nodes(model)
        by_name = {n.name: n for n in model.graph.node}
        ops = sorted(by_name[k].op_type for k in kept)
        assert ops == ["Add", "Conv", "Conv", "DepthToSpace", "Pad"], (name, ops)
        final = next(n for n in model.graph.node if model.graph.output[0].name in n.output)
        assert final.name in kept
        assert not any(by_name[k].op_type == "PRelu" for k in kept)


def test_calibration_crops(tmp_path: Path) -> None:
    folder = _textures(tmp_path / "train", 3)
    (folder / "broken.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(folder / "tiny.png")  # < scale
    crops = calibration_batches(folder, 4, CalibrationOptions(count=7, size=16))
    assert len(crops) == 7  # cycling over the 3 usable files; the broken and the tiny refused
    assert all(c.shape == (1, 3, 16, 16) and c.dtype == np.float32 for c in crops)
    assert min(c.min() for c in crops) >= 0.0 and max(c.max() for c in crops) <= 1.0
    # Small images are taken whole; the same seed gives the same crops.
    whole = calibration_batches(folder, 4, CalibrationOptions(count=3, size=64))
    assert {c.shape for c in whole} == {(1, 3, 24, 32)}
    again = calibration_batches(folder, 4, CalibrationOptions(count=3, size=64))
    assert all(np.array_equal(a, b) for a, b in zip(whole, again, strict=True))
    with pytest.raises(UserError, match="no images"):
        calibration_batches(_textures(tmp_path / "empty", 0), 4)
    with pytest.raises(UserError, match="not found"):
        calibration_batches(tmp_path / "missing", 4)


def test_evaluation_sets_are_refused_for_calibration(tmp_path: Path) -> None:
    assert calibration_problem(tmp_path / "T91" / "HR") is None
    for name in ("Set5", "set14", "BSD100"):
        problem = calibration_problem(tmp_path / name / "HR")
        assert problem and "evaluation set" in problem and "training images" in problem


def test_int8_cli_refusals(generator_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    evalset = _textures(tmp_path / "Set14" / "HR", 1)
    cases = [
        (["--int8", "--calibration", str(evalset)], "evaluation set set14"),
        (["--int8", "--fp16", "--calibration", str(_textures(tmp_path / "t", 1))],
         "exclude each other"),
        (["--calibration", str(tmp_path / "t")], "--calibration is for --int8"),
        (["--int8", "--data", str(tmp_path / "nodata")], "--int8 needs --calibration DIR"),
    ]
    for extra, message in cases:
        r = run_cli("srexport", "onnx", str(generator_file), "-o", str(out), *extra)
        assert r.returncode == 2, (extra, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not out.exists()


def test_int8_export_runs_in_both_backends_and_auto_picks_it(generator_file: Path,
                                                            tmp_path: Path) -> None:
    from srgan_export import OnnxExportOptions, export_onnx

    res = export_onnx(generator_file, tmp_path / "q.onnx", OnnxExportOptions(
        int8=True, calibration=_textures(tmp_path / "train", 6), calibration_count=12,
        data_dir=data_root()))
    assert res.info.precision == "int8" and res.parity is not None and res.parity.passed
    assert res.ops["QuantizeLinear"] > 0 and len(res.kept_float) == 5
    auto = open_backend(res.path, "auto", "cpu")
    assert auto.precision == "int8" and "the file's" in auto.choice
    with pytest.raises(UserError, match="an INT8 file computes in int8"):
        open_backend(res.path, "onnxruntime", "cpu", "fp32")
    with pytest.raises(UserError, match="srexport onnx --int8"):
        open_backend(generator_file, "torch", "cpu", "int8")


def test_bundled_int8_copy_runs_with_precision_int8(tmp_path: Path) -> None:
    up = Upscaler("default", precision="int8", device="cpu", tile=0)
    assert up.backend.precision == "int8" and up.backend.info.path.endswith("default.int8.onnx")
    src = tmp_path / "in.png"
    Image.fromarray(np.full((20, 24, 3), 128, np.uint8)).save(src)
    r = run_cli("srrun", "upscale", str(src), "-o", str(tmp_path / "out.png"),
                "--precision", "int8")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "out.png").size == (96, 80)
    assert "int8" in r.stderr.splitlines()[0], r.stderr  # the first line states the choice


@pytest.mark.data
@pytest.mark.parametrize("set_name", ["Set5", "Set14"])
def test_bundled_int8_loses_at_most_a_tenth_of_a_db_against_hr(set_name: str) -> None:
    """The issue's quality goal for INT8 (<= 0.1 dB loss against HR), on the bundled default
    in OpenVINO (falling back to ONNX Runtime where OpenVINO is absent); BSD100 is in
    benchmarks/int8.py."""
    from srgan_train.evaluate import evaluate, load_eval_set

    pairs, _ = load_eval_set(image_set(set_name), 4)
    scores = {}
    for precision in ("fp32", "int8"):
        up = Upscaler("default", precision=precision, device="cpu", tile=0)
        scores[precision] = evaluate(pairs, 4, up.upscale).mean()
    loss = scores["fp32"]["psnr"] - scores["int8"]["psnr"]
    print(f"{set_name}: fp32 {scores['fp32']['psnr']:.3f} dB, int8 {scores['int8']['psnr']:.3f}"
          f" dB, loss {loss:.3f} dB; SSIM {scores['fp32']['ssim']:.4f} -> "
          f"{scores['int8']['ssim']:.4f}")
    assert loss <= 0.1
    assert scores["fp32"]["ssim"] - scores["int8"]["ssim"] <= 0.002
