"""PyTorch backend: a generator file on the CPU or CUDA; fp32, or fp16/bf16 by autocast;
channels_last. Needs torch and the training package's model definitions (the only part of the
runtime that imports them)."""

from __future__ import annotations

import numpy as np

from ..core.errors import UserError
from ..core.files import user_cache_dir
from ..core.fitting import unfit_output
from ..core.modelinfo import ModelInfo
from .base import Backend, Output
from .spec import INT8_HOW, TORCH_HINT, BackendSpec, OpenOptions


def quantize_torch(y, bits: int) -> Output:
    """``quantize`` on the device for a torch NCHW tensor: only the integers are copied back."""
    import torch

    with torch.inference_mode():
        finite = torch.isfinite(y).flatten(1).all(dim=1).cpu().numpy()
        peak = 65535.0 if bits == 16 else 255.0
        q = torch.nan_to_num(y.float(), nan=0.0, posinf=1.0, neginf=0.0)
        q = q.clamp_(0, 1).mul_(peak).round_().permute(0, 2, 3, 1).contiguous()
        # uint16 has limited torch support: cast through int32 on the host.
        pixels = (q.to(torch.uint8).cpu().numpy() if bits == 8 else
                  q.to(torch.int32).cpu().numpy().astype(np.uint16))
    return Output(pixels, finite)


COMPILE_MODES = ("auto", "default", "reduce-overhead", "max-autotune",
                 "max-autotune-no-cudagraphs")


def autocast_module(model, device_type: str, dtype):
    """``model`` under autocast in ``dtype`` with a float32 output, as one module (what
    torch.compile traces and what ``srexport aoti`` exports)."""
    import torch
    from torch import nn

    class Autocast(nn.Module):
        def __init__(self, m) -> None:
            super().__init__()
            self.m = m

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device_type, dtype=dtype):
                return self.m(x).float()

    return Autocast(model).eval()


class TorchBackend(Backend):
    """Clamp/round/cast run on the device, so only the final integers are copied back.

    ``compile`` runs the network through ``torch.compile`` (inductor: Triton kernels on CUDA,
    C++/OpenMP on the CPU) with weights frozen into the graph. With a tile given
    (``tile_hint``) the shapes are static: the backend reports a fixed (batch, tile, tile)
    shape, so the upscaler sends only full tiles in full batches, and each shape compiles once;
    ``warmup()`` compiles it up front and ``compile_seconds`` says how long that took.
    ``auto`` mode is ``max-autotune`` on CUDA (autotuned kernels and CUDA graphs) and
    ``default`` on the CPU. Compiled kernels are cached under the user cache (inductor's
    FX-graph cache), so a second process starts faster.
    """

    name = "torch"

    def __init__(self, info: ModelInfo, device: str = "cpu", precision: str = "fp32",
                 threads: int = 0, channels_last: bool = True, compile: str | None = None,
                 tile_hint: tuple[int, int] | None = None) -> None:
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError("--device cuda: torch sees no CUDA GPU")
        if threads > 0:
            torch.set_num_threads(threads)
        super().__init__(info, precision, device)
        self.model = load_network(info, device)
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._torch = torch
        self._dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        self._dev_type = "cuda" if device.startswith("cuda") else "cpu"
        self.compile_mode = None
        self.compile_seconds = 0.0
        self._fixed = None
        self._tile_hint = tile_hint
        self._fn = self.model if self._dtype is None else autocast_module(
            self.model, self._dev_type, self._dtype)
        if compile:
            self._compile(compile, tile_hint)

    def _compile(self, mode: str, tile_hint: tuple[int, int] | None) -> None:
        import os

        if mode not in COMPILE_MODES:
            raise UserError(f"--compile-mode {mode!r}: one of {', '.join(COMPILE_MODES)}")
        if mode == "auto":
            mode = "max-autotune" if self._dev_type == "cuda" else "default"
        # Set before the first compile: inductor reads it when it first writes its cache.
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(user_cache_dir("inductor")))
        self.compile_mode = mode
        m = max(1, self.info.input_multiple)
        batch, side = tile_hint or (None, 0)
        if side and side % m == 0 and side >= self.info.min_input_size:
            self._fixed = (batch or (4 if self._dev_type == "cuda" else 1), side, side)
        self._fn = self._torch.compile(self._fn, mode=mode,
                                       dynamic=False if self._fixed else None)

    @property
    def fixed_shape(self) -> tuple[int, int, int] | None:
        return self._fixed or self.info.static

    def describe(self) -> str:
        base = super().describe()
        if self.compile_mode is None:
            return base
        return f"{base} compiled ({self.compile_mode}, {self.compile_seconds:.1f} s to compile)"

    def warmup(self) -> float:
        """Compile the fixed shape now (one zero batch); returns the seconds it took."""
        if self.compile_mode is None or self._fixed is None or self.compile_seconds:
            return self.compile_seconds
        import time

        n, h, w = self._fixed
        t0 = time.perf_counter()
        self._forward(np.zeros((n, 3, h, w), np.float32))
        if self._dev_type == "cuda":
            self._torch.cuda.synchronize()
        self.compile_seconds = time.perf_counter() - t0
        return self.compile_seconds

    def forward_device(self, x):
        """The network (compiled, under autocast, as configured) on an NCHW float32 tensor
        already on the device and fitted; float32 out, on the device."""
        torch = self._torch
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self.compile_mode is None:
                return self._fn(x).float()
            import torch._inductor.config as inductor

            # Frozen weights: constant-folded and prepacked for the CPU's kernels (inference
            # only, which this is).
            with inductor.patch(freezing=True):
                y = self._fn(x)
            if self._dev_type == "cuda" and self.compile_mode in ("reduce-overhead",
                                                                  "max-autotune"):
                y = y.clone()  # CUDA graphs reuse their output buffer on the next replay
            return y.float()

    def _forward(self, batch: np.ndarray):
        torch = self._torch
        fitted, shape = self.fit(batch)
        x = torch.from_numpy(np.ascontiguousarray(fitted, dtype=np.float32)).to(self.device)
        return unfit_output(self.forward_device(x), shape, self.scale)

    def _fitted_run(self, batch: np.ndarray) -> np.ndarray:
        return self._forward(batch).float().cpu().numpy()

    def run(self, batch: np.ndarray, bits: int = 8) -> Output:
        with self._lock:
            return quantize_torch(self._forward(batch), bits)

    def fp32_fallback(self) -> Backend | None:
        if self.precision == "fp32":
            return None
        return TorchBackend(self.info, self.device, "fp32", channels_last=self.channels_last)


def load_network(info: ModelInfo, device: str = "cpu"):
    """The network the PyTorch backend runs (``srgan_train.checkpoint.load_module``, purpose
    ``run``)."""
    from srgan_train.checkpoint import load_module

    return load_module(info, device, "run")


def _problem(device: str, precision: str, stored: str) -> str | None:
    if precision == "int8":
        return f"PyTorch runs no INT8 here: {INT8_HOW} and run it in openvino or onnxruntime"
    if device == "cpu" and precision == "fp16":
        return "PyTorch has no fast fp16 on the CPU: use --precision bf16 (or fp32)"
    return None


def _open(info: ModelInfo, o: OpenOptions) -> TorchBackend:
    return TorchBackend(info, o.device, o.precision, o.threads, compile=o.compile,
                        tile_hint=o.tile_hint)


SPEC = BackendSpec("torch", runs="generator", library="torch", missing=TORCH_HINT,
                   how="use the generator (.safetensors) file or checkpoint",
                   problem=_problem, open=_open, auto_rank=10)
