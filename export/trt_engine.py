"""TensorRT engines: profile shapes, precision route, manifest, engine cache, build and run.

The pure parts (shapes, precision choice, manifest, cache key, compatibility check) are plain
Python and unit-tested everywhere. The parts that call TensorRT are written to the documented
10.x and 11.x Python API and run only where TensorRT and a CUDA GPU exist:

* TensorRT 11 removed ``BuilderFlag.FP16`` and weak typing; FP16 there means an FP16 ONNX
  (``srexport onnx --fp16``) built as a strongly typed network.
* On 10.x the same strongly typed route is used for FP16 ONNX files; an FP32 ONNX with
  ``--fp16`` uses ``BuilderFlag.FP16`` (weak typing, deprecated from 10.12).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from srgan_runtime.core import __version__
from srgan_runtime.core.errors import UserError

from .metadata import ModelInfo

log = logging.getLogger(__name__)

MANIFEST_FORMAT = "srgan-toolkit/trt-engine"
MANIFEST_SUFFIX = ".json"  # MODEL.plan -> MODEL.plan.json
INSTALL_HINT = "pip install 'srgan-toolkit[tensorrt]' on a machine with an NVIDIA GPU and driver"

Shape = tuple[int, int, int, int]  # N, C, H, W


# --- shapes -------------------------------------------------------------------------------------

def parse_shape(text: str, channels: int) -> Shape:
    """``"BxHxW"`` or ``"BxCxHxW"`` (``,`` also accepted) to an NCHW tuple."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise UserError(f"shape {text!r}: expected BxHxW, e.g. 4x128x128") from None
    if len(vals) == 3:
        vals = [vals[0], channels, vals[1], vals[2]]
    if len(vals) != 4 or min(vals) < 1:
        raise UserError(f"shape {text!r}: expected BxHxW with every value >= 1")
    if vals[1] != channels:
        raise UserError(f"shape {text!r}: the model has {channels} channels")
    return vals[0], vals[1], vals[2], vals[3]


@dataclass(frozen=True)
class Profile:
    """One TensorRT optimization profile for the model input."""

    min: Shape
    opt: Shape
    max: Shape

    def validate(self, info: ModelInfo) -> Profile:
        for i, dim in enumerate("NCHW"):
            if not self.min[i] <= self.opt[i] <= self.max[i]:
                raise UserError(f"profile: {dim} must satisfy min <= opt <= max "
                                f"({self.min[i]}, {self.opt[i]}, {self.max[i]})")
        for shape in (self.min, self.opt, self.max):
            for side in shape[2:]:
                if side < info.min_input_size:
                    raise UserError(f"profile: side {side} is below the model's minimum "
                                    f"input size {info.min_input_size}")
                if side % info.input_multiple:
                    raise UserError(f"profile: side {side} is not a multiple of "
                                    f"{info.input_multiple}")
        return self

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


# Defaults sized for tiled upscaling: a 128-pixel tile plus overlap fits comfortably inside opt,
# and max bounds activation memory (x4, batch 8, 512^2 LR is several GB of fp16 activations).
DEFAULT_MIN_SIDE, DEFAULT_OPT, DEFAULT_MAX = 16, (4, 192, 192), (8, 512, 512)


