"""The effective receptive radius: the smallest tile context (overlap) at which tiled output stays
within a stated bound of the whole-image output, measured on the model itself.

A generator's theoretical radius (40 LR pixels for ``large``) bounds what *can* reach a pixel;
the weights decide what does: far-away contributions are below one output level. Tiling with the
theoretical radius recomputes 2x the pixels at the default tile; the measured radius is the
default overlap, and ``--seamless`` keeps the exact (theoretical) one.

Bound: on the probe images, an interior tile's kept core is >= ``MIN_DB`` dB PSNR from the
whole-image result and differs by at most ``MAX_LEVELS`` 8-bit levels anywhere. Probe images are
procedural (:mod:`srgan_runtime.core.synth`), so the measurement needs no data set and is
reproducible.

Cost, bounded whatever the network's speed: one small pass to time the network, the two probe
images whole, a two-pass check for a global reach, then one batched pass per overlap tried: the
crop an interior tile of that overlap would see, around each image's centre (the cost of a tile,
not of tiling the image). Overlaps are tried doubling (2, 4, 8, ...) until one meets the bound,
then bisected among the candidates below it: at most about a dozen passes. The whole measurement
also stops at a time budget (``SRGAN_RADIUS_SECONDS``, 60 s by default), estimated before each
pass from the passes so far; then the architecture's safe overlap is used, with a warning, and
the budget is remembered so that the same budget does not try again on every run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .backends.base import Backend, is_oom
from .core.errors import UserError
from .core.files import atomic_write, file_sha256, user_cache_dir
from .core.imageio import to_nchw
from .core.metrics import psnr
from .core.modelinfo import describe, onnx_variant
from .core.synth import texture
from .tiling import aligned_tile

log = logging.getLogger(__name__)


def _quiet_failure() -> contextlib.suppress:
    """A corrupt cache entry or model file is ignored: the radius is measured again."""
    return contextlib.suppress(OSError, ValueError, KeyError, TypeError, UserError)


MIN_DB = 60.0
MAX_LEVELS = 1
CORE = 32  # the kept core of each probe tile
PAD = 8  # probe image margin beyond the widest probe tile
_SPREAD = (0.2, 0.5, 0.8)  # where probe tiles sit across each image (fractions of the room)
CANDIDATES = (2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 64, 96, 128)
METHOD = f"v3:{MIN_DB:g}dB:{MAX_LEVELS}lv:core{CORE}:crops"
DEFAULT_SECONDS = 60.0


def time_budget() -> float:
    """Seconds a measurement may take: ``SRGAN_RADIUS_SECONDS`` or 60."""
    with contextlib.suppress(ValueError):
        value = float(os.environ.get("SRGAN_RADIUS_SECONDS", DEFAULT_SECONDS))
        if math.isfinite(value) and value > 0:
            return value
    return DEFAULT_SECONDS


@dataclass
class RadiusMeasurement:
    """The result: ``radius`` None when no candidate up to the limit met the bound, or the
    time budget ran out first (``timed_out``)."""

    radius: int | None
    limit: int
    trials: list[tuple[int, float, int]] = field(default_factory=list)  # overlap, dB, levels
    method: str = METHOD
    reach: str = "local"  # "global": one input pixel moves outputs across the whole image
    timed_out: bool = False
    budget: float = 0.0  # seconds allowed
    seconds: float = 0.0  # seconds taken
    passes: int = 0  # calls into the network

    def line(self) -> str:
        if self.reach == "global":
            return ("no effective radius: one input pixel changes the output across the whole "
                    "image (the network pools globally), so tiles cannot match the whole image")
        if self.timed_out:
            return (f"effective radius not measured within {self.budget:g} s (the network is "
                    f"slow here: {self.passes} passes in {self.seconds:.0f} s)")
        found = (f"effective radius {self.radius}" if self.radius is not None
                 else f"no overlap up to {self.limit} met the bound")
        return (f"{found} (>= {MIN_DB:g} dB and <= {MAX_LEVELS} level from the whole image; "
                f"{len(self.trials)} overlaps tried, {self.passes} passes, "
                f"{self.seconds:.1f} s)")


def _tile_side(overlap: int, multiple: int) -> int:
    """The side of a probe tile with ``overlap`` context and a ``CORE`` core, on the window
    grid of a window-attention model (as the runtime's tiles are)."""
    side = 2 * overlap + CORE
    return aligned_tile(side, overlap, multiple) if multiple > 1 else side


def probe_images(limit: int, multiple: int = 1) -> list[np.ndarray]:
    """Two procedural RGB images, the same for every overlap tried, large enough that the
    widest probe tile lies inside them with a margin."""

    side = _tile_side(limit, multiple) + 2 * PAD
    rng = np.random.default_rng(20261129)
    return [texture(rng, side, side + 24), texture(rng, side + 16, side)]


class _OutOfTime(Exception):
    """The next pass would end past the time budget."""


class _Clock:
    """Counts passes and predicts the next one's time from the seconds per pixel so far."""

    def __init__(self, budget: float, bar) -> None:
        self.budget, self.bar = budget, bar
        self.t0 = time.perf_counter()
        self.passes = 0
        self.pixels = 0
        self.busy = 0.0

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def run(self, fn, pixels: int, note: str = ""):
        if self.pixels:
            estimate = self.busy / self.pixels * pixels
            if self.elapsed + estimate > self.budget:
                raise _OutOfTime
        t = time.perf_counter()
        out = fn()
        self.busy += time.perf_counter() - t
        self.pixels += pixels
        self.passes += 1
        if self.bar is not None:
            self.bar.update(1)
            if note:
                self.bar.set_postfix_str(note)
        return out


def _search_order(candidates: list[int]) -> list[int]:
    """Indices to try first: the candidates nearest to 2, 4, 8, ... (doubling)."""
    order: list[int] = []
    want = 2
    while True:
        i = min(range(len(candidates)), key=lambda k: (abs(candidates[k] - want), k))
        if i not in order:
            order.append(i)
        if candidates[i] >= candidates[-1]:
            break
        want *= 2
    if order[-1] != len(candidates) - 1:
        order.append(len(candidates) - 1)
    return order


def measure_effective_radius(backend: Backend, limit: int | None = None,
                             images: list[np.ndarray] | None = None,
                             budget: float | None = None,
                             progress: bool = False) -> RadiusMeasurement:
    """Find the smallest candidate overlap up to ``limit`` (the theoretical radius, where
    known) that keeps an interior tile's core within the bound on every probe image, within
    ``budget`` seconds (see the module's docstring for the passes it costs)."""
    top = limit if limit is not None else CANDIDATES[-1]
    candidates = [c for c in CANDIDATES if c < top] + [top]
    images = images if images is not None else probe_images(
        top, max(1, backend.info.input_multiple))
    budget = time_budget() if budget is None else budget
    result = RadiusMeasurement(None, top, budget=budget)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=4 + len(_search_order(candidates)) + 4, unit="pass",
                   desc="effective radius", leave=False, dynamic_ncols=True)
    clock = _Clock(budget, bar)
    try:
        _measure(backend, limit, images, candidates, result, clock)
    except _OutOfTime:
        result.timed_out = True
    finally:
        result.seconds, result.passes = clock.elapsed, clock.passes
        if bar is not None:
            bar.close()
    return result


