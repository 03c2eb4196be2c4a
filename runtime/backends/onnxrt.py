"""ONNX Runtime backend: an ONNX file on the CPU, or on CUDA / TensorRT execution providers
with the ``[onnx-gpu]`` extra. The precision is the file's: use an fp16 export for fp16."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..core.errors import UserError, first_line
from ..core.files import user_cache_dir
from ..core.lazy import optional
from ..core.modelinfo import ModelInfo
from .base import Backend
from .spec import BackendSpec

log = logging.getLogger(__name__)

OPT_LEVELS = ("basic", "extended", "all")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
# The TensorRT provider's profile when the tiles are not known: as `srexport trt`'s defaults.
DEFAULT_TILE_HINT = (4, 512)


def device_index(device: str) -> int:
    """``cuda`` -> 0, ``cuda:N`` -> N."""
    _, _, index = device.partition(":")
    if index and not index.isdigit():
        raise UserError(f"--device {device}: expected cuda or cuda:N")
    return int(index or 0)


def _shape(name: str, n: int, c: int, side: int) -> str:
    return f"{name}:{n}x{c}x{side}x{side}"


Providers = list[tuple[str, dict[str, Any]]]


def gpu_providers(info: ModelInfo, available: list[str], device_id: int,
                  tile_hint: tuple[int | None, int] | None = None) -> Providers:
    """The GPU execution providers to ask for, with their options: TensorRT first (engine and
    timing caches in the user cache, an optimization profile from the tiles the upscaler will
    send, fp16 only from an fp16 file), then CUDA, then the CPU for what neither takes."""
    batch, side = tile_hint or DEFAULT_TILE_HINT
    batch, side = batch or DEFAULT_TILE_HINT[0], side or DEFAULT_TILE_HINT[1]
    m = max(1, info.input_multiple)
    side = -(-max(side, info.min_input_size, 16) // m) * m
    low = -(-max(info.min_input_size, 16) // m) * m
    out: Providers = []
    if "TensorrtExecutionProvider" in available:
        cache = user_cache_dir("onnxruntime-trt")
        name, c = info.input_name, info.channels
        trt: dict[str, Any] = {
            "device_id": device_id,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
            # The file's types decide: an fp16 export runs in fp16, an fp32 one in fp32.
            "trt_fp16_enable": False,
            "trt_builder_optimization_level": 3,
        }
        if info.static is None:  # a dynamic file: one profile covering the tiles, not one per shape
            trt["trt_profile_min_shapes"] = _shape(name, 1, c, low)
            trt["trt_profile_opt_shapes"] = _shape(name, batch, c, side)
            trt["trt_profile_max_shapes"] = _shape(name, batch, c, side)
        out.append(("TensorrtExecutionProvider", trt))
    if "CUDAExecutionProvider" in available:
        out.append(("CUDAExecutionProvider", {"device_id": device_id,
                                              "arena_extend_strategy": "kSameAsRequested"}))
    return [*out, ("CPUExecutionProvider", {})]


class OrtBackend(Backend):
    name = "onnxruntime"

    def __init__(self, info: ModelInfo, device: str = "cpu", threads: int = 0,
                 opt_level: str = "all", tile_hint: tuple[int | None, int] | None = None) -> None:
        ort = optional("onnxruntime", "pip install 'srgan-toolkit[onnx]' (or [onnx-gpu] for "
                       "CUDA)")
        super().__init__(info, info.precision, device)
        available = ort.get_available_providers()
        self._gpu = device.startswith("cuda")
        self.device_id = device_index(device) if self._gpu else 0
        if self._gpu:
            if not any(p in available for p in GPU_PROVIDERS):
                raise UserError("--device cuda: this onnxruntime has no CUDA provider "
                                "(install the [onnx-gpu] extra instead of [onnx])")
            if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from torch or nvidia-* wheels
                try:
                    ort.preload_dlls()
                except Exception as exc:  # the session check below decides
                    log.debug("onnxruntime.preload_dlls: %s", exc)
            providers: list = gpu_providers(info, available, self.device_id, tile_hint)
        else:
            providers = ["CPUExecutionProvider"]
        so = ort.SessionOptions()
        so.graph_optimization_level = {
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[opt_level]
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        # The arena keeps every size it ever served: with dynamic tile shapes a 256-pixel tile
        # of the bundled default peaked at 1667 MB with it, 823 MB without, at the same speed.
        so.enable_cpu_mem_arena = False
        if threads > 0:
            so.intra_op_num_threads = threads
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(info.path, so, providers=providers)
        except Exception as exc:
            raise UserError(f"{info.path}: ONNX Runtime cannot load it "
                            f"({first_line(exc)})") from None
        active = self.session.get_providers()
        if self._gpu and not any(p in active for p in GPU_PROVIDERS):
            # ONNX Runtime falls back to the CPU when CUDA/cuDNN do not load, with a log line
            # at most: a GPU run that is really a CPU run must not pass silently.
            raise UserError("--device cuda: ONNX Runtime started no GPU provider (CUDA or cuDNN "
                            "libraries missing or of another version than this onnxruntime-gpu "
                            "was built for); it would run on the CPU. Use --device cpu, or "
                            "install matching CUDA/cuDNN (pip install 'onnxruntime-gpu[cuda,"
                            "cudnn]')")
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def describe(self) -> str:
        return f"{self.name} {self.session.get_providers()[0]} {self.precision}"

    def _run(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, np.float32)
        if not self._gpu:
            return self.session.run(None, {self.input_name: x})[0]
        # IO binding: the input goes to the device once and the output is allocated there by
        # ONNX Runtime, instead of per-run host staging inside session.run.
        io = self.session.io_binding()
        io.bind_cpu_input(self.input_name, x)
        io.bind_output(self.output_name, "cuda", self.device_id)
        self.session.run_with_iobinding(io)
        return io.copy_outputs_to_cpu()[0]


def _problem(device: str, precision: str, stored: str) -> str | None:
    if precision == "bf16":
        return "ONNX Runtime has no bf16 path here: use openvino or torch for bf16"
    if precision == "int8" and device != "cpu":
        return "INT8 files run on --device cpu here (openvino or onnxruntime)"
    if precision != stored:
        flag = " --fp16" if precision == "fp16" else ""
        return (f"ONNX Runtime computes in the file's precision ({stored}): export an "
                f"{precision} file with 'srexport onnx{flag}'")
    return None


SPEC = BackendSpec("onnxruntime", runs="onnx", library="onnxruntime",
                   missing="onnxruntime is not installed: pip install 'srgan-toolkit[onnx]' "
                           "(or [onnx-gpu] for CUDA)",
                   how="export one with 'srexport onnx'", problem=_problem,
                   open=lambda info, o: OrtBackend(info, o.device, o.threads,
                                                   tile_hint=o.tile_hint),
                   auto_rank=30)
