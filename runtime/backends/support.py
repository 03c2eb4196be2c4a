"""The support table: which backend runs which model kind, on which device, in which
precision, and why not where it does not. It iterates the registered backends' specs
(:mod:`srgan_runtime.backends.registry`); ``open_backend``, ``srbench``'s matrix, ``srrun
--help`` and the tests' parametrization all read it."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.modelinfo import MODEL_FORMATS, ModelInfo
from .registry import backend_names, backend_spec, backend_specs
from .spec import INT8_HOW

__all__ = ["DEVICES", "INT8_HOW", "MODEL_KINDS", "PRECISIONS", "Row", "backend_names",
           "model_kind", "support_problem", "support_summary", "support_table", "supported"]

DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# What a model file is to a backend: its format (another project's checkpoint runs where a
# generator runs), an ONNX file split by its stored precision.
_ONNX_KINDS = ("onnx", "onnx-fp16", "onnx-int8")
MODEL_KINDS = tuple(k for name in MODEL_FORMATS if name != "checkpoint"
                    for k in (_ONNX_KINDS if name == "onnx" else (name,)))


def model_kind(info: ModelInfo) -> str:
    """The table's model axis for a described model."""
    if info.format == "onnx" and info.precision in ("fp16", "int8"):
        return f"onnx-{info.precision}"
    if info.format == "checkpoint":
        return "generator"
    return info.format


def support_problem(backend: str, device: str, precision: str, kind: str) -> str | None:
    """None when ``backend`` runs a ``kind`` model on ``device`` in ``precision``; otherwise
    why not, as a sentence that says what to do instead."""
    spec = backend_spec(backend)
    fmt = "onnx" if kind.startswith("onnx") else kind
    stored = kind[5:] if kind.startswith("onnx-") else "fp32"
    if fmt != spec.runs:
        return f"{backend} runs {spec.runs} files, not {fmt} files: {spec.how}"
    if fmt == "onnx" and (stored == "int8") != (precision == "int8"):
        if stored == "int8":
            return "an INT8 file computes in int8: use --precision int8 (or an fp32 file)"
        return f"INT8 needs a quantized file: {INT8_HOW}"
    return spec.problem("cuda" if device.startswith("cuda") else device, precision, stored)


@dataclass(frozen=True)
class Row:
    backend: str
    device: str
    precision: str
    kind: str
    problem: str | None


def support_table() -> list[Row]:
    """Every backend x device x precision x model kind, with the reason where unsupported."""
    return [Row(b, d, p, k, support_problem(b, d, p, k))
            for b in backend_specs() for d in DEVICES for p in PRECISIONS for k in MODEL_KINDS]


def supported(backend: str | None = None, device: str | None = None) -> list[Row]:
    """The supported rows, optionally of one backend and/or device."""
    return [r for r in support_table() if r.problem is None
            and backend in (None, r.backend) and device in (None, r.device)]


def support_summary() -> str:
    """One line per backend: the files it runs and where (for ``--help`` and the README)."""
    lines = []
    for b in backend_names():
        rows = supported(b)
        kinds = sorted({r.kind for r in rows}, key=MODEL_KINDS.index)
        where = []
        for d in DEVICES:
            precs = [p for p in PRECISIONS if any(r.device == d and r.precision == p
                                                   for r in rows)]
            if precs:
                where.append(f"{d} {'/'.join(precs)}")
        lines.append(f"{b}: {', '.join(kinds)} on {'; '.join(where)}")
    return "\n".join(lines)
