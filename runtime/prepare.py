"""The one prepare step: open a model on a backend and decide, once, what running it takes
(:class:`ModelProfile`): the file actually run, the tile and batch its shapes allow, the
overlap tiles need (known from metadata, the cache or the architecture, else measured when an
image first needs tiles), and its memory footprint per tile pixel. The :class:`Upscaler` only
schedules tiles and batches with it; backends only open files."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .backends import Backend, open_backend
from .core.errors import UserError
from .core.modelinfo import default_model
from .memory import Footprint, current_rss, footprint
from .radius import UNMEASURED, effective_radius, lookup_radius
from .settings import DEFAULT_TILE, UpscaleSettings

log = logging.getLogger(__name__)

# Context per tile side for a model that does not state its receptive radius (a foreign ONNX
# file): what the repository's overlap table shows to be far past visible seams for SRResNet-
# sized models, and small enough to leave most of a default tile as core.
UNKNOWN_RADIUS_OVERLAP = 32


@dataclass
class ModelProfile:
    """What running one opened model takes. ``tile`` and ``batch`` are the starting values
    (the memory budget and out-of-memory halving adapt them per image); ``overlap`` is None
    until :meth:`overlap_now` has measured it; ``footprint`` is None where no memory budget
    applies (CUDA, fixed shapes, ``max_memory`` off)."""

    path: str
    tile: int
    tile_explicit: bool
    batch: int
    overlap: int | None
    footprint: Footprint | None
    rss_start: int = 0
    _measure: Callable[[], int] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def overlap_now(self, tile: int) -> int:
        """The overlap, measured on first call where only a measurement can tell (and fitted
        to ``tile``, the tile side at that moment)."""
        if self.overlap is None:
            with self._lock:
                if self.overlap is None and self._measure is not None:
                    self.overlap = fit_overlap(self._measure(), tile, explicit=False)
        return self.overlap if self.overlap is not None else 0


def prepare(engine: Path | str | None, settings: UpscaleSettings, *,
            opened: Backend | None = None, progress: bool = False
            ) -> tuple[Backend, ModelProfile]:
    """Open ``engine`` (a model file, run folder or bundled name; None: the bundled default)
    as ``settings`` say, or take the ``opened`` backend, and profile it."""
    tile = DEFAULT_TILE if settings.tile is None else settings.tile
    s = settings
    if opened is None:
        path = Path(engine) if engine is not None else default_model(s.scale)
        backend = open_backend(path, s.backend, s.device, s.precision, s.threads, s.scale,
                               s.cache, s.compile, (s.batch, tile))
    else:
        backend = opened
    tile, batch = _shape_rules(backend, tile, s.batch)
    profile = ModelProfile(backend.info.path, tile, s.tile is not None, batch, None, None)
    profile.overlap, profile._measure = _overlap_plan(backend, s, tile, progress)
    cpu = backend.device == "cpu"
    if cpu and backend.fixed_shape is None and s.max_memory != 0 and \
            (opened is None or s.max_memory):
        profile.footprint = footprint(backend, s.cache)
        # The process before any tile ran (the footprint is measured in another process):
        # later, the resident size also holds what the backend keeps for reuse.
        profile.rss_start = current_rss() or 0
        if profile.footprint is None and s.max_memory:
            log.warning("--max-memory not applied: the model's memory footprint could not be "
                        "measured (the reason is above)")
    return backend, profile


def _shape_rules(backend: Backend, tile: int, batch: int | None) -> tuple[int, int]:
    """The tile and batch the model's shapes allow: a fixed-shape model's own, a TensorRT
    profile's largest at most; the default batch is 1 on the CPU (batching buys nothing there:
    OpenVINO 298 vs 306 ms per 100x100 LR pixels at batch 4 vs 1, ONNX Runtime slower at 4,
    and it multiplies the activations' memory), 4 on CUDA."""
    fixed = backend.fixed_shape
    if fixed is not None:
        if fixed[1] != fixed[2]:
            raise UserError("fixed-shape engines with non-square tiles are not supported")
        tile, batch = fixed[1], fixed[0]
    limits = backend.shape_limits
    if limits is not None:  # a TensorRT profile: tile within its sides, batch within its N
        if tile == 0 or tile > limits.max_side:
            if tile:
                log.warning("tile %d is over the engine profile's largest side %d: tile %d",
                            tile, limits.max_side, limits.max_side)
            tile = limits.max_side
        if batch is not None and batch > limits.max_batch:
            log.warning("batch %d is over the engine profile's largest batch %d: batch %d",
                        batch, limits.max_batch, limits.max_batch)
            batch = limits.max_batch
    if batch is None:
        batch = 1 if backend.device == "cpu" else 4
        if limits is not None:
            batch = min(batch, limits.max_batch)
    return tile, batch


def _overlap_plan(backend: Backend, s: UpscaleSettings, tile: int, progress: bool
                  ) -> tuple[int | None, Callable[[], int] | None]:
    """The overlap where it is known now (given, metadata or cache, the theoretical radius
    with ``seamless`` or whole-image runs), else how to measure it (unfitted) when first
    needed."""
    if s.overlap is not None:
        return fit_overlap(s.overlap, tile, explicit=True), None
    if tile and not s.seamless:
        found = lookup_radius(backend, s.cache)
        if found is UNMEASURED:
            def measure() -> int:
                measured = effective_radius(backend, s.cache, progress)
                return measured if measured is not None else fallback_overlap(
                    backend, "its effective radius was not measured")
            return None, measure
        if found is not None:
            return fit_overlap(found, tile, explicit=False), None
    why = "its receptive radius is unknown" if tile else None
    return fit_overlap(fallback_overlap(backend, why), tile, explicit=False), None


def fallback_overlap(backend: Backend, why: str | None) -> int:
    """The architecture's safe overlap: its theoretical radius, or a fixed guess (with a
    warning when ``why`` is given) where that is unknown too."""
    theoretical = backend.receptive_radius
    if theoretical is not None:
        return theoretical
    if why:
        log.warning("%s: tiles overlap by %d pixels, which may show seams (set --overlap, or "
                    "--tile 0 for whole images)", why, UNKNOWN_RADIUS_OVERLAP)
    return UNKNOWN_RADIUS_OVERLAP


def fit_overlap(overlap: int, tile: int, explicit: bool) -> int:
    """``overlap``, or a quarter of the tile where the tile leaves it no core (an explicit
    overlap is refused instead)."""
    if tile and 2 * overlap >= tile:
        if explicit:
            raise UserError(f"--overlap {overlap} leaves no core in a {tile}-pixel tile "
                            f"(need 2 x overlap < tile; raise --tile)")
        shrunk = tile // 4
        log.warning("a %d-pixel tile is small for the default overlap %d: overlap %d instead "
                    "(seams may show; raise --tile)", tile, overlap, shrunk)
        return shrunk
    return overlap
