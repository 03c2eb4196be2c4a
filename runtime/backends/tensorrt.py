"""TensorRT backend: a serialized engine with its manifest, run on CUDA with torch-owned
buffers on a private stream. Engines are built by the export stage (``srexport trt``); the
runtime only runs them. Written to the documented TensorRT 10.x / 11.x Python API (the version
branches are exercised on the CPU by a recording fake module in the tests); it imports TensorRT
and torch only when an engine is opened."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import UserError
from ..core.fitting import fit_batch, unfit_output
from ..core.manifest import Manifest, read_manifest
from ..core.modelinfo import ModelInfo
from .base import Backend, Output
from .pytorch import quantize_torch
from .spec import BackendSpec

INSTALL_HINT = "pip install 'srgan-toolkit[tensorrt]' on a machine with an NVIDIA GPU and driver"


def _cc(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in str(text).split("."))
    except ValueError:
        return (0,)


def check_compatible(manifest: Manifest, trt_version: str, gpu_name: str,
                     compute_capability: str, precision: str | None = None) -> None:
    """Refuse an engine built for another TensorRT, GPU or precision, saying what differs. An
    engine built with a hardware compatibility level runs where that level says: ``ampere_plus``
    on any GPU of compute capability 8.0 or newer, ``same_cc`` on any GPU of the same compute
    capability."""
    problems = []
    if manifest.tensorrt_version != trt_version:
        problems.append(f"built with TensorRT {manifest.tensorrt_version}, this is {trt_version}")
    level = str(manifest.build_options.get("hardware_compat", "none"))
    built = f"built for compute capability {manifest.compute_capability} ({manifest.gpu_name})"
    here = f"this GPU is {compute_capability} ({gpu_name})"
    if level == "ampere_plus":
        if _cc(compute_capability) < (8, 0):
            problems.append(f"built for Ampere or newer (compute capability 8.0+), {here}")
    elif manifest.compute_capability != compute_capability:
        problems.append(f"{built}, {here}")
    elif level != "same_cc" and manifest.gpu_name != gpu_name:
        problems.append(f"built on {manifest.gpu_name}, this GPU is {gpu_name} (build with "
                        "--hardware-compat same_cc to share engines across GPUs of one "
                        "compute capability)")
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

    @property
    def logger(self) -> Any:
        """The process's one TensorRT logger: builders and runtimes made with different loggers
        make TensorRT warn that the logger differs from the one it was first given."""
        return shared_logger(self.trt)


_LOGGERS: dict[int, Any] = {}


def shared_logger(trt: Any) -> Any:
    """One ``trt.Logger`` per TensorRT module in this process."""
    key = id(trt)
    if key not in _LOGGERS:
        _LOGGERS[key] = trt.Logger(trt.Logger.WARNING)
    return _LOGGERS[key]


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


@dataclass(frozen=True)
class ShapeLimits:
    """What an engine's optimization profile accepts: sides and batch."""

    min_side: int
    max_side: int
    max_batch: int

    @classmethod
    def from_profile(cls, profile: dict[str, list[int]]) -> ShapeLimits:
        lo, hi = profile["min"], profile["max"]
        return cls(max(lo[2], lo[3]), min(hi[2], hi[3]), hi[0])


