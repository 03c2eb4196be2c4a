"""What a backend declares about itself (:class:`BackendSpec`), and the options it is opened
with (:class:`OpenOptions`). Each backend module defines one ``SPEC``; the registry
(:mod:`srgan_runtime.backends.registry`) lists them, and the support table, ``--backend``'s
choices, ``auto``'s pick and ``srbench``'s matrix all iterate the specs."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from ..core.errors import UserError
from ..core.modelinfo import ModelInfo
from .base import Backend

INT8_HOW = "export an INT8 ONNX with 'srexport onnx --int8 --calibration DIR'"
TORCH_HINT = ("torch is not installed: pip install 'srgan-toolkit[torch]' to run generator "
              "files, or use an ONNX file ('srexport onnx')")


@dataclass(frozen=True)
class OpenOptions:
    """How to open a model on a backend, once ``auto`` has been resolved. ``compile`` is a
    torch.compile mode (PyTorch only); ``tile_hint`` the (batch, tile side) the caller will
    send, for backends that build shape-specific plans."""

    device: str = "cpu"
    precision: str = "fp32"
    threads: int = 0
    compile: str | None = None
    tile_hint: tuple[int | None, int] | None = None


@dataclass(frozen=True)
class BackendSpec:
    """One backend. ``runs``: the model format it opens (a ``MODEL_FORMATS`` name);
    ``how``: how to get such a file; ``library``: the module whose presence means it is
    installed, ``missing``: what to do where it is not; ``problem(device, precision,
    stored)``: why it cannot run a file stored in ``stored`` on ``device`` ("cpu" or "cuda")
    in ``precision``, or None; ``open(info, options)``: the opened backend. ``auto_rank``:
    ``--backend auto`` takes the lowest-ranked installed backend that runs a file."""

    name: str
    runs: str
    how: str
    library: str
    missing: str
    problem: Callable[[str, str, str], str | None]
    open: Callable[[ModelInfo, OpenOptions], Backend]
    auto_rank: int = 50

    def installed(self) -> bool:
        """Whether its library is importable here (not whether a GPU exists)."""
        return importlib.util.find_spec(self.library) is not None

    def open_checked(self, info: ModelInfo, options: OpenOptions) -> Backend:
        if not self.installed():
            raise UserError(self.missing)
        return self.open(info, options)
