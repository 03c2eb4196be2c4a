"""Export stage (installed as ``srgan_export``): verified ONNX files and TensorRT engines.

Python API (the ``srexport`` CLI is a thin layer over it)::

    from srgan_export import OnnxExportOptions, export_onnx, verify_file
    res = export_onnx("generator.safetensors", "model.onnx", OnnxExportOptions(fp16=True))
    print(res.parity.lines()[-1])

TensorRT: :mod:`srgan_export.trt_engine` (``compute_profile``, ``build_engine``, ``TrtRunner``,
``check_compatible``); it imports TensorRT only when a build or run is asked for.
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
