"""``srexport``: a thin command-line layer over :mod:`srgan_export`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from srgan_runtime.core.cli import FiniteFloat, require_torch, toolkit_group
from srgan_runtime.core.errors import UserError
from srgan_runtime.core.manifest import manifest_path
from srgan_runtime.core.modelinfo import describe, resolve_weights

from .aoti import AotiOptions, export_aoti
from .landing import ParityError, land
from .onnx_export import (
    OnnxExportOptions,
    check_output_path,
    export_onnx,
    parse_static,
    verify_file,
)
from .triton import TritonOptions, write_repository
from .trt_engine import BuildOptions, build_engine, check_engine, compute_profile, trt_environment

log = logging.getLogger("srgan_export")


@toolkit_group("srexport", "srgan_export", "srgan_train")
def cli() -> None:
    """Export generators to verified ONNX files and TensorRT engines."""


def _resolve_generator(path: Path) -> Path:
    return resolve_weights(path)


def _print_report(report, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        for line in report.lines():
            click.echo(line)


@cli.command()
@click.argument("ckpt", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="ONNX file to write.")
@click.option("--fp16", is_flag=True,
              help="FP16 body with FP32 inputs/outputs (bicubic skip and final add stay FP32); "
                   "refused for architectures that do not compute in fp16.")
@click.option("--int8", is_flag=True,
              help="INT8 by post-training quantization (QDQ: runs in OpenVINO and ONNX Runtime "
                   "on the CPU); the input convolutions, the bicubic skip and the final add "
                   "stay fp32.")
@click.option("--calibration", type=click.Path(path_type=Path), default=None,
              help="--int8: folder of training HR images to calibrate on (not an evaluation "
                   "set) [default: <data>/T91/HR].")
@click.option("--calibration-count", type=click.IntRange(1, 10000), default=64,
              show_default=True, help="--int8: number of 64x64 LR crops to calibrate on.")
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset, 17 to 20.")
@click.option("--static", default=None, metavar="B,H,W",
              help="Fixed input shape instead of dynamic batch/height/width.")
@click.option("--no-verify", is_flag=True, help="Skip the parity check against PyTorch.")
@click.option("--no-radius", is_flag=True,
              help="Do not measure the effective radius (the runtime's default overlap) into "
                   "the file; srrun then measures it on first use.")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Image data root for verification [default: $SR_DATA_DIR or ../shared/data].")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--json", "as_json", is_flag=True, help="Print the parity report as JSON.")
def onnx(ckpt: Path, out: Path, fp16: bool, int8: bool, calibration: Path | None,
         calibration_count: int, opset: int, static: str | None, no_verify: bool,
         no_radius: bool, data_dir: Path | None, overwrite: bool, as_json: bool) -> None:
    """Export a generator file (or run folder), or another project's checkpoint (.pth, .pt,
    .ckpt, .safetensors: ESRGAN, SwinIR, ...), to ONNX, verified against PyTorch."""

    if calibration is not None and not int8:
        raise UserError("--calibration is for --int8")
    opts = OnnxExportOptions(opset=opset, fp16=fp16, static=parse_static(static),
                             verify=not no_verify, overwrite=overwrite, data_dir=data_dir,
                             measure_radius=not no_radius, int8=int8, calibration=calibration,
                             calibration_count=calibration_count)
    try:
        res = export_onnx(_resolve_generator(ckpt), out, opts)
    except ParityError as exc:
        _print_report(exc.report, as_json)
        raise
    if res.parity is not None:
        _print_report(res.parity, as_json)
    shape = f"static {res.info.static_shape}" if res.info.static_shape else "dynamic N,H,W"
    ops = ", ".join(f"{k} {v}" for k, v in sorted(res.ops.items()))
    verified = "verified" if res.parity is not None else "NOT verified (--no-verify)"
    kept = f"; kept in fp32: {', '.join(res.kept_float)}" if res.kept_float else ""
    click.echo(f"wrote {out}: {res.info.preset} x{res.info.scale} {res.info.precision}, opset "
               f"{opset}, {shape}, {verified}; ops: {ops}{kept}", err=as_json)


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--against", "ckpt", required=True, type=click.Path(path_type=Path),
              help="Generator file (or run folder) to compare with.")
@click.option("--scale", type=click.Choice(["2", "3", "4"]), default=None,
              help="Scale of an ONNX file without this toolkit's metadata.")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True)
def verify(model: Path, ckpt: Path, scale: str | None, data_dir: Path | None,
           as_json: bool) -> None:
    """Check an ONNX file against a generator, with the export gate."""

    report = verify_file(model, _resolve_generator(ckpt), int(scale) if scale else None,
                         data_dir)
    _print_report(report, as_json)
    if not report.passed:
        raise UserError(f"{model}: failed the parity gate")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="Engine file to write (its manifest goes to <output>.json).")
@click.option("--fp16/--fp32", default=True, show_default=True,
              help="Engine precision. FP16 uses an FP16 ONNX as a strongly typed network; an "
                   "FP32 ONNX needs BuilderFlag.FP16, which only TensorRT 10.x has.")
@click.option("--min", "min_s", default=None, metavar="BxHxW", help="Profile minimum shape.")
@click.option("--opt", "opt_s", default=None, metavar="BxHxW", help="Profile optimum shape.")
@click.option("--max", "max_s", default=None, metavar="BxHxW", help="Profile maximum shape.")
@click.option("--static", default=None, metavar="BxHxW", help="One fixed input shape.")
@click.option("--workspace", type=FiniteFloat(0, lo_open=True), default=4.0, show_default=True,
              help="GiB.")
@click.option("--opt-level", type=int, default=3, show_default=True,
              help="Builder optimization level 0-5.")
@click.option("--hardware-compat", type=click.Choice(["none", "ampere_plus", "same_cc"]),
              default="none", show_default=True,
              help="ampere_plus: runs on any GPU of compute capability 8.0+; same_cc (TensorRT "
                   "10.9+): on any GPU of the build GPU's compute capability. Slower engines.")
@click.option("--tf32", is_flag=True,
              help="Let an FP32 engine compute in TF32 (off by default: fp32 means fp32).")
@click.option("--timing-cache", type=click.Path(path_type=Path), default=None,
              help="Persistent timing cache file (read and updated).")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Engine cache [default: ~/.cache/srgan-toolkit/engines].")
@click.option("--scale", type=click.Choice(["2", "3", "4"]), default=None,
              help="Scale of an ONNX file without this toolkit's metadata.")
@click.option("--against", "ckpt", type=click.Path(path_type=Path), default=None,
              help="Generator to check the engine against (else the ONNX in ONNX Runtime).")
@click.option("--no-verify", is_flag=True, help="Skip the parity check of the built engine.")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None)
@click.option("--overwrite", is_flag=True)
def trt(model: Path, out: Path, fp16: bool, min_s, opt_s, max_s, static, workspace: float,
        opt_level: int, hardware_compat: str, tf32: bool, timing_cache, cache_dir, scale, ckpt,
        no_verify: bool, data_dir, overwrite: bool) -> None:
    """Build a TensorRT engine from an ONNX file, with a JSON manifest beside it."""

    check_output_path(out, overwrite)
    info = describe(model, int(scale) if scale else None)
    if info.format != "onnx":
        raise UserError(f"{model}: a {info.format} file; 'srexport trt' builds from an ONNX file")
    profile = compute_profile(info, min_s, opt_s, max_s, static)
    options = BuildOptions(workspace_gib=workspace, opt_level=opt_level, fp16=fp16,
                           hardware_compat=hardware_compat, tf32=tf32).validate()
    env = trt_environment()  # one line and exit 2 where TensorRT or CUDA is missing
    built = {}

    def make(staged: Path):
        built["res"] = res = build_engine(model, staged, info, profile, options,
                                          timing_cache=timing_cache, cache_dir=cache_dir,
                                          env=env)
        m = res.manifest
        click.echo(f"{'reused cached' if res.from_cache else 'built'} {m.precision} engine "
                   f"(TensorRT {m.tensorrt_version}, {m.gpu_name}, sm {m.compute_capability}, "
                   f"profile min {m.profile['min']} opt {m.profile['opt']} max "
                   f"{m.profile['max']})")
        if no_verify:
            return None
        report = check_engine(staged, model, info, env, data_dir=data_dir, cache_dir=cache_dir,
                              ckpt=_resolve_generator(ckpt) if ckpt else None)
        _print_report(report, False)
        return report

    report = land(out, make, companions=(manifest_path,))
    click.echo(f"wrote {out} and its manifest; "
               + ("NOT verified (--no-verify)" if report is None else "verified"))


@cli.command()
@click.argument("model")
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="Package to write (.pt2).")
@click.option("--device", default="cpu", show_default=True,
              help="cpu or cuda[:N]: the package runs only there.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32",
              show_default=True, help="fp16 on CUDA only; autocast numerics, as srrun's.")
@click.option("--tile", type=int, default=256, show_default=True,
              help="The fixed tile side (the runtime pads edge tiles to it).")
@click.option("--batch", type=int, default=1, show_default=True,
              help="The fixed batch (the runtime pads the last batch to it).")
@click.option("--no-verify", is_flag=True, help="Skip the parity check of the package.")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None)
@click.option("--overwrite", is_flag=True)
def aoti(model: str, out: Path, device: str, precision: str, tile: int, batch: int,
         no_verify: bool, data_dir, overwrite: bool) -> None:
    """Compile a generator or checkpoint ahead of time (AOTInductor) into a .pt2 package for
    one device, precision and tile; run it with 'srrun upscale --model X.pt2'."""
    import time

    t0 = time.perf_counter()
    try:
        info, report = export_aoti(resolve_weights(model), out, AotiOptions(
            device=device, precision=precision, tile=tile, batch=batch, verify=not no_verify,
            data_dir=data_dir, overwrite=overwrite))
    except ParityError as exc:
        _print_report(exc.report, False)
        raise
    if report is not None:
        _print_report(report, False)
    b, h, w = info.static
    ex = info.extra
    where = ex.get("AOTI_CPU_ISA") or f"sm {ex.get('AOTI_COMPUTE_CAPABILITY', '?')}"
    click.echo(f"wrote {out}: x{info.scale} {info.arch} {info.precision} for "
               f"{ex.get('device')} ({where}), batch {b} of {h}x{w} tiles, compiled in "
               f"{time.perf_counter() - t0:.0f} s{' (NOT verified)' if no_verify else ''}")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", "repo", required=True, type=click.Path(path_type=Path),
              help="The model repository folder (created if missing).")
@click.option("--name", default=None, help="The model's name [default: the file's stem].")
@click.option("--max-batch", type=click.IntRange(1, 1024), default=8, show_default=True,
              help="Largest batch of a dynamic ONNX file (a plan's profile decides for plans).")
@click.option("--instances", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--kind", type=click.Choice(["gpu", "cpu"]), default="gpu", show_default=True)
@click.option("--max-queue-delay-us", type=click.IntRange(0), default=100, show_default=True)
@click.option("--ort-tensorrt", is_flag=True,
              help="ONNX files: run through ONNX Runtime's TensorRT accelerator.")
@click.option("--overwrite", is_flag=True)
def triton(model: Path, repo: Path, name, max_batch: int, instances: int, kind: str,
           max_queue_delay_us: int, ort_tensorrt: bool, overwrite: bool) -> None:
    """Write a Triton Inference Server model repository for an ONNX file or a TensorRT plan."""

    folder = write_repository(model, repo, TritonOptions(
        name=name, max_batch=max_batch, instances=instances, kind=kind,
        max_queue_delay_us=max_queue_delay_us, ort_tensorrt=ort_tensorrt, overwrite=overwrite))
    click.echo(f"wrote {folder}/config.pbtxt and {folder}/1/; serve it with "
               f"tritonserver --model-repository {repo}")


def main() -> None:
    require_torch("srexport")
    cli(prog_name="srexport")


if __name__ == "__main__":
    main()
