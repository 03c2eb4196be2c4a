"""Triton Inference Server model repositories (``srexport triton``): an ONNX file (ONNX
Runtime backend) or a TensorRT plan with its manifest, copied to ``REPO/NAME/1/`` beside a
``config.pbtxt`` that declares its inputs and outputs, its batching and instances, and this
toolkit's description of the model as parameters (scale, value range, colour order, layout)
for clients. The server itself is not part of this toolkit."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from srgan_runtime.core.errors import UserError
from srgan_runtime.core.files import atomic_write
from srgan_runtime.core.modelinfo import ModelInfo, describe

_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "bfloat16": "TYPE_BF16"}


@dataclass(frozen=True)
class TritonOptions:
    name: str | None = None  # the model's name in the repository [default: the file's stem]
    max_batch: int = 8  # for dynamic-batch files; a plan's profile decides for plans
    instances: int = 1
    kind: str = "gpu"  # gpu | cpu (instance placement)
    max_queue_delay_us: int = 100  # dynamic batching: how long to wait for more requests
    ort_tensorrt: bool = False  # ONNX files: let ONNX Runtime use its TensorRT accelerator
    overwrite: bool = False


def _dims(values: list[int]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def triton_config(info: ModelInfo, name: str, opts: TritonOptions,
                  io_types: tuple[str, str] = ("float32", "float32")) -> str:
    """The ``config.pbtxt`` text for a described ONNX file or TensorRT plan."""
    if info.format == "onnx":
        platform = "onnxruntime_onnx"
    elif info.format == "tensorrt":
        platform = "tensorrt_plan"
    else:
        raise UserError(f"Triton serves ONNX files and TensorRT plans, not {info.format} files "
                        "(export one with 'srexport onnx' or 'srexport trt')")
    c_in, c_out, s = info.channels, info.out_channels, info.scale
    if info.format == "tensorrt":
        lo = [int(v) for v in info.extra["profile_min"].split("x")]
        hi = [int(v) for v in info.extra["profile_max"].split("x")]
        max_batch = hi[0]
        side_in = [hi[k] if lo[k] == hi[k] else -1 for k in (2, 3)]
        batched = lo[0] == 1
    elif info.static is not None:
        b, h, w = info.static
        max_batch, side_in, batched = b, [h, w], False
    else:
        max_batch, side_in, batched = opts.max_batch, [-1, -1], True
    side_out = [v * s if v > 0 else -1 for v in side_in]
    if batched:
        in_dims, out_dims, mbs = [c_in, *side_in], [c_out, *side_out], max_batch
    else:  # a fixed batch: every request carries the whole NCHW tensor
        in_dims, out_dims, mbs = [max_batch, c_in, *side_in], [max_batch, c_out, *side_out], 0
    kind = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}[opts.kind]
    lines = [
        f'name: "{name}"',
        f'platform: "{platform}"',
        f"max_batch_size: {mbs}",
        "input [",
        "  {",
        f'    name: "{info.input_name}"',
        f"    data_type: {_TYPES[io_types[0]]}",
        f"    dims: {_dims(in_dims)}",
        "  }",
        "]",
        "output [",
        "  {",
        f'    name: "{info.output_name}"',
        f"    data_type: {_TYPES[io_types[1]]}",
        f"    dims: {_dims(out_dims)}",
        "  }",
        "]",
        "instance_group [",
        "  {",
        f"    count: {opts.instances}",
        f"    kind: {kind}",
        "  }",
        "]",
    ]
    if mbs > 0:
        # Triton batches requests whose tensors have the same shape: tiles of one size.
        sizes = sorted({v for v in (1, 2, 4, mbs) if v <= mbs})
        lines += ["dynamic_batching {", f"  preferred_batch_size: {_dims(sizes)}",
                  f"  max_queue_delay_microseconds: {opts.max_queue_delay_us}", "}"]
    if opts.ort_tensorrt and info.format == "onnx":
        precision = "FP16" if info.precision == "fp16" else "FP32"
        lines += ["optimization {", "  execution_accelerators {",
                  "    gpu_execution_accelerator: [", "      {", '        name: "tensorrt"',
                  f'        parameters {{ key: "precision_mode" value: "{precision}" }}',
                  "      }", "    ]", "  }", "}"]
    described = {"scale": s, "value_range": info.value_range, "colour_order": info.colour_order,
                 "layout": info.layout, "arch": info.arch, "precision": info.precision,
                 "receptive_radius": info.effective_radius or info.receptive_radius or ""}
    for key, value in described.items():
        lines.append(f'parameters {{ key: "srgan.{key}" value: {{ string_value: "{value}" }} }}')
    return "\n".join(lines) + "\n"


def write_repository(model: Path, repo: Path, opts: TritonOptions | None = None) -> Path:
    """Write ``REPO/NAME/config.pbtxt`` and ``REPO/NAME/1/model.onnx|model.plan``; returns
    the model's folder. An existing folder is replaced only with ``overwrite``."""
    opts = opts or TritonOptions()
    if opts.instances < 1 or opts.max_batch < 1 or opts.kind not in ("gpu", "cpu"):
        raise UserError("--instances and --max-batch must be >= 1, --kind gpu or cpu")
    info = describe(model)
    name = opts.name or Path(model).name.split(".")[0]
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) or name in (".", ".."):
        raise UserError(f"model name {name!r}: use letters, digits, '_', '-', '.' (--name)")
    io_types = ("float32", "float32")
    if info.format == "tensorrt":
        from srgan_runtime.core.manifest import read_manifest

        m = read_manifest(Path(model))
        io_types = tuple(m.io.get(n, {}).get("dtype", "float32")
                         for n in (info.input_name, info.output_name))  # type: ignore[assignment]
    text = triton_config(info, name, opts, io_types)
    folder = Path(repo) / name
    if folder.exists() and not opts.overwrite:
        raise UserError(f"{folder} exists (--overwrite replaces it)")
    version = folder / "1"
    version.mkdir(parents=True, exist_ok=True)
    target = version / ("model.plan" if info.format == "tensorrt" else "model.onnx")
    data = Path(model).read_bytes()
    atomic_write(target, lambda tmp: tmp.write_bytes(data))
    atomic_write(folder / "config.pbtxt", lambda tmp: tmp.write_text(text))
    return folder
