"""The explicit preset registry (named generator configurations)."""

from __future__ import annotations

from dataclasses import replace

from srgan_runtime.core.errors import UserError
from srgan_runtime.core.generator import GeneratorConfig

__all__ = ["PRESETS", "GeneratorConfig", "preset_config"]

# name -> (config at x4, description). ``preset_config`` sets the scale.
PRESETS: dict[str, tuple[GeneratorConfig, str]] = {
    "srresnet": (
        GeneratorConfig(channels=64, blocks=16, block="residual", batchnorm=True),
        "SRGAN paper generator: 16 residual blocks x 64 channels with BatchNorm (~1.5 M params)",
    ),
    "seed": (
        GeneratorConfig(
            scale=2, channels=64, blocks=8, block="bottleneck", bottleneck_channels=32,
            batchnorm=True, dropout=0.1,
        ),
        "the seed project's x2 generator: 8 bottleneck blocks (64->32->64), dropout 0.1",
    ),
    "large": (
        GeneratorConfig(channels=64, blocks=16, block="residual", batchnorm=False),
        "GPU quality preset: SRResNet's 16 blocks x 64 channels without BatchNorm (~1.5 M params)",
    ),
    "medium": (
        GeneratorConfig(channels=48, blocks=12, block="residual", batchnorm=False),
        "CPU quality preset: 12 residual blocks x 48 channels, no BatchNorm (~0.7 M params)",
    ),
    "small": (
        GeneratorConfig(channels=32, blocks=8, block="residual", batchnorm=False),
        "fast CPU preset: 8 residual blocks x 32 channels, no BatchNorm (~0.2 M params)",
    ),
    "tiny": (
        GeneratorConfig(channels=16, blocks=2, block="residual", batchnorm=False,
                        head_kernel=5, tail_kernel=5),
        "test/demo preset: 2 residual blocks x 16 channels (seconds per hundred steps)",
    ),
}


def preset_config(name: str, scale: int | None = None) -> GeneratorConfig:
    """The named preset's configuration at ``scale`` (its own default scale when None)."""
    try:
        cfg, _ = PRESETS[name]
    except KeyError:
        raise UserError(
            f"unknown preset {name!r} (choose from {', '.join(sorted(PRESETS))})"
        ) from None
    if scale is not None:
        cfg = replace(cfg, scale=scale)
    return cfg.validate()
