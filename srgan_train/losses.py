"""Training losses: pixel (L1/MSE), adversarial (BCE with logits) and VGG perceptual."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from srgan_runtime.core.errors import UserError


def pixel_loss(kind: str):
    """The pixel loss function named ``kind`` (``l1`` or ``mse``)."""
    if kind == "l1":
        return F.l1_loss
    if kind == "mse":
        return F.mse_loss
    raise UserError(f"unknown pixel loss {kind!r} (l1 or mse)")


def adversarial_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Vanilla GAN loss on discriminator logits (the seed's and SRGAN's choice)."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


class PerceptualLoss(nn.Module):
    """L1 distance between frozen VGG19 features of SR and HR (BasicSR's convention)."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.features(hr)
        return F.l1_loss(self.features(sr), target)
