"""The effective receptive radius: the smallest tile context (overlap) at which tiled output stays
within a stated bound of the whole-image output, measured on the model itself.

A generator's theoretical radius (40 LR pixels for ``large``) bounds what *can* reach a pixel;
the weights decide what does: far-away contributions are below one output level. Tiling with the
theoretical radius recomputes 2x the pixels at the default tile; the measured radius is the
default overlap, and ``--seamless`` keeps the exact (theoretical) one.

Bound: on the probe images, every tiled result is >= ``MIN_DB`` dB PSNR from the whole-image
result and differs by at most ``MAX_LEVELS`` 8-bit levels anywhere. Probe images are procedural
(:mod:`srgan_runtime.core.synth`), so the measurement needs no data set and is reproducible.
The same measurement serves models without a known radius (foreign ONNX files).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .backends.base import Backend
from .core.errors import UserError
from .core.files import atomic_write, file_sha256, user_cache_dir
from .core.metrics import psnr

log = logging.getLogger(__name__)



def _quiet_failure() -> contextlib.suppress:
    """A corrupt cache entry or model file is ignored: the radius is measured again."""
    return contextlib.suppress(OSError, ValueError, KeyError, TypeError, UserError)

MIN_DB = 60.0
MAX_LEVELS = 1
CORE = 32  # tile core during probing: several seams cross each probe image
CANDIDATES = (2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 64, 96, 128)
METHOD = f"v2:{MIN_DB:g}dB:{MAX_LEVELS}lv:core{CORE}"


@dataclass
class RadiusMeasurement:
    """The result: ``radius`` None when no candidate up to the limit met the bound."""

    radius: int | None
    limit: int
    trials: list[tuple[int, float, int]] = field(default_factory=list)  # overlap, dB, levels
    method: str = METHOD
    reach: str = "local"  # "global": one input pixel moves outputs across the whole image

    def line(self) -> str:
        if self.reach == "global":
            return ("no effective radius: one input pixel changes the output across the whole "
                    "image (the network pools globally), so tiles cannot match the whole image")
        found = (f"effective radius {self.radius}" if self.radius is not None
                 else f"no overlap up to {self.limit} met the bound")
        return (f"{found} (>= {MIN_DB:g} dB and <= {MAX_LEVELS} level from the whole image; "
                f"{len(self.trials)} overlaps tried)")


def probe_images(limit: int) -> list[np.ndarray]:
    """Two procedural RGB images, the same for every overlap tried, large enough that the
    widest probed tile still has seams across them."""
    from .core.synth import texture

    side = 2 * limit + 3 * CORE
    rng = np.random.default_rng(20261129)
    return [texture(rng, side, side + 24), texture(rng, side + 16, side)]


def measure_effective_radius(backend: Backend, limit: int | None = None,
                             images: list[np.ndarray] | None = None) -> RadiusMeasurement:
    """Try overlaps from small to ``limit`` (the theoretical radius, where known) and return
    the first that keeps tiled output within the bound on every probe image."""
    from .upscaler import Upscaler

    top = limit if limit is not None else CANDIDATES[-1]
    images = images if images is not None else probe_images(top)
    whole = [Upscaler(backend=backend, tile=0, overlap=0).upscale(im) for im in images]
    result = RadiusMeasurement(None, top)
    if limit is None and reaches_across(backend, images[0]):
        result.reach = "global"
        return result
    for overlap in [c for c in CANDIDATES if c < top] + [top]:
        up = Upscaler(backend=backend, tile=2 * overlap + CORE, overlap=overlap, batch=8)
        worst_db, worst_levels = math.inf, 0
        for img, ref in zip(images, whole, strict=True):
            out = up.upscale(img)
            worst_db = min(worst_db, psnr(out, ref))
            worst_levels = max(worst_levels, int(np.abs(out.astype(np.int16) - ref).max()))
        result.trials.append((overlap, round(worst_db, 2), worst_levels))
        if worst_db >= MIN_DB and worst_levels <= MAX_LEVELS:
            result.radius = overlap
            break
        if _plateau(result.trials):
            break  # more context stopped helping: a long-range part no overlap can cover
    return result


def _plateau(trials: list[tuple[int, float, int]]) -> bool:
    """Four overlaps of 16 or more in a row gained under 1 dB in all."""
    tail = [t for t in trials if t[0] >= 16][-4:]
    return len(tail) == 4 and tail[-1][1] - tail[0][1] < 1.0


def reaches_across(backend: Backend, image: np.ndarray) -> bool:
    """Whether inverting one corner pixel of ``image`` moves the output at the opposite corner
    by more than half a level: a receptive field as wide as the image (global pooling, as in
    RCAN's channel attention), which no overlap can make seamless."""
    poked = image.copy()
    poked[:2, :2] = 255 - poked[:2, :2]
    a, b = ((im.astype(np.float32) / 255).transpose(2, 0, 1)[None] for im in (image, poked))
    fa, fb = backend.run_float(a), backend.run_float(b)
    edge = 8 * backend.scale
    far = np.abs(fa[..., -edge:, -edge:] - fb[..., -edge:, -edge:])
    return bool(far.max() > 0.5 / 255)


def _cache_file(sha256: str) -> Path:
    return user_cache_dir("radius") / f"{sha256[:40]}.json"


def effective_radius(backend: Backend, use_cache: bool = True) -> int | None:
    """The backend's model's effective radius: from its metadata, from the ONNX copy of a
    bundled model, from the cache (keyed by the file's hash and the method), or measured now
    and cached. None for fixed-shape models and when nothing met the bound."""
    info = backend.info
    if info.effective_radius is not None:
        return info.effective_radius
    if info.static is not None or not info.path:
        return None
    from .core.modelinfo import describe, onnx_variant

    variant = onnx_variant(Path(info.path)) if info.format == "generator" else None
    if variant is not None:
        with _quiet_failure():
            measured = describe(variant).effective_radius
            if measured is not None:
                return measured
    sha = file_sha256(Path(info.path))
    cache = _cache_file(sha)
    if use_cache and cache.is_file():
        with _quiet_failure():
            doc = json.loads(cache.read_text())
            if doc.get("method") == METHOD and isinstance(doc.get("radius"), int | None):
                return doc["radius"]
    probe = backend.fp32_fallback() or backend
    log.info("measuring the effective radius of %s once (tiled vs whole image)...",
             Path(info.path).name)
    try:
        result = measure_effective_radius(probe, info.receptive_radius)
    except UserError as exc:  # e.g. NaN output: the images will fail with the reason
        log.warning("effective radius not measured (%s); using the theoretical one", exc)
        return None
    log.info("%s", result.line())
    if use_cache:
        try:
            text = json.dumps({**asdict(result), "sha256": sha})
            atomic_write(cache, lambda tmp: tmp.write_text(text))
        except OSError as exc:
            log.warning("radius cache %s not writable (%s)", cache.parent, exc)
    return result.radius
