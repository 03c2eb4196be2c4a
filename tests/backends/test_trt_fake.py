"""The TensorRT build and run sequences against a recording fake ``tensorrt`` (fake_tensorrt.py)
shaped like the 10.0, 10.9+ and 11.x bindings: version branches, failure returns, shared
logger, user-managed activation memory, profile limits. Runs everywhere (no GPU)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from fake_tensorrt import make_tensorrt

from srgan_export.trt_engine import (
    BuildOptions,
    build_engine,
    compute_profile,
)
from srgan_runtime.backends.tensorrt import (
    TrtBackend,
    TrtEnvironment,
    TrtRunner,
    check_compatible,
)
from srgan_runtime.core.errors import UserError
from srgan_runtime.core.manifest import Manifest
from srgan_runtime.core.modelinfo import describe

ONNX = Path(__file__).resolve().parents[2] / "runtime" / "models" / "x2.onnx"
VERSIONS = ("10.0.1", "10.9.0", "11.1.0")


def _env(trt, cc: str = "9.0", gpu: str = "NVIDIA H200") -> TrtEnvironment:
    return TrtEnvironment(trt, trt.__version__, gpu, cc)


def _build(tmp_path: Path, trt, *, fp16: bool = False, options: BuildOptions | None = None,
           timing: Path | None = None, profile: tuple = ("1x8x8", "2x32x32", "2x48x48"),
           env: TrtEnvironment | None = None):
    info = describe(ONNX)
    prof = compute_profile(info, *profile)
    opts = options or BuildOptions(fp16=fp16)
    return build_engine(ONNX, tmp_path / "m.plan", info, prof, opts, timing_cache=timing,
                        cache_dir=tmp_path / "cache", overwrite=True, env=env or _env(trt))


def _built_flags(trt) -> list[str]:
    return next(c for c in trt.calls if c[0] == "builder.build_serialized_network")[1]


@pytest.mark.parametrize("version", VERSIONS)
def test_fp32_engine_clears_tf32_and_types_per_version(tmp_path: Path, version: str) -> None:
    trt = make_tensorrt(version)
    res = _build(tmp_path, trt)
    assert res.manifest.precision == "fp32"
    assert ("config.clear_flag", "TF32") in trt.calls
    assert "TF32" not in _built_flags(trt)
    created = next(c for c in trt.calls if c[0] == "builder.create_network")[1]
    # 11.x: every network is strongly typed (the flag is kept for compatibility); 10.x fp32 is not.
    assert created == (1 << 1 if version.startswith("11") else 0)
    trt2 = make_tensorrt(version)
    _build(tmp_path, trt2, options=BuildOptions(fp16=False, tf32=True))
    assert "TF32" in _built_flags(trt2)


def test_fp32_onnx_as_fp16_uses_the_flag_on_10_and_is_refused_on_11(tmp_path: Path) -> None:
    trt = make_tensorrt("10.0.1")
    assert _build(tmp_path, trt, fp16=True).manifest.precision == "fp16"
    assert "FP16" in _built_flags(trt)
    trt11 = make_tensorrt("11.1.0")
    with pytest.raises(UserError, match="srexport onnx --fp16"):
        _build(tmp_path, trt11, fp16=True)
    assert not any(c[0] == "Builder" for c in trt11.calls)  # refused before any work


@pytest.mark.parametrize("version", VERSIONS)
def test_hardware_compat_levels(tmp_path: Path, version: str) -> None:
    trt = make_tensorrt(version)
    _build(tmp_path, trt, options=BuildOptions(fp16=False, hardware_compat="ampere_plus"))
    assert next(c for c in trt.calls if c[0] == "builder.build_serialized_network")[2] == \
        "AMPERE_PLUS"
    trt = make_tensorrt(version)
    opts = BuildOptions(fp16=False, hardware_compat="same_cc")
    if version == "10.0.1":  # the enum member arrived in 10.9: a clear line, not AttributeError
        with pytest.raises(UserError, match=r"needs TensorRT 10\.9 or newer; this is 10\.0\.1"):
            _build(tmp_path, trt, options=opts)
    else:
        res = _build(tmp_path, trt, options=opts)
        assert res.manifest.build_options["hardware_compat"] == "same_cc"


def test_hardware_compatible_engines_run_where_their_level_says() -> None:
    def manifest(level: str) -> Manifest:
        return Manifest(tensorrt_version="10.13.0", gpu_name="NVIDIA H100 80GB HBM3",
                        compute_capability="9.0", precision="fp16", strongly_typed=True,
                        profile={"min": [1, 3, 8, 8], "opt": [1, 3, 8, 8], "max": [1, 3, 8, 8]},
                        scale=4, io={}, onnx_sha256="0" * 64,
                        build_options={"hardware_compat": level})

    check_compatible(manifest("ampere_plus"), "10.13.0", "NVIDIA A10", "8.6")
    check_compatible(manifest("ampere_plus"), "10.13.0", "NVIDIA RTX 5090", "12.0")
    with pytest.raises(UserError, match="Ampere or newer"):
        check_compatible(manifest("ampere_plus"), "10.13.0", "Tesla T4", "7.5")
    check_compatible(manifest("same_cc"), "10.13.0", "NVIDIA H200", "9.0")
    with pytest.raises(UserError, match=r"compute capability 9\.0"):
        check_compatible(manifest("same_cc"), "10.13.0", "NVIDIA L40S", "8.9")
    with pytest.raises(UserError, match="same_cc"):  # no level: the exact GPU
        check_compatible(manifest("none"), "10.13.0", "NVIDIA H200", "9.0")
    with pytest.raises(UserError, match=r"TensorRT 10\.13\.0, this is 10\.14\.0"):
        check_compatible(manifest("ampere_plus"), "10.14.0", "NVIDIA H100 80GB HBM3", "9.0")


@pytest.mark.parametrize("content", [b"\x00garbage", b"TC:10.3.0:7"])
def test_unusable_timing_cache_is_replaced_not_fatal(tmp_path: Path, content: bytes,
                                                     caplog) -> None:
    timing = tmp_path / "timing.cache"
    timing.write_bytes(content)  # corrupt, or from another TensorRT
    trt = make_tensorrt("10.9.0")
    with caplog.at_level(logging.WARNING):
        _build(tmp_path, trt, timing=timing)
    assert "starting a new one" in caplog.text
    assert timing.read_bytes() == b"TC:10.9.0:1"  # a fresh cache, rewritten after the build
    _build(tmp_path, make_tensorrt("10.9.0"), timing=timing,
           options=BuildOptions(fp16=False, opt_level=4))  # reused and grown
    assert timing.read_bytes() == b"TC:10.9.0:2"


def test_timing_cache_none_and_lost_after_build(tmp_path: Path, caplog) -> None:
    timing = tmp_path / "timing.cache"
    with caplog.at_level(logging.WARNING):
        res = _build(tmp_path, make_tensorrt("11.1.0", timing_cache_none=True), timing=timing)
    assert res.engine.is_file() and not timing.exists()
    assert "without one" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # the engine must not be lost to the cache
        res = _build(tmp_path, make_tensorrt("11.1.0", lose_timing_cache=True), timing=timing,
                     options=BuildOptions(fp16=False, opt_level=2))
    assert res.engine.is_file() and not timing.exists()
    assert "no timing cache" in caplog.text


def test_one_logger_for_builder_and_runtime(tmp_path: Path) -> None:
    trt = make_tensorrt("10.9.0")
    env = _env(trt)
    res = _build(tmp_path, trt, env=env)
    TrtRunner(res.engine, env, device="cpu")
    TrtRunner(res.engine, env, device="cpu")
    assert len(trt.loggers) == 1 and trt.warnings == []


@pytest.mark.parametrize("version", VERSIONS)
def test_runner_user_managed_memory_and_output(tmp_path: Path, version: str) -> None:
    trt = make_tensorrt(version)
    env = _env(trt)
    res = _build(tmp_path, trt, env=env)
    runner = TrtRunner(res.engine, env, device="cpu")
    assert ("engine.create_execution_context", "USER_MANAGED") in trt.calls
    rng = np.random.default_rng(0)
    small = rng.random((1, 3, 8, 8), dtype=np.float32)
    big = rng.random((2, 3, 48, 40), dtype=np.float32)
    for x in (small, big, small):
        y = runner(x)
        np.testing.assert_array_equal(y, x.repeat(2, axis=2).repeat(2, axis=3))
    sizes = [c[1] for c in trt.calls if c[0].startswith("context.") and "memory" in c[0]]
    if version == "10.0.1":  # no per-shape size before 10.1: the engine's maximum, once
        assert sizes == [2 * 64 * 48 * 48 * 4]
    else:  # sized for the shape, grown once for the big batch, then kept
        assert sizes == [1 * 64 * 8 * 8 * 4, 2 * 64 * 48 * 40 * 4]
    assert trt.warnings == []


def test_context_creation_failure_is_one_clear_line(tmp_path: Path) -> None:
    trt = make_tensorrt("10.9.0", context_none=True)
    env = _env(trt)
    res = _build(tmp_path, trt, env=env)
    with pytest.raises(UserError, match="could not create an execution context"):
        TrtRunner(res.engine, env, device="cpu")


def test_build_failure_and_foreign_plan(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="failed to build"):
        _build(tmp_path, make_tensorrt("10.9.0", build_fails=True))
    trt = make_tensorrt("10.9.0")
    env = _env(trt)
    res = _build(tmp_path, trt, env=env)
    res.engine.write_bytes(b"not a plan")
    with pytest.raises(UserError, match="could not deserialize"):
        TrtRunner(res.engine, env, device="cpu")


def test_backend_fits_work_to_the_profile(tmp_path: Path) -> None:
    """Tiles under the profile's minimum are padded, batches over its maximum split, and the
    upscaler keeps tiles within its largest side (--tile 0 included)."""
    from srgan_runtime import Upscaler

    trt = make_tensorrt("10.9.0")
    env = _env(trt)
    res = _build(tmp_path, trt, env=env, profile=("1x16x16", "2x32x32", "2x48x48"))
    runner = TrtRunner(res.engine, env, device="cpu")
    backend = TrtBackend(describe(res.engine), runner=runner)
    assert backend.shape_limits.max_side == 48 and backend.shape_limits.max_batch == 2
    rng = np.random.default_rng(1)
    tiles = rng.random((5, 3, 12, 10), dtype=np.float32)  # 5 > 2 and 12x10 < 16x16
    out = backend.run(tiles)
    want = np.rint(tiles.repeat(2, axis=2).repeat(2, axis=3) * 255).astype(np.uint8)
    np.testing.assert_array_equal(out.pixels, want.transpose(0, 2, 3, 1))
    shapes = [c[2] for c in trt.calls if c[0] == "context.set_input_shape"]
    assert shapes == [(2, 3, 16, 16), (2, 3, 16, 16), (1, 3, 16, 16)]

    img = (rng.random((70, 100, 3)) * 255).astype(np.uint8)  # over the largest side 48
    for tile, batch in ((0, None), (256, 8)):
        up = Upscaler(backend=backend, tile=tile, batch=batch, overlap=4, cache=False)
        assert up.tile == 48 and up.batch <= 2
        np.testing.assert_array_equal(up.upscale(img), img.repeat(2, 0).repeat(2, 1))
