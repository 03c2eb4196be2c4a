"""Export a generator file to ONNX (fp32; fp16 body with fp32 IO; or INT8 by post-training
quantization), verified before it lands."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

from srgan_runtime.backends import open_backend
from srgan_runtime.backends.onnxrt import OrtBackend
from srgan_runtime.core import __version__
from srgan_runtime.core.cli import parse_dims
from srgan_runtime.core.errors import UserError, first_line
from srgan_runtime.core.files import check_output_file, file_sha256
from srgan_runtime.core.fitting import required_size
from srgan_runtime.core.modelinfo import ModelInfo, describe
from srgan_runtime.core.modelinfo import describe as describe_model
from srgan_runtime.radius import effective_radius

from .landing import ParityError, land
from .parity import (
    Gate,
    ParityReport,
    default_data_dir,
    run_parity,
    torch_reference,
    verification_inputs,
)
from .quantize import CalibrationOptions, calibration_batches, calibration_problem, quantize_int8

log = logging.getLogger(__name__)

SUPPORTED_OPSETS = (17, 18, 19, 20)
DEFAULT_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "lr", "sr"


@dataclass
class OnnxExportOptions:
    """How to export. ``static`` is ``(batch, height, width)`` for fixed-shape engines."""

    opset: int = DEFAULT_OPSET
    fp16: bool = False
    static: tuple[int, int, int] | None = None
    verify: bool = True
    overwrite: bool = False
    data_dir: Path | None = None
    measure_radius: bool = True  # store the effective radius (srgan_runtime.radius)
    int8: bool = False  # post-training quantization (srgan_export.quantize)
    calibration: Path | None = None  # training HR images; default <data>/T91/HR
    calibration_count: int = 64


@dataclass
class OnnxExportResult:
    path: Path
    info: ModelInfo
    parity: ParityReport | None
    ops: dict[str, int] = field(default_factory=dict)
    kept_float: list[str] = field(default_factory=list)  # INT8: nodes left in float


def load_source(path: Path):
    """The fp32 eval-mode network of a generator file or another project's checkpoint: the
    module to export and the parity reference."""
    from srgan_train.checkpoint import load_module

    return load_module(describe(path), "cpu", "reference")


def _deploy_module(model, fp16: bool, info: ModelInfo | None = None):
    """The module to trace: the generator with its tail moved before the last PixelShuffle
    (the same function, faster kernels: ``subpixel_tail``), or for fp16 a wrapper whose body
    runs in half precision while the bicubic skip and the final add stay float32 (fp32 IO).
    Another project's network is traced as it is (fp16: all of it in half, fp32 IO)."""
    import torch
    from torch import nn

    from srgan_train.archs import subpixel_tail

    if info is not None and info.format == "checkpoint":
        return _foreign_module(copy.deepcopy(model).float().eval(), fp16)
    model = subpixel_tail(copy.deepcopy(model).float()).eval()
    if not fp16:
        return model

    class HalfBody(nn.Module):
        def __init__(self, g) -> None:
            super().__init__()
            self.g = g.half()
            self.g.bicubic.float()  # the skip branch keeps fp32 weights

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.g.bicubic(x) + self.g.residual(x.half()).float()

    return HalfBody(model).eval()


def _foreign_module(model, fp16: bool):
    if not fp16:
        return model
    import torch
    from torch import nn

    class HalfIO(nn.Module):
        def __init__(self, m) -> None:
            super().__init__()
            self.m = m.half()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.m(x.half()).float()

    return HalfIO(model).eval()


def example_input(info: ModelInfo, static: tuple[int, int, int] | None):
    """The tracing input: the static shape, or batch 2 and unequal sides (so that no dimension
    specialises to a constant) of a size the architecture accepts."""
    import torch

    if static:
        b, h, w = static
        return torch.rand(b, info.channels, h, w)
    m = info.input_multiple
    h, w = required_size(24, 24 + m if m > 1 else 32, info.min_input_size, m, info.square_only)
    return torch.rand(2, info.channels, h, w)


