"""``srrun``: a thin command-line layer over :mod:`srgan_runtime`."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from srgan_runtime.core.cli import FiniteFloat, toolkit_group
from srgan_runtime.core.errors import UserError
from srgan_runtime.core.imageio import FORMATS

from .backends.support import PRECISIONS, backend_names, support_summary
from .upscaler import DEFAULT_MAX_OUTPUT_PIXELS

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
              help="Generator file / run folder, .onnx, .plan, another project's checkpoint "
                   "(.pth/.pt/.ckpt/.safetensors, read by spandrel), or a bundled model name "
                   "(srrun models) [default: the bundled default].")
@click.option("--backend", type=click.Choice(["auto", *backend_names()]), default="auto",
              show_default=True, help="See the table below.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda")
@click.option("--precision", type=click.Choice(["auto", *PRECISIONS]), default="auto",
              show_default=True,
              help="auto: fp16 on CUDA, bf16 on a CPU with native bf16 (AVX512_BF16/AMX), else "
                   "fp32. Tiles that come out NaN/Inf are recomputed in fp32.")
@click.option("--tile", type=int, default=None,
              help="LR tile side including overlap (0 = whole image) [default: 256, smaller "
                   "where the --max-memory budget needs it]. A tile given here is kept unless "
                   "the machine's available memory is short (or --max-memory SIZE says so).")
@click.option("--overlap", type=int, default=None,
              help="Context per tile side [default: the model's measured effective radius: "
                   "tiled output within 1 level (>= 60 dB) of the whole image].")
@click.option("--seamless", is_flag=True,
              help="Overlap = the model's theoretical receptive radius: tiled output equals "
                   "the whole image (slower: more context recomputed).")
@click.option("--no-cache", is_flag=True,
              help="Neither read nor write the user cache (measured radii).")
@click.option("--batch", type=int, default=None,
              help="Tiles per model call [default: 1 on the CPU (as fast, a quarter of the "
                   "memory), 4 on CUDA].")
@click.option("--max-memory", default="auto", show_default=True, metavar="SIZE|auto|off",
              help="CPU memory budget (e.g. 1.5G, for the whole process): the tile is chosen "
                   "per image from the model's measured per-tile footprint. auto: what the run "
                   "adds stays within the output picture + 512 MiB with the default tile, and "
                   "within the available memory with an explicit --tile; off: the requested "
                   "tile whatever it costs.")
@click.option("--threads", type=int, default=0, show_default=True, help="CPU threads (0=all).")
@click.option("--outscale", type=FiniteFloat(0, lo_open=True), default=None,
              help="Final scale, resized after the model (Lanczos).")
@click.option("--format", "fmt", type=click.Choice(sorted(FORMATS)), default=None,
              help="[default: the input's format]")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True,
              help="JPEG/WebP quality.")
@click.option("--png-level", type=click.IntRange(0, 9), default=1, show_default=True,
              help="PNG zlib level: 1 is fast (OpenCV's default), 9 smallest and slowest.")
@click.option("--alpha", type=click.Choice(["bicubic", "model"]), default="bicubic",
              show_default=True, help="How alpha channels are upscaled.")
@click.option("--recursive", "-r", is_flag=True, help="Descend into sub-folders.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--skip-existing", is_flag=True, help="Leave existing outputs alone.")
@click.option("--report", type=click.Path(path_type=Path), default=None,
              help="Write a JSON run report (per-file status, timings, errors).")
@click.option("--max-pixels", type=click.IntRange(1), default=200_000_000, show_default=True,
              help="Refuse larger inputs (decompression bombs).")
@click.option("--max-output-pixels", type=click.IntRange(1), default=DEFAULT_MAX_OUTPUT_PIXELS,
              show_default=True,
              help="Refuse inputs whose output would be larger (checked before decoding; "
                   "inputs needing more memory than is free are refused too).")
@click.option("--scale", type=click.Choice(["2", "3", "4"]), default=None,
              help="Without --engine: use the bundled model of this scale. With an ONNX "
                   "file lacking this toolkit's metadata: its scale. Otherwise checked "
                   "against the engine's.")
@click.option("--compile", "compile_mode", is_flag=False, flag_value="auto", default=None,
              type=click.Choice(["auto", "default", "reduce-overhead", "max-autotune",
                                 "max-autotune-no-cudagraphs"]),
              help="Run PyTorch through torch.compile (implies --backend torch). Bare --compile "
                   "is auto: max-autotune (autotuned kernels, CUDA graphs) on CUDA, default on "
                   "the CPU. With a tile, every call is one static batch x tile x tile shape; "
                   "the compile time is paid once at start (cached across runs).")
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
            backend: str, device: str, precision: str, tile: int | None, overlap: int | None,
            seamless: bool, no_cache: bool, batch: int | None, max_memory: str, threads: int,
            outscale: float | None, fmt: str | None, quality: int,
            png_level: int, alpha: str, recursive: bool, overwrite: bool, skip_existing: bool,
            report: Path | None, max_pixels: int, max_output_pixels: int, scale: str | None,
            compile_mode: str | None, ray_address: str | None, ray_workers: int,
            progress: bool) -> None:
    """Upscale image files, folders or globs into OUT."""
    from srgan_runtime.core.files import check_output_file

    from .core.modelinfo import default_model, describe, resolve_model
    from .pipeline import (
        check_output_option,
        check_outputs,
        collect_inputs,
        run_job,
        scale_label,
        write_report,
    )
    from .upscaler import Upscaler, check_settings

    # Everything that can be checked without the model is checked first.
    if overwrite and skip_existing:
        raise UserError("--overwrite and --skip-existing exclude each other")
    check_settings(tile=0 if tile is None else tile, batch=1 if batch is None else batch,
                   overlap=overlap, threads=threads, alpha=alpha, outscale=outscale,
                   max_output_pixels=max_output_pixels, device=device)
    memory = _memory_option(max_memory)
    if report is not None:
        check_output_file(report, "report file")
    files = collect_inputs(list(inputs), recursive)
    out = Path(out_arg)
    check_output_option(out, len(files), fmt, folder_meant=out_arg.endswith(("/", os.sep)))
    path = resolve_model(engine) if engine else default_model(int(scale) if scale else None)
    # Every output path before the model is opened (its scale names them: metadata only).
    label = scale_label(describe(path, int(scale) if scale else None).scale, outscale)
    check_outputs(label, files, out, fmt, overwrite, skip_existing)
    if ray_address is not None:
        from .raybatch import RaySettings, run_ray_job

        options = {"backend": backend, "device": device, "precision": precision, "tile": tile,
                   "overlap": overlap, "batch": batch, "alpha": alpha, "outscale": outscale,
                   "scale": int(scale) if scale else None,
                   "max_output_pixels": max_output_pixels, "seamless": seamless,
                   "cache": not no_cache, "max_memory": memory, "compile": compile_mode}
        settings = RaySettings(None if ray_address == "local" else ray_address, ray_workers,
                               threads or 1, 1.0 if device.startswith("cuda") else 0.0)
        summary = run_ray_job(path, options, files, out, settings, fmt=fmt, quality=quality,
                              png_level=png_level, overwrite=overwrite,
                              skip_existing=skip_existing, max_pixels=max_pixels,
                              progress=progress)
        click.echo(summary.line())
        if report is not None:
            write_report(summary, report, {"engine": str(path), "backend": "ray",
                                           "ray": ray_address})
        if summary.failed:
            ctx.exit(1)
        return
    up = Upscaler(path, backend=backend, device=device, precision=precision, tile=tile,
                  overlap=overlap, batch=batch, threads=threads, alpha=alpha,
                  outscale=outscale, scale=int(scale) if scale else None,
                  max_output_pixels=max_output_pixels, seamless=seamless,
                  cache=not no_cache, max_memory=memory, compile=compile_mode,
                  progress=progress)
    log.info("%s", up.describe())
    summary = run_job(up, files, out, fmt=fmt, quality=quality, png_level=png_level,
                      overwrite=overwrite,
                      skip_existing=skip_existing, max_pixels=max_pixels, progress=progress)
    click.echo(summary.line())  # before anything else can fail
    if report is not None:
        write_report(summary, report, {"engine": str(path), "backend": up.describe()})
    if summary.interrupted:
        ctx.exit(130)
    if summary.failed:
        ctx.exit(1)


def _memory_option(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    if text.strip().lower() in ("off", "none", "0"):
        return 0
    from .memory import parse_size

    return parse_size(text)


@cli.command()
@click.argument("model", required=False)
@click.option("--json", "as_json", is_flag=True, help="Full descriptions as JSON.")
def models(model: str | None, as_json: bool) -> None:
    """List the bundled models, or describe MODEL (a file, run folder or bundled name)."""
    import json

    from .core.modelinfo import bundled_models, describe, onnx_variant

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


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (0.0.0.0 exposes it to the network).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--model", "--engine", "models", multiple=True,
              help="A model to offer (repeatable) [default: every bundled model].")
@click.option("--backend", type=click.Choice(["auto", *backend_names()]), default="auto",
              show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda")
@click.option("--precision", type=click.Choice(["auto", *PRECISIONS]), default="auto",
              show_default=True)
@click.option("--tile", type=click.IntRange(0), default=None,
              help="LR tile side (0 = whole image) [default: 256, smaller where the auto "
                   "memory budget needs it].")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Images upscaled at once.")
@click.option("--queue", type=click.IntRange(1, 10000), default=8, show_default=True,
              help="Images queued or running before new ones get 429 (busy).")
@click.option("--max-upload-mb", type=FiniteFloat(0, lo_open=True), default=20.0,
              show_default=True)
@click.option("--max-pixels", type=click.IntRange(1), default=4_000_000, show_default=True,
              help="Input pixels per image.")
@click.option("--threads", type=click.IntRange(1, 256), default=None,
              help="HTTP threads (waitress) [default: --queue + 4, so that requests over the "
                   "queue are answered 429 at once rather than left waiting].")
@click.option("--connection-limit", type=click.IntRange(1, 100_000), default=1000,
              show_default=True,
              help="Open connections held at once; more wait in the listen backlog. The "
                   "open-file limit is raised to fit where the system allows.")
@click.option("--channel-timeout", type=click.IntRange(1, 3600), default=30, show_default=True,
              help="Seconds a connection may sit idle or stall mid-request before it is "
                   "closed.")
@click.option("--shutdown-timeout", type=FiniteFloat(0), default=30.0, show_default=True,
              help="On Ctrl-C or SIGTERM, seconds to wait for running jobs (they stop at their "
                   "next tile); a second Ctrl-C quits at once.")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, models: tuple[str, ...], backend: str,
          device: str, precision: str, tile: int | None, workers: int, queue: int,
          max_upload_mb: float, max_pixels: int, threads: int | None, connection_limit: int,
          channel_timeout: int, shutdown_timeout: float) -> None:
    """Serve the upload / upscale / download page and its JSON API (POST /api/upscale,
    GET /api/models, GET /healthz) with waitress, on loopback by default."""
    from .serve.app import HttpConfig, ServeConfig
    from .serve.app import serve as run_server

    config = ServeConfig(models=models, backend=backend, device=device, precision=precision,
                         tile=tile, workers=workers, queue=queue, max_upload_mb=max_upload_mb,
                         max_pixels=max_pixels)
    http = HttpConfig(host=host, port=port, threads=threads or queue + 4,
                      connection_limit=connection_limit, channel_timeout=channel_timeout,
                      shutdown_timeout=shutdown_timeout)
    ctx.exit(run_server(config, http))


def main() -> None:
    cli(prog_name="srrun")


if __name__ == "__main__":
    main()
