"""``--backend auto``'s cache of ONNX exports: a generator file is exported once (verified, as
``srexport onnx`` does) into the user cache, under a key of the file's hash, the export settings
and the toolkit version (as vs-mlrt caches built engines), so that OpenVINO can run it.

The runtime never imports the export stage: the converter is found through the
``srgan_toolkit.converters`` entry point ``onnx`` that this distribution declares (a function
``(source, destination) -> ModelInfo``), so a runtime-only install simply has none. Writes are
atomic, so concurrent runs at worst export twice.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from .core import __version__
from .core.errors import UserError
from .core.files import file_sha256, user_cache_dir
from .core.modelinfo import ModelInfo, describe

log = logging.getLogger(__name__)

EXPORT_SETTINGS = "fp32-opset18-dynamic"
ENTRY_POINT_GROUP = "srgan_toolkit.converters"
# What the export stage needs to run at all (checked without importing it).
_CONVERTER_NEEDS = ("torch", "onnxscript")


def _converter() -> Callable[[Path, Path], ModelInfo] | None:
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == "onnx"]
    return found[0].load() if found else None


def converter_available() -> bool:
    """Whether a generator can be exported here: the converter is declared and what it
    needs is installed."""
    if any(importlib.util.find_spec(m) is None for m in _CONVERTER_NEEDS):
        return False
    return bool([ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == "onnx"])


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
    convert = _converter()
    if convert is None:
        raise UserError(f"{info.path}: no ONNX converter is installed (the srgan-toolkit "
                        "distribution declares one; reinstall it)")
    log.info("exporting %s to ONNX once for OpenVINO (cached in %s; --no-cache runs PyTorch)",
             Path(info.path).name, path.parent)
    return convert(Path(info.path), path)