def parse_static(text: str | None) -> tuple[int, int, int] | None:
    """``"B,H,W"`` (or ``BxHxW``) to a tuple; None passes through."""
    if not text:
        return None

    b, h, w = parse_dims(text, 3, "--static B,H,W, e.g. 1,128,128")
    return b, h, w


def _dynamic_shapes(info: ModelInfo | None) -> tuple:
    """Dynamic batch and sides; an architecture that needs multiples of a window gets sides
    that are multiples of it (the runtime pads to them), at least its minimum."""
    from torch.export import Dim

    m = info.input_multiple if info is not None else 1
    low = info.min_input_size if info is not None else 1
    sides = {}
    for axis, name in ((2, "height"), (3, "width")):
        if m > 1:
            sides[axis] = Dim(f"{name}_blocks", min=max(1, -(-low // m)), max=65536 // m) * m
        else:
            sides[axis] = Dim(name, min=max(1, low), max=65536)
    # Positional, so that it matches whatever the network's forward calls its input.
    return ({0: Dim("batch", min=1, max=4096), **sides},)


def _trace(module, example, opset: int, static: bool, path: Path,
           info: ModelInfo | None = None) -> None:
    import torch

    dynamic = None
    if not static:
        dynamic = _dynamic_shapes(info)
    # The exporter prints progress to stdout and warns about unrelated optional packages; keep
    # that out of the user's terminal unless it fails.
    buf = io.StringIO()
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch._export", "torch.export",
                                             "onnxscript")]
    levels = [lg.level for lg in quiet]
    try:
        for lg in quiet:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
            warnings.simplefilter("ignore")
            # torchlib builds at opset 18; 17 is reached by _downgrade_to_17 afterwards.
            prog = torch.onnx.export(
                module, (example,), dynamo=True, opset_version=max(opset, 18),
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=dynamic, optimize=True, verbose=False,
            )
            prog.save(str(path))
    except Exception as exc:
        log.debug("exporter output:\n%s", buf.getvalue())
        raise UserError(f"ONNX export failed: {first_line(exc)}") from exc
    finally:
        for lg, lv in zip(quiet, levels, strict=True):
            lg.setLevel(lv)


# Ops of this generator whose opset-17 and opset-18 definitions are the same, given that Pad
# has no ``axes`` input (the only change to Pad in 18).
_SAME_IN_17_AND_18 = frozenset({"Conv", "PRelu", "Add", "DepthToSpace", "Pad", "Cast"})


def _downgrade_to_17(model) -> None:
    """Relabel an opset-18 graph as opset 17 where every node means the same in both.

    ONNX's version converter has no 18->17 adapter for Pad, although a Pad without ``axes``
    is valid opset 17; the strict checker afterwards confirms the result.
    """
    for node in model.graph.node:
        if node.op_type not in _SAME_IN_17_AND_18 or (node.op_type == "Pad" and
                                                      len(node.input) > 3 and node.input[3]):
            raise UserError(f"cannot express node {node.op_type} in opset 17; use 18 to 20")
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            imp.version = 17


def _finalise(path: Path, info: ModelInfo, relabel: bool = True) -> dict[str, int]:
    """Attach metadata, set the opset (``relabel``), then check the model and its shapes
    strictly."""
    import onnx

    model = onnx.load(str(path))
    if info.opset == 17 and relabel:
        _downgrade_to_17(model)
    del model.metadata_props[:]
    for k, v in info.to_props().items():
        model.metadata_props.add(key=k, value=v)
    model.doc_string = f"srgan-toolkit {__version__}: {info.preset} x{info.scale} {info.precision}"
    try:
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise UserError(f"exported ONNX failed the checker: {first_line(exc)}") from exc
    onnx.save(model, str(path))
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return ops


def verify_onnx(
    onnx_path: Path, generator, info: ModelInfo, data_dir: Path | None = None,
    name: str | None = None,
) -> ParityReport:
    """Run the ONNX file in ONNX Runtime CPU on real images and compare with the PyTorch
    generator (fp32) under the precision's gate."""

    candidate = OrtBackend(replace(info, path=str(onnx_path), format="onnx")).run_float
    cases, source = verification_inputs(info.scale, info.static, data_dir)
    log.info("verifying %s against PyTorch on %s", name or onnx_path.name, source)
    gate = Gate.for_precision(info.precision)
    return run_parity(f"ONNX Runtime CPU {info.precision} vs PyTorch fp32", gate, cases,
                      torch_reference(generator, info=info), candidate)


def _effective_radius(generator_path: Path) -> int | None:
    """Measured on the generator in PyTorch fp32 (once per file: the runtime caches it)."""

    return effective_radius(open_backend(generator_path, "torch", "cpu", "fp32"))


def _check_static(info: ModelInfo, static: tuple[int, int, int]) -> None:
    """A fixed tile must be one the architecture accepts (the runtime pads images to it)."""

    _, h, w = static
    if required_size(h, w, info.min_input_size, info.input_multiple, info.square_only) != (h, w):
        need = required_size(h, w, info.min_input_size, info.input_multiple, info.square_only)
        raise UserError(f"--static {h}x{w}: {info.arch} needs sides of at least "
                        f"{info.min_input_size}, multiples of {info.input_multiple}"
                        f"{', square' if info.square_only else ''} (e.g. {need[0]}x{need[1]})")


def check_output_path(out: Path, overwrite: bool) -> None:
    """Refuse an existing output without ``overwrite`` and an unwritable folder, up front."""

    check_output_file(out, "model file", overwrite)


def export_onnx(generator_path: Path, out: Path, options: OnnxExportOptions | None = None,
                ) -> OnnxExportResult:
    """Export a generator file to ``out``. With ``verify`` (default), the file lands only if it
    passes the parity gate; otherwise nothing is left at ``out``. Another project's
    network whose graph cannot keep dynamic shapes is exported with a fixed tile instead."""

    opts = options or OnnxExportOptions()
    if opts.opset not in SUPPORTED_OPSETS:
        raise UserError(f"opset {opts.opset} is not supported (choose 17 to 20)")
    if opts.int8 and opts.fp16:
        raise UserError("--int8 and --fp16 exclude each other")
    out = Path(out)
    check_output_path(out, opts.overwrite)
    calibration = _calibration(generator_path, opts) if opts.int8 else None
    source = describe(generator_path)
    if opts.fp16 and not source.fp16_ok:
        raise UserError(f"{generator_path}: {source.arch} does not compute correctly in fp16 "
                        "(spandrel marks it unsupported): export fp32 (bf16 runs it in OpenVINO)")
    if opts.static:
        _check_static(source, opts.static)
    network = load_source(Path(generator_path))
    # The source's description, with what the export changes: the ONNX file says the same.
    base = replace(
        source, format="onnx", path="", extra={},
        effective_radius=_effective_radius(generator_path) if opts.measure_radius else None,
        precision="fp16" if opts.fp16 else "int8" if opts.int8 else "fp32",
        input_name=INPUT_NAME, output_name=OUTPUT_NAME,
        source_sha256=file_sha256(Path(generator_path)), toolkit_version=__version__,
        opset=opts.opset,
    )
    module = _deploy_module(network, opts.fp16, source)
    try:
        return _export_verified(module, network, base, opts, calibration, out)
    except (ParityError, UserError) as exc:
        if source.format != "checkpoint" or opts.static or not opts.verify:
            raise
        # Some networks branch on their input's size in Python (SwinIR's attention mask),
        # which a traced graph freezes: such a model gets a fixed tile instead.
        tile = required_size(FOREIGN_STATIC_TILE, FOREIGN_STATIC_TILE, source.min_input_size,
                             source.input_multiple, source.square_only)
        log.warning("%s: the dynamic-shape export of this %s failed (%s); exporting a fixed "
                    "1x%dx%d tile instead (--static B,H,W to choose)", Path(generator_path).name,
                    source.arch, first_line(exc), *tile)
        opts = replace(opts, static=(1, *tile))
        return _export_verified(module, network, base, opts, calibration, out)


# The fixed tile of a foreign model whose graph cannot have dynamic shapes (the runtime's
# default tile).
FOREIGN_STATIC_TILE = 256


def _export_verified(module, network, base: ModelInfo, opts: OnnxExportOptions,
                     calibration: list | None, out: Path) -> OnnxExportResult:
    """Trace (and quantize), finalise, verify; the file lands at ``out`` only if it passes."""
    info = replace(base, static_shape=",".join(map(str, opts.static)) if opts.static else "")
    example = example_input(info, opts.static)
    result: dict = {}

    def make(staged: Path) -> ParityReport | None:
        if calibration is None:
            _trace(module, example, opts.opset, opts.static is not None, staged, info)
            result["ops"] = _finalise(staged, info)
        else:
            result["kept_float"] = _quantized(module, example, opts, info, calibration, staged)
            result["ops"] = _finalise(staged, info, relabel=False)
        if not opts.verify:
            return None
        result["parity"] = verify_onnx(staged, network, info, opts.data_dir, name=out.name)
        return result["parity"]

    try:
        land(out, make)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"the exported graph does not run ({first_line(exc)})") from exc
    return OnnxExportResult(out, replace(info, path=str(out)), result.get("parity"),
                            result.get("ops", {}), result.get("kept_float", []))


