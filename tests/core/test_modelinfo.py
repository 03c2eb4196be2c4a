"""``describe`` and ``ModelInfo``: one description for every model format, read without torch
(this file also runs in the torch-free environment)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from srgan_runtime.core.errors import UserError
from srgan_runtime.core.manifest import Manifest, manifest_path
from srgan_runtime.core.modelinfo import (
    ONNX_FORMAT,
    ModelInfo,
    bundled_models,
    describe,
    resolve_generator,
)

pytestmark = pytest.mark.torchfree


def test_props_round_trip_keeps_every_field() -> None:
    info = ModelInfo(scale=2, arch="srgan_generator", preset="large", channels=3, out_channels=1,
                     square_only=True, min_input_size=8, input_multiple=4,
                     receptive_radius=None, static_shape="2,64,64", opset=18)
    props = info.to_props()
    assert props["format"] == ONNX_FORMAT and props["receptive_radius"] == ""
    back = ModelInfo.from_props(props, "m", format="onnx")
    assert back == info and back.static == (2, 64, 64) and not back.dynamic
    with pytest.raises(UserError, match="square_only='maybe' is not True or False"):
        ModelInfo.from_props({**props, "square_only": "maybe"})
    with pytest.raises(UserError, match=r"out_channels=9 is outside 1\.\.4"):
        ModelInfo.from_props({**props, "out_channels": "9"})


def test_files_from_before_out_channels_and_arch_still_read() -> None:
    old = {"format": ONNX_FORMAT, "scale": "4", "channels": "3", "receptive_radius": "40"}
    info = ModelInfo.from_props(old)
    assert (info.out_channels, info.arch, info.receptive_radius) == (3, "srgan_generator", 40)


def test_generator_description_needs_only_the_header() -> None:
    info = describe("default")
    assert info.format == "generator" and info.scale == 4 and info.preset == "large"
    assert info.receptive_radius == 40 and info.precision == "fp32" and info.dynamic
    assert info.precisions == ("fp32", "fp16", "bf16")
    assert "step" in info.extra and "config" not in info.extra
    assert Path(info.path) == bundled_models()["default"]
    with pytest.raises(UserError, match="model is x4, --scale is 2"):
        describe("default", scale=2)


def test_run_folder_and_generator_only_commands(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(UserError, match=r"no generator\.safetensors"):
        describe(run)
    (run / "generator.safetensors").write_bytes(bundled_models()["fast"].read_bytes())
    assert describe(run).preset == "medium"
    onnx_copy = bundled_models()["default"].with_suffix(".onnx")
    with pytest.raises(UserError, match="this needs PyTorch weights"):
        resolve_generator(onnx_copy)


def test_foreign_onnx_is_described_from_its_graph(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 48])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 64, 96])
    node = helper.make_node("Resize", ["input", "", "scales"], ["output"], mode="nearest")
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])
    graph = helper.make_graph([node], "g", [x], [y], initializer=[scales])
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(UserError, match="pass --scale"):
        describe(path)
    info = describe(path, scale=2)
    assert (info.format, info.arch, info.receptive_radius) == ("onnx", "unknown", None)
    assert (info.input_name, info.output_name, info.static, info.opset) == (
        "input", "output", (1, 32, 48), 18)


def test_engine_is_described_from_its_manifest(tmp_path: Path) -> None:
    engine = tmp_path / "m.plan"
    engine.write_bytes(b"opaque")
    props = ModelInfo(scale=4, preset="large", receptive_radius=40).to_props()
    m = Manifest(tensorrt_version="10.9.0", gpu_name="H100", compute_capability="9.0",
                 precision="fp16", strongly_typed=True,
                 profile={"min": [1, 3, 16, 16], "opt": [4, 3, 192, 192],
                          "max": [8, 3, 512, 512]},
                 scale=4, io={}, onnx_sha256="x", build_options={}, model=props)
    manifest_path(engine).write_text(m.to_json())
    info = describe(engine)
    assert (info.format, info.precision, info.scale, info.receptive_radius) == (
        "tensorrt", "fp16", 4, 40)
    assert info.dynamic and info.min_input_size == 16 and info.precisions == ("fp16",)
    assert info.extra["profile_max"] == "8x3x512x512"
    doc = json.loads(manifest_path(engine).read_text())
    doc["profile"]["max"] = doc["profile"]["min"]
    manifest_path(engine).write_text(json.dumps(doc))
    assert describe(engine).static == (1, 16, 16)
    manifest_path(engine).unlink()
    with pytest.raises(UserError, match="no manifest"):
        describe(engine)
