"""Runtime (installed as ``srgan_runtime``): tiled, batched upscaling on PyTorch, ONNX Runtime,
OpenVINO and TensorRT. Runs without torch for ONNX models.

Python API (the ``srrun`` CLI is a thin layer over it)::

    from srgan_runtime import Upscaler, describe
    print(describe("model.onnx"))                               # scale, channels, radius, ...
    up = Upscaler("generator.safetensors", tile=256, batch=4)   # or model.onnx / model.plan
    big = up.upscale(pil_image)                                 # PIL in, PIL out; numpy too
"""

from __future__ import annotations

import importlib
from typing import Any

from .core import __version__

# Names resolve on first use, so that ``import srgan_runtime.core`` (which the training and
# export packages do) stays cheap and free of import cycles.
_API = {
    "Backend": ".backends", "available_backends": ".backends", "open_backend": ".backends",
    "Picture": ".core.imageio", "load_image": ".core.imageio", "save_image": ".core.imageio",
    "ModelInfo": ".core.modelinfo", "describe": ".core.modelinfo",
    "Upscaler": ".upscaler",
}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name], __name__), name)