def compute_profile(info: ModelInfo, min_s: str | None = None, opt_s: str | None = None,
                    max_s: str | None = None, static: str | None = None) -> Profile:
    """The profile from user shapes, else from the model's metadata: a static ONNX gets its
    fixed shape; a dynamic one min 1x16x16, opt 4x192x192, max 8x512x512 (rounded to the input
    multiple and respecting the minimum size)."""
    c = info.channels
    fixed = info.static
    if static is not None:
        shape = parse_shape(static, c)
        if fixed and (shape[0], shape[2], shape[3]) != fixed:
            raise UserError(f"--static {static} differs from the ONNX file's fixed shape "
                            f"{'x'.join(map(str, fixed))}")
        return Profile(shape, shape, shape).validate(info)
    if fixed:
        if min_s or opt_s or max_s:
            raise UserError("the ONNX file has a fixed input shape; --min/--opt/--max do not apply")
        shape = (fixed[0], c, fixed[1], fixed[2])
        return Profile(shape, shape, shape).validate(info)

    def round_up(v: int) -> int:
        m = max(1, info.input_multiple)
        return -(-max(v, info.min_input_size) // m) * m

    lo = round_up(DEFAULT_MIN_SIDE)
    mn = parse_shape(min_s, c) if min_s else (1, c, lo, lo)
    op = parse_shape(opt_s, c) if opt_s else (DEFAULT_OPT[0], c, round_up(DEFAULT_OPT[1]),
                                               round_up(DEFAULT_OPT[2]))
    mx = parse_shape(max_s, c) if max_s else (DEFAULT_MAX[0], c, round_up(DEFAULT_MAX[1]),
                                               round_up(DEFAULT_MAX[2]))
    # Widen defaults that the user's explicit shapes exceed, so min <= opt <= max holds.
    if not max_s:
        mx = tuple(max(a, b) for a, b in zip(mx, op, strict=True))  # type: ignore[assignment]
    if not min_s:
        mn = tuple(min(a, b) for a, b in zip(mn, op, strict=True))  # type: ignore[assignment]
    return Profile(mn, op, mx).validate(info)


# --- precision ----------------------------------------------------------------------------------

def parse_version(text: str) -> tuple[int, ...]:
    out = []
    for part in text.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


@dataclass(frozen=True)
class PrecisionPlan:
    """How to get the requested precision out of this TensorRT version."""

    precision: str  # "fp32" | "fp16"
    strongly_typed: bool
    builder_flag_fp16: bool
    note: str = ""


def plan_precision(trt_version: str, onnx_precision: str, want_fp16: bool) -> PrecisionPlan:
    """Choose the FP16 route: an FP16 ONNX is built strongly typed on any 10.x/11.x; an FP32
    ONNX with ``want_fp16`` needs ``BuilderFlag.FP16``, which only 10.x still has."""
    ver = parse_version(trt_version)
    if ver < (10,):
        raise UserError(f"TensorRT {trt_version} is too old: 10.0 or newer is required")
    if onnx_precision == "fp16":
        if not want_fp16:
            raise UserError("the ONNX file has an FP16 body: export an FP32 ONNX (without "
                            "--fp16) for an FP32 engine")
        return PrecisionPlan("fp16", True, False, "FP16 ONNX built as a strongly typed network")
    if not want_fp16:
        return PrecisionPlan("fp32", ver >= (11,), False, "FP32 ONNX, FP32 engine")
    if ver >= (11,):
        raise UserError(
            f"TensorRT {trt_version} has no BuilderFlag.FP16 (removed in 11): export an FP16 "
            "ONNX with 'srexport onnx --fp16' and build that"
        )
    note = "FP32 ONNX with BuilderFlag.FP16 (weak typing"
    note += ", deprecated since TensorRT 10.12; prefer an FP16 ONNX)" if ver >= (10, 12) else ")"
    return PrecisionPlan("fp16", False, True, note)


# --- manifest and cache -------------------------------------------------------------------------

@dataclass
class BuildOptions:
    """Builder settings that change the engine (and so belong in its cache key)."""

    workspace_gib: float = 4.0
    opt_level: int = 3
    fp16: bool = True
    hardware_compat: str = "none"  # none | ampere_plus | same_cc

    def validate(self) -> BuildOptions:
        if not 0 <= self.opt_level <= 5:
            raise UserError(f"--opt-level {self.opt_level}: TensorRT accepts 0 to 5")
        if not math.isfinite(self.workspace_gib) or self.workspace_gib <= 0:
            raise UserError("--workspace must be > 0 GiB")
        if self.hardware_compat not in ("none", "ampere_plus", "same_cc"):
            raise UserError(f"unknown hardware compatibility {self.hardware_compat!r}")
        return self


@dataclass
class Manifest:
    """The JSON sidecar of an engine: what it was built from, for, and how."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    strongly_typed: bool
    profile: dict[str, list[int]]
    scale: int
    io: dict[str, dict[str, Any]]
    onnx_sha256: str
    build_options: dict[str, Any]
    model: dict[str, str] = field(default_factory=dict)
    cache_key: str = ""
    build_seconds: float = 0.0
    created: str = ""
    toolkit_version: str = __version__
    format: str = MANIFEST_FORMAT
    parity: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: object = "manifest") -> Manifest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise UserError(f"{where}: not an engine manifest of this toolkit")
        known = set(cls.__dataclass_fields__)
        try:
            m = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise UserError(f"{where}: incomplete engine manifest ({exc})") from None
        return m.validate(where)

    def validate(self, where: object = "manifest") -> Manifest:
        """The fields the runtime reads, typed and in range (the file is untrusted input)."""
        def bad(what: str) -> UserError:
            return UserError(f"{where}: engine manifest {what}")

        if not isinstance(self.scale, int) or isinstance(self.scale, bool) \
                or not 1 <= self.scale <= 16:
            raise bad(f"scale={self.scale!r} is not a whole number in 1..16")
        if self.precision not in ("fp16", "fp32"):
            raise bad(f"precision={self.precision!r} is not fp16 or fp32")
        prof = self.profile
        if not isinstance(prof, dict) or set(prof) < {"min", "opt", "max"}:
            raise bad("profile lacks min/opt/max")
        for key in ("min", "opt", "max"):
            shape = prof[key]
            if not (isinstance(shape, list) and len(shape) == 4
                    and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                            for v in shape)):
                raise bad(f"profile {key}={shape!r} is not four positive whole numbers")
        if not isinstance(self.model, dict) or \
                not all(isinstance(v, str) for v in self.model.values()):
            raise bad("model section is not a table of strings")
        radius = self.model.get("receptive_radius", "0") or "0"
        if not radius.isdigit() or int(radius) > 16384:
            raise bad(f"receptive_radius={radius!r} is not a whole number in 0..16384")
        return self


def manifest_path(engine: Path) -> Path:
    return Path(str(engine) + MANIFEST_SUFFIX)


def read_manifest(engine: Path) -> Manifest:
    path = manifest_path(engine)
    if not path.is_file():
        raise UserError(f"{engine}: no manifest {path.name} beside the engine")
    return Manifest.from_json(path.read_text(), path)


def cache_key(onnx_sha256: str, trt_version: str, gpu_name: str, compute_capability: str,
              precision: str, profile: Profile, options: BuildOptions) -> str:
    """A stable key for everything that makes two engines differ."""
    blob = json.dumps({
        "onnx": onnx_sha256, "trt": trt_version, "gpu": gpu_name, "cc": compute_capability,
        "precision": precision, "profile": profile.to_dict(), "options": asdict(options),
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def check_compatible(manifest: Manifest, trt_version: str, gpu_name: str,
                     compute_capability: str, precision: str | None = None) -> None:
    """Refuse an engine built for another TensorRT, GPU or precision, saying what differs."""
    problems = []
    if manifest.tensorrt_version != trt_version:
        problems.append(f"built with TensorRT {manifest.tensorrt_version}, this is {trt_version}")
    if manifest.compute_capability != compute_capability:
        problems.append(f"built for compute capability {manifest.compute_capability} "
                        f"({manifest.gpu_name}), this GPU is {compute_capability} ({gpu_name})")
    elif manifest.gpu_name != gpu_name:
        problems.append(f"built on {manifest.gpu_name}, this GPU is {gpu_name}")
    if precision is not None and manifest.precision != precision:
        problems.append(f"engine precision is {manifest.precision}, {precision} was asked for")
    if problems:
        raise UserError("engine does not fit this machine: " + "; ".join(problems) +
                        " (rebuild it with 'srexport trt')")


def default_cache_dir() -> Path:
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "srgan-toolkit" / "engines"


# --- environment --------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrtEnvironment:
    trt: Any
    version: str
    gpu_name: str
    compute_capability: str


def trt_environment() -> TrtEnvironment:
    """Import TensorRT and find a CUDA GPU, or raise one clear line saying what is missing."""
    try:
        import tensorrt as trt
    except ImportError:
        raise UserError(f"TensorRT is not installed ({INSTALL_HINT})") from None
    except OSError as exc:  # the bindings import but their shared libraries do not load
        raise UserError(f"TensorRT libraries failed to load ({exc}); {INSTALL_HINT}") from None
    try:
        import torch
    except ImportError:
        raise UserError("torch is required to drive TensorRT buffers") from None
    if not torch.cuda.is_available():
        raise UserError("no CUDA GPU is available: TensorRT engines are built and run on the "
                        "GPU they are meant for")
    cc = torch.cuda.get_device_capability(0)
    return TrtEnvironment(trt, str(trt.__version__), torch.cuda.get_device_name(0),
                          f"{cc[0]}.{cc[1]}")


# --- build --------------------------------------------------------------------------------------

def _parser_errors(parser) -> list[str]:
    out = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node = getattr(err, "node_name", lambda: "")() or f"node #{err.node()}"
        op = getattr(err, "node_operator", lambda: "")()
        where = f"{node} ({op})" if op else node
        out.append(f"{where}: {err.desc()}")
    return out


def build_serialized(env: TrtEnvironment, onnx_path: Path, info: ModelInfo, profile: Profile,
                     plan: PrecisionPlan, options: BuildOptions,
                     timing_cache: Path | None) -> bytes:
    """Parse the ONNX file and build a serialized engine with the TensorRT Python API."""
    trt = env.trt
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if plan.strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = _parser_errors(parser)
        raise UserError(f"{onnx_path}: TensorRT could not parse it: " + "; ".join(errors[:3]))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE,
                                 int(options.workspace_gib * (1 << 30)))
    config.builder_optimization_level = options.opt_level
    if plan.builder_flag_fp16:
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise UserError(f"TensorRT {env.version} has no BuilderFlag.FP16: use an FP16 ONNX")
        config.set_flag(trt.BuilderFlag.FP16)
    if options.hardware_compat != "none":
        level = {"ampere_plus": "AMPERE_PLUS", "same_cc": "SAME_COMPUTE_CAPABILITY"}
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel,
                                                      level[options.hardware_compat])
    cache = None
    if timing_cache is not None:
        blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    prof = builder.create_optimization_profile()
    prof.set_shape(info.input_name, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(prof)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"{onnx_path}: TensorRT failed to build the engine (see its log above)")
    if timing_cache is not None:
        from srgan_runtime.core.files import atomic_write

        new = bytes(config.get_timing_cache().serialize())
        atomic_write(timing_cache, lambda tmp: tmp.write_bytes(new))
    return bytes(serialized)


def onnx_io(onnx_path: Path) -> dict[str, dict[str, Any]]:
    """Names, element types and shapes of the ONNX file's inputs and outputs."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    io: dict[str, dict[str, Any]] = {}
    for kind, values in (("input", model.graph.input), ("output", model.graph.output)):
        for v in values:
            t = v.type.tensor_type
            io[v.name] = {
                "kind": kind,
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
                "shape": [d.dim_param or d.dim_value for d in t.shape.dim],
            }
    return io


@dataclass
class EngineResult:
    engine: Path
    manifest: Manifest
    from_cache: bool


def build_engine(onnx_path: Path, out: Path, info: ModelInfo, profile: Profile,
                 options: BuildOptions, *, timing_cache: Path | None = None,
                 cache_dir: Path | None = None, overwrite: bool = False,
                 env: TrtEnvironment | None = None) -> EngineResult:
    """Build (or reuse from the engine cache) an engine for ``onnx_path`` and write it with its
    manifest beside it."""
    from srgan_runtime.core.files import atomic_write, file_sha256

    env = env or trt_environment()
    options.validate()
    plan = plan_precision(env.version, info.precision, options.fp16)
    sha = file_sha256(onnx_path)
    key = cache_key(sha, env.version, env.gpu_name, env.compute_capability, plan.precision,
                    profile, options)
    cache_dir = cache_dir or default_cache_dir()
    cached = cache_dir / f"{key}.plan"
    from_cache = cached.is_file() and manifest_path(cached).is_file()
    if from_cache:
        log.info("engine cache hit %s", cached)
        manifest = read_manifest(cached)
        blob = cached.read_bytes()
    else:
        log.info("building %s engine (%s)", plan.precision, plan.note)
        t0 = time.perf_counter()
        blob = build_serialized(env, onnx_path, info, profile, plan, options, timing_cache)
        manifest = Manifest(
            tensorrt_version=env.version, gpu_name=env.gpu_name,
            compute_capability=env.compute_capability, precision=plan.precision,
            strongly_typed=plan.strongly_typed, profile=profile.to_dict(), scale=info.scale,
            io=onnx_io(onnx_path),
            onnx_sha256=sha, build_options=asdict(options), model=info.to_props(),
            cache_key=key, build_seconds=round(time.perf_counter() - t0, 2),
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(cached, lambda tmp: tmp.write_bytes(blob))
            atomic_write(manifest_path(cached), lambda tmp: tmp.write_text(manifest.to_json()))
        except OSError as exc:
            log.warning("engine cache %s not writable (%s); continuing without it", cache_dir, exc)
    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists (use --overwrite to replace it)")
    atomic_write(out, lambda tmp: tmp.write_bytes(blob))
    atomic_write(manifest_path(out), lambda tmp: tmp.write_text(manifest.to_json()))
    return EngineResult(out, manifest, from_cache)


def copy_engine(src: Path, dst: Path) -> None:
    shutil.copyfile(src, dst)
    shutil.copyfile(manifest_path(src), manifest_path(dst))


# --- run ----------------------------------------------------------------------------------------

class TrtRunner:
    """Runs a serialized engine on CUDA with torch-owned buffers and a private stream.

    ``__call__`` takes and returns numpy NCHW float32 batches; ``run_torch`` keeps tensors on the
    GPU (the runtime's path, with pinned host memory and overlapped copies).
    """

    def __init__(self, engine_path: Path, env: TrtEnvironment | None = None,
                 precision: str | None = None) -> None:
        import torch

        self.env = env or trt_environment()
        self.manifest = read_manifest(engine_path)
        check_compatible(self.manifest, self.env.version, self.env.gpu_name,
                         self.env.compute_capability, precision)
        trt = self.env.trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise UserError(f"{engine_path}: TensorRT could not deserialize the engine")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise UserError(f"{engine_path}: expected one input and one output")
        self.input_name, self.output_name = inputs[0], outputs[0]
        dtypes = {trt.float32: torch.float32, trt.float16: torch.float16}
        if hasattr(trt, "bfloat16"):
            dtypes[trt.bfloat16] = torch.bfloat16
        try:
            self.in_dtype = dtypes[self.engine.get_tensor_dtype(self.input_name)]
            self.out_dtype = dtypes[self.engine.get_tensor_dtype(self.output_name)]
        except KeyError:
            raise UserError(f"{engine_path}: unsupported engine IO data type") from None
        self.stream = torch.cuda.Stream()
        self._torch = torch

    def run_torch(self, x):
        """Run an NCHW tensor (cast to the engine's input type); returns CUDA float32."""
        torch = self._torch
        x = x.to("cuda", dtype=self.in_dtype).contiguous()
        ctx = self.context
        if not ctx.set_input_shape(self.input_name, tuple(x.shape)):
            prof = self.manifest.profile
            raise UserError(f"input shape {tuple(x.shape)} is outside the engine's profile "
                            f"min {prof['min']} max {prof['max']}")
        out = torch.empty(tuple(ctx.get_tensor_shape(self.output_name)), dtype=self.out_dtype,
                          device="cuda")
        ctx.set_tensor_address(self.input_name, x.data_ptr())
        ctx.set_tensor_address(self.output_name, out.data_ptr())
        self.stream.wait_stream(torch.cuda.current_stream())
        if not ctx.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        torch.cuda.current_stream().wait_stream(self.stream)
        x.record_stream(self.stream)
        out.record_stream(self.stream)
        return out.float()

    def __call__(self, x):
        import numpy as np

        torch = self._torch
        y = self.run_torch(torch.from_numpy(np.ascontiguousarray(x)))
        torch.cuda.synchronize()
        return y.cpu().numpy()


def check_engine(engine: Path, onnx_path: Path, info: ModelInfo, env: TrtEnvironment, *,
                 ckpt: Path | None = None, data_dir: Path | None = None,
                 cache_dir: Path | None = None):
    """Compare a built engine with PyTorch (``ckpt``) or, without one, with the source ONNX in
    ONNX Runtime CPU, under the export gate. A failing engine is removed with its manifest
    (and its engine-cache copy); a passing one gets the numbers in its manifest."""
    from srgan_runtime.core.files import atomic_write

    from .parity import Gate, fit_to_profile, run_parity, torch_reference, verification_inputs

    runner = TrtRunner(engine, env)
    if ckpt is not None:
        from srgan_train.checkpoint import load_generator

        gf = load_generator(ckpt)
        if gf.scale != info.scale:
            raise UserError(f"{ckpt} is x{gf.scale}, the engine is x{info.scale}")
        reference, label = torch_reference(gf.model), "PyTorch fp32"
    else:
        from .onnx_export import ort_session

        sess = ort_session(onnx_path)
        in_name = sess.get_inputs()[0].name
        reference = lambda x: sess.run(None, {in_name: x})[0]  # noqa: E731
        label = f"ONNX Runtime CPU ({onnx_path.name})"
    prof = runner.manifest.profile
    cases, _ = verification_inputs(info.scale, None, data_dir)
    cases = fit_to_profile(cases, tuple(prof["min"]), tuple(prof["max"]))
    report = run_parity(f"TensorRT {runner.manifest.precision} vs {label}",
                        Gate.for_precision(runner.manifest.precision), cases, reference, runner)
    manifest = runner.manifest
    if report.passed:
        manifest.parity = report.to_dict()
        atomic_write(manifest_path(engine), lambda tmp: tmp.write_text(manifest.to_json()))
    else:
        cached = (cache_dir or default_cache_dir()) / f"{manifest.cache_key}.plan"
        for p in (engine, manifest_path(engine), cached, manifest_path(cached)):
            Path(p).unlink(missing_ok=True)
    return report
