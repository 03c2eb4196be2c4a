"""Engines by name: files as given, or the generators bundled with the training package."""

from __future__ import annotations

from pathlib import Path

from srgan_runtime.core.errors import UserError
from srgan_train.models import bundled_models, default_generator, resolve_generator

__all__ = ["bundled_models", "default_engine", "resolve_engine"]


def resolve_engine(name_or_path: str | Path) -> Path:
    """An engine file (.safetensors, .onnx, .plan), a run folder, or a bundled model name."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    return resolve_generator(name_or_path)


def default_engine(scale: int | None = None) -> Path:
    """The bundled default model (of ``scale``, when given)."""
    if scale is not None:
        return default_generator(scale)
    try:
        return default_generator()
    except UserError:
        raise UserError("no --engine given and no bundled default model in this build; pass "
                        "--engine (a generator from 'srtrain fit', an ONNX file or a plan)"
                        ) from None
