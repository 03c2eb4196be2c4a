"""The one small interface every backend implements (as Polygraphy's runners): a batch of NCHW
float32 tiles in [0, 1] in, the upscaled batch out, quantized to the output's integer type."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ..core.fitting import fit_batch, unfit_output
from ..core.modelinfo import ModelInfo


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


def is_oom(exc: BaseException) -> bool:
    """Whether a backend's exception means it ran out of memory (any library's spelling)."""
    text = str(exc).lower()
    return "out of memory" in text or type(exc).__name__ == "OutOfMemoryError"


class Backend:
    """Base class. A backend is opened for one model (its :class:`ModelInfo`), one device and
    one precision; subclasses implement ``_run`` (float NCHW out) or override ``run``."""

    name = "base"
    choice = ""  # what ``auto`` settings picked and why, set by open_backend

    def __init__(self, info: ModelInfo, precision: str, device: str) -> None:
        self.info = info
        self.precision = precision
        self.device = device
        self._lock = threading.Lock()

    @property
    def scale(self) -> int:
        return self.info.scale

    @property
    def channels(self) -> int:
        return self.info.channels

    @property
    def fixed_shape(self) -> tuple[int, int, int] | None:
        """(B, H, W) of a static model, else None."""
        return self.info.static

    @property
    def receptive_radius(self) -> int | None:
        return self.info.receptive_radius

    @property
    def shape_limits(self):
        """The largest tile side and batch the model accepts (a TensorRT profile's
        :class:`~srgan_runtime.backends.tensorrt.ShapeLimits`), or None where any fit."""
        return None

    def describe(self) -> str:
        return f"{self.name} {self.device} {self.precision}"

    def _run(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, batch: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
        """An RGB batch as the model takes it (:func:`srgan_runtime.core.fitting.fit_batch`: size
        requirements padded, a grey model fed plane by plane)."""
        i = self.info
        return fit_batch(batch, i.channels, i.min_input_size, i.input_multiple, i.square_only)

    def _fitted_run(self, batch: np.ndarray) -> np.ndarray:
        fitted, shape = self.fit(batch)
        return unfit_output(self._run(fitted), shape, self.scale)

    def run(self, batch: np.ndarray, bits: int = 8) -> Output:
        """Upscale a float32 NCHW RGB batch; thread-safe (calls are serialised per backend)."""
        with self._lock:
            return quantize(self._fitted_run(batch), bits)

    def run_float(self, batch: np.ndarray) -> np.ndarray:
        """Raw float NCHW output (for parity checks)."""
        with self._lock:
            return np.asarray(self._fitted_run(batch), dtype=np.float32)

    def fp32_fallback(self) -> Backend | None:
        """The same model in fp32, to recompute tiles that came out NaN/Inf."""
        return None
