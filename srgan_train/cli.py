"""``srtrain``: a thin command-line layer over :mod:`srgan_train`.

User errors print one line and exit 2; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from srgan_runtime.core.cli import parse_dims, require_torch, toolkit_group
from srgan_runtime.core.errors import UserError, first_line
from srgan_runtime.core.files import check_output_file
from srgan_runtime.core.imageio import downscale, load_rgb, save_png, upscale_bicubic
from srgan_runtime.core.metrics import modcrop
from srgan_runtime.core.modelinfo import describe, resolve_generator, resolve_weights
from srgan_runtime.core.options import click_options
from srgan_runtime.core.synth import write_textures

from . import distributed
from .compare import Box, Panel, comparison_strip, score_label
from .config import PRESETS, preset_config
from .evaluate import evaluate, format_table, load_eval_set, torch_upscaler
from .settings import RESUMABLE_OVERRIDES, TrainConfig

log = logging.getLogger("srgan_train")


@toolkit_group("srtrain", "srgan_train")
def cli() -> None:
    """Train and evaluate SRGAN/SRResNet super-resolution generators."""


# --- fit ----------------------------------------------------------------------------------------

@cli.command()
@click_options(TrainConfig, skip=("out",), defaults={"scale": None, "preset": None})
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run folder.")
@click.pass_context
def fit(ctx: click.Context, out: Path, resume: bool, overwrite: bool, **opts) -> None:
    """Train a generator (phase pretrain: pixel loss; phase gan: + adversarial/perceptual)."""
    from .train import Trainer, discard_failed_run, prepare_run_dir

    if resume and overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    # Under torchrun (WORLD_SIZE > 1): join the process group; rank 0 alone writes the run.
    dist_info = distributed.init_from_env(str(opts.get("device") or "auto"))
    rank0 = dist_info.main
    cmdline = click.core.ParameterSource.COMMANDLINE
    given = {k for k in opts if ctx.get_parameter_source(k) == cmdline}
    values = _fit_values(opts)
    created = False
    if resume:
        cfg = _resume_config(out, values, given)
    else:
        if not values["data"]:
            raise UserError("--data is required (a folder of training images), unless --resume")
        values = _fill_from_init(values)
        cfg = TrainConfig(out=str(out), **values)
        cfg.resolved()
        if cfg.vgg_weights and not Path(cfg.vgg_weights).is_file():
            raise UserError(f"{cfg.vgg_weights}: no such VGG19 weights file")
        for d in cfg.data:
            if not Path(d).is_dir():
                raise UserError(f"{d}: data folder does not exist")
        if rank0:
            created = prepare_run_dir(out, resume=False, overwrite=overwrite)
    distributed.barrier()  # the folder exists before any rank writes or reads it
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        with logging_redirect_tqdm(loggers=[log]):
            trainer = Trainer(cfg, resume=resume)
            result = trainer.fit()
        distributed.barrier()  # every rank done with its collectives before any tears down
        del trainer
    except BaseException:
        if created:
            discard_failed_run(out)
        raise
    finally:
        distributed.shutdown()
    if rank0:
        best = (f"; best val PSNR {result.best_psnr:.3f} dB at step {result.best_step}"
                if result.best_psnr is not None else "")
        click.echo(
            f"{'interrupted' if result.interrupted else 'done'}: step {result.step}/"
            f"{cfg.steps} in {result.seconds:.1f} s ({result.samples_per_s:.1f} samples/s)"
            f"{best}; generator: {result.generator}"
        )
        if result.interrupted:
            click.echo(f"checkpoint saved; continue with: {resume_hint(out)}", err=True)
    code = 130 if rank0 and result.interrupted else 0
    if dist_info.enabled:
        # Everything is written and the group destroyed. A torchrun worker skips the
        # interpreter's finalisation: gloo's threads could still hold Python objects there,
        # and tearing them down aborted a rank now and then on a loaded 2-core machine
        # (SIGABRT, "terminate called without an active exception"; 4 of ~130 torchrun runs,
        # the previous main's code too, a barrier before the teardown did not stop it).
        distributed.exit_now(code)
    if code:
        ctx.exit(code)


def resume_hint(out: Path) -> str:
    """The command that continues the run in ``out`` (quoted for a POSIX shell)."""
    import shlex

    return f"srtrain fit --out {shlex.quote(str(out))} --resume"


def _resume_config(out: Path, values: dict, given: set[str]):
    """The run's stored config, with the options that may change on resume applied; any other
    option given must equal the stored one (``--data`` may be left out: the run knows it)."""
    from .train import CONFIG_FILE, prepare_run_dir

    prepare_run_dir(out, resume=True, overwrite=False)
    try:
        cfg = TrainConfig.from_json((out / CONFIG_FILE).read_text())
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"{out / CONFIG_FILE}: unreadable run config ({first_line(exc)})"
                        ) from None
    for key in sorted(given - RESUMABLE_OVERRIDES):
        if values[key] != getattr(cfg, key):
            raise UserError(
                f"--{key.replace('_', '-')} {values[key]} differs from the run's "
                f"{getattr(cfg, key)}; drop it to resume, or start a new run"
            )
    for key in given & RESUMABLE_OVERRIDES:
        setattr(cfg, key, values[key])
    cfg.out = str(out)
    return cfg.resolved()


def _fit_values(opts: dict) -> dict:
    values = dict(opts)
    values["data"] = [str(d) for d in values["data"]]
    for k in ("val", "vgg_weights", "init"):
        if values[k] is not None:
            values[k] = str(values[k])
    if values["scale"] is not None:
        values["scale"] = int(values["scale"])
    return values


def _fill_from_init(values: dict) -> dict:
    """Default --preset and --scale to the --init generator's, and check they agree."""

    if values["init"] is None:
        values["preset"] = values["preset"] or "small"
        values["scale"] = values["scale"] or 4
        return values
    values["init"] = str(resolve_generator(values["init"]))
    init = describe(values["init"])
    init_scale = init.scale
    if values["scale"] is not None and values["scale"] != init_scale:
        raise UserError(f"{values['init']}: generator is x{init_scale}, --scale is "
                        f"{values['scale']}")
    values["scale"] = init_scale
    values["preset"] = values["preset"] or (init.preset if init.preset != "unknown" else "small")
    return values


