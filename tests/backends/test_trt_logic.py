"""TensorRT export logic that needs no TensorRT: shapes, precision route, manifest, cache key,
compatibility. The build/run tests at the end are marked ``trt`` and need TensorRT + CUDA."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from srgan_export.trt_engine import (
    BuildOptions,
    Profile,
    cache_key,
    compute_profile,
    parse_shape,
    parse_version,
    plan_precision,
)
from srgan_runtime.backends.tensorrt import check_compatible
from srgan_runtime.core.errors import UserError
from srgan_runtime.core.manifest import Manifest, manifest_path, read_manifest
from srgan_runtime.core.modelinfo import ModelInfo

INFO = ModelInfo(scale=4, preset="tiny", precision="fp16")


def test_parse_shape() -> None:
    assert parse_shape("4x128x96", 3) == (4, 3, 128, 96)
    assert parse_shape("1,3,16,16", 3) == (1, 3, 16, 16)
    for bad in ("4x128", "ax1x1", "0x16x16", "1x1x16x16"):
        with pytest.raises(UserError):
            parse_shape(bad, 3)


def test_default_profile_from_metadata() -> None:
    p = compute_profile(INFO)
    assert p.min == (1, 3, 16, 16) and p.opt == (4, 3, 192, 192) and p.max == (8, 3, 512, 512)
    odd = ModelInfo(scale=4, min_input_size=20, input_multiple=8)
    q = compute_profile(odd)
    assert q.min == (1, 3, 24, 24) and all(s % 8 == 0 for s in q.opt[2:] + q.max[2:])


def test_explicit_profile_widens_defaults_and_validates() -> None:
    p = compute_profile(INFO, opt_s="16x600x600")
    assert p.max[0] >= 16 and p.max[2] >= 600
    with pytest.raises(UserError, match="min <= opt <= max"):
        compute_profile(INFO, min_s="1x64x64", opt_s="1x32x32", max_s="1x128x128")
    with pytest.raises(UserError, match="multiple"):
        compute_profile(ModelInfo(scale=4, input_multiple=8), opt_s="1x30x32")


def test_static_profiles() -> None:
    p = compute_profile(INFO, static="2x64x64")
    assert p.min == p.opt == p.max == (2, 3, 64, 64)
    fixed = ModelInfo(scale=4, static_shape="1,96,96")
    assert compute_profile(fixed).opt == (1, 3, 96, 96)
    with pytest.raises(UserError, match="fixed"):
        compute_profile(fixed, static="1x64x64")
    with pytest.raises(UserError, match="do not apply"):
        compute_profile(fixed, opt_s="1x96x96")


def test_precision_routes_for_trt_10_and_11() -> None:
    assert parse_version("10.12.0.36") == (10, 12, 0, 36)
    # FP16 ONNX: strongly typed everywhere.
    for v in ("10.3.0", "10.13.1", "11.1.0"):
        p = plan_precision(v, "fp16", True)
        assert p.precision == "fp16" and p.strongly_typed and not p.builder_flag_fp16
    # FP32 ONNX + FP16 wanted: BuilderFlag.FP16 on 10.x (deprecated from 10.12), refused on 11.
    old = plan_precision("10.3.0", "fp32", True)
    assert old.builder_flag_fp16 and not old.strongly_typed and "deprecated" not in old.note
    assert "deprecated" in plan_precision("10.12.0", "fp32", True).note
    with pytest.raises(UserError, match="srexport onnx --fp16"):
        plan_precision("11.0.0", "fp32", True)
    assert plan_precision("11.1.0", "fp32", False).precision == "fp32"
    with pytest.raises(UserError, match="too old"):
        plan_precision("8.6.1", "fp16", True)
    with pytest.raises(UserError, match="FP32 ONNX"):
        plan_precision("10.8.0", "fp16", False)


def test_cache_key_is_stable_and_sensitive() -> None:
    prof = compute_profile(INFO)
    opts = BuildOptions()
    args = ("ab" * 32, "10.13.0", "NVIDIA H100", "9.0", "fp16", prof, opts)
    assert cache_key(*args) == cache_key(*args)
    changed = [
        ("cd" * 32, *args[1:]),
        (args[0], "11.1.0", *args[2:]),
        (*args[:2], "NVIDIA H200", *args[3:]),
        (*args[:3], "8.9", *args[4:]),
        (*args[:4], "fp32", *args[5:]),
        (*args[:5], compute_profile(INFO, static="1x64x64"), opts),
        (*args[:6], BuildOptions(opt_level=5)),
    ]
    assert len({cache_key(*a) for a in changed} | {cache_key(*args)}) == len(changed) + 1


def _manifest(**kw) -> Manifest:
    base = dict(tensorrt_version="10.13.0", gpu_name="NVIDIA H100 80GB HBM3",
                compute_capability="9.0", precision="fp16", strongly_typed=True,
                profile=Profile((1, 3, 16, 16), (4, 3, 192, 192), (8, 3, 512, 512)).to_dict(),
                scale=4, io={"lr": {"dtype": "float32"}, "sr": {"dtype": "float32"}},
                onnx_sha256="00" * 32, build_options={"opt_level": 3})
    base.update(kw)
    return Manifest(**base)


def test_manifest_round_trip_and_sidecar(tmp_path: Path) -> None:
    m = _manifest()
    engine = tmp_path / "m.plan"
    engine.write_bytes(b"\x00plan")
    manifest_path(engine).write_text(m.to_json())
    assert manifest_path(engine).name == "m.plan.json"
    assert read_manifest(engine) == m
    assert engine.read_bytes() == b"\x00plan"  # nothing prepended to the plan
    manifest_path(engine).write_text('{"format": "other"}')
    with pytest.raises(UserError, match="not an engine manifest"):
        read_manifest(engine)
    manifest_path(engine).write_text("{broken")
    with pytest.raises(UserError, match="not valid JSON"):
        read_manifest(engine)


@pytest.mark.parametrize(("field", "value", "words"), [
    ("scale", "four", "scale='four'"),
    ("scale", 0, "scale=0"),
    ("precision", "int4", "precision='int4'"),
    ("profile", {"min": [1, 3, 16], "opt": [1, 3, 16, 16], "max": [1, 3, 16, 16]}, "profile min"),
    ("profile", {"min": [1, 3, 16, 16]}, "lacks min/opt/max"),
    ("model", {"receptive_radius": "-3"}, "receptive_radius='-3'"),
])
def test_manifest_fields_are_validated(field: str, value, words: str, tmp_path: Path) -> None:
    engine = tmp_path / "m.plan"
    engine.write_bytes(b"\x00plan")
    doc = json.loads(_manifest().to_json())
    doc[field] = value
    manifest_path(engine).write_text(json.dumps(doc))
    with pytest.raises(UserError, match=re.escape(words)):
        read_manifest(engine)
    manifest_path(engine).unlink()
    with pytest.raises(UserError, match="no manifest"):
        read_manifest(engine)


def test_compatibility_check_names_every_mismatch() -> None:
    m = _manifest()
    check_compatible(m, "10.13.0", "NVIDIA H100 80GB HBM3", "9.0", "fp16")
    with pytest.raises(UserError) as e:
        check_compatible(m, "11.1.0", "NVIDIA A100", "8.0", "fp32")
    msg = str(e.value)
    assert "TensorRT 10.13.0, this is 11.1.0" in msg
    assert "compute capability 9.0" in msg and "8.0" in msg
    assert "precision is fp16, fp32 was asked for" in msg and "srexport trt" in msg
    with pytest.raises(UserError, match="built on NVIDIA H100"):
        check_compatible(m, "10.13.0", "NVIDIA H200", "9.0")


def test_build_options_validate() -> None:
    with pytest.raises(UserError, match="opt-level"):
        BuildOptions(opt_level=7).validate()
    with pytest.raises(UserError, match="workspace"):
        BuildOptions(workspace_gib=0).validate()


def _has_trt_and_cuda() -> bool:
    if importlib.util.find_spec("tensorrt") is None:
        return False
    import torch

    return torch.cuda.is_available()


needs_trt = pytest.mark.skipif(not _has_trt_and_cuda(),
                               reason="needs TensorRT and a CUDA GPU (not on this machine)")


@pytest.mark.trt
@needs_trt
@pytest.mark.parametrize("fp16", [False, True])
def test_build_run_and_cache(generator_file: Path, tmp_path: Path, fp16: bool) -> None:
    from conftest import data_root

    from srgan_export import OnnxExportOptions, export_onnx
    from srgan_export.trt_engine import build_engine, check_engine, trt_environment
    from srgan_runtime.core.modelinfo import describe as read_onnx_info

    onnx_path = tmp_path / "m.onnx"
    export_onnx(generator_file, onnx_path, OnnxExportOptions(fp16=fp16, data_dir=data_root()))
    info = read_onnx_info(onnx_path)
    env = trt_environment()
    prof = compute_profile(info, min_s="1x8x8", opt_s="2x64x64", max_s="4x160x160")
    opts = BuildOptions(fp16=fp16, workspace_gib=2)
    cache = tmp_path / "cache"
    first = build_engine(onnx_path, tmp_path / "m.plan", info, prof, opts, cache_dir=cache,
                         timing_cache=tmp_path / "timing.cache", env=env)
    assert not first.from_cache and (tmp_path / "timing.cache").stat().st_size > 0
    second = build_engine(onnx_path, tmp_path / "m2.plan", info, prof, opts, cache_dir=cache,
                          env=env)
    assert second.from_cache
    report = check_engine(tmp_path / "m.plan", onnx_path, info, env, ckpt=generator_file,
                          data_dir=data_root(), cache_dir=cache)
    assert report.passed, report.lines()
    assert read_manifest(tmp_path / "m.plan").parity["passed"]
