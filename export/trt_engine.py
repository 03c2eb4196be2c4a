"""TensorRT engine builds: profile shapes, precision route, engine cache, build, and the parity
check of a built engine. Running engines is the runtime's (:mod:`srgan_runtime.backends.tensorrt`);
the manifest format is the base's (:mod:`srgan_runtime.core.manifest`).

The pure parts (shapes, precision choice, cache key) are plain Python and unit-tested
everywhere. The parts that call TensorRT are written to the documented
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
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from srgan_runtime.backends.tensorrt import TrtEnvironment, TrtRunner, trt_environment
from srgan_runtime.core.cli import parse_dims
from srgan_runtime.core.errors import UserError
from srgan_runtime.core.files import (
    atomic_write,
    check_output_file,
    file_sha256,
    user_cache_dir,
)
from srgan_runtime.core.manifest import Manifest, manifest_path, read_manifest
from srgan_runtime.core.modelinfo import ModelInfo, describe

from .parity import Gate, fit_to_profile, run_parity, torch_reference, verification_inputs

log = logging.getLogger(__name__)


Shape = tuple[int, int, int, int]  # N, C, H, W


# --- shapes -------------------------------------------------------------------------------------

def parse_shape(text: str, channels: int) -> Shape:
    """``"BxHxW"`` or ``"BxCxHxW"`` (``,`` also accepted) to an NCHW tuple."""
    vals = list(parse_dims(text, (3, 4), "BxHxW, e.g. 4x128x128"))
    if len(vals) == 3:
        vals = [vals[0], channels, vals[1], vals[2]]
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
    tf32: bool = False  # TF32 convolutions in fp32 engines (off: fp32 means fp32)

    def validate(self) -> BuildOptions:
        if not 0 <= self.opt_level <= 5:
            raise UserError(f"--opt-level {self.opt_level}: TensorRT accepts 0 to 5")
        if not math.isfinite(self.workspace_gib) or self.workspace_gib <= 0:
            raise UserError("--workspace must be > 0 GiB")
        if self.hardware_compat not in ("none", "ampere_plus", "same_cc"):
            raise UserError(f"unknown hardware compatibility {self.hardware_compat!r}")
        return self


def cache_key(onnx_sha256: str, trt_version: str, gpu_name: str, compute_capability: str,
              precision: str, profile: Profile, options: BuildOptions) -> str:
    """A stable key for everything that makes two engines differ."""
    blob = json.dumps({
        "onnx": onnx_sha256, "trt": trt_version, "gpu": gpu_name, "cc": compute_capability,
        "precision": precision, "profile": profile.to_dict(), "options": asdict(options),
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def default_cache_dir() -> Path:
    return user_cache_dir("engines")


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


_HW_LEVELS = {"ampere_plus": ("AMPERE_PLUS", "8.6"), "same_cc": ("SAME_COMPUTE_CAPABILITY", "10.9")}


def hardware_level(env: TrtEnvironment, option: str) -> Any:
    """The ``HardwareCompatibilityLevel`` for ``--hardware-compat``, or a clear refusal where
    this TensorRT lacks it (``SAME_COMPUTE_CAPABILITY`` exists from 10.9 only)."""
    name, since = _HW_LEVELS[option]
    level = getattr(env.trt.HardwareCompatibilityLevel, name, None)
    if level is None:
        raise UserError(f"--hardware-compat {option} needs TensorRT {since} or newer; this is "
                        f"{env.version} (use ampere_plus, or none)")
    return level


def _timing_cache(config, path: Path) -> Any:
    """Load ``path`` into the builder config, or start a new cache where it is unreadable or
    does not match this TensorRT/GPU (the file is rewritten after the build); None where
    TensorRT cannot make one at all."""
    blob = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(blob)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return cache
    if blob:
        log.warning("timing cache %s is unreadable or from another TensorRT/GPU: starting a "
                    "new one", path)
        cache = config.create_timing_cache(b"")
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return cache
    log.warning("TensorRT could not create a timing cache: building without one")
    return None


def build_serialized(env: TrtEnvironment, onnx_path: Path, info: ModelInfo, profile: Profile,
                     plan: PrecisionPlan, options: BuildOptions,
                     timing_cache: Path | None) -> bytes:
    """Parse the ONNX file and build a serialized engine with the TensorRT Python API."""
    trt = env.trt
    level = (hardware_level(env, options.hardware_compat)
             if options.hardware_compat != "none" else None)
    if plan.builder_flag_fp16 and not hasattr(trt.BuilderFlag, "FP16"):
        raise UserError(f"TensorRT {env.version} has no BuilderFlag.FP16: use an FP16 ONNX")
    logger = env.logger
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
        config.set_flag(trt.BuilderFlag.FP16)
    # TF32 is on by default: an "fp32" engine would compute its convolutions in TF32 (10-bit
    # mantissa), which the fp32 parity gate was not set for. Off unless asked for, as in
    # Polygraphy and vs-mlrt.
    if hasattr(trt.BuilderFlag, "TF32"):
        if options.tf32:
            config.set_flag(trt.BuilderFlag.TF32)
        else:
            config.clear_flag(trt.BuilderFlag.TF32)
    elif not options.tf32:
        log.warning("TensorRT %s has no BuilderFlag.TF32 to clear; the parity check decides",
                    env.version)
    if level is not None:
        config.hardware_compatibility_level = level
    cache = _timing_cache(config, timing_cache) if timing_cache is not None else None
    prof = builder.create_optimization_profile()
    prof.set_shape(info.input_name, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(prof)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"{onnx_path}: TensorRT failed to build the engine (see its log above)")
    if cache is not None:
        built = config.get_timing_cache()
        if built is None:
            log.warning("TensorRT returned no timing cache: %s not updated", timing_cache)
        else:
            new = bytes(built.serialize())
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
    check_output_file(out, "engine file", overwrite)
    atomic_write(out, lambda tmp: tmp.write_bytes(blob))
    atomic_write(manifest_path(out), lambda tmp: tmp.write_text(manifest.to_json()))
    return EngineResult(out, manifest, from_cache)


def check_engine(engine: Path, onnx_path: Path, info: ModelInfo, env: TrtEnvironment, *,
                 ckpt: Path | None = None, data_dir: Path | None = None,
                 cache_dir: Path | None = None):
    """Compare a built engine with PyTorch (``ckpt``) or, without one, with the source ONNX in
    ONNX Runtime CPU, under the export gate. A failing engine is removed with its manifest
    (and its engine-cache copy); a passing one gets the numbers in its manifest."""

    runner = TrtRunner(engine, env)
    if ckpt is not None:
        from .onnx_export import load_source

        source = describe(ckpt)
        if source.scale != info.scale:
            raise UserError(f"{ckpt} is x{source.scale}, the engine is x{info.scale}")
        reference, label = torch_reference(load_source(ckpt), info=source), "PyTorch fp32"
    else:
        from srgan_runtime.backends.onnxrt import OrtBackend

        reference = OrtBackend(describe(onnx_path)).run_float
        label = f"ONNX Runtime CPU ({onnx_path.name})"
    prof = runner.manifest.profile
    cases, _ = verification_inputs(info.scale, None, data_dir)
    cases = fit_to_profile(cases, tuple(prof["min"]), tuple(prof["max"]))
    tf32 = runner.manifest.precision == "fp32" and runner.manifest.build_options.get("tf32")
    gate = Gate.for_precision("fp16" if tf32 else runner.manifest.precision)  # TF32: 10 bits
    report = run_parity(f"TensorRT {'tf32' if tf32 else runner.manifest.precision} vs {label}",
                        gate, cases, reference, runner)
    manifest = runner.manifest
    if report.passed:
        manifest.parity = report.to_dict()
        atomic_write(manifest_path(engine), lambda tmp: tmp.write_text(manifest.to_json()))
    else:
        cached = (cache_dir or default_cache_dir()) / f"{manifest.cache_key}.plan"
        for p in (engine, manifest_path(engine), cached, manifest_path(cached)):
            Path(p).unlink(missing_ok=True)
    return report
