"""ONNX Runtime backend: an ONNX file on the CPU, or on CUDA / TensorRT execution providers
with the ``[onnx-gpu]`` extra. The precision is the file's: use an fp16 export for fp16."""

from __future__ import annotations

import numpy as np

from ..core.errors import UserError, first_line
from ..core.modelinfo import ModelInfo
from .base import Backend

OPT_LEVELS = ("basic", "extended", "all")


class OrtBackend(Backend):
    name = "onnxruntime"

    def __init__(self, info: ModelInfo, device: str = "cpu", threads: int = 0,
                 opt_level: str = "all") -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("onnxruntime is not installed: pip install 'srgan-toolkit[onnx]' "
                            "(or [onnx-gpu] for CUDA)") from None
        super().__init__(info, info.precision, device)
        available = ort.get_available_providers()
        if device.startswith("cuda"):
            wanted = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
                      if p in available]
            if not wanted:
                raise UserError("--device cuda: this onnxruntime has no CUDA provider "
                                "(install the [onnx-gpu] extra instead of [onnx])")
            providers = [*wanted, "CPUExecutionProvider"]
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
        self.input_name = self.session.get_inputs()[0].name

    def describe(self) -> str:
        return f"{self.name} {self.session.get_providers()[0]} {self.precision}"

    def _run(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, np.float32)
        return self.session.run(None, {self.input_name: x})[0]
