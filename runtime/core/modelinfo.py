"""One description of every model the toolkit accepts: :func:`describe` turns a generator file
(``.safetensors``), a run folder, a bundled model's name, an ONNX file or a TensorRT plan (with
its manifest) into a :class:`ModelInfo`. Nothing here needs torch; ONNX files need the ``onnx``
package, imported only when one is read.

Every backend, ``srrun models``, ``srexport``, ``srbench`` and ``srtrain info`` read models
through this module, so a new format or architecture describes itself in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from .errors import UserError, first_line
from .foreign import SUFFIXES as FOREIGN_SUFFIXES
from .foreign import describe_checkpoint
from .generator import (
    ARCH,
    generator_config,
    nonfinite_tensors,
    read_generator_metadata,
    read_safetensors_header,
    receptive_radius,
)
from .generator import (
    FORMAT as GENERATOR_FORMAT,
)
from .lazy import optional
from .manifest import ENGINE_SUFFIXES, read_manifest
from .statedict import refuse_nonfinite

ONNX_FORMAT = "srgan-toolkit/onnx"
# What a file stores its body in (inputs/outputs are float32 in every case).
STORED_PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# What an AOTInductor package can be compiled in (fp16 on CUDA only).
AOTI_PRECISIONS = ("fp32", "fp16", "bf16")
AOTI_SUFFIX = ".pt2"
_AOTI_META_MAX = 1 << 20  # bytes of a package's metadata member read
MODEL_DIR = Path(__file__).resolve().parent.parent / "models"

MAX_SCALE = 16
MAX_SIDE = 16384  # per tile side; with MAX_STATIC_PIXELS it bounds a static engine's buffer
MAX_STATIC_PIXELS = 1 << 26  # B x H x W of one static input: 64 M (768 MB of float32 RGB)

# Fields that describe the file itself rather than the network: never written to ONNX metadata.
_LOCAL_FIELDS = frozenset({"format", "path", "extra"})


@dataclass(frozen=True)
class ModelInfo:
    """What a runtime needs to know about a model, whatever file it came from.

    ``receptive_radius`` is None when unknown (a foreign ONNX file); ``effective_radius`` is
    None until measured (stored by ``srexport onnx``, else cached by file hash). ``static_shape`` is
    ``"B,H,W"`` for fixed-shape models, else empty (dynamic). ``extra`` holds the source's
    other metadata (a generator's training step and validation PSNR, an engine's profile).
    """

    scale: int
    format: str = "onnx"  # a MODEL_FORMATS name
    arch: str = "unknown"
    preset: str = "unknown"
    channels: int = 3  # input channels
    out_channels: int = 3
    precision: str = "fp32"  # stored precision of the body; inputs/outputs are float32
    value_range: str = "0-1"
    colour_order: str = "RGB"
    layout: str = "NCHW"
    input_name: str = "lr"
    output_name: str = "sr"
    min_input_size: int = 1
    input_multiple: int = 1
    square_only: bool = False
    # Whether the architecture computes correctly in half / bfloat16 (spandrel's flags).
    fp16_ok: bool = True
    bf16_ok: bool = True
    receptive_radius: int | None = None
    # The smallest tile context, measured, at which tiled output stays within the bound of
    # srgan_runtime.radius (>= 60 dB and at most 1 level from the whole-image output).
    effective_radius: int | None = None
    static_shape: str = ""
    source_sha256: str = ""
    toolkit_version: str = ""
    opset: int = 0
    path: str = field(default="", compare=False)
    extra: Mapping[str, str] = field(default_factory=dict, compare=False)

    # --- derived -------------------------------------------------------------------------------

    @property
    def static(self) -> tuple[int, int, int] | None:
        """(B, H, W) of a fixed-shape model, else None."""
        return parse_static_shape(self.static_shape) if self.static_shape else None

    @property
    def dynamic(self) -> bool:
        return not self.static_shape

    @property
    def precisions(self) -> tuple[str, ...]:
        """Precisions the model can be computed in (which backend offers each: the support
        table in :mod:`srgan_runtime.backends.support`)."""
        ok = {"fp16": self.fp16_ok, "bf16": self.bf16_ok}
        if self.torch_weights:
            return tuple(p for p in ("fp32", "fp16", "bf16") if ok.get(p, True))
        if self.format == "onnx":
            if self.precision == "fp32":
                return ("fp32", "bf16") if self.bf16_ok else ("fp32",)
            return (self.precision,)
        return (self.precision,)

    @property
    def torch_weights(self) -> bool:
        """A generator or foreign checkpoint: weights that PyTorch runs (and export reads)."""
        fmt = MODEL_FORMATS.get(self.format)
        return fmt is not None and fmt.torch_weights

    def summary(self) -> str:
        """One line for listings."""
        radius = "unknown" if self.receptive_radius is None else str(self.receptive_radius)
        if self.effective_radius is not None:
            radius += f" (effective {self.effective_radius})"
        shape = f"fixed {self.static_shape.replace(',', 'x')}" if self.static_shape else "dynamic"
        sizes = []
        if self.min_input_size > 1:
            sizes.append(f"min {self.min_input_size}")
        if self.input_multiple > 1:
            sizes.append(f"multiple of {self.input_multiple}")
        if self.square_only:
            sizes.append("square")
        req = f", input {' '.join(sizes)}" if sizes else ""
        return (f"x{self.scale} {self.arch} ({self.preset}) {self.format}, "
                f"{self.channels}->{self.out_channels} channels, stored {self.precision}, "
                f"radius {radius}, {shape} shapes{req}, runs in {'/'.join(self.precisions)}")

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["extra"] = dict(self.extra)
        d["precisions"] = list(self.precisions)
        return d

    # --- ONNX metadata_props -------------------------------------------------------------------

    def to_props(self) -> dict[str, str]:
        """The string table stored in an ONNX file's ``metadata_props``."""
        props = {"format": ONNX_FORMAT}
        for f in fields(self):
            if f.name in _LOCAL_FIELDS:
                continue
            value = getattr(self, f.name)
            props[f.name] = "" if value is None else str(value)
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, str], where: object = "model",
                   **overrides: object) -> ModelInfo:
        """Parse and validate a metadata table (ONNX ``metadata_props``, an engine manifest's
        ``model`` section); untrusted input, so every value is checked."""
        if props.get("format") != ONNX_FORMAT:
            raise UserError(f"{where}: not an ONNX file of this toolkit (no '{ONNX_FORMAT}' "
                            "metadata); pass --scale to use it anyway")
        kwargs: dict[str, object] = {}
        for f in fields(cls):
            if f.name in _LOCAL_FIELDS or f.name not in props:
                continue
            kwargs[f.name] = _parse_prop(f.name, str(f.type), props[f.name], where)
        if "out_channels" not in props and "channels" in kwargs:
            kwargs["out_channels"] = kwargs["channels"]  # files from before out_channels
        if "arch" not in props:
            kwargs["arch"] = ARCH  # every file of this toolkit before "arch" was ours
        if kwargs.get("scale") is None:
            raise UserError(f"{where}: model metadata has no scale")
        kwargs.update(overrides)
        return cls(**kwargs).validate(where)  # type: ignore[arg-type]

    def validate(self, where: object = "model") -> ModelInfo:
        """Every field in range: the metadata of a file is untrusted input (a static shape
        becomes a buffer size, a radius a tile overlap)."""
        bounds = {"scale": (1, MAX_SCALE), "channels": (1, 4), "out_channels": (1, 4),
                  "min_input_size": (1, MAX_SIDE), "input_multiple": (1, MAX_SIDE),
                  "receptive_radius": (0, MAX_SIDE), "effective_radius": (0, MAX_SIDE),
                  "opset": (0, 1000)}
        for name, (lo, hi) in bounds.items():
            value = getattr(self, name)
            if value is not None and not lo <= value <= hi:
                raise UserError(f"{where}: model metadata {name}={value} is outside {lo}..{hi}")
        if self.precision not in STORED_PRECISIONS:
            raise UserError(f"{where}: model metadata precision={self.precision!r} is not "
                            f"{', '.join(STORED_PRECISIONS)}")
        if self.format not in MODEL_FORMATS:
            raise UserError(f"{where}: unknown model format {self.format!r}")
        if self.static_shape:
            parse_static_shape(self.static_shape, where)
        return self


