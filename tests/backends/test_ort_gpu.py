"""ONNX Runtime on the GPU, against a recording fake ``onnxruntime`` (this machine's build has
no GPU providers): provider options, the device index, the no-silent-CPU-fallback check and
IO binding."""

from __future__ import annotations

import enum
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from srgan_runtime.backends.onnxrt import OrtBackend, device_index, gpu_providers
from srgan_runtime.core.errors import UserError
from srgan_runtime.core.modelinfo import ModelInfo, describe

ONNX = Path(__file__).resolve().parents[2] / "runtime" / "models" / "x2.onnx"
GPU = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def fake_onnxruntime(available: list[str], active: list[str] | None = None):
    """``active``: what sessions report after creation (None: what was asked for)."""
    ort = types.ModuleType("onnxruntime")
    ort.calls = []
    ort.get_available_providers = lambda: list(available)
    ort.preload_dlls = lambda: ort.calls.append(("preload_dlls",))
    ort.GraphOptimizationLevel = enum.IntEnum(
        "GraphOptimizationLevel", ["ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"])
    ort.ExecutionMode = enum.IntEnum("ExecutionMode", ["ORT_SEQUENTIAL", "ORT_PARALLEL"])
    ort.SessionOptions = types.SimpleNamespace

    class Binding:
        def __init__(self) -> None:
            self.x = None

        def bind_cpu_input(self, name, x) -> None:
            ort.calls.append(("bind_cpu_input", name, x.shape))
            self.x = x

        def bind_output(self, name, device, device_id) -> None:
            ort.calls.append(("bind_output", name, device, device_id))

        def copy_outputs_to_cpu(self):
            return [self.x.repeat(2, axis=2).repeat(2, axis=3)]

    class Session:
        def __init__(self, path, so, providers) -> None:
            ort.calls.append(("InferenceSession", providers))
            names = [p if isinstance(p, str) else p[0] for p in providers]
            self._active = active if active is not None else names

        def get_providers(self):
            return list(self._active)

        def get_inputs(self):
            return [types.SimpleNamespace(name="lr")]

        def get_outputs(self):
            return [types.SimpleNamespace(name="sr")]

        def io_binding(self):
            return Binding()

        def run_with_iobinding(self, io) -> None:
            ort.calls.append(("run_with_iobinding",))

        def run(self, names, feeds):
            raise AssertionError("session.run on the GPU path: IO binding expected")

    ort.InferenceSession = Session
    return ort


def test_device_index() -> None:
    assert device_index("cuda") == 0 and device_index("cuda:3") == 3
    with pytest.raises(UserError, match="cuda:N"):
        device_index("cuda:x")


def test_provider_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    info = describe(ONNX)
    (trt_name, trt), (cuda_name, cuda), (cpu, _) = gpu_providers(info, GPU, 1, (8, 128))
    assert (trt_name, cuda_name, cpu) == tuple(GPU)
    cache = str(tmp_path / "srgan-toolkit" / "onnxruntime-trt")
    assert trt["trt_engine_cache_enable"] and trt["trt_engine_cache_path"] == cache
    assert trt["trt_timing_cache_enable"] and trt["trt_timing_cache_path"] == cache
    assert trt["trt_fp16_enable"] is False  # precision comes from the file
    assert trt["trt_profile_min_shapes"] == "lr:1x3x16x16"
    assert trt["trt_profile_opt_shapes"] == trt["trt_profile_max_shapes"] == "lr:8x3x128x128"
    assert trt["device_id"] == cuda["device_id"] == 1
    # Unknown tiles: srexport trt's default profile; a fixed-shape file: no profile at all.
    assert gpu_providers(info, GPU, 0)[0][1]["trt_profile_max_shapes"] == "lr:4x3x512x512"
    fixed = ModelInfo(scale=2, static_shape="1,64,64", input_name="lr")
    assert "trt_profile_min_shapes" not in gpu_providers(fixed, GPU, 0)[0][1]
    only_cuda = gpu_providers(info, ["CUDAExecutionProvider", "CPUExecutionProvider"], 0)
    assert [p for p, _ in only_cuda] == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_gpu_session_uses_the_device_and_io_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    ort = fake_onnxruntime(GPU)
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    backend = OrtBackend(describe(ONNX), "cuda:1", tile_hint=(None, 64))
    asked = next(c[1] for c in ort.calls if c[0] == "InferenceSession")
    assert [p[0] for p in asked] == GPU and asked[0][1]["device_id"] == 1
    assert asked[0][1]["trt_profile_max_shapes"] == "lr:4x3x64x64"  # batch: CUDA's default
    assert ("preload_dlls",) in ort.calls
    x = np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32)
    np.testing.assert_array_equal(backend.run_float(x), x.repeat(2, axis=2).repeat(2, axis=3))
    assert ("bind_output", "sr", "cuda", 1) in ort.calls and ("run_with_iobinding",) in ort.calls


def test_no_silent_cpu_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime",
                        fake_onnxruntime(GPU, active=["CPUExecutionProvider"]))
    with pytest.raises(UserError, match="started no GPU provider"):
        OrtBackend(describe(ONNX), "cuda")
    monkeypatch.setitem(sys.modules, "onnxruntime", fake_onnxruntime(["CPUExecutionProvider"]))
    with pytest.raises(UserError, match="no CUDA provider"):
        OrtBackend(describe(ONNX), "cuda")
