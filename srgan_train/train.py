"""The training loop behind ``srtrain fit``: pretrain (pixel loss) and GAN phases, EMA, AMP,
validation, atomic checkpoints and exact resume."""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srgan_runtime.core import __version__
from srgan_runtime.core.errors import UserError, first_line

from . import distributed
from .archs import Discriminator, Generator, build_generator, count_parameters
from .checkpoint import (
    PREVIOUS,
    load_generator,
    load_training_state,
    save_generator,
    save_training_state,
)
from .config import GeneratorConfig, preset_config
from .data import PatchDataset, find_pairs, make_loader
from .ema import EMA
from .evaluate import EvalPair, evaluate, load_eval_set, torch_upscaler
from .losses import PerceptualLoss, adversarial_loss, pixel_loss
from .settings import TrainConfig

log = logging.getLogger(__name__)

GENERATOR_FILE = "generator.safetensors"
LAST_CHECKPOINT = "checkpoints/last.pt"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"

# Steps timed (after the first few) before a --time-limit run fits its step count.
PROBE_SKIP, PROBE_STEPS = 10, 100
# Share of the measured rate a fitted run plans on: room for validation and checkpoints.
TIME_MARGIN = 0.92


def lr_factor(schedule: str, step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "step":  # halve at 50%, 75% and 90% of training
        return 0.5 ** sum(progress >= m for m in (0.5, 0.75, 0.9))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA GPU")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}") from None