# --- eval ---------------------------------------------------------------------------------------

def _resolve_weights(ckpt: Path) -> Path:
    return resolve_weights(ckpt)


@cli.command(name="eval")
@click.argument("ckpt", required=False, type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path),
              help="Evaluation folder (HR/ and optionally LR_bicubic/X<s>/).")
@click.option("--scale", type=click.Choice(["2", "3", "4"]), default=None,
              help="[default: the generator's]")
@click.option("--bicubic-only", is_flag=True, help="Evaluate the bicubic baseline alone.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object to stdout.")
@click.option("--device", default="auto", show_default=True)
@click.option("--self-ensemble", is_flag=True,
              help="Average over the 8 flips/rotations (8x compute; a '+' result, not the "
                   "model alone).")
def eval_cmd(ckpt: Path | None, data: Path, scale: str | None, bicubic_only: bool,
             as_json: bool, device: str, self_ensemble: bool) -> None:
    """PSNR/SSIM (Y, standard protocol) of a generator, or another project's checkpoint
    (.pth, .pt, .ckpt, .safetensors), on a folder, beside bicubic."""

    upscale = None
    label = "model"
    if bicubic_only:
        if ckpt is not None or self_ensemble:
            raise UserError("--bicubic-only takes no checkpoint and no --self-ensemble")
        if scale is None:
            raise UserError("--bicubic-only needs --scale")
        s = int(scale)
    else:
        if ckpt is None:
            raise UserError("give a generator file (or run folder), or --bicubic-only")
        from .checkpoint import load_network
        from .evaluate import torch_upscaler
        from .train import pick_device

        dev = pick_device(device)
        model, info = load_network(_resolve_weights(ckpt), device=dev)
        if scale is not None and int(scale) != info.scale:
            what = "generator" if info.format == "generator" else f"{info.arch} model"
            raise UserError(f"{ckpt}: {what} is x{info.scale}, --scale is {scale}")
        s = info.scale
        upscale = torch_upscaler(model, dev, self_ensemble=self_ensemble)
        name = info.preset if info.format == "generator" else f"{info.arch} {info.preset}"
        label = name + ("+" if self_ensemble else "")
    pairs, errors = load_eval_set(data, s)
    for e in errors:
        log.warning("skipping %s", e)
    report = evaluate(pairs, s, upscale)
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "self_ensemble": self_ensemble}))
    else:
        click.echo(f"{data} x{s}: {len(pairs)} images (Y PSNR/SSIM, crop {s})")
        click.echo(format_table(report, label))


