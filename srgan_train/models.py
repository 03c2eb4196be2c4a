"""Generators bundled inside the package, addressed by name (``default``, ...), and the one
place that turns a user's "generator" argument (file, run folder or bundled name) into a file."""

from __future__ import annotations

from pathlib import Path

from srgan_runtime.core.errors import UserError

MODEL_DIR = Path(__file__).resolve().parent / "models"


def bundled_models() -> dict[str, Path]:
    """Name -> generator file of every model shipped inside the package."""
    if not MODEL_DIR.is_dir():
        return {}
    return {p.name.removesuffix(".safetensors"): p
            for p in sorted(MODEL_DIR.glob("*.safetensors"))}


def resolve_generator(spec: str | Path) -> Path:
    """A generator file, a run folder (its ``generator.safetensors``) or a bundled name."""
    p = Path(spec)
    if p.is_dir():
        cand = p / "generator.safetensors"
        if not cand.is_file():
            raise UserError(f"{p}: run folder has no generator.safetensors")
        return cand
    if p.exists():
        return p
    models = bundled_models()
    if str(spec) in models:
        return models[str(spec)]
    known = ", ".join(models) or "none bundled in this build"
    raise UserError(f"{spec}: no such file, run folder or bundled model ({known})")


def default_generator(scale: int | None = None) -> Path:
    """The bundled ``default`` model, or for ``scale`` the bundled model of that scale
    (``default`` if it matches, then ``x<scale>``, then any other)."""
    models = bundled_models()
    if scale is None:
        if "default" in models:
            return models["default"]
        raise UserError("no generator given and no bundled default model in this build")
    from srgan_runtime.core.generator import read_generator_metadata

    order = ["default", f"x{scale}", *sorted(models)]
    for name in dict.fromkeys(n for n in order if n in models):
        if int(read_generator_metadata(models[name])["scale"]) == scale:
            return models[name]
    raise UserError(f"no bundled x{scale} model in this build (bundled: "
                    f"{', '.join(models) or 'none'}); pass --engine")