def pick_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for the mode on this device (None: full fp32).

    On the CPU only an explicit ``bf16`` enables it (about 2x faster on CPUs with AVX-512 BF16,
    emulated and slow elsewhere, so ``auto`` stays fp32 there).
    """
    if mode == "off":
        return None
    if device.type != "cuda":
        if mode == "bf16" and device.type == "cpu":
            return torch.bfloat16
        if mode in ("bf16", "fp16"):
            log.warning("AMP %s is not used on %s; training in fp32", mode, device)
        return None
    if mode == "fp16":
        return torch.float16
    if mode == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


@dataclass
class FitResult:
    """What a finished (or interrupted) run produced."""

    run_dir: Path
    step: int
    interrupted: bool
    best_psnr: float | None
    best_step: int | None
    generator: Path | None
    seconds: float
    samples_per_s: float


class _MetricsLog:
    """Appends train/val rows to metrics.jsonl, train.csv and val.csv."""

    TRAIN_COLS = ("step", "loss", "pixel", "perceptual", "adversarial", "d_loss", "lr",
                  "samples_per_s")
    VAL_COLS = ("step", "psnr", "ssim")

    def __init__(self, run_dir: Path, resume_step: int | None) -> None:
        self.jsonl = run_dir / METRICS_FILE
        self.train_csv = run_dir / "train.csv"
        self.val_csv = run_dir / "val.csv"
        if resume_step is not None:
            self._truncate(resume_step)

    def _truncate(self, step: int) -> None:
        # Rows logged after the checkpoint we resume from would be logged again: drop them.
        if self.jsonl.exists():
            keep = [ln for ln in self.jsonl.read_text().splitlines()
                    if ln.strip() and json.loads(ln)["step"] <= step]
            self.jsonl.write_text("".join(k + "\n" for k in keep))
        for path in (self.train_csv, self.val_csv):
            if path.exists():
                lines = path.read_text().splitlines()
                keep = lines[:1] + [ln for ln in lines[1:] if int(ln.split(",")[0]) <= step]
                path.write_text("".join(k + "\n" for k in keep))

    def _append_csv(self, path: Path, cols: tuple[str, ...], row: dict) -> None:
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(cols)
            w.writerow([row.get(c, "") for c in cols])

    def train(self, row: dict) -> None:
        with open(self.jsonl, "a") as f:
            f.write(json.dumps({"kind": "train", **row}) + "\n")
        self._append_csv(self.train_csv, self.TRAIN_COLS, row)

    def val(self, row: dict) -> None:
        with open(self.jsonl, "a") as f:
            f.write(json.dumps({"kind": "val", **row}) + "\n")
        self._append_csv(self.val_csv, self.VAL_COLS, row)


def prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> bool:
    """Create the run folder; refuse to reuse one unless resuming or overwriting. Returns
    whether this call created it (so that a run failing before its first checkpoint can take
    it away again)."""
    if resume:
        if not (out / LAST_CHECKPOINT).is_file():
            prev = (out / LAST_CHECKPOINT).with_name(PREVIOUS)
            hint = (f"; {prev} is there: 'mv {prev} {out / LAST_CHECKPOINT}' resumes from it"
                    if prev.is_file() else "")
            raise UserError(f"{out}: nothing to resume (no {LAST_CHECKPOINT}){hint}")
        return False
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise UserError(f"{out}: run folder exists; use --resume to continue or --overwrite")
        if not (out / CONFIG_FILE).is_file():
            raise UserError(f"{out}: not a run folder of srtrain; refusing to delete it")
        shutil.rmtree(out)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create run folder ({exc.strerror})") from None
    return created


# What a run writes before its first checkpoint: removable when it fails that early.
_EARLY_FILES = frozenset({CONFIG_FILE, METRICS_FILE, "train.csv", "val.csv", "checkpoints"})


def discard_failed_run(out: Path) -> bool:
    """Remove a run folder that a failed run created but never checkpointed (nothing in it can
    be resumed or used); a folder holding anything else is kept. Returns whether it went."""
    out = Path(out)
    if not out.is_dir() or (out / LAST_CHECKPOINT).exists() or (out / GENERATOR_FILE).exists():
        return False
    names = {p.name for p in out.iterdir()}
    ckpt = out / "checkpoints"
    if not names <= _EARLY_FILES or (ckpt.is_dir() and any(ckpt.iterdir())):
        return False
    shutil.rmtree(out, ignore_errors=True)
    return True


class Trainer:
    """One training run. ``fit()`` runs to ``config.steps`` or until ``request_stop()``."""

    def __init__(self, config: TrainConfig, *, resume: bool = False) -> None:
        self.cfg = config.resolved()
        self.run_dir = Path(self.cfg.out)
        # Under torchrun, join the job (already done by `srtrain fit`; here for API users).
        self.dist = distributed.init_from_env(self.cfg.device)
        self.device = pick_device(self.cfg.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)  # one GPU per rank
        if self.dist.enabled and self.cfg.batch_size % self.dist.world:
            raise UserError(f"--batch-size {self.cfg.batch_size} must be divisible by the "
                            f"{self.dist.world} processes (it is the global batch)")
        self.amp_dtype = pick_amp(self.cfg.amp, self.device)
        self._stop = False
        self.step = 0
        self.best_psnr: float | None = None
        self.best_step: int | None = None
        self.on_step: Callable[[Trainer, dict], None] | None = None

        if self.cfg.threads > 0:
            torch.set_num_threads(self.cfg.threads)
        torch.manual_seed(self.cfg.seed)
        gen_cfg = self._generator_config()
        self.gen_config = gen_cfg
        # channels_last: oneDNN's fast convolution layout on CPUs, tensor cores' on GPUs.
        self.G: Generator = build_generator(gen_cfg).to(self.device,
                                                         memory_format=torch.channels_last)
        if self.dist.enabled and self.device.type == "cuda":
            # BatchNorm statistics over the global batch, as in a single process (presets
            # with BN only; synchronized BatchNorm runs on CUDA).
            self.G = nn.SyncBatchNorm.convert_sync_batchnorm(self.G)
        if self.cfg.init and not resume:
            self._load_init(gen_cfg)
        self.ema = EMA(self.G, self.cfg.ema_decay)
        betas = (self.cfg.beta1, self.cfg.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=self.cfg.lr, betas=betas)
        self.sched_g = self._scheduler(self.opt_g)
        self.D: Discriminator | None = None
        self.opt_d = self.sched_d = None
        self.perceptual: PerceptualLoss | None = None
        if self.cfg.phase == "gan":
            self.D = Discriminator(gen_cfg.out_channels).to(self.device)
            if self.dist.enabled and self.device.type == "cuda":
                self.D = nn.SyncBatchNorm.convert_sync_batchnorm(self.D)
            self.opt_d = torch.optim.Adam(self.D.parameters(), lr=self.cfg.d_lr, betas=betas)
            self.sched_d = self._scheduler(self.opt_d)
            if self.cfg.vgg_weights:
                from .vgg import VGGFeatures

                feats = VGGFeatures(Path(self.cfg.vgg_weights), self.cfg.vgg_layer)
                self.perceptual = PerceptualLoss(feats).to(self.device)
        self.pixel = pixel_loss(self.cfg.pixel_loss)
        fp16 = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=fp16)
        if resume:
            self._restore(load_training_state(self.run_dir / LAST_CHECKPOINT))
        # The modules the forward passes go through: DistributedDataParallel under torchrun
        # (gradients averaged over ranks), the plain modules otherwise.
        self.G_train: nn.Module = self.G
        self.D_train: nn.Module | None = self.D
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            # No buffer broadcast: the generator's buffers are constants (the bicubic kernels,
            # stored as expanded views that a broadcast cannot write into), and BatchNorm
            # statistics are synchronized by SyncBatchNorm on CUDA.
            self.G_train = DDP(self.G, device_ids=ids, broadcast_buffers=False)
            if self.D is not None:
                self.D_train = DDP(self.D, device_ids=ids, broadcast_buffers=False)

    # --- construction helpers -------------------------------------------------------------
    def _generator_config(self) -> GeneratorConfig:
        cfg = preset_config(self.cfg.preset, self.cfg.scale)
        over = self.cfg.extra.get("generator") or {}
        if over:
            from dataclasses import replace

            cfg = replace(cfg, **over).validate()
        return cfg

    def _load_init(self, gen_cfg: GeneratorConfig) -> None:
        gf = load_generator(Path(self.cfg.init), device=self.device)
        if gf.config != gen_cfg:
            raise UserError(
                f"{self.cfg.init}: --init generator is preset {gf.metadata.get('preset')!r} at "
                f"x{gf.scale}, but this run builds {self.cfg.preset!r} at x{self.cfg.scale} "
                f"(configs differ)"
            )
        self.G.load_state_dict(gf.model.state_dict())

    def _scheduler(self, opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        c = self.cfg
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(c.lr_schedule, s, c.steps, c.warmup_steps, c.min_lr_ratio)
        )

    # --- checkpoints ----------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "format": "srgan-toolkit/train-state",
            "toolkit_version": __version__,
            "config": self.cfg.to_json(),
            "step": self.step,
            "best_psnr": self.best_psnr if self.best_psnr is not None else float("nan"),
            "best_step": self.best_step if self.best_step is not None else -1,
            "generator": self.G.state_dict(),
            "ema": self.ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng_cpu": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["rng_cuda"] = torch.cuda.get_rng_state_all()
        if self.D is not None:
            state["discriminator"] = self.D.state_dict()
            state["opt_d"] = self.opt_d.state_dict()
            state["sched_d"] = self.sched_d.state_dict()
            state["scaler_d"] = self.scaler_d.state_dict()
        return state

    def save_checkpoint(self) -> Path:
        path = self.run_dir / LAST_CHECKPOINT
        save_training_state(self._state(), path)
        return path

    def _restore(self, state: dict[str, Any]) -> None:
        saved = TrainConfig.from_json(state["config"])
        if saved.phase != self.cfg.phase or saved.preset != self.cfg.preset or \
                saved.scale != self.cfg.scale:
            raise UserError(
                f"{self.run_dir}: checkpoint is {saved.preset} x{saved.scale} {saved.phase}, "
                f"this run asks for {self.cfg.preset} x{self.cfg.scale} {self.cfg.phase}"
            )
        try:
            self.G.load_state_dict(state["generator"])
            self.ema.load_state_dict(state["ema"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.sched_g.load_state_dict(state["sched_g"])
            self.scaler.load_state_dict(state["scaler"])
            if self.D is not None:
                self.D.load_state_dict(state["discriminator"])
                self.opt_d.load_state_dict(state["opt_d"])
                self.sched_d.load_state_dict(state["sched_d"])
                self.scaler_d.load_state_dict(state["scaler_d"])
        except (KeyError, RuntimeError, ValueError) as exc:
            first = first_line(exc)
            raise UserError(f"{self.run_dir}: checkpoint does not fit this run ({first})") from None
        try:  # a checkpoint from before digests could still carry a damaged RNG state
            torch.set_rng_state(state["rng_cpu"])
            if "rng_cuda" in state and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["rng_cuda"])
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise UserError(f"{self.run_dir / LAST_CHECKPOINT}: damaged random-number state "
                            f"({first_line(exc)})") from None
        self.step = int(state["step"])
        bp = float(state["best_psnr"])
        self.best_psnr = None if math.isnan(bp) else bp
        self.best_step = None if int(state["best_step"]) < 0 else int(state["best_step"])

    def save_generator(self, val_psnr: float | None = None) -> Path:
        """The EMA generator with its validation score (the best one unless ``val_psnr``)."""
        path = self.run_dir / GENERATOR_FILE
        extra: dict[str, Any] = {"phase": self.cfg.phase, "ema_decay": str(self.cfg.ema_decay)}
        score = val_psnr if val_psnr is not None else (
            self.best_psnr if self.cfg.phase != "gan" else None)
        if score is not None:
            extra.update(val_psnr=f"{score:.4f}", val_set=str(self.cfg.val))
        save_generator(self.ema.shadow, path, preset=self.cfg.preset, step=self.step, extra=extra)
        return path

    # --- one step -------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32,
            enabled=self.amp_dtype is not None,
        )

    def _backward_step(self, loss, opt, scaler, params) -> None:
        if not torch.isfinite(loss.detach()):
            # Checked before the update so that the weights and the last checkpoint stay sound.
            raise UserError(f"training diverged at step {self.step + 1} (loss {loss.item()}); "
                            "lower --lr or use --amp off")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if self.cfg.grad_clip > 0:
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        scaler.step(opt)
        scaler.update()

    def train_step(self, lr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
        c = self.cfg
        self.G.train()
        row: dict[str, float] = {}
        if self.D is None:
            with self._autocast():
                sr = self.G_train(lr)
                loss = c.pixel_weight * self.pixel(sr.float(), hr)
            self._backward_step(loss, self.opt_g, self.scaler, self.G.parameters())
            row.update(loss=loss.item(), pixel=loss.item())
        else:
            self.D.train()
            with self._autocast():
                sr = self.G_train(lr)
                d_loss = adversarial_loss(self.D_train(hr), True) + \
                    adversarial_loss(self.D_train(sr.detach()), False)
            self._backward_step(d_loss, self.opt_d, self.scaler_d, self.D.parameters())
            self.D.requires_grad_(False)
            with self._autocast():
                pix = self.pixel(sr.float(), hr)
                # The bare D: no DDP reduction for its frozen parameters in the G step.
                adv = adversarial_loss(self.D(sr), True)
                loss = c.pixel_weight * pix + c.gan_weight * adv
                if self.perceptual is not None:
                    per = self.perceptual(sr.float(), hr)
                    loss = loss + c.perceptual_weight * per
                    row["perceptual"] = per.item()
            self._backward_step(loss, self.opt_g, self.scaler, self.G.parameters())
            self.D.requires_grad_(True)
            self.sched_d.step()
            row.update(loss=loss.item(), pixel=pix.item(), adversarial=adv.item(),
                       d_loss=d_loss.item())
        if self.dist.enabled:
            row = self._global_mean(row)
        row["lr"] = self.opt_g.param_groups[0]["lr"]
        self.sched_g.step()
        self.ema.update(self.G, self.step)
        self.step += 1
        return row

    def _global_mean(self, row: dict[str, float]) -> dict[str, float]:
        """The step's losses over the global batch (each rank saw its share)."""
        import torch.distributed as dist

        keys = sorted(row)
        t = torch.tensor([row[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)  # SUM: gloo has no AVG
        return {k: float(v) / self.dist.world for k, v in zip(keys, t.tolist(), strict=True)}

    def _sync_control(self) -> None:
        """Rank 0 decides when to stop (time limit, Ctrl-C) and how many steps the run has (a
        time limit refits it): every rank follows, so that none waits for a missing peer."""
        import torch.distributed as dist

        t = torch.tensor([float(self._stop), float(self.cfg.steps)], dtype=torch.float64,
                         device=self.device)
        dist.broadcast(t, src=0)
        self._stop, self.cfg.steps = bool(t[0].item()), int(t[1].item())

    # --- validation -----------------------------------------------------------------------
    def validate(self, pairs: list[EvalPair]) -> tuple[float, float]:
        report = evaluate(pairs, self.cfg.scale, torch_upscaler(self.ema.shadow, self.device))
        m = report.mean()
        return float(m["psnr"]), float(m["ssim"])

    def request_stop(self) -> None:
        """Finish the current step, save a checkpoint and return from ``fit``."""
        self._stop = True

    # --- the loop -------------------------------------------------------------------------
    def fit(self) -> FitResult:
        """Train to ``steps`` (or the time limit, or a Ctrl-C), validating, saving the best
        generator and periodic checkpoints; returns what happened."""
        c = self.cfg
        main = self.dist.main
        dataset, val_pairs = self._load_data()
        if not main:
            val_pairs = []  # rank 0 validates and writes; the others only train
        else:
            (self.run_dir / CONFIG_FILE).write_text(c.to_json())
        metrics = _MetricsLog(self.run_dir, self.step if self.step else None) if main else None
        log.info("generator %s x%d: %d parameters on %s%s", c.preset, c.scale,
                 count_parameters(self.G), self.device,
                 f", AMP {self.amp_dtype}" if self.amp_dtype else "")
        start_step, t0 = self.step, time.perf_counter()
        pacer = _Pacer(c.time_limit * 60.0 if c.time_limit else 0.0, t0, start_step, c.steps)
        interrupted = completed = False
        previous = signal.getsignal(signal.SIGINT)

        def on_sigint(signum, frame):  # first Ctrl-C: stop cleanly; second: abort
            self._stop = True
            signal.signal(signal.SIGINT, previous)

        in_main = _is_main_thread()
        if in_main:
            signal.signal(signal.SIGINT, on_sigint)
        bar = None
        try:
            if c.progress and main:
                from tqdm import tqdm

                bar = tqdm(total=c.steps, initial=self.step, unit="step", dynamic_ncols=True)
            interrupted = self._train_loop(dataset, val_pairs, metrics, pacer, bar)
            completed = True
        finally:
            if in_main:
                signal.signal(signal.SIGINT, previous)
            if bar is not None:
                bar.close()
            # After an error the last periodic checkpoint stands: a half-done step is not saved.
            if completed and self.step > start_step and main:
                self.save_checkpoint()
        if main and (not val_pairs or self.best_psnr is None or
                     (c.phase == "gan" and interrupted)):
            self.save_generator()
        seconds = time.perf_counter() - t0
        done = self.step - start_step
        gen = self.run_dir / GENERATOR_FILE
        return FitResult(
            run_dir=self.run_dir, step=self.step, interrupted=interrupted,
            best_psnr=self.best_psnr, best_step=self.best_step,
            generator=gen if gen.exists() else None, seconds=seconds,
            samples_per_s=done * c.batch_size / seconds if seconds > 0 else 0.0,
        )

    def _load_data(self) -> tuple[PatchDataset, list[EvalPair]]:
        c = self.cfg
        pairs = []
        for d in c.data:
            pairs += find_pairs(Path(d), c.scale, lr_from_hr=c.lr_from_hr)
        dataset = PatchDataset(pairs, c.scale, c.patch_size, seed=c.seed, augment=c.augment,
                               cache=c.cache)
        rep = dataset.report
        log.info("training images: %d used, %d too small, %d unreadable",
                 rep.used, rep.too_small, rep.unreadable)
        val_pairs: list[EvalPair] = []
        if c.val:
            val_pairs, errors = load_eval_set(Path(c.val), c.scale)
            for e in errors:
                log.warning("validation: skipping %s", e)
        if c.phase == "gan" and self.perceptual is None:
            log.warning("GAN phase without --vgg-weights: training without the perceptual term "
                        "(pixel + adversarial only)")
        return dataset, val_pairs

    def _train_loop(self, dataset: PatchDataset, val_pairs: list[EvalPair],
                    metrics: _MetricsLog, pacer: _Pacer, bar) -> bool:
        """Steps until done, out of time or stopped; True when a Ctrl-C stopped it early."""
        c = self.cfg
        if self.step >= c.steps:
            return False
        cuda = self.device.type == "cuda"
        if cuda:  # fixed patch shapes: let cuDNN pick its fastest kernels once
            torch.backends.cudnn.benchmark = True
        loader = make_loader(dataset, c.batch_size, self.step, c.steps, c.workers,
                             pin_memory=cuda, rank=self.dist.rank, world=self.dist.world)
        main = self.dist.main
        rate = {"time": time.perf_counter(), "step": self.step}
        last_save = _clock()
        for lr_b, hr_b in loader:
            row = self.train_step(
                lr_b.to(self.device, non_blocking=True, memory_format=torch.channels_last),
                hr_b.to(self.device, non_blocking=True))
            if main:
                self._log_and_validate(row, val_pairs, metrics, bar, rate)
                due = c.save_minutes > 0 and _clock() - last_save >= c.save_minutes * 60
                if self.step % c.save_every == 0 or due:
                    self.save_checkpoint()
                    last_save = _clock()
            if bar is not None:
                bar.update(1)
            if self.on_step is not None:
                self.on_step(self, row)
            if c.time_limit is not None and main:
                pacer.after_step(self, bar)
            if self.dist.enabled:
                self._sync_control()
            if self._stop:
                return self.step < c.steps
            if self.step >= c.steps:  # a time limit can end the run early
                break
        return False

    def _log_and_validate(self, row: dict, val_pairs: list[EvalPair], metrics: _MetricsLog,
                          bar, rate: dict) -> None:
        """The step's metrics line, validation (saving the generator it selects) and the
        progress bar's figures."""
        c = self.cfg
        if self.step % c.log_every == 0 or self.step == c.steps:
            now = time.perf_counter()
            sps = (self.step - rate["step"]) * c.batch_size / max(now - rate["time"], 1e-9)
            rate.update(time=now, step=self.step)
            metrics.train({"step": self.step, **row, "samples_per_s": round(sps, 3)})
        if val_pairs and (self.step % c.val_every == 0 or self.step == c.steps):
            psnr_v, ssim_v = self.validate(val_pairs)
            metrics.val({"step": self.step, "psnr": psnr_v, "ssim": ssim_v})
            improved = self.best_psnr is None or psnr_v > self.best_psnr
            if improved:
                self.best_psnr, self.best_step = psnr_v, self.step
            if c.phase == "gan":
                # PSNR is not what the GAN phase optimizes (it trades PSNR for texture): keep
                # the latest generator, not the least adversarial.
                self.save_generator(psnr_v)
            elif improved:
                self.save_generator()
            if bar is not None:
                bar.set_postfix(loss=f"{row['loss']:.4f}", val_psnr=f"{psnr_v:.3f}")
        elif bar is not None and self.step % max(1, c.log_every) == 0:
            post = {"loss": f"{row['loss']:.4f}"}
            if self.best_psnr is not None:
                post["best_psnr"] = f"{self.best_psnr:.3f}"
            bar.set_postfix(post)


class _Pacer:
    """Fits a ``--time-limit`` run's step count (and so its LR schedule) to the time given.

    The rate is timed over ``PROBE_STEPS`` steps after a short warm-up and again at half the
    budget (validation included by then); the step count is set to what fits, never beyond the
    requested ``--steps``. Past the budget the run stops, checkpointed, as after Ctrl-C.
    """

    def __init__(self, budget_s: float, t0: float, start_step: int, max_steps: int) -> None:
        self.budget_s, self.t0, self.start, self.max_steps = budget_s, t0, start_step, max_steps
        self.probe: tuple[float, int] | None = None
        self.fits = 0

    def after_step(self, trainer: Trainer, bar) -> None:
        now = time.perf_counter()
        elapsed = now - self.t0
        done = trainer.step - self.start
        if elapsed >= self.budget_s and trainer.step < trainer.cfg.steps:
            log.warning("time limit reached at step %d (planned %d)", trainer.step,
                        trainer.cfg.steps)
            trainer.request_stop()
            return
        if done == PROBE_SKIP:
            self.probe = (now, trainer.step)
            return
        if self.probe is None:
            return
        first = self.fits == 0 and done >= PROBE_SKIP + PROBE_STEPS
        second = self.fits == 1 and elapsed >= self.budget_s / 2
        if first or second:
            t_p, s_p = self.probe
            rate = (trainer.step - s_p) / max(now - t_p, 1e-9)
            self.refit(trainer, rate, elapsed, bar)

    def refit(self, trainer: Trainer, rate: float, elapsed: float, bar) -> None:
        cfg = trainer.cfg
        fit = trainer.step + int(rate * (self.budget_s - elapsed) * TIME_MARGIN)
        steps = max(trainer.step + 1, min(fit, self.max_steps))
        cfg.extra.setdefault("requested_steps", self.max_steps)
        cfg.extra["fitted_steps_per_s"] = round(rate, 3)
        self.fits += 1
        if steps != cfg.steps:
            log.info("time limit %.1f min: %.2f steps/s, training %d steps (was %d)",
                     self.budget_s / 60, rate, steps, cfg.steps)
            cfg.steps = steps
            if bar is not None:
                bar.total = steps
                bar.refresh()
        (trainer.run_dir / CONFIG_FILE).write_text(cfg.to_json())


def _clock() -> float:
    """Seconds for the time-based checkpoints (a function so that tests can move time)."""
    return time.monotonic()


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
