"""AOTInductor packages (``srexport aoti``): the network compiled ahead of time by PyTorch's
inductor for one device, precision and fixed (batch, tile, tile) shape, as a ``.pt2`` archive
that the runtime's ``aoti`` backend loads without compiling. The model's description travels in
the package's own metadata (``aot_inductor.metadata``), readable without torch.

A package holds a compiled shared library: it is code, to be run only where it was built
(same CPU instruction set or GPU compute capability, same torch) and only if you trust who
built it.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from srgan_runtime.backends.aoti import AotiBackend
from srgan_runtime.backends.pytorch import autocast_module, load_network
from srgan_runtime.core import __version__
from srgan_runtime.core.errors import UserError
from srgan_runtime.core.files import file_sha256
from srgan_runtime.core.fitting import required_size
from srgan_runtime.core.modelinfo import AOTI_PRECISIONS, ModelInfo, describe

from .landing import land
from .onnx_export import check_output_path, load_source
from .parity import Gate, fit_to_profile, run_parity, torch_reference, verification_inputs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AotiOptions:
    device: str = "cpu"  # cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | bf16 (| fp16 on CUDA)
    tile: int = 256
    batch: int = 1
    verify: bool = True
    data_dir: Path | None = None
    overwrite: bool = False

    def validate(self, info: ModelInfo) -> AotiOptions:
        if self.precision not in AOTI_PRECISIONS:
            raise UserError(f"--precision {self.precision}: one of {', '.join(AOTI_PRECISIONS)}")
        if not self.device.startswith("cuda") and self.precision == "fp16":
            raise UserError("fp16 on the CPU is slow in PyTorch: compile bf16 or fp32 for the "
                            "CPU, fp16 for --device cuda")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise UserError(f"--device {self.device}: cpu or cuda[:N]")
        if not 1 <= self.batch <= 256 or not 8 <= self.tile <= 4096:
            raise UserError("--batch must be 1..256 and --tile 8..4096")
        if not {"fp16": info.fp16_ok, "bf16": info.bf16_ok}.get(self.precision, True):
            raise UserError(f"{info.arch} does not compute correctly in {self.precision}")

        need = required_size(self.tile, self.tile, info.min_input_size, info.input_multiple,
                             info.square_only)
        if need != (self.tile, self.tile):
            raise UserError(f"--tile {self.tile}: {info.arch} needs sides of at least "
                            f"{info.min_input_size}, multiples of {info.input_multiple} "
                            f"(e.g. {need[0]})")
        return self


def _module(source: Path, info: ModelInfo, precision: str, device: str):
    """The network to compile: fp32, or under autocast (the same numerics as
    ``srrun --backend torch --precision fp16/bf16``); channels_last."""
    import torch

    net = load_network(info, device).to(memory_format=torch.channels_last)
    if precision == "fp32":
        return net
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    return autocast_module(net, "cuda" if device.startswith("cuda") else "cpu", dtype)


def package_metadata(info: ModelInfo) -> dict[str, str]:
    """The string table stored in the package (``ModelInfo.to_props``)."""
    return info.to_props()


def export_aoti(source: Path, out: Path, options: AotiOptions | None = None):
    """Compile ``source`` (a generator file or another project's checkpoint) into an
    AOTInductor package at ``out``; with ``verify`` it lands only if the loaded package passes
    the precision's parity gate against PyTorch fp32. Returns the package's description and
    the parity report (None without ``verify``)."""
    import torch

    out = Path(out)
    check_output_path(out, (options or AotiOptions()).overwrite)
    if out.suffix != ".pt2":
        raise UserError(f"{out}: an AOTInductor package is a .pt2 file")
    src = describe(source)
    if not src.torch_weights:
        raise UserError(f"{source}: a {src.format} file; 'srexport aoti' compiles a generator or "
                        "checkpoint")
    opts = (options or AotiOptions()).validate(src)
    if opts.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda: torch sees no CUDA GPU")
    static = (opts.batch, opts.tile, opts.tile)
    info = replace(src, format="aoti", path="", extra={}, precision=opts.precision,
                   static_shape=",".join(map(str, static)), source_sha256=file_sha256(source),
                   toolkit_version=__version__, opset=0)
    module = _module(source, src, opts.precision, opts.device)
    example = torch.rand(opts.batch, src.channels, opts.tile, opts.tile, device=opts.device)
    example = example.contiguous(memory_format=torch.channels_last)
    meta = {**package_metadata(info), "device": "cuda" if opts.device.startswith("cuda")
            else "cpu", "torch_version": torch.__version__}

    def make(staged: Path):
        with warnings.catch_warnings():  # torch's internal deprecations are not the user's
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            with torch.no_grad():
                program = torch.export.export(module, (example,))
            torch._inductor.aoti_compile_and_package(
                program, package_path=str(staged),
                inductor_configs={"freezing": True, "aot_inductor.metadata": meta})
        return verify_package(staged, source, opts.data_dir) if opts.verify else None

    report = land(out, make)
    return describe(out), report


def verify_package(package: Path, source: Path, data_dir: Path | None = None):
    """The package (on its device) against the source in PyTorch fp32 on the CPU, on real
    images fitted to its fixed shape, under the gate of its precision."""

    info = describe(package)
    backend = AotiBackend(info)
    src = describe(source)
    b, h, w = info.static
    cases, _ = verification_inputs(info.scale, None, data_dir)
    lo = hi = (b, info.channels, h, w)
    cases = fit_to_profile(cases, lo, hi)
    reference = torch_reference(load_source(source), info=src)
    return run_parity(f"AOTInductor {info.precision} ({backend.device}) vs PyTorch fp32",
                      Gate.for_precision(info.precision), cases, reference,
                      lambda x: np.asarray(backend.run_float(x)))
