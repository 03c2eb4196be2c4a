"""TensorRT backend: a serialized engine with its manifest, run on CUDA with torch-owned
buffers on a private stream. Engines are built by the export stage (``srexport trt``); the
runtime only runs them. Written to the documented TensorRT 10.x / 11.x Python API; it imports
TensorRT and torch only when an engine is opened."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import UserError
from ..core.manifest import Manifest, read_manifest
from ..core.modelinfo import ModelInfo
from .base import Backend, Output

INSTALL_HINT = "pip install 'srgan-toolkit[tensorrt]' on a machine with an NVIDIA GPU and driver"


def check_compatible(manifest: Manifest, trt_version: str, gpu_name: str,
                     compute_capability: str, precision: str | None = None) -> None:
    """Refuse an engine built for another TensorRT, GPU or precision, saying what differs."""
    problems = []
    if manifest.tensorrt_version != trt_version:
        problems.append(f"built with TensorRT {manifest.tensorrt_version}, this is {trt_version}")
    if manifest.compute_capability != compute_capability:
        problems.append(f"built for compute capability {manifest.compute_capability} "
                        f"({manifest.gpu_name}), this GPU is {compute_capability} ({gpu_name})")
    elif manifest.gpu_name != gpu_name:
        problems.append(f"built on {manifest.gpu_name}, this GPU is {gpu_name}")
    if precision is not None and manifest.precision != precision:
        problems.append(f"engine precision is {manifest.precision}, {precision} was asked for")
    if problems:
        raise UserError("engine does not fit this machine: " + "; ".join(problems) +
                        " (rebuild it with 'srexport trt')")


@dataclass(frozen=True)
class TrtEnvironment:
    trt: Any
    version: str
    gpu_name: str
    compute_capability: str


def trt_environment() -> TrtEnvironment:
    """Import TensorRT and find a CUDA GPU, or raise one clear line saying what is missing."""
    try:
        import tensorrt as trt
    except ImportError:
        raise UserError(f"TensorRT is not installed ({INSTALL_HINT})") from None
    except OSError as exc:  # the bindings import but their shared libraries do not load
        raise UserError(f"TensorRT libraries failed to load ({exc}); {INSTALL_HINT}") from None
    try:
        import torch
    except ImportError:
        raise UserError("torch is required to drive TensorRT buffers") from None
    if not torch.cuda.is_available():
        raise UserError("no CUDA GPU is available: TensorRT engines are built and run on the "
                        "GPU they are meant for")
    cc = torch.cuda.get_device_capability(0)
    return TrtEnvironment(trt, str(trt.__version__), torch.cuda.get_device_name(0),
                          f"{cc[0]}.{cc[1]}")


class TrtRunner:
    """Runs a serialized engine on CUDA with torch-owned buffers and a private stream.

    ``__call__`` takes and returns numpy NCHW float32 batches; ``run_torch`` keeps tensors on the
    GPU (the runtime's path; host copies are plain, not pinned).
    """

    def __init__(self, engine_path: Path, env: TrtEnvironment | None = None,
                 precision: str | None = None) -> None:
        import torch

        self.env = env or trt_environment()
        self.manifest = read_manifest(engine_path)
        check_compatible(self.manifest, self.env.version, self.env.gpu_name,
                         self.env.compute_capability, precision)
        trt = self.env.trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise UserError(f"{engine_path}: TensorRT could not deserialize the engine")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise UserError(f"{engine_path}: expected one input and one output")
        self.input_name, self.output_name = inputs[0], outputs[0]
        dtypes = {trt.float32: torch.float32, trt.float16: torch.float16}
        if hasattr(trt, "bfloat16"):
            dtypes[trt.bfloat16] = torch.bfloat16
        try:
            self.in_dtype = dtypes[self.engine.get_tensor_dtype(self.input_name)]
            self.out_dtype = dtypes[self.engine.get_tensor_dtype(self.output_name)]
        except KeyError:
            raise UserError(f"{engine_path}: unsupported engine IO data type") from None
        self.stream = torch.cuda.Stream()
        self._torch = torch

    def run_torch(self, x):
        """Run an NCHW tensor (cast to the engine's input type); returns CUDA float32."""
        torch = self._torch
        x = x.to("cuda", dtype=self.in_dtype).contiguous()
        ctx = self.context
        if not ctx.set_input_shape(self.input_name, tuple(x.shape)):
            prof = self.manifest.profile
            raise UserError(f"input shape {tuple(x.shape)} is outside the engine's profile "
                            f"min {prof['min']} max {prof['max']}")
        out = torch.empty(tuple(ctx.get_tensor_shape(self.output_name)), dtype=self.out_dtype,
                          device="cuda")
        ctx.set_tensor_address(self.input_name, x.data_ptr())
        ctx.set_tensor_address(self.output_name, out.data_ptr())
        self.stream.wait_stream(torch.cuda.current_stream())
        if not ctx.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        torch.cuda.current_stream().wait_stream(self.stream)
        x.record_stream(self.stream)
        out.record_stream(self.stream)
        return out.float()

    def __call__(self, x):
        torch = self._torch
        y = self.run_torch(torch.from_numpy(np.ascontiguousarray(x)))
        torch.cuda.synchronize()
        return y.cpu().numpy()


class TrtBackend(Backend):
    """Refuses engines built for another TensorRT, GPU or precision; quantization runs on the
    GPU."""

    name = "tensorrt"

    def __init__(self, info: ModelInfo, precision: str | None = None) -> None:
        self.runner = TrtRunner(Path(info.path), precision=precision)
        super().__init__(info, self.runner.manifest.precision, "cuda")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.runner(batch)

    def run(self, batch: np.ndarray, bits: int = 8) -> Output:
        import torch

        from .pytorch import quantize_torch

        with self._lock:
            y = self.runner.run_torch(torch.from_numpy(np.ascontiguousarray(batch)).cuda())
            return quantize_torch(y, bits)