def _calibration(generator_path: Path, opts: OnnxExportOptions) -> list:
    """The calibration crops for ``--int8``, read before any export work."""

    folder = opts.calibration
    if folder is None:
        folder = (opts.data_dir or default_data_dir()) / "T91" / "HR"
        if not folder.is_dir():
            raise UserError("--int8 needs --calibration DIR: a folder of training images "
                            f"(the default {folder} does not exist)")
    problem = calibration_problem(folder)
    if problem:
        raise UserError(problem)
    scale = describe_model(generator_path).scale
    return calibration_batches(folder, scale, CalibrationOptions(count=opts.calibration_count))


def _quantized(module, example, opts: OnnxExportOptions, info: ModelInfo, batches: list,
               out: Path) -> list[str]:
    """Trace in fp32 (opset relabelled where asked) beside ``out``, then quantize into it."""

    fp32 = out.with_name(out.name + ".fp32.onnx")
    try:
        _trace(module, example, opts.opset, opts.static is not None, fp32, info)
        _finalise(fp32, replace(info, precision="fp32"))
        return quantize_int8(fp32, out, batches)
    finally:
        fp32.unlink(missing_ok=True)


def verify_file(onnx_path: Path, generator_path: Path, scale: int | None = None,
                data_dir: Path | None = None) -> ParityReport:
    """``srexport verify``: check an existing ONNX file against a generator file."""
    source = describe(Path(generator_path))
    info = describe(Path(onnx_path), scale)
    if info.scale != source.scale:
        raise UserError(f"{onnx_path}: model is x{info.scale}, {generator_path} is "
                        f"x{source.scale}")
    return verify_onnx(Path(onnx_path), load_source(Path(generator_path)), info, data_dir)


def convert_for_runtime(source: Path, dest: Path) -> ModelInfo:
    """The runtime's ONNX converter (entry point ``srgan_toolkit.converters: onnx``): an fp32
    dynamic-shape export, verified, written over ``dest``. No radius measurement here: the
    runtime measures it when an image first needs tiles (cached under the source's hash,
    which the export records)."""
    return export_onnx(source, dest, OnnxExportOptions(overwrite=True,
                                                       measure_radius=False)).info
