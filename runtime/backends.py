"""Inference backends behind one small interface (as Polygraphy's runners): a batch of NCHW
float32 tiles in [0, 1] in, the upscaled batch out, quantized to the output's integer type.

Each backend is imported lazily, so a missing extra only disables that backend.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from srgan_runtime.core.errors import UserError, first_line

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class Output:
    """A backend's result: NHWC pixels in the requested integer type, and which batch items
    held NaN/Inf before quantization (those must be recomputed, not trusted)."""

    pixels: np.ndarray
    finite: np.ndarray  # bool per batch item


def quantize(y: np.ndarray, bits: int) -> Output:
    """NCHW float -> NHWC uint8/uint16, rounding (not truncating) after clamping to [0, 1]."""
    finite = np.isfinite(y).reshape(y.shape[0], -1).all(axis=1)
    peak = 65535.0 if bits == 16 else 255.0
    dtype = np.uint16 if bits == 16 else np.uint8
    y = np.nan_to_num(y, nan=0.0, posinf=1.0, neginf=0.0)
    q = np.clip(np.rint(y * peak), 0, peak).astype(dtype)
    return Output(np.ascontiguousarray(q.transpose(0, 2, 3, 1)), finite)


def quantize_torch(y, bits: int) -> Output:
    """``quantize`` on the device for a torch NCHW tensor: only the integers are copied back."""
    import torch

    with torch.inference_mode():
        finite = torch.isfinite(y).flatten(1).all(dim=1).cpu().numpy()
        peak = 65535.0 if bits == 16 else 255.0
        q = torch.nan_to_num(y.float(), nan=0.0, posinf=1.0, neginf=0.0)
        q = q.clamp_(0, 1).mul_(peak).round_().permute(0, 2, 3, 1).contiguous()
        # uint16 has limited torch support: cast through int32 on the host.
        pixels = (q.to(torch.uint8).cpu().numpy() if bits == 8 else
                  q.to(torch.int32).cpu().numpy().astype(np.uint16))
    return Output(pixels, finite)


class Backend:
    """Base class. Subclasses implement ``_run`` (float NCHW out) or override ``run``."""

    name = "base"

    def __init__(self, scale: int, channels: int, precision: str, device: str,
                 fixed_shape: tuple[int, int, int] | None = None,
                 receptive_radius: int = 0) -> None:
        self.scale = scale
        self.channels = channels
        self.precision = precision
        self.device = device
        self.fixed_shape = fixed_shape  # (B, H, W) for static engines
        self.receptive_radius = receptive_radius
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"{self.name} {self.device} {self.precision}"

    def _run(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, batch: np.ndarray, bits: int = 8) -> Output:
        """Upscale a float32 NCHW batch; thread-safe (calls are serialised per backend)."""
        with self._lock:
            return quantize(self._run(batch), bits)

    def run_float(self, batch: np.ndarray) -> np.ndarray:
        """Raw float NCHW output (for parity checks)."""
        with self._lock:
            return np.asarray(self._run(batch), dtype=np.float32)

    def fp32_fallback(self) -> Backend | None:
        """The same model in fp32, to recompute tiles that came out NaN/Inf."""
        return None


# --- PyTorch ------------------------------------------------------------------------------------

class TorchBackend(Backend):
    """A generator file in PyTorch: CPU or CUDA; fp32, or fp16/bf16 by autocast; channels_last.
    Clamp/round/cast run on the device, so only the final integers are copied back."""

    name = "torch"

    def __init__(self, generator: Path, device: str = "cpu", precision: str = "fp32",
                 threads: int = 0, channels_last: bool = True) -> None:
        import torch

        from srgan_runtime.core.generator import receptive_radius
        from srgan_train.archs import subpixel_tail
        from srgan_train.checkpoint import load_generator

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError("--device cuda: torch sees no CUDA GPU")
        if precision == "fp16" and not device.startswith("cuda"):
            raise UserError("fp16 needs --device cuda; on the CPU use --precision bf16")
        if threads > 0:
            torch.set_num_threads(threads)
        gf = load_generator(Path(generator), device=device)
        super().__init__(gf.scale, gf.config.in_channels, precision, device,
                         receptive_radius=receptive_radius(gf.config))
        self.generator = Path(generator)
        self.metadata = gf.metadata
        # The same function with the tail before the last PixelShuffle: wider, faster kernels.
        self.model = subpixel_tail(gf.model).eval()
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._torch = torch
        self._dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]

    def _forward(self, batch: np.ndarray):
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self._dtype is None:
                return self.model(x)
            dev = "cuda" if self.device.startswith("cuda") else "cpu"
            with torch.autocast(dev, dtype=self._dtype):
                return self.model(x).float()

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self._forward(batch).float().cpu().numpy()

    def run(self, batch: np.ndarray, bits: int = 8) -> Output:
        with self._lock:
            return quantize_torch(self._forward(batch), bits)

    def fp32_fallback(self) -> Backend | None:
        if self.precision == "fp32":
            return None
        return TorchBackend(self.generator, self.device, "fp32",
                            channels_last=self.channels_last)


# --- ONNX Runtime -------------------------------------------------------------------------------

class OrtBackend(Backend):
    """An exported ONNX file in ONNX Runtime (CPU, CUDA or TensorRT execution providers). The
    precision is the file's: use an fp16 export for fp16."""

    name = "onnxruntime"

    def __init__(self, model: Path, device: str = "cpu", precision: str | None = None,
                 threads: int = 0, opt_level: str = "all", info=None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("onnxruntime is not installed: pip install 'srgan-toolkit[onnx]' "
                            "(or [onnx-gpu] for CUDA)") from None
        from srgan_export.metadata import read_onnx_info

        info = info or read_onnx_info(Path(model))
        if precision not in (None, info.precision):
            raise UserError(f"{model} is an {info.precision} ONNX; for {precision} export one "
                            f"with 'srexport onnx{' --fp16' if precision == 'fp16' else ''}'")
        if precision == "bf16":
            raise UserError("ONNX Runtime has no bf16 path here; use openvino or torch for bf16")
        super().__init__(info.scale, info.channels, info.precision, device, info.static,
                         info.receptive_radius)
        available = ort.get_available_providers()
        if device.startswith("cuda"):
            wanted = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
                      if p in available]
            if not wanted:
                raise UserError("--device cuda: this onnxruntime has no CUDA provider "
                                "(install the [onnx-gpu] extra instead of [onnx])")
            providers = [*wanted, "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        so = ort.SessionOptions()
        so.graph_optimization_level = {
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[opt_level]
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        if threads > 0:
            so.intra_op_num_threads = threads
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(model), so, providers=providers)
        except Exception as exc:
            raise UserError(f"{model}: ONNX Runtime cannot load it "
                            f"({first_line(exc)})") from None
        self.model_path = Path(model)
        self.input_name = self.session.get_inputs()[0].name

    def describe(self) -> str:
        return f"{self.name} {self.session.get_providers()[0]} {self.precision}"

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch,
                                                                             np.float32)})[0]