def _parse_prop(name: str, kind: str, text: str, where: object) -> object:
    if "int" in kind:
        if text == "" and "None" in kind:
            return None
        try:
            return int(text)
        except ValueError:
            raise UserError(f"{where}: model metadata {name}={text!r} is not a whole "
                            "number") from None
    if kind == "bool":
        if text not in ("True", "False"):
            raise UserError(f"{where}: model metadata {name}={text!r} is not True or False")
        return text == "True"
    return text


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


# --- finding a model ---------------------------------------------------------------------------

def bundled_models() -> dict[str, Path]:
    """Name -> generator file of every model shipped with the runtime. Each also ships as an
    ONNX file beside it (:func:`onnx_variant`), for installs without torch."""
    if not MODEL_DIR.is_dir():
        return {}
    # "default.int8.onnx" is a variant of "default", not a model of its own.
    names = sorted({p.stem for p in MODEL_DIR.iterdir()
                    if p.suffix in (".safetensors", ".onnx") and "." not in p.stem})
    return {n: MODEL_DIR / f"{n}.safetensors" for n in names}


def onnx_variant(generator: Path, precision: str = "fp32") -> Path | None:
    """The ONNX export shipped beside a bundled generator (``<name>.onnx``, fp32; for
    ``int8`` its quantized copy ``<name>.int8.onnx``), if there is one."""
    suffix = ".int8.onnx" if precision == "int8" else ".onnx"
    cand = Path(generator).with_suffix(suffix)
    return cand if cand.is_file() and Path(generator).parent == MODEL_DIR else None


