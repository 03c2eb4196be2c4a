"""OpenVINO backend: an ONNX file on the CPU, f32 or bf16 inference precision; a quantized
(QDQ) file runs its quantized layers in int8 and the layers kept in float in f32."""

from __future__ import annotations

import numpy as np

from ..core.errors import UserError, first_line
from ..core.lazy import optional
from ..core.modelinfo import ModelInfo
from .base import Backend
from .spec import BackendSpec


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(self, info: ModelInfo, device: str = "cpu", precision: str = "fp32",
                 threads: int = 0) -> None:
        ov = optional("openvino", "pip install 'srgan-toolkit[openvino]'")
        super().__init__(info, precision, device)
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                  "PERFORMANCE_HINT": "LATENCY"}
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = threads
            # OpenVINO pins its threads to cores, the same cores in every process: several
            # processes of a few threads each (Ray workers) then share one core. Measured with
            # 2 workers x 1 thread on 2 cores: 20.2 s pinned vs 14.8 s unpinned for 8 images.
            config["ENABLE_CPU_PINNING"] = False
        try:
            self.compiled = core.compile_model(core.read_model(info.path), "CPU", config)
        except Exception as exc:
            raise UserError(f"{info.path}: OpenVINO cannot compile it "
                            f"({first_line(exc)})") from None
        self.request = self.compiled.create_infer_request()
        self.threads = threads

    def _run(self, batch: np.ndarray) -> np.ndarray:
        self.request.infer({0: np.ascontiguousarray(batch, np.float32)})
        return self.request.get_output_tensor(0).data.copy()

    def fp32_fallback(self) -> Backend | None:
        if self.precision in ("fp32", "int8"):  # int8: no float copy of the weights here
            return None
        return OpenVinoBackend(self.info, "cpu", "fp32", self.threads)


def _problem(device: str, precision: str, stored: str) -> str | None:
    if device != "cpu":
        return "the openvino backend runs on --device cpu here"
    if precision == "fp16":
        return "OpenVINO on the CPU computes in fp32 or bf16: use --precision bf16"
    return None


# Ranked before ONNX Runtime: faster on the CPU (engines.md 0b), INT8 too (233 vs 459 ms per
# 128-pixel tile here, benchmarks/int8.py).
SPEC = BackendSpec("openvino", runs="onnx", library="openvino",
                   missing="openvino is not installed: pip install 'srgan-toolkit[openvino]'",
                   how="export one with 'srexport onnx'", problem=_problem,
                   open=lambda info, o: OpenVinoBackend(info, o.device, o.precision, o.threads),
                   auto_rank=20)