class TrtRunner:
    """Runs a serialized engine with torch-owned buffers on a private CUDA stream.

    The activation memory is the runner's own (``USER_MANAGED``): sized for the current input
    shape and allocated through torch, so a tile that does not fit raises torch's out-of-memory
    error, which the upscaler answers by halving the batch, then the tile. ``__call__`` takes and
    returns numpy NCHW float32 batches through pinned staging buffers, copied asynchronously on
    the runner's stream; ``run_torch`` keeps tensors on the device (the runtime's path).
    ``device="cpu"`` exists for the tests' fake TensorRT only.
    """

    def __init__(self, engine_path: Path, env: TrtEnvironment | None = None,
                 precision: str | None = None, device: str = "cuda") -> None:
        import torch

        self.env = env or trt_environment()
        self.manifest = read_manifest(engine_path)
        check_compatible(self.manifest, self.env.version, self.env.gpu_name,
                         self.env.compute_capability, precision)
        self.limits = ShapeLimits.from_profile(self.manifest.profile)
        trt = self.env.trt
        self._runtime = trt.Runtime(self.env.logger)
        self.engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise UserError(f"{engine_path}: TensorRT could not deserialize the engine (see its "
                            "log above)")
        strategy = getattr(trt, "ExecutionContextAllocationStrategy", None)
        self._user_memory = strategy is not None and hasattr(strategy, "USER_MANAGED")
        self.context = (self.engine.create_execution_context(strategy.USER_MANAGED)
                        if self._user_memory else self.engine.create_execution_context())
        if self.context is None:
            raise UserError(f"{engine_path}: TensorRT could not create an execution context "
                            "(not enough GPU memory for the engine? see its log above)")
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
        self.device = device
        self._cuda = device.startswith("cuda")
        self.stream = torch.cuda.Stream() if self._cuda else None
        self._scratch = None  # the context's activation memory (USER_MANAGED)
        self._staging: dict[tuple, Any] = {}
        self._copied = None  # event: the last host-to-device copy has left the staging buffer
        self._torch = torch

    def _activation_bytes(self) -> int:
        """Activation memory for the shapes just set: the exact need where TensorRT reports it
        (10.1+), else the engine's maximum."""
        ctx, engine = self.context, self.engine
        if hasattr(ctx, "update_device_memory_size_for_shapes"):
            return int(ctx.update_device_memory_size_for_shapes())
        if hasattr(engine, "device_memory_size_v2"):
            return int(engine.device_memory_size_v2)
        return int(engine.device_memory_size)

    def _bind_memory(self) -> None:
        if not self._user_memory:
            return
        need = max(1, self._activation_bytes())
        if self._scratch is not None and self._scratch.numel() >= need:
            return
        if self._scratch is not None and self._cuda:
            self.stream.synchronize()  # the old block may still be in use by the last run
        self._scratch = None
        self._scratch = self._torch.empty(need, dtype=self._torch.uint8, device=self.device)
        ctx, ptr = self.context, self._scratch.data_ptr()
        if hasattr(ctx, "set_device_memory"):  # 10.1+: the size is checked by TensorRT
            ctx.set_device_memory(ptr, need)
        else:
            ctx.device_memory = ptr

    def run_torch(self, x):
        """Run an NCHW tensor (cast to the engine's input type); returns float32 on the
        device."""
        torch = self._torch
        ctx = self.context
        x = x.to(self.device, dtype=self.in_dtype, non_blocking=True).contiguous()
        if not ctx.set_input_shape(self.input_name, tuple(x.shape)):
            prof = self.manifest.profile
            raise UserError(f"input shape {tuple(x.shape)} is outside the engine's profile "
                            f"min {prof['min']} max {prof['max']}")
        self._bind_memory()
        out = torch.empty(tuple(ctx.get_tensor_shape(self.output_name)), dtype=self.out_dtype,
                          device=self.device)
        ctx.set_tensor_address(self.input_name, x.data_ptr())
        ctx.set_tensor_address(self.output_name, out.data_ptr())
        if self._cuda:
            self.stream.wait_stream(torch.cuda.current_stream())
            ok = ctx.execute_async_v3(self.stream.cuda_stream)
            torch.cuda.current_stream().wait_stream(self.stream)
            x.record_stream(self.stream)
            out.record_stream(self.stream)
        else:
            ok = ctx.execute_async_v3(0)
        if not ok:
            raise RuntimeError("TensorRT execution failed (see its log above)")
        return out.float()

    def _pinned(self, key: str, shape: tuple, dtype):
        """A reusable page-locked host buffer (plain memory off CUDA)."""
        buf = self._staging.get((key, shape, dtype))
        if buf is None:
            buf = self._torch.empty(shape, dtype=dtype, pin_memory=self._cuda)
            self._staging = {k: v for k, v in self._staging.items() if k[0] != key}
            self._staging[(key, shape, dtype)] = buf
        return buf

    def to_device(self, batch: np.ndarray):
        """A host batch on the device, through a pinned buffer, copied on the runner's
        stream."""
        torch = self._torch
        if self._copied is not None:
            self._copied.synchronize()  # the last copy out of the staging buffer is done
        host = self._pinned("in", tuple(batch.shape), torch.float32)
        host.numpy()[...] = batch
        if not self._cuda:
            return host.clone()
        with torch.cuda.stream(self.stream):
            x = host.to(self.device, non_blocking=True)
            self._copied = torch.cuda.Event()
            self._copied.record(self.stream)
        torch.cuda.current_stream().wait_stream(self.stream)
        x.record_stream(torch.cuda.current_stream())
        return x

    def __call__(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        y = self.run_torch(self.to_device(np.ascontiguousarray(x, dtype=np.float32)))
        host = self._pinned("out", tuple(y.shape), torch.float32)
        if self._cuda:
            self.stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.stream):
                host.copy_(y, non_blocking=True)
            self.stream.synchronize()
        else:
            host.copy_(y)
        return host.numpy().copy()


class TrtBackend(Backend):
    """Refuses engines built for another TensorRT, GPU or precision; fits work to the engine's
    profile (tiles under its minimum padded, batches over its maximum split; the upscaler
    keeps tiles within its maximum side); quantization runs on the GPU."""

    name = "tensorrt"

    def __init__(self, info: ModelInfo, precision: str | None = None,
                 runner: TrtRunner | None = None) -> None:
        self.runner = runner or TrtRunner(Path(info.path), precision=precision)
        super().__init__(info, self.runner.manifest.precision, self.runner.device)

    @property
    def shape_limits(self) -> ShapeLimits:
        return self.runner.limits

    def fit(self, batch: np.ndarray):
        i = self.info
        return fit_batch(batch, i.channels, max(i.min_input_size, self.runner.limits.min_side),
                         i.input_multiple, i.square_only)

    def _chunks(self, batch: np.ndarray):
        step = self.runner.limits.max_batch
        for k in range(0, batch.shape[0], step):
            yield batch[k:k + step]

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return np.concatenate([self.runner(part) for part in self._chunks(batch)])

    def run(self, batch: np.ndarray, bits: int = 8) -> Output:
        import torch

        with self._lock:
            fitted, shape = self.fit(batch)
            y = torch.cat([self.runner.run_torch(self.runner.to_device(part))
                           for part in self._chunks(np.ascontiguousarray(fitted, np.float32))])
            return quantize_torch(unfit_output(y, shape, self.scale), bits)


def _problem(device: str, precision: str, stored: str) -> str | None:
    if device != "cuda":
        return "TensorRT engines run on --device cuda"
    if precision in ("bf16", "int8"):
        return "engines are fp32 or fp16 (the precision they were built with)"
    return None


SPEC = BackendSpec("tensorrt", runs="tensorrt", library="tensorrt",
                   missing=f"TensorRT is not installed ({INSTALL_HINT})",
                   how="build one with 'srexport trt'", problem=_problem,
                   open=lambda info, o: TrtBackend(info, None if o.precision == "fp32"
                                                   else o.precision))