def resolve_model(spec: str | Path) -> Path:
    """A model file as given, a run folder's ``generator.safetensors``, or a bundled model."""
    p = Path(spec)
    if p.is_dir():
        cand = p / "generator.safetensors"
        if not cand.is_file():
            raise UserError(f"{p}: run folder has no generator.safetensors")
        return cand
    if p.exists():
        return p
    models = bundled_models()
    if str(spec) in models:
        return models[str(spec)]
    known = ", ".join(models) or "none bundled in this build"
    raise UserError(f"{spec}: no such file, run folder or bundled model ({known})")


def default_model(scale: int | None = None) -> Path:
    """The bundled ``default`` model, or for ``scale`` the bundled model of that scale
    (``default`` if it matches, then ``x<scale>``, then any other)."""
    models = bundled_models()
    if scale is None:
        if "default" in models:
            return models["default"]
        raise UserError("no model given and no bundled default model in this build; pass "
                        "--model (a generator from 'srtrain fit', an ONNX file or a plan)")
    for name in dict.fromkeys(n for n in ("default", f"x{scale}", *models) if n in models):
        if describe(models[name]).scale == scale:
            return models[name]
    raise UserError(f"no bundled x{scale} model in this build (bundled: "
                    f"{', '.join(models) or 'none'}); pass --model")


def model_format(path: Path) -> str:
    """The :data:`MODEL_FORMATS` name of a file, from its suffix (and, where two formats share
    one, its header); a run folder is a generator."""
    return format_of(path).name


def format_of(path: Path) -> ModelFormat:
    """The :class:`ModelFormat` row that claims ``path``; unknown suffixes are refused with
    the list of accepted ones."""
    p = Path(path)
    if p.is_dir():
        return MODEL_FORMATS["generator"]
    suffix = p.suffix.lower()
    for fmt in MODEL_FORMATS.values():
        if suffix in fmt.suffixes and (fmt.claims is None or fmt.claims(p)):
            return fmt
    raise UserError(f"{path}: unknown model type (expected {_suffix_list()})")


def _suffix_list() -> str:
    every = list(dict.fromkeys(s for f in MODEL_FORMATS.values() for s in f.suffixes))
    return ", ".join(every[:-1]) + " or " + every[-1]


def _is_generator_file(path: Path) -> bool:
    """Whether a safetensors file says it is this toolkit's generator (a damaged one counts,
    so that its own error is reported)."""
    try:
        meta = read_safetensors_header(path).get("__metadata__") or {}
    except (OSError, ValueError):
        return True
    return isinstance(meta, dict) and meta.get("format") == GENERATOR_FORMAT


# --- describe ----------------------------------------------------------------------------------

def describe(spec: str | Path, scale: int | None = None) -> ModelInfo:
    """Describe a model file, run folder or bundled name. ``scale`` is checked against the
    model's, and gives the scale of a foreign ONNX file that lacks this toolkit's metadata."""
    path = resolve_model(spec)
    if not path.is_file():
        raise UserError(f"{path}: no such model file")
    info = format_of(path).describe(path, scale)
    if scale is not None and scale != info.scale:
        raise UserError(f"{path}: model is x{info.scale}, --scale is {scale}")
    return replace(info, path=str(path))


_DTYPE_PRECISION = {"F32": "fp32", "F16": "fp16", "BF16": "bf16", "F64": "fp64"}


