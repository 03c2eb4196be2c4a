"""Inference backends, one module each (as Polygraphy's runners): ``pytorch``, ``onnxrt``,
``openvino``, ``tensorrt``, behind the small interface in ``base`` and chosen through the
support table in ``support``. Each backend's library is imported only when it is opened, so a
missing extra only disables that backend."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from ..core.errors import UserError
from ..core.modelinfo import ModelInfo, describe, onnx_variant
from .base import Backend, Output, quantize
from .support import BACKENDS, PRECISIONS, model_kind, support_problem

__all__ = ["BACKENDS", "PRECISIONS", "Backend", "Output", "available_backends", "open_backend",
           "quantize"]

log = logging.getLogger(__name__)

_MODULES = {"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino",
            "tensorrt": "tensorrt"}
TORCH_HINT = ("torch is not installed: pip install 'srgan-toolkit[torch]' to run generator "
              "files, or use an ONNX file ('srexport onnx')")


def installed(backend: str) -> bool:
    """Whether the backend's library is importable here (not whether a GPU exists)."""
    return importlib.util.find_spec(_MODULES[backend]) is not None


def available_backends() -> list[str]:
    """Backends whose libraries are importable here."""
    return [b for b in BACKENDS if installed(b)]


def _default_device(info: ModelInfo) -> str:
    if info.format == "tensorrt":
        return "cuda"
    if info.format == "generator" and installed("torch"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu"


def _choose_backend(info: ModelInfo, device: str) -> str:
    """``auto``: PyTorch for a generator file; for an ONNX file OpenVINO on the CPU where
    installed (measured faster than ONNX Runtime on the CPU, engines.md 0b), else ONNX Runtime;
    TensorRT for a plan."""
    if info.format == "generator":
        return "torch"
    if info.format == "tensorrt":
        return "tensorrt"
    if device == "cpu" and installed("openvino") and model_kind(info) == "onnx":
        return "openvino"
    return "onnxruntime"


def _onnx_instead(info: ModelInfo, backend: str) -> ModelInfo:
    """A bundled generator opened on an ONNX backend, or without torch, runs the ONNX file
    shipped beside it."""
    if info.format != "generator":
        return info
    wants_onnx = backend in ("onnxruntime", "openvino")
    if not wants_onnx and not (backend == "auto" and not installed("torch")):
        return info
    variant = onnx_variant(Path(info.path))
    if variant is None:
        if wants_onnx:
            return info  # the support table says what to do
        raise UserError(f"{info.path}: {TORCH_HINT}")
    why = "" if wants_onnx else " (torch is not installed)"
    log.info("running the bundled model's ONNX copy %s%s", variant.name, why)
    return describe(variant)


def open_backend(engine: str | Path, backend: str = "auto", device: str = "auto",
                 precision: str = "fp32", threads: int = 0, scale: int | None = None
                 ) -> Backend:
    """Open a model (file, run folder or bundled name) on a backend; ``auto`` picks the device
    and backend for the model (see ``_choose_backend``). Unsupported combinations are refused
    with the support table's reason."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r} ({', '.join(PRECISIONS)})")
    if backend != "auto" and backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r} (auto, {', '.join(BACKENDS)})")
    info = _onnx_instead(describe(engine, scale), backend)
    if info.channels != 3:
        raise UserError(f"{info.path}: model takes {info.channels} channels; srrun feeds RGB")
    if device == "auto":
        device = _default_device(info)
    if backend == "auto":
        backend = _choose_backend(info, device)
    problem = support_problem(backend, device, precision, model_kind(info))
    if problem:
        raise UserError(f"{info.path}: {problem}")
    if backend == "torch":
        if not installed("torch"):
            raise UserError(TORCH_HINT)
        from .pytorch import TorchBackend

        return TorchBackend(info, device, precision, threads)
    if backend == "onnxruntime":
        from .onnxrt import OrtBackend

        return OrtBackend(info, device, threads)
    if backend == "openvino":
        from .openvino import OpenVinoBackend

        return OpenVinoBackend(info, device, precision, threads)
    from .tensorrt import TrtBackend

    return TrtBackend(info, None if precision == "fp32" else precision)
