"""Export stage (installed as ``srgan_export``): verified ONNX files and TensorRT engines.

Python API (the ``srexport`` CLI is a thin layer over it)::

    from srgan_export import OnnxExportOptions, export_onnx, verify_file
    res = export_onnx("generator.safetensors", "model.onnx", OnnxExportOptions(fp16=True))
    print(res.parity.lines()[-1])

TensorRT: :mod:`srgan_export.trt_engine` builds engines (``compute_profile``,
``build_engine``, ``check_engine``); the runtime runs them
(:mod:`srgan_runtime.backends.tensorrt`). TensorRT is imported only when a build is asked for.
AOTInductor: :func:`srgan_export.aoti.export_aoti` compiles a network ahead of time into a
``.pt2`` package for one device, precision and tile (run by the runtime's ``aoti`` backend).
Models are read through :func:`srgan_runtime.describe`.
"""

from .onnx_export import (
    OnnxExportOptions,
    OnnxExportResult,
    ParityError,
    export_onnx,
    verify_file,
    verify_onnx,
)
from .parity import Gate, ParityReport, compare_outputs

__all__ = [
    "Gate",
    "OnnxExportOptions",
    "OnnxExportResult",
    "ParityError",
    "ParityReport",
    "compare_outputs",
    "export_onnx",
    "verify_file",
    "verify_onnx",
]
