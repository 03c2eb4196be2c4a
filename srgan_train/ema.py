"""Exponential moving average of a model's parameters and buffers."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps ``shadow = d * shadow + (1 - d) * model`` for parameters and floating buffers
    (BatchNorm running statistics); integer buffers are copied.

    ``d = min(decay, (1 + step) / (10 + step))``: the average follows the model closely early
    on, so short runs are not dominated by the initial weights.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        w = 1.0 - min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow.parameters(), model.parameters(), strict=True):
            s.lerp_(p.detach(), w)
        for s, b in zip(self.shadow.buffers(), model.buffers(), strict=True):
            if s.is_floating_point():
                s.lerp_(b, w)
            else:
                s.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.shadow.load_state_dict(state)
