"""``srrun``: a thin command-line layer over :mod:`srgan_runtime`."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import click

from srgan_runtime.core.cli import toolkit_group

from . import pipeline
from .backends.support import support_summary
from .core.modelinfo import bundled_models, describe, onnx_variant
from .core.options import click_options, take
from .serve.app import ServeConfig
from .serve.app import serve as run_server
from .serve.server import HttpConfig
from .settings import UpscaleSettings, WriteOptions
from .upscaler import Upscaler

log = logging.getLogger("srgan_runtime")


@toolkit_group("srrun", "srgan_runtime", "srgan_export", "srgan_train")
def cli() -> None:
    """Upscale images with a trained generator, another project's checkpoint (ESRGAN, SwinIR,
    ... through spandrel), an ONNX file or a TensorRT engine."""


@cli.command(epilog="\b\nBackends (what each runs, where; 'auto' picks per model):\n"
             + support_summary())
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", "out_arg", required=True, type=click.Path(),
              help="Output file (one input) or folder (a name with an extension that is not "
                   "an image format must end with '/').")
@click.option("--model", "--engine", "engine", default=None,
              help="Generator file / run folder, .onnx, .plan, .pt2, another project's "
                   "checkpoint (.pth/.pt/.ckpt/.safetensors, read by spandrel), or a bundled "
                   "model name (srrun models) [default: the bundled default].")
@click_options(UpscaleSettings, defaults={"max_memory": "auto"})
@click_options(WriteOptions)
@click.option("--recursive", "-r", is_flag=True, help="Descend into sub-folders.")
@click.option("--report", type=click.Path(path_type=Path), default=None,
              help="Write a JSON run report (per-file status, timings, errors).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None,
              metavar="[ADDRESS]",
              help="Spread the files over Ray workers: bare --ray starts a local cluster; "
                   "--ray auto or --ray ray://HOST:10001 joins one. Inputs and outputs must be "
                   "on a filesystem every node sees.")
@click.option("--ray-workers", type=click.IntRange(0), default=0, show_default=True,
              help="Ray workers (0: as many as the cluster's CPUs allow at --threads each, or "
                   "one per GPU with --device cuda).")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.pass_context
def upscale(ctx: click.Context, inputs: tuple[str, ...], out_arg: str, engine: str | None,
            recursive: bool, report: Path | None, ray_address: str | None, ray_workers: int,
            progress: bool, **options) -> None:
    """Upscale image files, folders or globs into OUT."""

    # Everything that can be checked without the model is checked first.
    settings = take(UpscaleSettings, options)
    write = take(WriteOptions, options)
    job = pipeline.plan_job(list(inputs), out_arg, engine, settings, write, recursive, report)
    if ray_address is not None:
        from .raybatch import RaySettings, run_ray_job

        cluster = RaySettings(None if ray_address == "local" else ray_address, ray_workers,
                              settings.threads or 1,
                              1.0 if settings.device.startswith("cuda") else 0.0)
        summary = run_ray_job(job, cluster, progress=progress)
        described = {"backend": "ray", "ray": ray_address}
    else:
        up = Upscaler(job.model, settings, progress=progress)
        log.info("%s", up.describe())
        summary = pipeline.run_job(up, job.files, job.out, write, progress=progress)
        described = {"backend": up.describe()}
    click.echo(summary.line())  # before anything else can fail
    if report is not None:
        pipeline.write_report(summary, report, {"engine": str(job.model), **described})
    if summary.interrupted:
        ctx.exit(130)
    if summary.failed:
        ctx.exit(1)


@cli.command()
@click.argument("model", required=False)
@click.option("--json", "as_json", is_flag=True, help="Full descriptions as JSON.")
def models(model: str | None, as_json: bool) -> None:
    """List the bundled models, or describe MODEL (a file, run folder or bundled name)."""
    import json

    found = {model: model} if model else bundled_models()
    if not found:
        click.echo("no bundled models in this build")
    infos = {name: describe(p) for name, p in found.items()}
    if as_json:
        click.echo(json.dumps({n: i.as_dict() for n, i in infos.items()}, indent=2))
        return
    for name, info in infos.items():
        path = Path(info.path)
        ex = info.extra
        val = (f", {ex.get('phase', 'pretrain')} phase, step {ex.get('step', '?')}"
               if info.format == "generator" else "")
        if "val_psnr" in ex:
            val += f", validation {Path(ex.get('val_set', '?')).name} {ex['val_psnr']} dB"
        onnx = " (+ .onnx)" if onnx_variant(path) else ""
        click.echo(f"{name}: {info.summary()}{val}; {path.stat().st_size / 2**20:.1f} MB "
                   f"{path}{onnx}")


@cli.command(epilog="\b\nBackends (what each runs, where; 'auto' picks per model):\n"
             + support_summary())
@click_options(HttpConfig, only=("host", "port"))
@click_options(ServeConfig, only=("models",))
@click_options(UpscaleSettings, only=("backend", "device", "precision", "tile"))
@click_options(ServeConfig, skip=("models",))
@click_options(HttpConfig, skip=("host", "port"), defaults={"http_threads": None})
@click.pass_context
def serve(ctx: click.Context, **options) -> None:
    """Serve the upload / upscale / download page and its JSON API (POST /api/upscale,
    GET /api/models, GET /healthz) with waitress, on loopback by default."""

    settings = replace(ServeConfig().upscale, **{k: options.pop(k) for k in
                                                  ("backend", "device", "precision", "tile")})
    config = take(ServeConfig, options, upscale=settings)
    options["http_threads"] = options["http_threads"] or config.queue + 4
    ctx.exit(run_server(config, take(HttpConfig, options)))


def main() -> None:
    cli(prog_name="srrun")


if __name__ == "__main__":
    main()
