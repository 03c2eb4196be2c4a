"""SRGAN-family generator and the VGG-style discriminator.

``forward`` has no train-only branches: in eval mode BatchNorm is an affine map that exporters
fold into the preceding convolution, and dropout is the identity.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from srgan_runtime.core.generator import GeneratorConfig


class ResidualBlock(nn.Module):
    """SRResNet block: conv3x3-BN-PReLU-conv3x3-BN plus identity."""

    def __init__(self, channels: int, batchnorm: bool, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, channels, 3, padding=1, bias=not batchnorm)]
        if batchnorm:
            layers.append(nn.BatchNorm2d(channels))
        layers.append(nn.PReLU(channels))
        layers.append(nn.Conv2d(channels, channels, 3, padding=1, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm2d(channels))
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class BottleneckBlock(nn.Module):
    """The seed's block: conv c->b, [conv b->b, BN, PReLU], [conv b->b, BN], conv b->c, + x."""

    def __init__(self, channels: int, inner: int, batchnorm: bool, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(channels, inner, 3, padding=1),
            nn.Conv2d(inner, inner, 3, padding=1, bias=not batchnorm),
        ]
        if batchnorm:
            layers.append(nn.BatchNorm2d(inner))
        layers.append(nn.PReLU(inner))
        layers.append(nn.Conv2d(inner, inner, 3, padding=1, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm2d(inner))
        layers.append(nn.Conv2d(inner, channels, 3, padding=1))
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _cubic(t: float, a: float = -0.75) -> float:
    """Keys cubic convolution kernel (``a = -0.75`` is PyTorch's bicubic)."""
    t = abs(t)
    if t <= 1:
        return (a + 2) * t**3 - (a + 3) * t**2 + 1
    if t < 2:
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return 0.0


def bicubic_phase_kernels(scale: int) -> torch.Tensor:
    """``(scale*scale, 5, 5)`` float64 kernels: phase ``py*scale + px`` of bicubic upsampling
    (``align_corners=False``), applied to the 5x5 neighbourhood centred on each LR pixel."""
    taps = torch.zeros(scale, 5, dtype=torch.float64)
    for p in range(scale):
        d = (p + 0.5) / scale - 0.5  # source offset of output phase p from its LR pixel
        base = math.floor(d)
        t = d - base
        for j, w in zip(range(-1, 3), (_cubic(t + 1), _cubic(t), _cubic(1 - t), _cubic(2 - t)),
                        strict=True):
            taps[p, base + j + 2] += w
    return torch.einsum("yi,xj->yxij", taps, taps).reshape(scale * scale, 5, 5)


class BicubicUpsample(nn.Module):
    """Exactly ``F.interpolate(x, scale_factor=s, mode="bicubic", align_corners=False)``,
    written as edge padding, a depthwise 5x5 convolution and PixelShuffle.

    Exported graphs then hold only Pad/Conv/DepthToSpace, so no backend's cubic-Resize
    semantics matter, and shapes stay simple for dynamic-size export.
    """

    def __init__(self, scale: int, channels: int = 3) -> None:
        super().__init__()
        self.scale = scale
        self.channels = channels
        k = bicubic_phase_kernels(scale).to(torch.float32)
        weight = k.repeat(channels, 1, 1).unsqueeze(1)  # (C*s*s, 1, 5, 5), channel-major
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (2, 2, 2, 2), mode="replicate")
        y = F.conv2d(x, self.weight.to(x.dtype), groups=self.channels)
        return F.pixel_shuffle(y, self.scale)


def _upsampler(channels: int, scale: int) -> nn.Sequential:
    """PixelShuffle stages: x2 and x3 in one stage, x4 as two x2 stages."""
    factors = [2, 2] if scale == 4 else [scale]
    layers: list[nn.Module] = []
    for f in factors:
        layers += [
            nn.Conv2d(channels, channels * f * f, 3, padding=1),
            nn.PixelShuffle(f),
            nn.PReLU(channels),
        ]
    return nn.Sequential(*layers)


