"""The runtime's settings, each declared once: :class:`UpscaleSettings` (how images are
upscaled: backend, tiling, memory, output size) and :class:`WriteOptions` (how results are
written). The library, ``srrun upscale``, ``srrun serve``, the Ray workers and ``srbench`` all
take these objects; the command-line options are generated from their fields
(:mod:`srgan_runtime.core.options`). Both validate on construction, in API terms."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import click

from .backends.support import PRECISIONS, backend_names
from .core.cli import FiniteFloat
from .core.errors import UserError
from .core.imageio import FORMATS, PNG_LEVEL
from .core.modelinfo import MAX_SCALE
from .core.options import setting
from .memory import parse_size

DEFAULT_TILE = 256
# 1 gigapixel of output (a 3 GB RGB canvas): far beyond a photo x4, small enough to be refused
# before it exhausts a typical machine.
DEFAULT_MAX_OUTPUT_PIXELS = 1_000_000_000
COMPILE_MODES = ("auto", "default", "reduce-overhead", "max-autotune",
                 "max-autotune-no-cudagraphs")


def memory_setting(value: int | str | None) -> int | str | None:
    """``--max-memory``'s value in API terms: ``"auto"``, 0 (off), a byte count, or None (the
    library's fixed activation budget); sizes such as ``1.5G`` are parsed."""
    if value is None or isinstance(value, int):
        return value
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if text in ("off", "none", "0"):
        return 0
    return parse_size(text)


@dataclass(frozen=True)
class UpscaleSettings:
    """How to upscale, whatever the model: where and in what precision it runs, how images are
    tiled and batched, the memory budget, and what size of output is accepted."""

    backend: str = setting(
        "auto", help="Backend (the table below; 'auto' picks per model).",
        type=lambda: click.Choice(["auto", *backend_names()]))
    device: str = setting("auto", help="auto, cpu, cuda or cuda:N.")
    precision: str = setting(
        "auto", type=click.Choice(["auto", *PRECISIONS]),
        help="auto: fp16 on CUDA, bf16 on a CPU with native bf16 (AVX512_BF16/AMX), else "
             "fp32. Tiles that come out NaN/Inf are recomputed in fp32.")
    tile: int | None = setting(
        None, type=int, default_text="256, smaller where the memory budget needs it",
        help="LR tile side including overlap (0 = whole image). A tile given here is kept "
             "unless the machine's available memory is short (or --max-memory SIZE says so).")
    overlap: int | None = setting(
        None, type=int, default_text="the model's measured effective radius",
        help="Context per tile side; the default keeps tiled output within 1 level (>= 60 dB) "
             "of the whole image.")
    seamless: bool = setting(
        False, flag=True,
        help="Overlap = the model's theoretical receptive radius: tiled output equals the "
             "whole image (slower: more context recomputed).")
    cache: bool = setting(True, negate="--no-cache",
                          help="Neither read nor write the user cache (measured radii, "
                               "footprints, ONNX exports).")
    batch: int | None = setting(
        None, type=int, default_text="1 on the CPU (as fast, a quarter of the memory), 4 on CUDA",
        help="Tiles per model call.")
    max_memory: int | str | None = setting(
        None, metavar="SIZE|auto|off", default_text="a fixed 320 MiB for the activations",
        help="CPU memory budget (e.g. 1.5G, for the whole process): the tile is chosen per image "
             "from the model's measured per-tile footprint. auto: what the run adds stays "
             "within the output picture + 512 MiB with the default tile, and within the "
             "available memory with an explicit --tile; off: the requested tile whatever it "
             "costs.")
    threads: int = setting(0, type=int, help="CPU threads (0 = all).")
    outscale: float | None = setting(None, type=FiniteFloat(0, lo_open=True),
                                     help="Final scale, resized after the model (Lanczos).")
    alpha: str = setting("bicubic", type=click.Choice(["bicubic", "model"]),
                         help="How alpha channels are upscaled.")
    max_output_pixels: int | None = setting(
        DEFAULT_MAX_OUTPUT_PIXELS, type=click.IntRange(1),
        help="Refuse inputs whose output would be larger (checked before decoding; inputs "
             "needing more memory than is free are refused too).")
    scale: int | None = setting(
        None, type=click.IntRange(1, MAX_SCALE),
        help="Without --model: the bundled model of this scale. With an ONNX file lacking this "
             "toolkit's metadata: its scale. Otherwise checked against the model's.")
    compile: str | None = setting(
        None, type=click.Choice(COMPILE_MODES), flag_value="auto",
        help="Run PyTorch through torch.compile (implies --backend torch). Bare --compile is "
             "auto: max-autotune (autotuned kernels, CUDA graphs) on CUDA, default on the CPU. "
             "With a tile, every call is one static batch x tile x tile shape; the compile "
             "time is paid once at start (cached across runs).")

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_memory", memory_setting(self.max_memory))
        self.validate()

    def validate(self) -> UpscaleSettings:
        """Refuse bad settings before any model is loaded or image read."""
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise UserError(f"--device {self.device!r}: auto, cpu, cuda or cuda:N")
        if (self.tile or 0) < 0 or (self.batch if self.batch is not None else 1) < 1:
            raise UserError("--tile must be >= 0 and --batch >= 1")
        if self.overlap is not None and self.overlap < 0:
            raise UserError("--overlap must be >= 0")
        if self.threads < 0:
            raise UserError("--threads must be >= 0 (0 = all)")
        if self.alpha not in ("bicubic", "model"):
            raise UserError(f"--alpha {self.alpha!r}: bicubic or model")
        if self.outscale is not None and not (math.isfinite(self.outscale)
                                              and self.outscale > 0):
            raise UserError(f"--outscale {self.outscale}: must be a finite number > 0")
        if self.max_output_pixels is not None and self.max_output_pixels < 1:
            raise UserError("--max-output-pixels must be >= 1")
        if self.precision != "auto" and self.precision not in PRECISIONS:
            raise UserError(f"unknown precision {self.precision!r} (auto, "
                            f"{', '.join(PRECISIONS)})")
        if self.compile is not None and self.compile not in COMPILE_MODES:
            raise UserError(f"--compile {self.compile!r}: {', '.join(COMPILE_MODES)}")
        return self


@dataclass(frozen=True)
class WriteOptions:
    """How results are written: format, quality, what happens to existing files, and the
    largest input accepted (decompression bombs)."""

    fmt: str | None = setting(None, flags=("--format",), type=click.Choice(sorted(FORMATS)),
                              default_text="the input's format", help="Output format.")
    quality: int = setting(95, type=click.IntRange(1, 100), help="JPEG/WebP quality.")
    png_level: int = setting(
        PNG_LEVEL, type=click.IntRange(0, 9),
        help="PNG zlib level: 1 is fast (OpenCV's default), 9 smallest and slowest.")
    overwrite: bool = setting(False, flag=True, help="Replace existing outputs.")
    skip_existing: bool = setting(False, flag=True, help="Leave existing outputs alone.")
    max_pixels: int | None = setting(200_000_000, type=click.IntRange(1),
                                     help="Refuse larger inputs (decompression bombs).")

    def __post_init__(self) -> None:
        if self.overwrite and self.skip_existing:
            raise UserError("--overwrite and --skip-existing exclude each other")
        if self.fmt is not None and self.fmt.lower() not in FORMATS:
            raise UserError(f"unknown output format {self.fmt!r} (choose from "
                            f"{', '.join(sorted(FORMATS))})")
