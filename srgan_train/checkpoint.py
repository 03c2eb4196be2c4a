"""Generator files (safetensors + metadata) and full training checkpoints, written atomically.

Nothing here unpickles arbitrary objects: generator files are safetensors, and training
checkpoints are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .archs import Generator, build_generator
from .config import GeneratorConfig
from .errors import UserError
from .images import atomic_write

FORMAT = "srgan-toolkit/generator"
FORMAT_VERSION = "1"


@dataclass
class GeneratorFile:
    """A loaded generator file: the model (eval mode) and its metadata."""

    model: Generator
    config: GeneratorConfig
    metadata: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def step(self) -> int:
        return int(self.metadata.get("step", "0"))


def _plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage; copy to be safe.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def save_generator(
    model: Generator,
    path: Path,
    *,
    preset: str,
    step: int,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the deployable generator: safetensors weights plus self-describing metadata."""
    from safetensors.torch import save_file

    cfg = model.config
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": "srgan_generator",
        "preset": preset,
        "scale": str(cfg.scale),
        "channels": str(cfg.channels),
        "blocks": str(cfg.blocks),
        "block": cfg.block,
        "config": cfg.to_json(),
        "value_range": "0-1",
        "colour_order": "RGB",
        "layout": "NCHW",
        "toolkit_version": __version__,
        "step": str(step),
    }
    for k, v in (extra or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    state = _plain_state(model)
    atomic_write(Path(path), lambda tmp: save_file(state, str(tmp), metadata=meta))


def read_generator_metadata(path: Path) -> dict[str, str]:
    """The metadata of a generator file, validated; raises UserError for foreign/corrupt files."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such generator file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises several private error types
        raise UserError(f"{path}: not a readable safetensors generator file ({exc})") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path}: not a generator file of this toolkit (no '{FORMAT}' metadata)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{path}: generator format version {meta.get('format_version')} is not supported"
        )
    return meta


def load_generator(path: Path, device: str | torch.device = "cpu") -> GeneratorFile:
    """Load a generator file into an eval-mode model; raises UserError on any mismatch."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_generator_metadata(path)
    try:
        cfg = GeneratorConfig.from_json(meta["config"])
    except (KeyError, ValueError, TypeError) as exc:
        raise UserError(f"{path}: generator metadata has no valid config ({exc})") from None
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:
        raise UserError(f"{path}: corrupt generator weights ({exc})") from None
    model = build_generator(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"{path}: weights do not match the stored config ({first})") from None
    model.eval().to(device)
    return GeneratorFile(model=model, config=cfg, metadata=meta, path=path)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_training_state(state: dict[str, Any], path: Path) -> None:
    """Write a full training checkpoint atomically (temp file, then rename)."""
    atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_training_state(path: Path) -> dict[str, Any]:
    """Read a training checkpoint without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such training checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: corrupt or foreign training checkpoint ({first})") from None
    if not isinstance(state, dict) or state.get("format") != "srgan-toolkit/train-state":
        raise UserError(f"{path}: not a training checkpoint of this toolkit")
    return state
