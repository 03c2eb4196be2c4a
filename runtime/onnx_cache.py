"""``--backend auto``'s cache of ONNX exports: a generator file is exported once (verified, as
``srexport onnx`` does) into the user cache, under a key of the file's hash, the export settings
and the toolkit version (as vs-mlrt caches built engines), so that OpenVINO can run it.

The one place the runtime asks the export stage for a file; it needs torch, which running a
generator file needs anyway. Writes are atomic, so concurrent runs at worst export twice.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .core import __version__
from .core.errors import UserError
from .core.files import file_sha256, user_cache_dir
from .core.modelinfo import ModelInfo, describe

log = logging.getLogger(__name__)

EXPORT_SETTINGS = "fp32-opset18-dynamic"


def cache_path(sha256: str) -> Path:
    return user_cache_dir("onnx") / f"{sha256[:32]}-{EXPORT_SETTINGS}-{__version__}.onnx"


def cached_onnx(info: ModelInfo) -> ModelInfo:
    """The description of the ONNX export of the generator ``info`` describes: from the
    cache, or exported now."""
    sha = file_sha256(Path(info.path))
    path = cache_path(sha)
    if path.is_file():
        try:
            found = describe(path)
            if found.source_sha256 == sha:
                return found
        except UserError:
            pass  # a damaged entry is replaced below
    from srgan_export import OnnxExportOptions, export_onnx

    log.info("exporting %s to ONNX once for OpenVINO (cached in %s; --no-cache runs PyTorch)",
             Path(info.path).name, path.parent)
    # No radius measurement here: the runtime measures it when an image first needs tiles
    # (cached under this generator's hash, which the export records as its source).
    return export_onnx(Path(info.path), path,
                       OnnxExportOptions(overwrite=True, measure_radius=False)).info
