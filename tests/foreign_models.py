"""Small random-weight models of other projects' architectures, built from spandrel's classes
and saved in each upstream project's own checkpoint layout (no weights can be downloaded here).

Each :class:`Case` names the architecture, the file it writes and what spandrel should detect.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Case:
    name: str  # test id
    arch: str  # spandrel's architecture id
    scale: int
    channels: int
    filename: str
    build: Callable[[Path], None]
    slow: bool = False  # window attention: export and measurement take longer
    fp16: bool = True  # spandrel's supports_half


def _seeded():
    import torch

    torch.manual_seed(0)


def _shrink(model, gain: float = 0.5) -> None:
    """Random weights scaled so that activations neither vanish nor blow up through the
    depth (a random network is otherwise mostly saturated or zero)."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.normal_(0, gain / fan_in**0.5)
            elif "weight" in name and "norm" in name.lower():
                p.fill_(1.0)
            else:
                p.zero_()


def _real_esrgan_layout(old: dict) -> dict:
    """spandrel's (old ESRGAN) key names -> Real-ESRGAN's RRDBNet names (``conv_first``,
    ``body.N.rdbM.convK``, ``conv_body``, ``conv_up1/2``, ``conv_hr``, ``conv_last``)."""
    blocks = {int(m.group(1)) for k in old if (m := re.match(r"model\.1\.sub\.(\d+)\.RDB", k))}
    nb = max(blocks) + 1
    ups = sorted({int(k.split(".")[1]) for k in old if re.match(r"model\.\d+\.weight", k)
                  and k.split(".")[1] not in ("0", "1")})
    # the last two convolutions are conv_hr and conv_last; those before them upsample
    names = {str(i): f"conv_up{j + 1}" for j, i in enumerate(ups[:-2])}
    names[str(ups[-2])], names[str(ups[-1])] = "conv_hr", "conv_last"
    new = {}
    for k, v in old.items():
        if k.startswith("model.0."):
            new["conv_first." + k.split(".")[-1]] = v
        elif m := re.match(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(\w+)", k):
            new[f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"] = v
        elif k.startswith(f"model.1.sub.{nb}."):
            new["conv_body." + k.split(".")[-1]] = v
        else:
            idx, kind = k.split(".")[1], k.split(".")[-1]
            new[f"{names[idx]}.{kind}"] = v
    return new


def esrgan_x4plus(path: Path) -> None:
    import torch
    from spandrel.architectures.ESRGAN import ESRGAN

    _seeded()
    m = ESRGAN(num_filters=16, num_blocks=2, scale=4)
    _shrink(m)
    torch.save({"params_ema": _real_esrgan_layout(m.state_dict())}, path)


def esrgan_x2plus(path: Path) -> None:
    """RealESRGAN_x2plus: RRDBNet on a pixel-unshuffled input (12 channels in)."""
    import torch
    from spandrel.architectures.ESRGAN import ESRGAN

    _seeded()
    m = ESRGAN(in_nc=12, num_filters=16, num_blocks=1, scale=4, shuffle_factor=2)
    _shrink(m)
    torch.save({"params_ema": _real_esrgan_layout(m.state_dict())}, path)


def compact(path: Path, grey: bool = False) -> None:
    """realesr-general-x4v3 / animevideo layout (``params``); grey: 1 channel, safetensors."""
    import torch
    from spandrel.architectures.Compact import Compact

    _seeded()
    c = 1 if grey else 3
    m = Compact(num_in_ch=c, num_out_ch=c, num_feat=16, num_conv=4, upscale=4)
    _shrink(m)
    if grey:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    else:
        torch.save({"params": m.state_dict()}, path)


def compact_lightning(path: Path) -> None:
    """A Lightning-style ``.ckpt``: the weights under ``state_dict`` beside training state."""
    import torch
    from spandrel.architectures.Compact import Compact

    _seeded()
    m = Compact(num_feat=8, num_conv=2, upscale=2)
    _shrink(m)
    torch.save({"state_dict": m.state_dict(), "epoch": 3, "global_step": 1200}, path)


def swinir(path: Path) -> None:
    import torch
    from spandrel.architectures.SwinIR import SwinIR

    _seeded()
    m = SwinIR(img_size=32, embed_dim=12, depths=[2], num_heads=[2], window_size=4,
               mlp_ratio=2.0, upscale=2, upsampler="pixelshuffledirect")
    _shrink(m)
    torch.save({"params": m.state_dict()}, path)


def hat(path: Path) -> None:
    import torch
    from spandrel.architectures.HAT import HAT

    _seeded()
    m = HAT(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4,
            compress_ratio=3, squeeze_factor=4, mlp_ratio=2.0, upscale=2, num_feat=16)
    _shrink(m)
    torch.save({"params_ema": m.state_dict()}, path)


def span(path: Path) -> None:
    import torch
    from spandrel.architectures.SPAN import SPAN

    _seeded()
    m = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=12, upscale=4)
    _shrink(m)
    torch.save({"params_ema": m.state_dict()}, path)


def omnisr(path: Path) -> None:
    import torch
    from spandrel.architectures.OmniSR import OmniSR

    _seeded()
    m = OmniSR(num_feat=16, block_num=1, window_size=8, res_num=1, up_scale=2)
    _shrink(m)
    torch.save(m.state_dict(), path)


def rcan(path: Path) -> None:
    """EDSR-PyTorch's layout: a plain state dict in a ``.pt`` file."""
    import torch
    from spandrel.architectures.RCAN import RCAN

    _seeded()
    m = RCAN(scale=2, n_resgroups=1, n_resblocks=2, n_feats=16, reduction=4)
    _shrink(m)
    torch.save(m.state_dict(), path)


CASES = [
    Case("esrgan-x4plus", "ESRGAN", 4, 3, "RealESRGAN_x4plus_tiny.pth", esrgan_x4plus),
    Case("esrgan-x2plus", "ESRGAN", 2, 3, "RealESRGAN_x2plus_tiny.pth", esrgan_x2plus),
    Case("compact", "Compact", 4, 3, "realesr-general-x4v3_tiny.pth", compact),
    Case("compact-grey", "Compact", 4, 1, "compact_grey_tiny.safetensors",
         lambda p: compact(p, grey=True)),
    Case("compact-ckpt", "Compact", 2, 3, "compact_x2_tiny.ckpt", compact_lightning),
    Case("swinir", "SwinIR", 2, 3, "SwinIR_tiny.pth", swinir, slow=True, fp16=False),
    Case("hat", "HAT", 2, 3, "HAT_tiny.pth", hat, slow=True, fp16=False),
    Case("span", "SPAN", 4, 3, "SPAN_tiny.pth", span),
    Case("omnisr", "OmniSR", 2, 3, "OmniSR_tiny.pth", omnisr),
    Case("rcan", "RCAN", 2, 3, "RCAN_tiny.pt", rcan, fp16=False),
]
