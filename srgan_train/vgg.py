"""VGG19 feature extractor for the perceptual loss, built without torchvision.

The layer layout matches torchvision's ``vgg19().features`` so that its weights file
(``features.<i>.weight`` keys; ``.pth`` read with ``weights_only=True`` or ``.safetensors``)
loads directly. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from srgan_runtime.core.errors import UserError, first_line

# torchvision's configuration "E": numbers are conv widths, "M" is max-pooling.
_VGG19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def _layer_names() -> list[str]:
    names, block, conv = [], 1, 1
    for v in _VGG19:
        if v == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


LAYER_NAMES = _layer_names()


def vgg19_features(upto: str) -> nn.Sequential:
    """torchvision-compatible ``vgg19().features`` truncated after layer ``upto``
    (for example ``conv5_4``, the SRGAN paper's VGG54 before activation, or ``relu4_3``)."""
    if upto not in LAYER_NAMES:
        raise UserError(f"unknown VGG19 layer {upto!r} (e.g. conv5_4, relu5_4, relu4_3)")
    layers: list[nn.Module] = []
    c_in = 3
    for v in _VGG19:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU(inplace=False)]
            c_in = int(v)
    return nn.Sequential(*layers[: LAYER_NAMES.index(upto) + 1])


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    from .checkpoint import safe_torch_load

    obj = safe_torch_load(path, "VGG19 weights file")
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a VGG19 state dict")
    return obj


class VGGFeatures(nn.Module):
    """Frozen VGG19 features of RGB [0, 1] images, ImageNet-normalised inside."""

    def __init__(self, weights: Path, layer: str = "conv5_4") -> None:
        super().__init__()
        self.features = vgg19_features(layer)
        path = Path(weights)
        try:
            state = _read_state(path)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"{path}: cannot read VGG19 weights ({first_line(exc)})") from None
        feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        wanted = self.features.state_dict().keys()
        missing = [k for k in wanted if k not in feats]
        if missing:
            raise UserError(
                f"{path}: not torchvision VGG19 weights (missing features.{missing[0]})"
            )
        try:
            self.features.load_state_dict({k: feats[k] for k in wanted})
        except RuntimeError as exc:
            raise UserError(f"{path}: VGG19 weights of the wrong shape ({first_line(exc)})"
                            ) from None
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:  # always frozen
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x - self.mean) / self.std)