class Generator(nn.Module):
    """SRResNet-style generator with a global bicubic skip.

    Input: N x C x H x W in [0, 1]; output: N x C x sH x sW, ``bicubic(x) + residual(x)``,
    unclamped (clamp and round at the consumer).
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        cfg = config.validate()
        self.config = cfg
        c = cfg.channels
        self.head = nn.Sequential(
            nn.Conv2d(cfg.in_channels, c, cfg.head_kernel, padding=cfg.head_kernel // 2),
            nn.PReLU(c),
        )
        if cfg.block == "bottleneck":
            blocks = [
                BottleneckBlock(c, cfg.bottleneck_channels, cfg.batchnorm, cfg.dropout)
                for _ in range(cfg.blocks)
            ]
        else:
            blocks = [ResidualBlock(c, cfg.batchnorm, cfg.dropout) for _ in range(cfg.blocks)]
        self.body = nn.Sequential(*blocks)
        trunk: list[nn.Module] = [nn.Conv2d(c, c, 3, padding=1, bias=not cfg.batchnorm)]
        if cfg.batchnorm:
            trunk.append(nn.BatchNorm2d(c))
        self.trunk = nn.Sequential(*trunk)
        self.upsample = _upsampler(c, cfg.scale)
        self.tail = nn.Conv2d(c, cfg.out_channels, cfg.tail_kernel, padding=cfg.tail_kernel // 2)
        self.bicubic = BicubicUpsample(cfg.scale, cfg.in_channels)
        # A small residual at start: the untrained network already equals bicubic upscaling.
        with torch.no_grad():
            self.tail.weight.mul_(0.1)
            self.tail.bias.zero_()

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The learned part of the output (everything but the bicubic skip)."""
        feat = self.head(x)
        feat = feat + self.trunk(self.body(feat))
        return self.tail(self.upsample(feat))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Not x.device.type: that is a proxy under torch.fx tracing (BN folding).
        amp = next((d for d in ("cuda", "cpu") if torch.is_autocast_enabled(d)), None)
        if amp is not None:
            # Under mixed precision the bicubic base (values up to 1.0) would lose ~0.5 grey
            # levels to bf16 rounding; only the small learned residual runs in low precision.
            with torch.autocast(amp, enabled=False):
                base = self.bicubic(x.float())
            return base + self.residual(x).float()
        return self.bicubic(x) + self.residual(x)


def subpixel_tail(model: Generator) -> Generator:
    """An equivalent copy for inference whose tail convolution runs before the last
    PixelShuffle instead of after it.

    The tail (k x k, C -> 3) on the full-resolution map has 3 output channels, which CPU and GPU
    convolution kernels vectorise over and so run at a fraction of their speed (measured: the
    tail took 38% of an OpenVINO f32 tile for 11% of the FLOPs). Written as a
    ceil(k/2f)*2+1 square convolution from the C*f*f channels before the shuffle to 3*f*f
    sub-pixel outputs, then the shuffle, it computes the same function (zero padding included)
    with 1.2x the FLOPs in wider, faster kernels. The last PReLU moves before the shuffle with
    its per-channel weights repeated. Other layouts are returned unchanged (as a copy).
    """
    g = copy.deepcopy(model)
    *head, conv, shuffle, act = list(g.upsample)
    tail = g.tail
    if not (isinstance(conv, nn.Conv2d) and isinstance(shuffle, nn.PixelShuffle)
            and isinstance(act, nn.PReLU) and isinstance(tail, nn.Conv2d)
            and tail.stride == (1, 1) and tail.groups == 1
            and tail.kernel_size[0] == tail.kernel_size[1]
            and tail.padding == (tail.kernel_size[0] // 2,) * 2):
        return g
    f = shuffle.upscale_factor
    ff = f * f
    w = tail.weight.detach()
    out_c, in_c, k, _ = w.shape
    r = k // 2
    pad = -(-r // f)
    size = 2 * pad + 1
    w_new = torch.zeros(out_c * ff, in_c * ff, size, size, dtype=w.dtype, device=w.device)
    for a in range(f):  # output phase (row), b: output phase (column)
        for b in range(f):
            for s in range(f):  # input phase within the shuffled map
                for t in range(f):
                    for dy in range(-pad, pad + 1):
                        u = f * dy + s - a
                        for dx in range(-pad, pad + 1):
                            v = f * dx + t - b
                            if abs(u) <= r and abs(v) <= r:
                                w_new[a * f + b::ff, s * f + t::ff, dy + pad, dx + pad] = \
                                    w[:, :, u + r, v + r]
    new_tail = nn.Conv2d(in_c * ff, out_c * ff, size, padding=pad, bias=tail.bias is not None)
    new_act = nn.PReLU(act.num_parameters * ff if act.num_parameters > 1 else 1)
    with torch.no_grad():
        new_tail.weight.copy_(w_new)
        if tail.bias is not None:
            new_tail.bias.copy_(tail.bias.detach().repeat_interleave(ff))
        new_act.weight.copy_(act.weight.detach().repeat_interleave(ff)
                             if act.num_parameters > 1 else act.weight.detach())
    dev, dt = w.device, w.dtype
    g.upsample = nn.Sequential(*head, conv, new_act.to(dev, dt))
    g.tail = nn.Sequential(new_tail.to(dev, dt), nn.PixelShuffle(f))
    return g


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class Discriminator(nn.Module):
    """SRGAN VGG-style discriminator for any patch size (adaptive pooling to 6x6, which is
    exactly the paper's 96-pixel geometry)."""

    def __init__(self, in_channels: int = 3, base: int = 64) -> None:
        super().__init__()
        widths = [base, base, base * 2, base * 2, base * 4, base * 4, base * 8, base * 8]
        layers: list[nn.Module] = []
        prev = in_channels
        for i, w in enumerate(widths):
            stride = 1 if i % 2 == 0 else 2
            layers.append(nn.Conv2d(prev, w, 3, stride=stride, padding=1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(w))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            prev = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(6)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(prev * 36, 1024),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(1024, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


def build_generator(config: GeneratorConfig) -> Generator:
    """Construct a generator from its configuration (the registry's single entry point)."""
    return Generator(config)
