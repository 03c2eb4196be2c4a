"""ONNX export: dynamic shapes, metadata, fp32/fp16 gates, opsets, static shapes, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import data_root

from srgan_export import (
    Gate,
    OnnxExportOptions,
    ParityError,
    compare_outputs,
    export_onnx,
    verify_file,
)
from srgan_runtime.core.errors import UserError
from srgan_runtime.core.files import file_sha256
from srgan_runtime.core.modelinfo import describe as read_onnx_info
from srgan_train.checkpoint import load_generator


def _opts(**kw) -> OnnxExportOptions:
    return OnnxExportOptions(data_dir=data_root(), **kw)


def _torch(gen: Path, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return load_generator(gen).model(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def fp32_onnx(generator_file: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return export_onnx(generator_file, out, _opts())


def test_fp32_export_passes_its_gate_and_is_minimal(fp32_onnx) -> None:
    res = fp32_onnx
    assert res.parity is not None and res.parity.passed
    assert res.parity.worst_psnr >= 60 and res.parity.finite
    assert len(res.parity.cases) >= 4
    assert set(res.ops) <= {"Conv", "PRelu", "Add", "DepthToSpace", "Pad"}
    model = onnx.load(str(res.path))
    onnx.checker.check_model(model, full_check=True)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("lr", "sr")
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))


@pytest.mark.parametrize("shape", [(1, 3, 7, 9), (3, 3, 17, 5), (2, 3, 1, 1), (5, 3, 32, 33)])
def test_dynamic_batch_and_odd_sizes(fp32_onnx, generator_file: Path, shape) -> None:
    sess = ort.InferenceSession(str(fp32_onnx.path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    y = sess.run(None, {"lr": x})[0]
    assert y.shape == (shape[0], 3, shape[2] * 4, shape[3] * 4)
    assert np.abs(y - _torch(generator_file, x)).max() < 1e-5


def test_metadata_round_trip(fp32_onnx, generator_file: Path) -> None:
    info = read_onnx_info(fp32_onnx.path)
    assert info == fp32_onnx.info
    assert (info.scale, info.preset, info.precision, info.channels) == (4, "tiny", "fp32", 3)
    assert (info.value_range, info.colour_order, info.layout) == ("0-1", "RGB", "NCHW")
    assert info.min_input_size == 1 and info.input_multiple == 1 and info.receptive_radius > 0
    assert info.source_sha256 == file_sha256(generator_file)
    assert info.toolkit_version and info.opset == 18 and info.static is None


def test_fp16_export_keeps_fp32_io_and_passes_its_gate(generator_file: Path,
                                                       tmp_path: Path) -> None:
    res = export_onnx(generator_file, tmp_path / "h.onnx", _opts(fp16=True))
    assert res.parity.passed and res.parity.worst_psnr >= 45
    assert res.parity.worst_ssim is not None and res.parity.worst_ssim >= 0.999
    model = onnx.load(str(res.path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    kinds = [i.data_type for i in model.graph.initializer]
    assert kinds.count(onnx.TensorProto.FLOAT16) > kinds.count(onnx.TensorProto.FLOAT)
    # The bicubic skip (Pad -> depthwise Conv) keeps FP32 weights.
    pad = next(n for n in model.graph.node if n.op_type == "Pad")
    skip_conv = next(n for n in model.graph.node if n.op_type == "Conv" and
                     pad.output[0] in n.input)
    init = {i.name: i for i in model.graph.initializer}
    assert init[skip_conv.input[1]].data_type == onnx.TensorProto.FLOAT
    assert read_onnx_info(res.path).precision == "fp16"


def test_batchnorm_model_exports_folded(bn_generator_file: Path, tmp_path: Path) -> None:
    res = export_onnx(bn_generator_file, tmp_path / "seed.onnx", _opts())
    assert res.parity.passed
    assert "BatchNormalization" not in res.ops
    assert read_onnx_info(res.path).scale == 2


@pytest.mark.parametrize("opset", [17, 20])
def test_opsets(generator_file: Path, tmp_path: Path, opset: int) -> None:
    res = export_onnx(generator_file, tmp_path / f"o{opset}.onnx", _opts(opset=opset))
    model = onnx.load(str(res.path))
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {opset}
    assert res.parity.passed


def test_unsupported_opset(generator_file: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="opset 16 is not supported"):
        export_onnx(generator_file, tmp_path / "x.onnx", _opts(opset=16))
    assert not (tmp_path / "x.onnx").exists()


def test_static_shape(generator_file: Path, tmp_path: Path) -> None:
    res = export_onnx(generator_file, tmp_path / "s.onnx", _opts(static=(2, 16, 24)))
    assert res.parity.passed and res.info.static == (2, 16, 24)
    model = onnx.load(str(res.path))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 3, 16, 24]
    sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception):  # noqa: B017 - ORT raises its own error types
        sess.run(None, {"lr": np.zeros((1, 3, 16, 24), np.float32)})


def test_failing_gate_leaves_no_file(generator_file: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Gate, "for_precision", classmethod(lambda cls, p: cls(500.0)))
    out = tmp_path / "never.onnx"
    with pytest.raises(ParityError) as info:
        export_onnx(generator_file, out, _opts())
    assert not info.value.report.passed
    assert not out.exists() and not list(tmp_path.iterdir())


def test_nan_output_fails_any_gate() -> None:
    ref = np.zeros((1, 3, 16, 16))
    bad = ref.copy()
    bad[0, 0, 3, 3] = np.nan
    case = compare_outputs("nan", ref, bad)
    assert not case.finite and case.max_abs == float("inf")


def test_existing_output_and_bad_checkpoints(generator_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"keep me")
    with pytest.raises(UserError, match="exists"):
        export_onnx(generator_file, out, _opts())
    assert out.read_bytes() == b"keep me"
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match=r"bad\.safetensors"):
        export_onnx(bad, tmp_path / "n.onnx", _opts())
    # Checked before the export: a path inside a file can never be written.
    with pytest.raises(UserError, match="is a file, not a folder"):
        export_onnx(generator_file, out / "n.onnx", _opts())


def test_verify_foreign_onnx_needs_scale(fp32_onnx, generator_file: Path, tmp_path: Path) -> None:
    model = onnx.load(str(fp32_onnx.path))
    del model.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(model, str(foreign))
    with pytest.raises(UserError, match="pass --scale"):
        verify_file(foreign, generator_file, data_dir=data_root())
    report = verify_file(foreign, generator_file, scale=4, data_dir=data_root())
    assert report.passed
    with pytest.raises(UserError, match="x2"):
        verify_file(foreign, generator_file, scale=2, data_dir=data_root())
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx at all")
    with pytest.raises(UserError, match=r"junk\.onnx"):
        verify_file(junk, generator_file, scale=4, data_dir=data_root())


def test_engine_manifest_io_comes_from_the_onnx_file(fp32_onnx) -> None:
    from srgan_export.trt_engine import onnx_io

    io = onnx_io(fp32_onnx.path)
    assert io["lr"]["kind"] == "input" and io["lr"]["dtype"] == "float32"
    assert io["sr"]["kind"] == "output" and io["sr"]["shape"][1] == 3
