"""AOTInductor backend: a ``.pt2`` package from ``srexport aoti``, the network compiled ahead
of time for one device, precision and fixed (batch, tile, tile) shape. Loading it compiles
nothing. A package is a shared library: it runs only where it was built (the CPU instruction
set or GPU compute capability, and the torch version, are checked first) and should only be
run if you trust who built it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import UserError, first_line
from ..core.fitting import unfit_output
from ..core.modelinfo import ModelInfo
from .base import Backend, Output
from .pytorch import quantize_torch
from .spec import TORCH_HINT, BackendSpec


def _minor(version: str) -> str:
    return ".".join(version.split("+")[0].split(".")[:2])


def check_package(info: ModelInfo, device: str, precision: str | None) -> None:
    """Refuse a package compiled for another device kind, CPU, GPU, torch or precision."""
    import torch

    ex = info.extra
    built_for = ex.get("device", "cpu")
    kind = "cuda" if device.startswith("cuda") else "cpu"
    problems = []
    if built_for != kind:
        problems.append(f"compiled for {built_for}, --device is {device}")
    if precision not in (None, "auto", info.precision):
        problems.append(f"compiled in {info.precision}, {precision} was asked for")
    built_torch = ex.get("torch_version", "")
    if built_torch and _minor(built_torch) != _minor(torch.__version__):
        problems.append(f"compiled with torch {built_torch}, this is {torch.__version__}")
    if not problems and kind == "cpu":
        from torch._inductor.cpu_vec_isa import pick_vec_isa

        here = str(pick_vec_isa()).upper()
        if ex.get("AOTI_CPU_ISA") and ex["AOTI_CPU_ISA"] != here:
            problems.append(f"compiled for {ex['AOTI_CPU_ISA']} CPUs, this one runs {here}")
    elif not problems:
        index = int(device.partition(":")[2] or 0)
        cc = "".join(map(str, torch.cuda.get_device_capability(index)))
        if ex.get("AOTI_COMPUTE_CAPABILITY") and ex["AOTI_COMPUTE_CAPABILITY"] != cc:
            problems.append(f"compiled for compute capability {ex['AOTI_COMPUTE_CAPABILITY']}, "
                            f"this GPU is {cc}")
    if problems:
        raise UserError(f"{info.path}: package does not fit this machine: "
                        + "; ".join(problems) + " (compile it here with 'srexport aoti')")


class AotiBackend(Backend):
    """Runs the package on its device; only its fixed shape (the upscaler sends full tiles in
    full batches, as for fixed-shape engines)."""

    name = "aoti"

    def __init__(self, info: ModelInfo, device: str | None = None,
                 precision: str | None = None) -> None:
        import torch

        device = device or info.extra.get("device", "cpu")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError("--device cuda: torch sees no CUDA GPU")
        check_package(info, device, precision)
        super().__init__(info, info.precision, device)
        index = int(device.partition(":")[2] or 0) if device.startswith("cuda") else -1
        try:
            self._run_package = torch._inductor.aoti_load_package(str(Path(info.path)),
                                                                  device_index=index)
        except Exception as exc:
            raise UserError(f"{info.path}: PyTorch could not load the package "
                            f"({first_line(exc)})") from None
        self._torch = torch

    def _forward(self, batch: np.ndarray):
        torch = self._torch
        fitted, shape = self.fit(batch)
        x = torch.from_numpy(np.ascontiguousarray(fitted, dtype=np.float32)).to(self.device)
        want = self.info.static
        if (x.shape[0], x.shape[2], x.shape[3]) != want:
            raise UserError(f"{self.info.path}: the package takes {want[0]}x{want[1]}x{want[2]} "
                            f"batches only, not {x.shape[0]}x{x.shape[2]}x{x.shape[3]}")

        return unfit_output(self.forward_device(x), shape, self.scale)

    def forward_device(self, x):
        """The package on an NCHW float32 tensor of its fixed shape, already on the device."""
        torch = self._torch
        x = x.contiguous(memory_format=torch.channels_last)  # as compiled
        with torch.inference_mode():
            return self._run_package(x).float()

    def _fitted_run(self, batch: np.ndarray) -> np.ndarray:
        return self._forward(batch).cpu().numpy()

    def run(self, batch: np.ndarray, bits: int = 8) -> Output:
        with self._lock:
            return quantize_torch(self._forward(batch), bits)


def _problem(device: str, precision: str, stored: str) -> str | None:
    if precision == "int8":
        return "AOTInductor packages are fp32, bf16 or fp16 (as compiled)"
    if device == "cpu" and precision == "fp16":
        return "PyTorch has no fast fp16 on the CPU: compile a bf16 (or fp32) package"
    return None


SPEC = BackendSpec("aoti", runs="aoti", library="torch", missing=TORCH_HINT,
                   how="compile one with 'srexport aoti'", problem=_problem,
                   open=lambda info, o: AotiBackend(info, o.device, o.precision))
