"""What a runtime needs to know about an exported model, stored in ONNX ``metadata_props``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from srgan_runtime.core.errors import UserError, first_line

ONNX_FORMAT = "srgan-toolkit/onnx"


@dataclass(frozen=True)
class ModelInfo:
    """Self-description of an exported generator. All fields round-trip through strings."""

    scale: int
    preset: str = "unknown"
    channels: int = 3
    precision: str = "fp32"  # of the body; inputs/outputs are always float32
    value_range: str = "0-1"
    colour_order: str = "RGB"
    layout: str = "NCHW"
    input_name: str = "lr"
    output_name: str = "sr"
    min_input_size: int = 1
    input_multiple: int = 1
    receptive_radius: int = 0
    static_shape: str = ""  # "B,H,W" for fixed-shape exports, else ""
    source_sha256: str = ""
    toolkit_version: str = ""
    opset: int = 0

    def to_props(self) -> dict[str, str]:
        props = {"format": ONNX_FORMAT}
        props.update({k: str(v) for k, v in asdict(self).items()})
        return props

    @classmethod
    def from_props(cls, props: dict[str, str], where: object = "model") -> ModelInfo:
        if props.get("format") != ONNX_FORMAT:
            raise UserError(
                f"{where}: not an ONNX file of this toolkit (no '{ONNX_FORMAT}' metadata); "
                "pass --scale to use it anyway"
            )
        kwargs: dict[str, object] = {}
        for f in fields(cls):
            if f.name in props:
                value = props[f.name]
                if f.type == "int":
                    try:
                        value = int(value)
                    except ValueError:
                        raise UserError(f"{where}: ONNX metadata {f.name}={value!r} is not a "
                                        "whole number") from None
                kwargs[f.name] = value
        if "scale" not in kwargs:
            raise UserError(f"{where}: ONNX metadata has no scale")
        return cls(**kwargs).validate(where)  # type: ignore[arg-type]

    def validate(self, where: object = "model") -> ModelInfo:
        """Every field in range: the metadata of a file is untrusted input (a static shape
        becomes a buffer size, a radius a tile overlap)."""
        bounds = {"scale": (1, MAX_SCALE), "channels": (1, 4), "min_input_size": (1, MAX_SIDE),
                  "input_multiple": (1, MAX_SIDE), "receptive_radius": (0, MAX_SIDE),
                  "opset": (0, 1000)}
        for name, (lo, hi) in bounds.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise UserError(f"{where}: ONNX metadata {name}={value} is outside {lo}..{hi}")
        if self.precision not in ("fp32", "fp16"):
            raise UserError(f"{where}: ONNX metadata precision={self.precision!r} is not fp32 "
                            "or fp16")
        if self.static_shape:
            parse_static_shape(self.static_shape, where)
        return self

    @property
    def static(self) -> tuple[int, int, int] | None:
        if not self.static_shape:
            return None
        return parse_static_shape(self.static_shape)


MAX_SCALE = 16
MAX_SIDE = 16384  # per tile side; with MAX_STATIC_PIXELS it bounds a static engine's buffer
MAX_STATIC_PIXELS = 1 << 26  # B x H x W of one static input: 64 M (768 MB of float32 RGB)


def parse_static_shape(text: str, where: object = "model") -> tuple[int, int, int]:
    """``"B,H,W"`` of a fixed-shape model, checked: positive and of a size one can allocate."""
    try:
        b, h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"{where}: static shape {text!r} is not B,H,W") from None
    if min(b, h, w) < 1 or max(h, w) > MAX_SIDE or b * h * w > MAX_STATIC_PIXELS:
        raise UserError(f"{where}: static shape {text!r} is out of range (sides 1..{MAX_SIDE}, "
                        f"B x H x W <= {MAX_STATIC_PIXELS})")
    return b, h, w


def read_onnx_info(path: Path, scale: int | None = None) -> ModelInfo:
    """Read the metadata of an ONNX file (weights not loaded). For a foreign file without our
    metadata, ``scale`` must be given; IO names and precision are then read from the graph."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise UserError(f"{path}: not a readable ONNX file ({first_line(exc)})") from None
    props = {p.key: p.value for p in model.metadata_props}
    if props.get("format") == ONNX_FORMAT:
        info = ModelInfo.from_props(props, path)
        if scale is not None and scale != info.scale:
            raise UserError(f"{path}: model is x{info.scale}, --scale is {scale}")
        return info
    if scale is None:
        ModelInfo.from_props(props, path)  # raises the "pass --scale" error
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise UserError(f"{path}: expected one input and one output")
    inp, out = model.graph.input[0], model.graph.output[0]
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in inp.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise UserError(f"{path}: input {inp.name!r} is not NCHW (rank {len(dims)})")
    static = ",".join(str(d) for d in (dims[0], dims[2], dims[3])) if all(dims) else ""
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return ModelInfo(scale=int(scale), channels=dims[1] or 3, input_name=inp.name,
                     output_name=out.name, static_shape=static, opset=opset,
                     precision=onnx_body_precision(model)).validate(path)


def onnx_body_precision(model) -> str:
    """``fp16`` when most floating initializers are float16, else ``fp32``."""
    import onnx

    counts = {"fp16": 0, "fp32": 0}
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT16:
            counts["fp16"] += 1
        elif init.data_type == onnx.TensorProto.FLOAT:
            counts["fp32"] += 1
    return "fp16" if counts["fp16"] > counts["fp32"] else "fp32"
