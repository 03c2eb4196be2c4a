"""The generator file format, read without torch: its configuration, the receptive radius
and cost that follow from it, and the safetensors header with the metadata every generator file
carries. Loading the weights into a network is the training package's job
(:func:`srgan_train.checkpoint.load_generator`)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from .errors import UserError, first_line

FORMAT = "srgan-toolkit/generator"
FORMAT_VERSION = "1"
ARCH = "srgan_generator"

SUPPORTED_SCALES = (2, 3, 4)
# Far above any preset (srresnet: 64 channels, 16 blocks, 9x9 kernels); they bound what a
# config in an untrusted file can make the loader build.
MAX_CHANNELS, MAX_BLOCKS, MAX_KERNEL = 1024, 256, 15


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to rebuild a generator; stored in every generator file."""

    scale: int = 4
    channels: int = 64
    blocks: int = 16
    block: str = "residual"  # "residual" (SRResNet) or "bottleneck" (the seed's)
    bottleneck_channels: int = 32
    batchnorm: bool = True
    dropout: float = 0.0
    head_kernel: int = 9
    tail_kernel: int = 9
    in_channels: int = 3
    out_channels: int = 3

    def validate(self) -> GeneratorConfig:
        """Check types and ranges, so that a config read from an untrusted file cannot ask
        for an absurd network (it is built before its weights are loaded)."""
        for f in fields(self):
            value = getattr(self, f.name)
            want = {"int": int, "float": (int, float), "str": str, "bool": bool}[f.type]
            if not isinstance(value, want) or (f.type != "bool" and isinstance(value, bool)):
                raise UserError(f"generator setting {f.name}={value!r} has the wrong type")
        if self.scale not in SUPPORTED_SCALES:
            raise UserError(f"scale {self.scale} is not supported (choose one of 2, 3, 4)")
        if self.block not in ("residual", "bottleneck"):
            raise UserError(f"unknown block type {self.block!r} (residual or bottleneck)")
        if self.channels < 1 or self.blocks < 0 or self.bottleneck_channels < 1:
            raise UserError("channels and bottleneck channels must be >= 1, blocks >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.head_kernel % 2 == 0 or self.tail_kernel % 2 == 0:
            raise UserError("head and tail kernels must be odd")
        limits = {"channels": MAX_CHANNELS, "bottleneck_channels": MAX_CHANNELS,
                  "blocks": MAX_BLOCKS, "head_kernel": MAX_KERNEL, "tail_kernel": MAX_KERNEL,
                  "in_channels": 4, "out_channels": 4}
        for name, top in limits.items():
            value = getattr(self, name)
            if not 1 <= value <= top and not (name == "blocks" and value == 0):
                raise UserError(f"generator setting {name}={value} is outside 1..{top}")
        return self

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GeneratorConfig:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UserError(f"unknown generator settings {sorted(unknown)}")
        return cls(**data).validate()



def receptive_radius(config: GeneratorConfig) -> int:
    """Radius, in LR pixels, of the generator's receptive field (bicubic branch included).

    Tiles need at least this much context on each side for a seamless result.
    """
    per_block = 4 if config.block == "bottleneck" else 2
    r = config.head_kernel // 2 + per_block * config.blocks + 1  # head, blocks, trunk conv
    res = 1
    for f in [2, 2] if config.scale == 4 else [config.scale]:
        r += 1 / res  # the 3x3 conv before each PixelShuffle runs at the current resolution
        res *= f
    r += (config.tail_kernel // 2) / res
    return max(math.ceil(r), 2)


def macs_per_lr_pixel(config: GeneratorConfig) -> float:
    """Multiply-accumulates of the generator per input (LR) pixel, counted layer by layer
    (convolutions at their own resolution; the bicubic skip included)."""
    c, s = config.channels, config.scale
    macs = config.in_channels * c * config.head_kernel**2
    if config.block == "bottleneck":
        b = config.bottleneck_channels
        per_block = (c * b + 2 * b * b + b * c) * 9
    else:
        per_block = 2 * c * c * 9
    macs += config.blocks * per_block + c * c * 9  # blocks and trunk conv
    res = 1
    for f in [2, 2] if s == 4 else [s]:
        macs += res * c * c * f * f * 9  # conv before PixelShuffle at the current resolution
        res *= f * f
    macs += res * c * config.out_channels * config.tail_kernel**2
    macs += config.in_channels * s * s * 25  # depthwise 5x5 bicubic phases
    return float(macs)


def read_generator_metadata(path: Path) -> dict[str, str]:
    """The metadata of a generator file, validated; raises UserError for foreign/corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such generator file")
    try:
        meta = read_safetensors_header(path).get("__metadata__") or {}
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable safetensors generator file "
                        f"({first_line(exc)})") from None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise UserError(f"{path}: safetensors metadata is not a table of strings")
    if meta.get("format") != FORMAT:
        raise UserError(f"{path}: not a generator file of this toolkit (no '{FORMAT}' metadata)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{path}: generator format version {meta.get('format_version')} is not supported"
        )
    _check_metadata(path, meta)
    return meta


def _check_metadata(path: Path, meta: dict[str, str]) -> None:
    """The fields that tools read and print: present and of the right kind."""
    def number(key: str, kind: type, required: bool = False) -> None:
        if key not in meta:
            if required:
                raise UserError(f"{path}: generator metadata has no {key!r}")
            return
        try:
            value = kind(meta[key])
        except (TypeError, ValueError):
            raise UserError(f"{path}: generator metadata {key}={meta[key]!r} is not a "
                            f"{kind.__name__}") from None
        if (kind is float and not math.isfinite(value)) or value < 0:
            raise UserError(f"{path}: generator metadata {key}={meta[key]!r} is out of range")

    number("scale", int, required=True)
    if int(meta["scale"]) not in SUPPORTED_SCALES:
        raise UserError(f"{path}: generator metadata scale={meta['scale']} is not one of "
                        f"{', '.join(map(str, SUPPORTED_SCALES))}")
    number("step", int)
    number("val_psnr", float)
    if "config" not in meta:
        raise UserError(f"{path}: generator metadata has no 'config'")


def generator_config(path: Path, meta: dict[str, str]) -> GeneratorConfig:
    """The stored generator config, validated (types, ranges, scale as in the metadata)."""
    try:
        cfg = GeneratorConfig.from_json(meta["config"])
    except UserError as exc:
        raise UserError(f"{path}: generator metadata has no valid config ({exc})") from None
    except (KeyError, ValueError, TypeError) as exc:
        raise UserError(f"{path}: generator metadata has no valid config "
                        f"({first_line(exc)})") from None
    if cfg.scale != int(meta["scale"]):
        raise UserError(f"{path}: metadata says x{meta['scale']} but its config is "
                        f"x{cfg.scale}")
    return cfg


def read_safetensors_header(path: Path) -> dict[str, dict]:
    """The JSON header of a safetensors file (tensor names, dtypes, shapes, offsets; and
    ``__metadata__``), read without touching the tensor data. Raises ValueError when the file
    is not a well-formed safetensors file (bounds checked against the file size)."""
    size = Path(path).stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError("shorter than a safetensors header")
        n = int.from_bytes(head, "little")
        if n <= 1 or n > min(size - 8, 100 << 20):  # safetensors' own 100 MB header limit
            raise ValueError(f"header length {n} does not fit the file")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    data = size - 8 - n
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        ok = (isinstance(spec, dict) and isinstance(spec.get("shape"), list)
              and all(isinstance(d, int) and d >= 0 for d in spec["shape"])
              and isinstance(spec.get("data_offsets"), list) and len(spec["data_offsets"]) == 2
              and all(isinstance(o, int) for o in spec["data_offsets"])
              and 0 <= spec["data_offsets"][0] <= spec["data_offsets"][1] <= data)
        if not ok:
            raise ValueError(f"tensor {name!r} has a malformed entry")
    return header


# Exponent bits of each float dtype: all ones means NaN or infinity.
_EXPONENT = {"F64": (np.uint64, 0x7FF0000000000000), "F32": (np.uint32, 0x7F800000),
             "F16": (np.uint16, 0x7C00), "BF16": (np.uint16, 0x7F80)}


def nonfinite_tensors(path: Path, header: dict[str, dict] | None = None) -> list[str]:
    """Names of the floating-point tensors of a safetensors file that hold NaN or infinity,
    read from the file's bytes (memory-mapped; no torch, any float dtype including bf16)."""
    header = header if header is not None else read_safetensors_header(path)
    with open(path, "rb") as f:
        start = 8 + int.from_bytes(f.read(8), "little")
    data = np.memmap(path, dtype=np.uint8, mode="r")
    bad = []
    for name, spec in header.items():
        kind = _EXPONENT.get(spec.get("dtype", "")) if name != "__metadata__" else None
        if kind is None:
            continue
        lo, hi = spec["data_offsets"]
        raw = data[start + lo:start + hi]
        width = np.dtype(kind[0]).itemsize
        if len(raw) % width:
            continue  # malformed: the loader reports it
        exp = kind[0](kind[1])
        if np.any(raw.view(kind[0]) & exp == exp):
            bad.append(name)
    del data
    return bad
