"""PyTorch backend: a generator file on the CPU or CUDA; fp32, or fp16/bf16 by autocast;
channels_last. Needs torch and the training package's model definitions (the only part of the
runtime that imports them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import UserError
from ..core.fitting import unfit_output
from ..core.modelinfo import ModelInfo
from .base import Backend, Output


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


class TorchBackend(Backend):
    """Clamp/round/cast run on the device, so only the final integers are copied back."""

    name = "torch"

    def __init__(self, info: ModelInfo, device: str = "cpu", precision: str = "fp32",
                 threads: int = 0, channels_last: bool = True) -> None:
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

    def _forward(self, batch: np.ndarray):
        torch = self._torch
        fitted, shape = self.fit(batch)
        x = torch.from_numpy(np.ascontiguousarray(fitted, dtype=np.float32)).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self._dtype is None:
                y = self.model(x)
            else:
                dev = "cuda" if self.device.startswith("cuda") else "cpu"
                with torch.autocast(dev, dtype=self._dtype):
                    y = self.model(x).float()
            return unfit_output(y, shape, self.scale)

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
    """The eval-mode network of a generator file (its tail moved before the last PixelShuffle:
    the same function, wider and faster kernels) or of another project's checkpoint."""
    if info.format == "checkpoint":
        from ..core.foreign import load_module

        return load_module(Path(info.path), device)
    from srgan_train.archs import subpixel_tail
    from srgan_train.checkpoint import load_generator

    return subpixel_tail(load_generator(Path(info.path), device=device).model).eval()
