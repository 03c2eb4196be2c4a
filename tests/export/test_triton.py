"""`srexport triton`: the repository layout, and config.pbtxt parsed by protobuf's text format
against the fields of Triton's ModelConfig that it uses (names and types as in Triton's
model_config.proto; a typo or a wrong type fails the parse). Triton itself cannot run here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from srgan_runtime.core.errors import UserError
from srgan_runtime.core.modelinfo import ModelInfo

ONNX = Path(__file__).resolve().parents[2] / "runtime" / "models" / "x2.onnx"


def _model_config_class():
    """A message class for the subset of ``inference.ModelConfig`` that the writer uses."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="triton_subset.proto", package="inference",
                                             syntax="proto3")

    def enum(name, values):
        e = fdp.enum_type.add(name=name)
        for i, v in enumerate(values):
            e.value.add(name=v, number=i)

    def message(name, fields, parent=None):
        m = (parent.nested_type if parent is not None else fdp.message_type).add(name=name)
        for i, (fname, ftype, label, type_name) in enumerate(fields, 1):
            f = m.field.add(name=fname, number=i, type=ftype, label=label)
            if type_name:
                f.type_name = type_name
        return m

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    enum("DataType", ["TYPE_INVALID", "TYPE_BOOL", "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32",
                      "TYPE_UINT64", "TYPE_INT8", "TYPE_INT16", "TYPE_INT32", "TYPE_INT64",
                      "TYPE_FP16", "TYPE_FP32", "TYPE_FP64", "TYPE_STRING", "TYPE_BF16"])
    io = [("name", F.TYPE_STRING, opt, ""), ("data_type", F.TYPE_ENUM, opt, ".inference.DataType"),
          ("dims", F.TYPE_INT64, rep, "")]
    message("ModelInput", io)
    message("ModelOutput", io)
    group = message("ModelInstanceGroup", [("name", F.TYPE_STRING, opt, ""),
                                           ("kind", F.TYPE_ENUM, opt,
                                            ".inference.ModelInstanceGroup.Kind"),
                                           ("count", F.TYPE_INT32, opt, ""),
                                           ("gpus", F.TYPE_INT32, rep, "")])
    kind = group.enum_type.add(name="Kind")
    for i, v in enumerate(["KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL"]):
        kind.value.add(name=v, number=i)
    message("ModelDynamicBatching", [("preferred_batch_size", F.TYPE_INT32, rep, ""),
                                     ("max_queue_delay_microseconds", F.TYPE_UINT64, opt, "")])
    message("ModelParameter", [("string_value", F.TYPE_STRING, opt, "")])

    def map_entry(parent, name, value_type, value_type_name=""):
        m = parent.nested_type.add(name=name)
        m.options.map_entry = True
        m.field.add(name="key", number=1, type=F.TYPE_STRING, label=opt)
        v = m.field.add(name="value", number=2, type=value_type, label=opt)
        if value_type_name:
            v.type_name = value_type_name

    policy = fdp.message_type.add(name="ModelOptimizationPolicy")
    accs = policy.nested_type.add(name="ExecutionAccelerators")
    acc = accs.nested_type.add(name="Accelerator")
    acc.field.add(name="name", number=1, type=F.TYPE_STRING, label=opt)
    map_entry(acc, "ParametersEntry", F.TYPE_STRING)
    acc.field.add(name="parameters", number=2, type=F.TYPE_MESSAGE, label=rep,
                  type_name=".inference.ModelOptimizationPolicy.ExecutionAccelerators."
                            "Accelerator.ParametersEntry")
    for i, n in enumerate(["gpu_execution_accelerator", "cpu_execution_accelerator"], 1):
        accs.field.add(name=n, number=i, type=F.TYPE_MESSAGE, label=rep,
                       type_name=".inference.ModelOptimizationPolicy.ExecutionAccelerators."
                                 "Accelerator")
    policy.field.add(name="execution_accelerators", number=1, type=F.TYPE_MESSAGE, label=opt,
                     type_name=".inference.ModelOptimizationPolicy.ExecutionAccelerators")
    cfg = message("ModelConfig", [
        ("name", F.TYPE_STRING, opt, ""), ("platform", F.TYPE_STRING, opt, ""),
        ("max_batch_size", F.TYPE_INT32, opt, ""),
        ("input", F.TYPE_MESSAGE, rep, ".inference.ModelInput"),
        ("output", F.TYPE_MESSAGE, rep, ".inference.ModelOutput"),
        ("instance_group", F.TYPE_MESSAGE, rep, ".inference.ModelInstanceGroup"),
        ("dynamic_batching", F.TYPE_MESSAGE, opt, ".inference.ModelDynamicBatching"),
        ("optimization", F.TYPE_MESSAGE, opt, ".inference.ModelOptimizationPolicy"),
        ("backend", F.TYPE_STRING, opt, "")])
    map_entry(cfg, "ParametersEntry", F.TYPE_MESSAGE, ".inference.ModelParameter")
    cfg.field.add(name="parameters", number=20, type=F.TYPE_MESSAGE, label=rep,
                  type_name=".inference.ModelConfig.ParametersEntry")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("inference.ModelConfig"))


