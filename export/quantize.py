"""Post-training INT8 quantization of an exported fp32 ONNX file (ONNX Runtime static
quantization, QDQ format), calibrated on training images.

The result is a standard QDQ graph: ONNX Runtime fuses it into integer kernels and OpenVINO
reads it as FakeQuantize layers, so one file serves both CPU backends. Weights are int8 per
output channel, activations uint8 per tensor (MinMax over the calibration crops).

Kept in float, found by the graph's shape rather than by node names (so a re-export or another
generator of the same family is handled alike):

- the bicubic skip branch and the final add: the output's base image, values up to 1.0, would
  otherwise be rounded to 1/255 steps before the learned residual is added (Set14 loss 2.7 dB,
  measured by ``benchmarks/int8.py``);
- the first convolutions (those reading the input image): int8 weights there cost 0.2 dB on
  Set14, for 0.3x of the speed-up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from srgan_runtime.core.errors import ImageError, UserError, first_line
from srgan_runtime.core.files import list_images
from srgan_runtime.core.imageio import downscale, load_rgb, to_nchw

log = logging.getLogger(__name__)

# Nodes that carry an activation: a branch without any is a fixed linear filter (the skip).
_ACTIVATIONS = frozenset({"PRelu", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Elu", "Gelu",
                          "HardSigmoid", "Mish", "Softplus", "Clip"})
EVAL_SETS = ("set5", "set14", "bsd100", "urban100", "manga109", "div2k_valid")


@dataclass(frozen=True)
class CalibrationOptions:
    """``count`` crops of ``size`` LR pixels (smaller images are taken whole), one per image
    in sorted order (cycling when the folder has fewer), from a fixed seed."""

    count: int = 64
    size: int = 64
    seed: int = 0


def calibration_problem(folder: Path) -> str | None:
    """Why a folder should not calibrate (an evaluation set: its scores would flatter the
    quantized model), else None."""
    parts = {p.lower() for p in Path(folder).resolve().parts}
    hit = sorted(parts & set(EVAL_SETS))
    if hit:
        return (f"{folder} is (inside) the evaluation set {hit[0]}: calibrate on training "
                "images (e.g. T91, DIV2K train), so that the reported scores stay honest")
    return None


def calibration_batches(folder: Path, scale: int, options: CalibrationOptions | None = None,
                        ) -> list[np.ndarray]:
    """LR crops (NCHW float32 in [0, 1], batch 1) made from the HR images of ``folder`` the
    way training makes them: bicubic downscaling by ``scale``."""

    opts = options or CalibrationOptions()
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: calibration folder not found")
    files = list_images(folder)
    if not files:
        raise UserError(f"{folder}: no images to calibrate on")
    rng = np.random.default_rng(opts.seed)
    crops: list[np.ndarray] = []
    refused: dict[Path, str] = {}
    i = 0
    # Cycling: a second pass takes other crops of the same files.
    while len(crops) < opts.count and len(refused) < len(files):
        path = files[i % len(files)]
        i += 1
        if path in refused:
            continue
        try:
            lr = downscale(load_rgb(path), scale)
        except (ImageError, ValueError) as exc:  # ValueError: smaller than the scale
            refused[path] = f"{path}: {exc}" if isinstance(exc, ValueError) else str(exc)
            continue
        h, w = min(opts.size, lr.shape[0]), min(opts.size, lr.shape[1])
        y = int(rng.integers(0, lr.shape[0] - h + 1))
        x = int(rng.integers(0, lr.shape[1] - w + 1))
        crops.append(to_nchw(lr[y:y + h, x:x + w]))
    if not crops:
        shown = "; ".join(list(refused.values())[:2])
        raise UserError(f"{folder}: no usable calibration image ({shown})")
    if refused:
        log.warning("calibration skipped %d unreadable file(s), e.g. %s", len(refused),
                    next(iter(refused.values())))
    return crops


def float_nodes(model) -> list[str]:
    """Names of the nodes to keep in float (module docstring): the activation-free branch of
    the add that produces the output, that add, and the convolutions reading the input."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    keep: list[str] = []
    inputs = {i.name for i in graph.input}
    keep += [n.name for n in graph.node if n.op_type == "Conv" and n.input[0] in inputs]
    final = producer.get(graph.output[0].name)
    if final is not None and final.op_type == "Add":

        def ancestry(name: str) -> list:
            seen, stack, out = set(), [name], []
            while stack:
                node = producer.get(stack.pop())
                if node is None or node.name in seen:
                    continue
                seen.add(node.name)
                out.append(node)
                stack.extend(node.input)
            return out

        branches = [ancestry(i) for i in final.input]
        linear = [b for b in branches if not any(n.op_type in _ACTIVATIONS for n in b)]
        if len(linear) == 1:
            keep += [final.name] + [n.name for n in linear[0]]
    return sorted(set(keep))


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over a list of batches."""

    def __init__(self, name: str, batches: list[np.ndarray]) -> None:
        self.name, self.it = name, iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self.it, None)
        return None if x is None else {self.name: x}

    def rewind(self) -> None:  # pragma: no cover - part of the protocol, unused by MinMax
        pass


def quantize_int8(fp32_path: Path, out: Path, batches: list[np.ndarray],
                  keep_float: list[str] | None = None) -> list[str]:
    """Write the INT8 (QDQ) version of ``fp32_path`` to ``out`` (not atomic: the caller's
    temporary file). Returns the names of the nodes kept in float."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    model = onnx.load(str(fp32_path))
    keep = float_nodes(model) if keep_float is None else keep_float
    reader = _Reader(model.graph.input[0].name, batches)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's advice goes to the root logger
    try:
        quantize_static(
            str(fp32_path), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep,
        )
    except Exception as exc:
        raise UserError(f"INT8 quantization failed: {first_line(exc)}") from exc
    finally:
        root.setLevel(level)
    return keep