@cli.command()
@click.argument("hr_image", type=click.Path(path_type=Path))
@click.option("--lr", "lr_image", type=click.Path(path_type=Path), default=None,
              help="Its LR image [default: bicubic-downscaled from HR_IMAGE].")
@click.option("--model", "models", multiple=True, required=True,
              help="Generator file, run folder, bundled name or another project's checkpoint; "
                   "repeat to compare several.")
@click.option("--box", required=True, help="Crop X,Y,W,H in HR pixels.")
@click.option("--zoom", type=int, default=2, show_default=True,
              help="Nearest-neighbour enlargement of each crop.")
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--device", default="auto", show_default=True)
def compare(hr_image: Path, lr_image: Path | None, models: tuple[str, ...], box: str, zoom: int,
            out: Path, overwrite: bool, device: str) -> None:
    """Side-by-side crops: bicubic | each model | HR, labelled with whole-image PSNR/SSIM."""

    from .checkpoint import load_network
    from .train import pick_device

    crop = Box.parse(box)
    if zoom < 1:
        raise UserError("--zoom must be >= 1")
    check_output_file(out, "image", overwrite)
    dev = pick_device(device)
    gens = [(name, load_network(_resolve_weights(Path(name)), device=dev)) for name in models]
    scales = {info.scale for _, (_, info) in gens}
    if len(scales) != 1:
        raise UserError(f"the models have different scales ({sorted(scales)}): compare one scale")
    s = scales.pop()
    hr = load_rgb(hr_image)
    lr = load_rgb(lr_image) if lr_image else downscale(hr, s)
    hr = modcrop(hr, s)[: lr.shape[0] * s, : lr.shape[1] * s]
    if hr.shape[:2] != (lr.shape[0] * s, lr.shape[1] * s):
        raise UserError(f"{lr_image}: {lr.shape[1]}x{lr.shape[0]} is not {hr_image} / {s}")
    bic = upscale_bicubic(lr, s)
    panels = [Panel(score_label("bicubic", bic, hr, s), bic)]
    for name, (model, _) in gens:
        sr = torch_upscaler(model.eval(), dev)(lr)
        panels.append(Panel(score_label(str(name), sr, hr, s), sr))
    panels.append(Panel("HR (ground truth)", hr))
    save_png(comparison_strip(panels, crop, zoom), out)
    click.echo(f"wrote {out}: " + " | ".join(p.label for p in panels))


# --- small helpers ------------------------------------------------------------------------------

@cli.command()
def presets() -> None:
    """List the generator presets."""
    from .archs import build_generator, count_parameters

    for name, (cfg, desc) in PRESETS.items():
        n = count_parameters(build_generator(preset_config(name)))
        click.echo(f"{name:<10} x{cfg.scale} default, {n / 1e6:.3f} M params at that scale: {desc}")


@cli.command()
@click.argument("ckpt", type=click.Path(path_type=Path))
def info(ckpt: Path) -> None:
    """Describe a model (generator, run folder, bundled name, ONNX file or plan) as JSON."""

    click.echo(json.dumps(describe(ckpt).as_dict(), indent=2, sort_keys=True))


@cli.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--count", type=int, default=16, show_default=True)
@click.option("--size", default="192x256", show_default=True, help="HxW of each image.")
@click.option("--seed", type=int, default=0, show_default=True)
def synth(folder: Path, count: int, size: str, seed: int) -> None:
    """Write procedural test images (for demos without image data)."""

    h, w = parse_dims(size, 2, "--size HxW, e.g. 192x256")
    if count < 1 or h < 16 or w < 16:
        raise UserError("--count must be >= 1 and each side >= 16")
    paths = write_textures(folder, count, (h, w), seed)
    click.echo(f"wrote {len(paths)} images to {folder}")


def main() -> None:
    require_torch("srtrain")
    cli(prog_name="srtrain")


if __name__ == "__main__":
    main()