# --- OpenVINO -----------------------------------------------------------------------------------

class OpenVinoBackend(Backend):
    """An exported ONNX file in OpenVINO on the CPU, f32 or bf16 inference precision."""

    name = "openvino"

    def __init__(self, model: Path, device: str = "cpu", precision: str = "fp32",
                 threads: int = 0, info=None) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise UserError("openvino is not installed: pip install 'srgan-toolkit[openvino]'"
                            ) from None
        from srgan_export.metadata import read_onnx_info

        if device != "cpu":
            raise UserError("the openvino backend runs on --device cpu here")
        if precision == "fp16":
            raise UserError("openvino on the CPU: use --precision fp32 or bf16")
        info = info or read_onnx_info(Path(model))
        super().__init__(info.scale, info.channels, precision, device, info.static,
                         info.receptive_radius)
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                  "PERFORMANCE_HINT": "LATENCY"}
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self.compiled = core.compile_model(core.read_model(str(model)), "CPU", config)
        except Exception as exc:
            raise UserError(f"{model}: OpenVINO cannot compile it "
                            f"({first_line(exc)})") from None
        self.request = self.compiled.create_infer_request()
        self.model_path = Path(model)
        self.threads = threads
        self.info = info

    def _run(self, batch: np.ndarray) -> np.ndarray:
        self.request.infer({0: np.ascontiguousarray(batch, np.float32)})
        return self.request.get_output_tensor(0).data.copy()

    def fp32_fallback(self) -> Backend | None:
        if self.precision == "fp32":
            return None
        return OpenVinoBackend(self.model_path, "cpu", "fp32", self.threads, self.info)


# --- TensorRT -----------------------------------------------------------------------------------