def _measure(backend: Backend, limit: int | None, images: list[np.ndarray],
             candidates: list[int], result: RadiusMeasurement, clock: _Clock) -> None:
    small = images[0][:64, :64]
    clock.run(lambda: _run_tiles(backend, [small]), small.shape[0] * small.shape[1], "timing")
    whole = [clock.run(lambda im=im: _run_tiles(backend, [im])[0], im.shape[0] * im.shape[1],
                       "whole images") for im in images]
    if limit is None:
        px = 2 * images[0].shape[0] * images[0].shape[1]
        if clock.run(lambda: reaches_across(backend, images[0]), px, "global reach"):
            result.reach = "global"
            return
    m = max(1, backend.info.input_multiple)
    cache: dict[int, tuple[float, int]] = {}

    def trial(k: int) -> bool:
        o = candidates[k]
        if o not in cache:
            crops, where, side = _probe_tiles(images, o, m)
            outs = clock.run(lambda: _run_tiles(backend, crops), len(crops) * side * side,
                             f"overlap {o}")
            cache[o] = _worst(outs, whole, where, o, side, backend.scale)
            result.trials.append((o, *cache[o]))
            if clock.bar is not None:
                clock.bar.set_postfix_str(f"overlap {o}: {cache[o][0]:.1f} dB, "
                                          f"{cache[o][1]} levels")
        db, levels = cache[o]
        return db >= MIN_DB and levels <= MAX_LEVELS

    passed, failed = None, -1
    for k in _search_order(candidates):
        if trial(k):
            passed = k
            break
        failed = k
    if passed is None:
        return
    while passed - failed > 1:  # bisect among the candidates between
        mid = (passed + failed) // 2
        if trial(mid):
            passed = mid
        else:
            failed = mid
    result.radius = candidates[passed]