def _describe_generator(path: Path, scale: int | None = None) -> ModelInfo:
    meta = read_generator_metadata(path)
    cfg = generator_config(path, meta)
    header = read_safetensors_header(path)
    refuse_nonfinite(path, nonfinite_tensors(path, header))
    dtypes = {v.get("dtype") for k, v in header.items()
              if k != "__metadata__" and isinstance(v, dict)} - {"I64", "I32"}
    stored = _DTYPE_PRECISION.get(dtypes.pop(), "fp32") if len(dtypes) == 1 else "fp32"
    skip = {"format", "format_version", "config", "arch", "preset", "scale", "toolkit_version"}
    return ModelInfo(
        scale=cfg.scale, format="generator", arch=meta.get("arch", ARCH),
        preset=meta.get("preset", "unknown"), channels=cfg.in_channels,
        out_channels=cfg.out_channels, precision=stored if stored in ("fp32", "fp16") else "fp32",
        value_range=meta.get("value_range", "0-1"), colour_order=meta.get("colour_order", "RGB"),
        layout=meta.get("layout", "NCHW"), receptive_radius=receptive_radius(cfg),
        toolkit_version=meta.get("toolkit_version", ""),
        extra={k: v for k, v in meta.items() if k not in skip},
    )


def _onnx_nonfinite(model) -> list[str]:
    """Names of the floating-point initializers of an ONNX graph holding NaN or infinity."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    floats = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)
    return [t.name for t in model.graph.initializer
            if t.data_type in floats and t.data_location != TensorProto.EXTERNAL
            and not np.isfinite(numpy_helper.to_array(t).astype(np.float32)).all()]


def _describe_onnx(path: Path, scale: int | None) -> ModelInfo:
    onnx = optional("onnx", "pip install 'srgan-toolkit[onnx]' (or [openvino]) to read ONNX "
                    "files", path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise UserError(f"{path}: not a readable ONNX file ({first_line(exc)})") from None
    refuse_nonfinite(path, _onnx_nonfinite(model))
    props = {p.key: p.value for p in model.metadata_props}
    if props.get("format") == ONNX_FORMAT:
        info = ModelInfo.from_props(props, path, format="onnx")
        # A file quantized by another tool keeps the fp32 metadata it was made from.
        if onnx_body_precision(model) == "int8":
            info = replace(info, precision="int8")
        return info
    if scale is None:
        ModelInfo.from_props(props, path)  # raises the "pass --scale" error
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise UserError(f"{path}: expected one input and one output")
    inp, out = model.graph.input[0], model.graph.output[0]

    def dims(value) -> list[int]:
        return [d.dim_value if d.HasField("dim_value") else 0
                for d in value.type.tensor_type.shape.dim]

    din, dout = dims(inp), dims(out)
    if len(din) != 4:
        raise UserError(f"{path}: input {inp.name!r} is not NCHW (rank {len(din)})")
    static = ",".join(str(d) for d in (din[0], din[2], din[3])) if all(din) else ""
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return ModelInfo(scale=int(scale), format="onnx", channels=din[1] or 3,
                     out_channels=(dout[1] if len(dout) == 4 and dout[1] else din[1] or 3),
                     input_name=inp.name, output_name=out.name, static_shape=static,
                     opset=opset, precision=onnx_body_precision(model)).validate(path)


def onnx_body_precision(model) -> str:
    """``int8`` for a quantized (QDQ or QOperator) graph, ``fp16`` when most floating
    initializers are float16, else ``fp32``."""
    import onnx

    if any(n.op_type in ("QuantizeLinear", "QLinearConv", "ConvInteger")
           for n in model.graph.node):
        return "int8"
    counts = {"fp16": 0, "fp32": 0}
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT16:
            counts["fp16"] += 1
        elif init.data_type == onnx.TensorProto.FLOAT:
            counts["fp32"] += 1
    return "fp16" if counts["fp16"] > counts["fp32"] else "fp32"


def _describe_checkpoint(path: Path, scale: int | None = None) -> ModelInfo:
    return ModelInfo(**describe_checkpoint(path)).validate(path)  # type: ignore[arg-type]


def _describe_engine(path: Path, scale: int | None = None) -> ModelInfo:
    m = read_manifest(path)
    prof = m.profile
    static = ""
    if prof["min"] == prof["max"]:
        static = f"{prof['min'][0]},{prof['min'][2]},{prof['min'][3]}"
    props = {"format": ONNX_FORMAT, "scale": str(m.scale), **m.model}
    base = ModelInfo.from_props(props, f"{path} manifest", format="tensorrt")
    extra = {f"profile_{k}": "x".join(map(str, prof[k])) for k in ("min", "opt", "max")}
    extra.update(tensorrt_version=m.tensorrt_version, gpu_name=m.gpu_name,
                 compute_capability=m.compute_capability)
    return replace(base, precision=m.precision, static_shape=static, channels=prof["opt"][1],
                   min_input_size=max(base.min_input_size, *prof["min"][2:]),
                   extra=extra).validate(path)


def _describe_aoti(path: Path, scale: int | None = None) -> ModelInfo:
    """An AOTInductor package's description, from the metadata ``srexport aoti`` stored in it
    (a JSON member of the zip archive; read without torch and without loading its code)."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            members = [i for i in z.infolist() if i.filename.endswith("wrapper_metadata.json")]
            if not members:
                raise UserError(f"{path}: not an AOTInductor package (no model metadata)")
            if members[0].file_size > _AOTI_META_MAX:
                raise UserError(f"{path}: package metadata is implausibly large")
            with z.open(members[0]) as f:
                props = json.loads(f.read(_AOTI_META_MAX + 1))
    except (OSError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        raise UserError(f"{path}: not a readable AOTInductor package "
                        f"({first_line(exc)})") from None
    if not isinstance(props, dict) or not all(isinstance(v, str) for v in props.values()):
        raise UserError(f"{path}: package metadata is not a table of strings")
    if props.get("format") != ONNX_FORMAT:
        raise UserError(f"{path}: not a package made by 'srexport aoti' (no model description)")
    info = ModelInfo.from_props(props, path, format="aoti")
    if info.precision not in AOTI_PRECISIONS or info.static is None:
        raise UserError(f"{path}: package metadata lacks its precision or fixed shape")
    keys = ("device", "torch_version", "AOTI_CPU_ISA", "AOTI_COMPUTE_CAPABILITY")
    return replace(info, extra={k: props.get(k, "") for k in keys})


def resolve_generator(spec: str | Path) -> Path:
    """Like :func:`resolve_model`, for commands that need this toolkit's generator file
    (fine-tuning)."""
    path = resolve_weights(spec)
    if model_format(path) != "generator":
        raise UserError(f"{spec}: another project's checkpoint; this needs a generator of this "
                        "toolkit (.safetensors from 'srtrain fit', a run folder or a bundled name)")
    return path


def resolve_weights(spec: str | Path) -> Path:
    """Like :func:`resolve_model`, for commands that need PyTorch weights (export, evaluation,
    benchmarks): a generator file or another project's checkpoint."""
    path = resolve_model(spec)
    fmt = format_of(path)
    if not fmt.torch_weights:
        made = f" made by '{fmt.made_by}'" if fmt.made_by else ""
        raise UserError(f"{spec}: {fmt.noun}{made}; this needs PyTorch weights (a generator "
                        ".safetensors, a run folder, a bundled name, or a .pth/.pt/.ckpt/"
                        ".safetensors checkpoint)")
    return path


# --- the format table ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelFormat:
    """One kind of model file. ``claims`` tells two formats with the same suffix apart (it
    reads the header); ``describe(path, scale)`` reads the file into a :class:`ModelInfo`;
    ``torch_weights``: PyTorch runs it (and export reads it)."""

    name: str
    suffixes: tuple[str, ...]
    noun: str
    describe: Callable[[Path, int | None], ModelInfo]
    torch_weights: bool = False
    made_by: str = ""
    claims: Callable[[Path], bool] | None = None


# Order matters where suffixes are shared: the first row that claims a file wins. A new format
# is a reader above and one row here; ``describe``, detection and every error message follow.
MODEL_FORMATS: dict[str, ModelFormat] = {f.name: f for f in (
    ModelFormat("generator", (".safetensors",), "a generator of this toolkit",
                _describe_generator, torch_weights=True, made_by="srtrain fit",
                claims=_is_generator_file),
    ModelFormat("checkpoint", FOREIGN_SUFFIXES, "another project's checkpoint",
                _describe_checkpoint, torch_weights=True),
    ModelFormat("onnx", (".onnx",), "an ONNX file", _describe_onnx, made_by="srexport onnx"),
    ModelFormat("tensorrt", ENGINE_SUFFIXES, "a TensorRT plan", _describe_engine,
                made_by="srexport trt"),
    ModelFormat("aoti", (AOTI_SUFFIX,), "an AOTInductor package", _describe_aoti,
                made_by="srexport aoti"),
)}