def _parse(text: str):
    from google.protobuf import text_format

    return text_format.Parse(text, _model_config_class()())


def test_onnx_repository(tmp_path: Path) -> None:
    from srgan_export.triton import TritonOptions, write_repository

    folder = write_repository(ONNX, tmp_path / "repo", TritonOptions(ort_tensorrt=True))
    assert folder == tmp_path / "repo" / "x2"
    assert (folder / "1" / "model.onnx").read_bytes() == ONNX.read_bytes()
    cfg = _parse((folder / "config.pbtxt").read_text())
    assert (cfg.name, cfg.platform, cfg.max_batch_size) == ("x2", "onnxruntime_onnx", 8)
    assert list(cfg.input[0].dims) == [3, -1, -1] and list(cfg.output[0].dims) == [3, -1, -1]
    assert cfg.input[0].name == "lr" and cfg.output[0].name == "sr"
    assert list(cfg.dynamic_batching.preferred_batch_size) == [1, 2, 4, 8]
    assert cfg.instance_group[0].count == 1
    acc = cfg.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert acc.name == "tensorrt" and acc.parameters["precision_mode"] == "FP32"
    assert cfg.parameters["srgan.scale"].string_value == "2"
    with pytest.raises(UserError, match="exists"):
        write_repository(ONNX, tmp_path / "repo")
    with pytest.raises(UserError, match="model name"):
        write_repository(ONNX, tmp_path / "repo", TritonOptions(name="../evil"))


def test_fixed_shape_and_plan_configs(tmp_path: Path) -> None:
    from srgan_export.triton import TritonOptions, triton_config, write_repository

    static = ModelInfo(scale=4, static_shape="2,128,96", precision="fp16")
    cfg = _parse(triton_config(static, "tile", TritonOptions(kind="cpu")))
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    assert list(cfg.input[0].dims) == [2, 3, 128, 96]
    assert list(cfg.output[0].dims) == [2, 3, 512, 384]

    from test_trt_logic import _manifest

    from srgan_runtime.core.manifest import manifest_path

    plan = tmp_path / "m.plan"
    plan.write_bytes(b"\x00plan")
    m = _manifest(io={"lr": {"dtype": "float32"}, "sr": {"dtype": "float16"}})
    manifest_path(plan).write_text(m.to_json())
    folder = write_repository(plan, tmp_path / "repo")
    cfg = _parse((folder / "config.pbtxt").read_text())
    assert (cfg.platform, cfg.max_batch_size) == ("tensorrt_plan", 8)
    assert list(cfg.input[0].dims) == [3, -1, -1]
    out_type = cfg.DESCRIPTOR.fields_by_name["output"].message_type.fields_by_name["data_type"]
    assert out_type.enum_type.values_by_number[cfg.output[0].data_type].name == "TYPE_FP16"
    assert (folder / "1" / "model.plan").read_bytes() == b"\x00plan"
    with pytest.raises(UserError, match="not generator files"):
        triton_config(ModelInfo(scale=4, format="generator"), "g", TritonOptions())
    assert json.loads(m.to_json())["io"]["sr"]["dtype"] == "float16"


def test_a_typo_would_fail_the_parse() -> None:
    from google.protobuf import text_format

    with pytest.raises(text_format.ParseError):
        _parse('name: "x"\ndynamic_bathing { }\n')