class TrtBackend(Backend):
    """A TensorRT engine with its manifest; refuses engines built for another TensorRT, GPU or
    precision. Buffers are torch CUDA tensors on a private stream; quantization runs on the GPU.
    """

    name = "tensorrt"

    def __init__(self, engine: Path, precision: str | None = None) -> None:
        from srgan_export.trt_engine import TrtRunner

        self.runner = TrtRunner(Path(engine), precision=precision)
        m = self.runner.manifest
        prof = m.profile
        fixed = None
        if prof["min"] == prof["max"]:
            fixed = (prof["min"][0], prof["min"][2], prof["min"][3])
        radius = int(m.model.get("receptive_radius", "0") or 0)
        super().__init__(m.scale, prof["opt"][1], m.precision, "cuda", fixed, radius)
        self.max_batch = prof["max"][0]
        self.max_side = (prof["max"][2], prof["max"][3])
        self.min_side = (prof["min"][2], prof["min"][3])

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.runner(batch)

    def run(self, batch: np.ndarray, bits: int = 8) -> Output:
        import torch

        with self._lock:
            y = self.runner.run_torch(torch.from_numpy(np.ascontiguousarray(batch)).cuda())
            return quantize_torch(y, bits)


# --- selection ----------------------------------------------------------------------------------

def available_backends() -> list[str]:
    """Backends whose libraries are importable here (not whether a GPU exists)."""
    names = ["torch"]
    for mod, name in (("onnxruntime", "onnxruntime"), ("openvino", "openvino"),
                      ("tensorrt", "tensorrt")):
        if importlib.util.find_spec(mod) is not None:
            names.append(name)
    return names


def engine_kind(path: Path) -> str:
    """``generator``, ``onnx`` or ``tensorrt`` from a file name (a run folder is a generator)."""
    p = Path(path)
    if p.is_dir() or p.suffix == ".safetensors":
        return "generator"
    if p.suffix == ".onnx":
        return "onnx"
    if p.suffix in (".plan", ".engine", ".trt"):
        return "tensorrt"
    raise UserError(f"{path}: unknown engine type (expected .safetensors, .onnx or .plan)")


def open_backend(engine: Path, backend: str = "auto", device: str = "auto",
                 precision: str = "fp32", threads: int = 0, scale: int | None = None
                 ) -> Backend:
    """Open ``engine`` on the requested backend. ``auto`` picks, for a generator file, PyTorch
    (channels_last); for an ONNX file, OpenVINO on the CPU where installed (measured faster
    than ONNX Runtime on the CPU, engines.md 0b), else ONNX Runtime; for a plan, TensorRT."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r} (fp32, fp16, bf16)")
    engine = Path(engine)
    if engine.is_dir():
        engine = engine / "generator.safetensors"
    if not engine.exists():
        raise UserError(f"{engine}: no such engine file")
    kind = engine_kind(engine)
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() and kind != "onnx" else "cpu"
    if backend == "auto":
        backend = {"generator": "torch", "tensorrt": "tensorrt"}.get(kind, "")
        if kind == "onnx":
            backend = ("openvino" if device == "cpu" and
                       importlib.util.find_spec("openvino") is not None else "onnxruntime")
    want = {"torch": "generator", "onnxruntime": "onnx", "openvino": "onnx",
            "tensorrt": "tensorrt"}.get(backend)
    if want is None:
        raise UserError(f"unknown backend {backend!r} (auto, {', '.join(BACKENDS)})")
    if want != kind:
        hint = {"onnx": "export one with 'srexport onnx'",
                "tensorrt": "build one with 'srexport trt'",
                "generator": "use the generator (.safetensors) file"}[want]
        raise UserError(f"{engine}: a {kind} file cannot run on {backend}: {hint}")
    if backend == "torch":
        tb = TorchBackend(engine, device, precision, threads)
        if scale is not None and scale != tb.scale:
            raise UserError(f"{engine}: an x{tb.scale} generator, but --scale {scale} was asked")
        return tb
    info = None
    if kind == "onnx":
        from srgan_export.metadata import read_onnx_info

        info = read_onnx_info(engine, scale)  # a foreign ONNX needs --scale
        if info.channels != 3:
            raise UserError(f"{engine}: model takes {info.channels} channels; srrun feeds RGB")
    if backend == "onnxruntime":
        return OrtBackend(engine, device, None if precision == "fp32" else precision, threads,
                          info=info)
    if backend == "openvino":
        return OpenVinoBackend(engine, device, precision, threads, info=info)
    return TrtBackend(engine, None if precision == "fp32" else precision)
