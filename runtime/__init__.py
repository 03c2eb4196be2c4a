"""Runtime (installed as ``srgan_runtime``): tiled, batched upscaling on PyTorch, ONNX Runtime,
OpenVINO and TensorRT.

Python API (the ``srrun`` CLI is a thin layer over it)::

    from srgan_runtime import Upscaler
    up = Upscaler("generator.safetensors", tile=256, batch=4)   # or model.onnx / model.plan
    big = up.upscale(pil_image)                                 # PIL in, PIL out; numpy too
"""

from .backends import Backend, available_backends, open_backend
from .imageio import Picture, load_image, save_image
from .upscaler import Upscaler

__all__ = ["Backend", "Picture", "Upscaler", "available_backends", "load_image", "open_backend",
           "save_image"]
