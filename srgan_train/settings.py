"""A training run's settings (:class:`TrainConfig`), declared once: ``srtrain fit``'s options
are generated from its fields, and the run folder's ``config.json`` stores it resolved.
Torch-free, so the command line builds without importing torch."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import click

from srgan_runtime.core.cli import FiniteFloat
from srgan_runtime.core.errors import UserError, range_problem
from srgan_runtime.core.options import setting

PHASES = ("pretrain", "gan")
SCHEDULES = ("cosine", "step", "constant")
AMP_MODES = ("auto", "off", "bf16", "fp16")
# Options that may differ on --resume without changing the run's results.
RESUMABLE_OVERRIDES = frozenset(
    {"steps", "workers", "val_every", "save_every", "log_every", "progress", "threads",
     "time_limit", "save_minutes"}
)


@dataclass
class TrainConfig:
    """Every setting of a training run; stored resolved in the run folder's config.json."""

    data: list[str] = setting(
        help="Training folder (HR images, HR/ + LR_bicubic/X<s>/, or high_res/ + low_res/). "
             "Repeat for several. Not needed with --resume (the run's own is used).",
        factory=list, multiple=True, type=click.Path(path_type=Path))
    out: str = ""
    val: str | None = setting(None, type=click.Path(path_type=Path),
                              help="Validation folder (e.g. Set5).")
    scale: int = setting(4, type=click.IntRange(2, 4),
                         default_text="4, or the --init generator's", help="Upscaling factor.")
    preset: str = setting("small", type=str, default_text="small, or the --init one's",
                           help="Generator preset (srtrain presets).")
    phase: str = setting("pretrain", type=click.Choice(PHASES),
                          help="pretrain: pixel loss; gan: + adversarial/perceptual.")
    steps: int = setting(1000, type=int, help="Total training steps.")
    batch_size: int = setting(16, type=int, help="Patches per step.")
    patch_size: int = setting(96, type=int, help="HR patch size.")
    lr: float = setting(2e-4, type=FiniteFloat(0, lo_open=True), help="Generator learning rate.")
    lr_schedule: str = setting("cosine", type=click.Choice(SCHEDULES),
        help="Learning-rate schedule.")
    warmup_steps: int = setting(0, type=int, help="Linear warm-up steps.")
    min_lr_ratio: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    pixel_loss: str = setting("l1", type=click.Choice(["l1", "mse"]), help="Pixel loss.")
    pixel_weight: float | None = setting(
        None, type=FiniteFloat(0), default_text="1.0; 0.01 in the GAN phase with --vgg-weights",
        help="Weight of the pixel loss.")
    gan_weight: float = setting(5e-3, type=FiniteFloat(0), help="Weight of the adversarial loss.")
    perceptual_weight: float = setting(1.0, type=FiniteFloat(0), help="Weight of the VGG loss.")
    vgg_weights: str | None = setting(
        None, type=click.Path(path_type=Path),
        help="torchvision VGG19 weights file (.pth or .safetensors) for the perceptual loss; "
             "never downloaded.")
    vgg_layer: str = setting("conv5_4", type=str, help="VGG19 feature layer.")
    d_lr: float = setting(1e-4, type=FiniteFloat(0, lo_open=True),
        help="Discriminator learning rate.")
    ema_decay: float = setting(0.999, type=FiniteFloat(0, 1, hi_open=True),
        help="EMA decay of the weights saved.")
    grad_clip: float = setting(1.0, type=FiniteFloat(0), help="Max gradient norm (0 = off).")
    amp: str = setting("auto", type=click.Choice(AMP_MODES),
                       help="Mixed precision (auto: bf16/fp16 on CUDA, off on the CPU; bf16 on "
                            "the CPU only when asked).")
    device: str = setting("auto", help="auto, cpu, cuda, cuda:N.")
    seed: int = setting(0, type=int, help="Random seed.")
    workers: int = setting(0, type=int, help="DataLoader workers.")
    cache: bool = setting(True, help="Keep decoded training images in memory.")
    augment: bool = setting(True, help="Random flips and 90-degree rotations.")
    lr_from_hr: bool = setting(False, flag=True,
        help="Make LR from HR even when an LR folder exists.")
    val_every: int = setting(500, type=int, help="Validate every N steps.")
    save_every: int = setting(500, type=int, help="Checkpoint every N steps.")
    log_every: int = setting(10, type=int, help="Log every N steps.")
    save_minutes: float = setting(
        5.0, type=FiniteFloat(0),
        help="Also checkpoint when this many minutes have passed since the last one (0 = only "
             "every --save-every steps).")
    init: str | None = setting(
        None, type=click.Path(path_type=Path),
        help="Start from this generator file (e.g. the pretrain result for --phase gan).")
    progress: bool = setting(True, help="Show a progress bar.")
    threads: int = setting(0, type=int, help="CPU threads for torch (0 = torch's default).")
    time_limit: float | None = setting(
        None, type=FiniteFloat(0, lo_open=True), metavar="MINUTES",
        help="Train for about this long: the step count (and the LR schedule with it) is fitted "
             "to the measured speed, at most --steps.")
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> TrainConfig:
        """Fill phase-dependent defaults and check ranges."""
        if self.phase not in PHASES:
            raise UserError(f"unknown phase {self.phase!r} (pretrain or gan)")
        if self.lr_schedule not in SCHEDULES:
            raise UserError(f"unknown LR schedule {self.lr_schedule!r} (cosine, step, constant)")
        if self.amp not in AMP_MODES:
            raise UserError(f"unknown AMP mode {self.amp!r} (auto, off, bf16, fp16)")
        for name in ("steps", "batch_size", "patch_size", "val_every", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1")
        for name in ("warmup_steps", "workers", "threads"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} must be >= 0")
        _check_float("lr", self.lr, lo=0.0, lo_open=True)
        _check_float("d-lr", self.d_lr, lo=0.0, lo_open=True)
        _check_float("ema-decay", self.ema_decay, lo=0.0, hi=1.0, hi_open=True)
        _check_float("grad-clip", self.grad_clip, lo=0.0)
        _check_float("gan-weight", self.gan_weight, lo=0.0)
        _check_float("perceptual-weight", self.perceptual_weight, lo=0.0)
        _check_float("min-lr-ratio", self.min_lr_ratio, lo=0.0, hi=1.0)
        _check_float("beta1", self.beta1, lo=0.0, hi=1.0, hi_open=True)
        _check_float("beta2", self.beta2, lo=0.0, hi=1.0, hi_open=True)
        _check_float("save-minutes", self.save_minutes, lo=0.0)
        if self.pixel_weight is not None:
            _check_float("pixel-weight", self.pixel_weight, lo=0.0)
        if self.time_limit is not None:
            _check_float("time-limit", self.time_limit, lo=0.0, lo_open=True)
        if self.pixel_weight is None:
            with_vgg = self.phase == "gan" and self.vgg_weights
            self.pixel_weight = 1e-2 if with_vgg else 1.0
        if not self.data:
            raise UserError("no training data folder given (--data)")
        return self

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})



def _check_float(name: str, value: float, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, hi_open: bool = False) -> None:
    problem = range_problem(value, lo, hi, lo_open, hi_open)
    if problem:
        raise UserError(f"--{name} {problem}")
