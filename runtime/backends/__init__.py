"""Inference backends, one module each (as Polygraphy's runners): ``pytorch``, ``onnxrt``,
``openvino``, ``tensorrt``, ``aoti``, behind the small interface in ``base`` and chosen through the
support table in ``support``. Each backend's library is imported only when it is opened, so a
missing extra only disables that backend."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from ..core import machine
from ..core.errors import UserError
from ..core.modelinfo import ModelInfo, describe, onnx_variant
from ..onnx_cache import cached_onnx, converter_available
from .base import Backend, Output, quantize
from .registry import backend_names, backend_spec, backend_specs, register_backend
from .spec import INT8_HOW, TORCH_HINT, BackendSpec, OpenOptions
from .support import PRECISIONS, model_kind, support_problem

__all__ = ["PRECISIONS", "Backend", "BackendSpec", "OpenOptions", "Output",
           "available_backends", "backend_names", "open_backend", "quantize",
           "register_backend"]

log = logging.getLogger(__name__)


def installed(name: str) -> bool:
    """Whether a backend's library (or, for a name that is no backend, that module) is
    importable here (not whether a GPU exists)."""
    specs = backend_specs()
    if name in specs:
        return specs[name].installed()
    return importlib.util.find_spec(name) is not None


def available_backends() -> list[str]:
    """Backends whose libraries are importable here."""
    return [name for name, spec in backend_specs().items() if spec.installed()]


def _default_device(info: ModelInfo) -> str:
    if info.format == "tensorrt":
        return "cuda"
    if info.format == "aoti":  # compiled for one device
        return info.extra.get("device", "cpu")
    if info.torch_weights and installed("torch"):
        if not machine.may_have_cuda():
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu"


def _choose_backend(info: ModelInfo, device: str) -> str:
    """``auto``: of the backends that run this file, the best-ranked installed one that runs
    it on ``device`` in the file's precision (PyTorch for a generator; OpenVINO, then ONNX
    Runtime, for an ONNX file on the CPU); where none is installed, the best-ranked one, whose
    open says what to install."""
    kind = model_kind(info)
    stored = kind[5:] if kind.startswith("onnx-") else "fp32"
    ranked = sorted((s for s in backend_specs().values() if s.runs == _runs(info)),
                    key=lambda s: s.auto_rank)
    if not ranked:
        raise UserError(f"{info.path}: no backend here runs {info.format} files")
    fits = [s for s in ranked if support_problem(s.name, device, stored, kind) is None]
    for spec in fits or ranked:
        if spec.installed():
            return spec.name
    return (fits or ranked)[0].name


def _runs(info: ModelInfo) -> str:
    """The format a backend must run for this model (checkpoints run where generators do)."""
    return "generator" if info.torch_weights else info.format


def _onnx_instead(info: ModelInfo, backend: str, precision: str) -> ModelInfo:
    """A bundled generator opened on an ONNX backend, or without torch, runs the ONNX file
    shipped beside it; in int8, its quantized copy."""
    if info.format != "generator":
        return info
    runs_onnx = backend != "auto" and backend_spec(backend).runs == "onnx"
    if precision == "int8" and (backend == "auto" or runs_onnx):
        variant = onnx_variant(Path(info.path), "int8")
        if variant is not None:
            log.info("running the bundled model's INT8 copy %s", variant.name)
            return describe(variant)
        return info  # the support table says what to do
    wants_onnx = runs_onnx
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


def auto_precision(backend: str, device: str, kind: str) -> tuple[str, str]:
    """``--precision auto``: fp16 on CUDA, bf16 on a CPU that computes bf16 natively
    (AVX512_BF16 or AMX, read from the CPU's flags), else fp32; each only where the support
    table has it for this backend and model. Returns the precision and why, in words."""

    if device.startswith("cuda"):
        want, why = "fp16", "CUDA"
    elif machine.native_bf16():
        want, why = "bf16", "this CPU has native bf16"
    else:
        return "fp32", "this CPU has no native bf16 (AVX512_BF16/AMX)"
    if support_problem(backend, device, want, kind) is None:
        return want, why
    return "fp32", f"{why}, but {backend} has no {want} for this model"


def _generator_on_openvino(info: ModelInfo, cache: bool) -> ModelInfo | None:
    """``auto`` on the CPU with OpenVINO installed: a generator runs as ONNX in OpenVINO
    (fp32 457 vs PyTorch's 675 ms per 256-pixel tile here, bf16 219 vs 277:
    benchmarks/results/backend_matrix-amd-epyc-2c.json). A bundled model has its ONNX copy;
    another generator is exported once into the user cache. None keeps PyTorch."""
    variant = onnx_variant(Path(info.path))
    if variant is not None:
        return describe(variant)
    if not cache or not converter_available():
        return None
    try:
        return cached_onnx(info)
    except UserError as exc:  # e.g. the export failed its parity gate
        log.warning("%s: running PyTorch (the ONNX export for OpenVINO failed: %s)",
                    info.path, exc)
        return None


def open_backend(engine: str | Path, backend: str = "auto", device: str = "auto",
                 precision: str = "auto", threads: int = 0, scale: int | None = None,
                 cache: bool = True, compile: str | None = None,
                 tile_hint: tuple[int | None, int] | None = None) -> Backend:
    """Open a model (file, run folder or bundled name) on a backend; ``auto`` picks the device,
    backend and precision for the model (``_choose_backend``, :func:`auto_precision`); the
    backend's ``choice`` says what was picked and why. Unsupported combinations are refused
    with the support table's reason. ``compile`` (a torch.compile mode, torch backend only) and
    ``tile_hint`` (the batch and tile side the caller will send) are described in
    :class:`~srgan_runtime.backends.pytorch.TorchBackend` and
    :func:`~srgan_runtime.backends.onnxrt.gpu_providers`."""
    if precision != "auto" and precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r} (auto, {', '.join(PRECISIONS)})")
    if backend != "auto":
        backend_spec(backend)  # an unknown name is refused before the model is read
    if compile and backend not in ("auto", "torch"):
        raise UserError(f"--compile is torch.compile: it applies to --backend torch, not {backend}")
    info = _onnx_instead(describe(engine, scale), backend, precision)
    if precision == "int8" and backend == "auto" and info.torch_weights:  # before any export
        what = ("another project's checkpoint" if info.format == "checkpoint"
                else "a generator file")
        raise UserError(f"{info.path}: --precision int8 runs an INT8 ONNX file, and this is "
                        f"{what}: {INT8_HOW} (from this file), then pass that file")
    if (info.channels, info.out_channels) not in ((3, 3), (1, 1)):
        raise UserError(f"{info.path}: model maps {info.channels} to {info.out_channels} "
                        "channels; srrun runs RGB (3 to 3) and grey (1 to 1) models")
    if device == "auto":
        device = _default_device(info)
    choice = ""
    if compile and backend == "auto":
        backend = "torch"  # asking for the compiler is asking for PyTorch
    if backend == "auto":
        if info.torch_weights and device == "cpu" and installed("openvino"):
            onnx_info = _generator_on_openvino(info, cache)
            if onnx_info is not None:
                info = onnx_info
                choice = "backend auto: OpenVINO runs generators fastest on the CPU; "
        backend = _choose_backend(info, device)
    kind = model_kind(info)
    if precision == "auto":
        if kind in ("onnx-fp16", "onnx-int8", "tensorrt", "aoti"):  # the file's precision
            precision = info.precision
            choice += "precision auto: the file's"
        else:
            precision, why = auto_precision(backend, device, kind)
            if _arch_problem(info, precision):
                precision, why = "fp32", f"{why}, but {info.arch} has no {precision}"
            choice += f"precision auto: {why}"
    problem = support_problem(backend, device, precision, kind) or _arch_problem(info, precision)
    if problem:
        raise UserError(f"{info.path}: {problem}")
    opened = backend_spec(backend).open_checked(
        info, OpenOptions(device, precision, threads, compile, tile_hint))
    opened.choice = choice
    return opened


def _arch_problem(info: ModelInfo, precision: str) -> str | None:
    """A precision the architecture itself cannot compute in (spandrel's flags)."""
    if not {"fp16": info.fp16_ok, "bf16": info.bf16_ok}.get(precision, True):
        return (f"{info.arch} does not compute correctly in {precision} (spandrel marks it "
                f"unsupported): use {' or '.join(info.precisions)}")
    return None
