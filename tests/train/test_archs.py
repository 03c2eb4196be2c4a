"""Generator family, presets, BatchNorm folding, receptive field and discriminator."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from srgan_runtime.core.errors import UserError
from srgan_runtime.core.generator import receptive_radius
from srgan_train.archs import (
    Discriminator,
    build_generator,
    count_parameters,
)
from srgan_train.config import PRESETS, GeneratorConfig, preset_config


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("block", ["residual", "bottleneck"])
def test_output_shape_any_size(scale: int, block: str) -> None:
    cfg = GeneratorConfig(scale=scale, channels=8, blocks=2, block=block, bottleneck_channels=4)
    g = build_generator(cfg).eval()
    for n, h, w in [(1, 7, 9), (3, 16, 5)]:
        y = g(torch.rand(n, 3, h, w))
        assert y.shape == (n, 3, h * scale, w * scale)


def test_presets_exist_and_srresnet_has_paper_size() -> None:
    assert {"srresnet", "seed", "small", "tiny"} <= set(PRESETS)
    g = build_generator(preset_config("srresnet", 4))
    assert 1.50e6 < count_parameters(g) < 1.56e6  # the paper's ~1.55 M
    seed = preset_config("seed")
    assert seed.scale == 2 and seed.block == "bottleneck" and seed.blocks == 8
    assert count_parameters(build_generator(preset_config("small"))) < 0.3e6
    with pytest.raises(UserError, match="unknown preset"):
        preset_config("nope")
    with pytest.raises(UserError, match="scale"):
        preset_config("small", 5)


def test_untrained_generator_is_close_to_bicubic() -> None:
    torch.manual_seed(0)
    g = build_generator(preset_config("small", 4)).eval()
    x = torch.rand(1, 3, 24, 24)
    base = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    with torch.no_grad():
        diff = (g(x) - base).abs().mean().item()
    assert diff < 0.05


def _randomise_bn(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


@pytest.mark.parametrize("preset", ["srresnet", "seed"])
def test_batchnorm_folds_in_eval_mode(preset: str) -> None:
    """Conv+BN folding (what exporters do) leaves the eval output unchanged and removes BN."""
    from torch.fx.experimental.optimization import fuse

    torch.manual_seed(0)
    g = build_generator(preset_config(preset)).eval()
    _randomise_bn(g)
    fused = fuse(g)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.rand(2, 3, 12, 10)
    with torch.no_grad():
        assert torch.allclose(g(x), fused(x), atol=1e-4)


def test_eval_forward_is_deterministic_with_dropout() -> None:
    g = build_generator(preset_config("seed")).eval()
    x = torch.rand(1, 3, 10, 10)
    with torch.no_grad():
        assert torch.equal(g(x), g(x))


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_receptive_radius_bounds_the_influence_of_a_pixel(preset: str) -> None:
    torch.manual_seed(0)
    cfg = preset_config(preset, 4)
    g = build_generator(cfg).eval()
    for p in g.parameters():  # make every layer matter
        p.data.normal_(0, 0.2)
    r = receptive_radius(cfg)
    size, c = 2 * r + 21, r + 10
    x = torch.rand(1, 3, size, size)
    x2 = x.clone()
    x2[..., c, c] += 1.0
    with torch.no_grad():
        d = (g(x2) - g(x)).abs().sum(1)[0]
    ys, xs = torch.nonzero(d > 0, as_tuple=True)
    lo, hi = (c - r) * 4, (c + r + 1) * 4
    assert ys.min() >= lo and ys.max() < hi and xs.min() >= lo and xs.max() < hi
    # ... and the radius is not wildly pessimistic: the effect reaches beyond radius - 2.
    assert ys.min() < (c - r + 2) * 4


def test_discriminator_accepts_any_patch_size() -> None:
    d = Discriminator()
    for s in (32, 96, 128, 50):
        assert d(torch.rand(2, 3, s, s)).shape == (2, 1)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_module_equals_torch_interpolate(scale: int) -> None:
    from srgan_train.archs import BicubicUpsample

    m = BicubicUpsample(scale)
    for shape in [(2, 3, 7, 9), (1, 3, 1, 1), (1, 3, 2, 5), (1, 3, 33, 17)]:
        x = torch.rand(*shape)
        ref = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
        assert torch.allclose(m(x), ref, atol=1e-6)


@pytest.mark.parametrize(("preset", "scale"), [("tiny", 4), ("srresnet", 4), ("large", 2),
                                               ("medium", 3), ("seed", 2)])
def test_subpixel_tail_computes_the_same_function(preset: str, scale: int) -> None:
    """The tail moved before the last PixelShuffle: same outputs (borders included), 3*f*f
    sub-pixel outputs instead of 3 full-resolution ones."""
    from srgan_train.archs import subpixel_tail

    torch.manual_seed(3)
    g = build_generator(preset_config(preset, scale)).eval()
    with torch.no_grad():  # move away from the near-bicubic start, PReLU slopes of both signs
        for p in g.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        for m in g.modules():
            if isinstance(m, nn.PReLU):
                m.weight.uniform_(-0.5, 0.5)
    h = subpixel_tail(g).eval()
    f = 3 if scale == 3 else 2
    assert isinstance(h.tail[1], nn.PixelShuffle) and h.tail[0].out_channels == 3 * f * f
    x = torch.rand(2, 3, 13, 17, dtype=torch.float64)
    with torch.no_grad():
        a, b = g.double()(x), h.double()(x)
    assert a.shape == b.shape
    assert torch.allclose(a, b, rtol=0, atol=1e-12)
    assert isinstance(g.tail, nn.Conv2d)  # the original is left as it was


def test_subpixel_tail_leaves_other_layouts_alone() -> None:
    from srgan_train.archs import subpixel_tail

    g = build_generator(preset_config("tiny", 4)).eval()
    g.tail = nn.Conv2d(16, 3, 5, padding=0)  # not "same" padding: no rewrite
    h = subpixel_tail(g)
    assert isinstance(h.tail, nn.Conv2d) and h is not g
