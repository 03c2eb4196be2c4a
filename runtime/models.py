"""Bundled models, addressed by name (``--engine NAME``)."""

from __future__ import annotations

from pathlib import Path

from srgan_train.errors import UserError

MODEL_DIR = Path(__file__).resolve().parent / "models"


def bundled_models() -> dict[str, Path]:
    """Name -> generator file of every model shipped inside the package."""
    if not MODEL_DIR.is_dir():
        return {}
    return {p.name.removesuffix(".safetensors"): p for p in sorted(MODEL_DIR.glob("*.safetensors"))}


def resolve_engine(name_or_path: str | Path) -> Path:
    """A path as given, or the bundled model of that name."""
    p = Path(name_or_path)
    if p.exists():
        return p
    models = bundled_models()
    if str(name_or_path) in models:
        return models[str(name_or_path)]
    known = ", ".join(models) or "none bundled yet"
    raise UserError(f"{name_or_path}: no such engine file or bundled model ({known})")


def default_engine() -> Path:
    models = bundled_models()
    if "default" in models:
        return models["default"]
    raise UserError("no --engine given and no bundled default model in this build; pass "
                    "--engine (a generator from 'srtrain fit', an ONNX file or a plan)")