def _probe_tiles(images: list[np.ndarray], overlap: int, multiple: int
                 ) -> tuple[list[np.ndarray], list[tuple[int, int, int]], int]:
    """The tiles of ``overlap`` that positions spread over each image (``_SPREAD`` across,
    ``_SPREAD`` down) would run, on the image's window grid for window-attention models:
    several per image, so that the worst of them is measured, as tiling would. Returns the
    crops, where each came from (image, top, left), and their side."""
    side = _tile_side(overlap, multiple)
    crops: list[np.ndarray] = []
    where: list[tuple[int, int, int]] = []
    for k, im in enumerate(images):
        h, w = im.shape[:2]
        spots = {(max(0, min(int((h - side) * fy) // multiple * multiple, h - side)),
                  max(0, min(int((w - side) * fx) // multiple * multiple, w - side)))
                 for fy in _SPREAD for fx in _SPREAD}
        for y, x in sorted(spots):
            crops.append(im[y:y + side, x:x + side])
            where.append((k, y, x))
    return crops, where, side


def _run_tiles(backend: Backend, crops: list[np.ndarray]) -> list[np.ndarray]:
    """Same-sized RGB crops through the backend in one batched call, as the runtime runs
    tiles (halved where it runs out of memory); NaN/Inf output is refused."""
    try:
        out = backend.run(np.concatenate([to_nchw(np.ascontiguousarray(c)) for c in crops]), 8)
    except Exception as exc:
        if not is_oom(exc) or len(crops) == 1:
            raise
        half = len(crops) // 2
        return _run_tiles(backend, crops[:half]) + _run_tiles(backend, crops[half:])
    if not out.finite.all():
        raise UserError("the model's output holds NaN/Inf on the probe images")
    return list(out.pixels)


def _worst(outs: list[np.ndarray], whole: list[np.ndarray], where: list[tuple[int, int, int]],
           overlap: int, side: int, scale: int) -> tuple[float, int]:
    """Worst PSNR and level difference of the tiles' kept cores against the whole images."""
    worst_db, worst_levels = math.inf, 0
    lo, hi = overlap * scale, (side - overlap) * scale
    for out, (k, y, x) in zip(outs, where, strict=True):
        ref = whole[k]
        a = out[lo:hi, lo:hi]
        b = ref[y * scale + lo:y * scale + hi, x * scale + lo:x * scale + hi]
        worst_db = min(worst_db, psnr(a, b))
        worst_levels = max(worst_levels, int(np.abs(a.astype(np.int16) - b).max()))
    return round(worst_db, 2), worst_levels


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


def _cache_key(backend: Backend) -> str | None:
    """The hash the measurement is cached under: the file the model came from (an ONNX export
    shares its generator's), else the file itself."""
    info = backend.info
    if info.source_sha256:
        return info.source_sha256
    if info.path and Path(info.path).is_file():
        return file_sha256(Path(info.path))
    return None


UNMEASURED = object()  # lookup_radius: only a measurement can tell


def lookup_radius(backend: Backend, use_cache: bool = True, budget: float | None = None):
    """The radius without measuring: from the model's metadata, the ONNX copy of a bundled
    model, or the cache. Returns the radius (None: measured, none met the bound), or
    :data:`UNMEASURED` when only a measurement can tell."""
    info = backend.info
    if info.effective_radius is not None:
        return info.effective_radius
    if info.static is not None or not info.path:
        return None

    variant = onnx_variant(Path(info.path)) if info.format == "generator" else None
    if variant is not None:
        with _quiet_failure():
            measured = describe(variant).effective_radius
            if measured is not None:
                return measured
    key = _cache_key(backend)
    cache = _cache_file(key) if key else None
    if use_cache and cache is not None and cache.is_file():
        with _quiet_failure():
            doc = json.loads(cache.read_text())
            if doc.get("method") == METHOD and isinstance(doc.get("radius"), int | None):
                budget = time_budget() if budget is None else budget
                if not doc.get("timed_out") or float(doc.get("budget", 0)) >= budget:
                    return doc["radius"]
    return UNMEASURED


def effective_radius(backend: Backend, use_cache: bool = True, progress: bool = False,
                     budget: float | None = None) -> int | None:
    """The backend's model's effective radius: looked up (:func:`lookup_radius`), or measured
    now within the time budget and cached. None for fixed-shape models, when nothing met the
    bound, or when the budget ran out (the caller then uses the architecture's safe
    overlap)."""
    found = lookup_radius(backend, use_cache, budget)
    if found is not UNMEASURED:
        return found
    budget = time_budget() if budget is None else budget
    probe = backend.fp32_fallback() or backend
    name = Path(backend.info.path).name
    log.info("measuring the effective radius of %s once (the overlap tiles need; at most "
             "%g s; --overlap N skips this)...", name, budget)
    try:
        result = measure_effective_radius(probe, backend.info.receptive_radius, budget=budget,
                                          progress=progress)
    except UserError as exc:  # e.g. NaN output: the images will fail with the reason
        log.warning("effective radius not measured (%s)", exc)
        return None
    (log.warning if result.timed_out else log.info)("%s", result.line())
    key = _cache_key(backend)
    if use_cache and key is not None:
        try:
            text = json.dumps({**asdict(result), "sha256": key})
            atomic_write(_cache_file(key), lambda tmp: tmp.write_text(text))
        except OSError as exc:
            log.warning("radius cache %s not writable (%s)", _cache_file(key).parent, exc)
    return result.radius
