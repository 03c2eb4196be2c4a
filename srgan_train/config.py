"""Generator configurations and the explicit preset registry."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace

from srgan_runtime.core.errors import UserError

SUPPORTED_SCALES = (2, 3, 4)
# Far above any preset (srresnet: 64 channels, 16 blocks, 9x9 kernels); they bound what a
# config in an untrusted file can make the loader build.
MAX_CHANNELS, MAX_BLOCKS, MAX_KERNEL = 1024, 256, 15


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to rebuild a generator; stored in every generator file."""

    scale: int = 4
    channels: int = 64
    blocks: int = 16
    block: str = "residual"  # "residual" (SRResNet) or "bottleneck" (the seed's)
    bottleneck_channels: int = 32
    batchnorm: bool = True
    dropout: float = 0.0
    head_kernel: int = 9
    tail_kernel: int = 9
    in_channels: int = 3
    out_channels: int = 3

    def validate(self) -> GeneratorConfig:
        """Check types and ranges, so that a config read from an untrusted file cannot ask
        for an absurd network (it is built before its weights are loaded)."""
        for f in fields(self):
            value = getattr(self, f.name)
            want = {"int": int, "float": (int, float), "str": str, "bool": bool}[f.type]
            if not isinstance(value, want) or (f.type != "bool" and isinstance(value, bool)):
                raise UserError(f"generator setting {f.name}={value!r} has the wrong type")
        if self.scale not in SUPPORTED_SCALES:
            raise UserError(f"scale {self.scale} is not supported (choose one of 2, 3, 4)")
        if self.block not in ("residual", "bottleneck"):
            raise UserError(f"unknown block type {self.block!r} (residual or bottleneck)")
        if self.channels < 1 or self.blocks < 0 or self.bottleneck_channels < 1:
            raise UserError("channels and bottleneck channels must be >= 1, blocks >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.head_kernel % 2 == 0 or self.tail_kernel % 2 == 0:
            raise UserError("head and tail kernels must be odd")
        limits = {"channels": MAX_CHANNELS, "bottleneck_channels": MAX_CHANNELS,
                  "blocks": MAX_BLOCKS, "head_kernel": MAX_KERNEL, "tail_kernel": MAX_KERNEL,
                  "in_channels": 4, "out_channels": 4}
        for name, top in limits.items():
            value = getattr(self, name)
            if not 1 <= value <= top and not (name == "blocks" and value == 0):
                raise UserError(f"generator setting {name}={value} is outside 1..{top}")
        return self

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GeneratorConfig:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UserError(f"unknown generator settings {sorted(unknown)}")
        return cls(**data).validate()


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
