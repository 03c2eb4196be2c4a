"""The support table: which backend runs which model format, on which device, in which
precision, and why not where it does not. ``open_backend``, ``srbench``'s matrix, ``srrun
--help`` and the tests' parametrization all read it, so a new backend or format is added here
once."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.modelinfo import ModelInfo

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt", "aoti")
DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# What a model file is to a backend: the format, with an ONNX file's stored precision.
MODEL_KINDS = ("generator", "onnx", "onnx-fp16", "onnx-int8", "tensorrt", "aoti")
INT8_HOW = "export an INT8 ONNX with 'srexport onnx --int8 --calibration DIR'"

# The file each backend needs, and how to make one.
_NEEDS = {
    "torch": ("generator", "use the generator (.safetensors) file or checkpoint"),
    "onnxruntime": ("onnx", "export one with 'srexport onnx'"),
    "openvino": ("onnx", "export one with 'srexport onnx'"),
    "tensorrt": ("tensorrt", "build one with 'srexport trt'"),
    "aoti": ("aoti", "compile one with 'srexport aoti'"),
}


def model_kind(info: ModelInfo) -> str:
    """The table's model axis for a described model."""
    if info.format == "onnx" and info.precision in ("fp16", "int8"):
        return f"onnx-{info.precision}"
    if info.format == "checkpoint":  # another project's weights run where a generator runs
        return "generator"
    return info.format


def support_problem(backend: str, device: str, precision: str, kind: str) -> str | None:
    """None when ``backend`` runs a ``kind`` model on ``device`` in ``precision``; otherwise
    why not, as a sentence that says what to do instead."""
    fmt = "onnx" if kind.startswith("onnx") else kind
    stored = kind[5:] if kind.startswith("onnx-") else "fp32"
    need, how = _NEEDS[backend]
    if fmt != need:
        return f"{backend} runs {need} files, not {fmt} files: {how}"
    dev = "cuda" if device.startswith("cuda") else device
    if backend == "torch":
        if precision == "int8":
            return f"PyTorch runs no INT8 here: {INT8_HOW} and run it in openvino or onnxruntime"
        if dev == "cpu" and precision == "fp16":
            return "PyTorch has no fast fp16 on the CPU: use --precision bf16 (or fp32)"
        return None
    if backend in ("onnxruntime", "openvino") and (stored == "int8") != (precision == "int8"):
        if stored == "int8":
            return "an INT8 file computes in int8: use --precision int8 (or an fp32 file)"
        return f"INT8 needs a quantized file: {INT8_HOW}"
    if backend == "onnxruntime":
        if precision == "bf16":
            return "ONNX Runtime has no bf16 path here: use openvino or torch for bf16"
        if precision == "int8" and dev != "cpu":
            return "INT8 files run on --device cpu here (openvino or onnxruntime)"
        if precision != stored:
            flag = " --fp16" if precision == "fp16" else ""
            return (f"ONNX Runtime computes in the file's precision ({stored}): export an "
                    f"{precision} file with 'srexport onnx{flag}'")
        return None
    if backend == "openvino":
        if dev != "cpu":
            return "the openvino backend runs on --device cpu here"
        if precision == "fp16":
            return "OpenVINO on the CPU computes in fp32 or bf16: use --precision bf16"
        return None
    if backend == "aoti":
        if precision == "int8":
            return "AOTInductor packages are fp32, bf16 or fp16 (as compiled)"
        if dev == "cpu" and precision == "fp16":
            return "PyTorch has no fast fp16 on the CPU: compile a bf16 (or fp32) package"
        return None
    # tensorrt
    if dev != "cuda":
        return "TensorRT engines run on --device cuda"
    if precision in ("bf16", "int8"):
        return "engines are fp32 or fp16 (the precision they were built with)"
    return None


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
            for b in BACKENDS for d in DEVICES for p in PRECISIONS for k in MODEL_KINDS]


def supported(backend: str | None = None, device: str | None = None) -> list[Row]:
    """The supported rows, optionally of one backend and/or device."""
    return [r for r in support_table() if r.problem is None
            and backend in (None, r.backend) and device in (None, r.device)]


def support_summary() -> str:
    """One line per backend: the files it runs and where (for ``--help`` and the README)."""
    lines = []
    for b in BACKENDS:
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
