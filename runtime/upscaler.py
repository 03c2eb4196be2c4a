"""The ``Upscaler``: tiles, batches (across images too), runs a backend, stitches seamlessly and
handles alpha, grey, 16-bit, NaN/Inf tiles and out-of-memory."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from srgan_runtime.core.errors import UserError

from .backends import Backend
from .backends.base import is_oom
from .core.fitting import pad_to
from .core.imageio import Picture, finish_picture, to_nchw
from .memory import ACTIVATION_BUDGET, HEADROOM, current_rss, tile_budget
from .prepare import prepare
from .settings import UpscaleSettings
from .tiling import Tile, aligned_tile, extract, paste, plan_tiles

log = logging.getLogger(__name__)

# Context per tile side for a model that does not state its receptive radius (a foreign ONNX
# file): what the repository's overlap table shows to be far past visible seams for SRResNet-
# sized models, and small enough to leave most of a default tile as core.
UNKNOWN_RADIUS_OVERLAP = 32


@dataclass
class UpscaleStats:
    """Per-image bookkeeping for the run report. ``error`` set: the image failed (no result)."""

    tiles: int = 0
    fp32_tiles: int = 0
    oom_retries: int = 0
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


class UpscaleError(UserError):
    """One image could not be upscaled (its output would be wrong, or too large)."""


@dataclass
class _Job:
    key: Any
    pic: Picture
    planes: list[np.ndarray]  # HxWx3 inputs to upscale (colour, and alpha-as-RGB on request)
    canvases: list[np.ndarray]
    tiles: list[Tile]
    tile: int
    pending: int
    stats: UpscaleStats
    on_tile: Callable[[Any, int, int], None] | None = None  # (key, tiles done, tiles in all)


class Upscaler:
    """Upscale images of any size with one backend.

    ``engine``: a model file, run folder or bundled name (default: the bundled default);
    ``settings``: an :class:`~srgan_runtime.settings.UpscaleSettings`, with any of its fields
    overridden by keyword (``Upscaler("default", tile=0)``); ``backend`` may also be an opened
    :class:`~srgan_runtime.backends.Backend`. Tiles of consecutive images share batches
    (:meth:`upscale_many`); ``upscale`` is safe to call from several threads.
    """

    def __init__(self, engine: Path | str | None = None,
                 settings: UpscaleSettings | None = None, *, progress: bool = False,
                 **overrides: Any) -> None:
        # ``backend`` may be an opened Backend (callers that time or compare backends).
        opened = overrides.pop("backend") if isinstance(overrides.get("backend"), Backend) \
            else None
        settings = replace(settings or UpscaleSettings(), **overrides)
        self.settings = settings
        self.backend, self.profile = prepare(engine, settings, opened=opened,
                                             progress=progress)
        self.scale = self.backend.scale
        self.max_output_pixels = settings.max_output_pixels
        # An explicit tile (0 included) is kept unless memory is really short; the default
        # one also yields to the memory budget. Both adapt per image (memory, out of memory).
        self.tile_explicit = self.profile.tile_explicit
        self.tile, self.batch = self.profile.tile, self.profile.batch
        self.max_memory = settings.max_memory
        self._footprint = self.profile.footprint
        self._rss_start = self.profile.rss_start
        self._held_side = 0  # the largest tile planned so far: what the backend may keep
        self._told: set[str] = set()  # memory decisions already logged
        self.alpha = settings.alpha
        self.outscale = settings.outscale
        self._fallback: Backend | None = None
        self._fallback_lock = threading.Lock()
        warmup = getattr(self.backend, "warmup", None)
        if warmup is not None and warmup():  # a compiled backend compiles here, not in image 1
            log.info("compiled the network in %.1f s", self.backend.compile_seconds)

    @property
    def overlap(self) -> int:
        """Context per tile side. Where only a measurement can tell (another project's
        checkpoint or ONNX file seen for the first time), it is measured on first use: when
        an image needs more than one tile, never for images that fit one."""
        return self.profile.overlap_now(self.tile)

    # --- public API ---------------------------------------------------------------------------
    def upscale(self, image):
        """Upscale a PIL image or a numpy array (HxW / HxWx3 / HxWx4, uint8 or uint16);
        returns the same kind. Raises :class:`UpscaleError` when the image fails (output with
        NaN/Inf and no fp32 fallback, output over ``max_output_pixels``)."""
        if isinstance(image, Image.Image):
            from .core.imageio import picture_from_pil

            try:
                pic = picture_from_pil(image)
            except ValueError as exc:
                raise UserError(f"image: {exc}") from None
            out = self.upscale_picture(pic)
            return Image.fromarray(out.to_array())
        if isinstance(image, Picture):
            return self.upscale_picture(image)
        arr = np.asarray(image)
        if arr.dtype not in (np.uint8, np.uint16):
            raise UserError(f"expected uint8 or uint16 pixels, got {arr.dtype}")
        return self.upscale_picture(Picture.from_array(arr)).to_array()

    def upscale_picture(self, pic: Picture) -> Picture:
        ((_, out, stats),) = list(self.upscale_many([(None, pic)]))
        if out is None:
            raise UpscaleError(stats.error or "upscaling failed")
        return out

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """The result's width and height for an input of ``width`` x ``height``."""
        if self.outscale is not None and self.outscale != self.scale:
            return max(1, round(width * self.outscale)), max(1, round(height * self.outscale))
        return width * self.scale, height * self.scale

    def size_problem(self, width: int, height: int, bits: int = 8) -> str | None:
        """Why an input of this size would not fit (output over ``max_output_pixels``, or more
        memory than the machine has free), or None. Cheap: call it before decoding."""
        ow, oh = self.output_size(width, height)
        model_px = width * height * self.scale**2
        biggest = max(ow * oh, model_px)
        if self.max_output_pixels is not None and biggest > self.max_output_pixels:
            if ow * oh >= model_px:
                what = f"output {ow}x{oh}"
            else:
                what = f"x{self.scale} model output (before --outscale)"
            return (f"{what} would be {biggest / 1e6:,.1f} MP, over --max-output-pixels "
                    f"{self.max_output_pixels:,}")
        _, memory = self.memory_tile(width, height, bits)
        if memory:
            return memory
        need = estimate_bytes(width, height, self.scale, (ow, oh), bits)
        free = available_memory()
        if free is not None and need > free:
            return (f"needs about {need / 2**30:.1f} GiB for its output, but only "
                    f"{free / 2**30:.1f} GiB of memory is available")
        return None

    def upscale_many(self, items: Iterable[tuple[Any, Picture]],
                     on_tile: Callable[[Any, int, int], None] | None = None
                     ) -> Iterator[tuple[Any, Picture | None, UpscaleStats]]:
        """Upscale a stream of ``(key, picture)``; tiles of consecutive pictures share batches.
        Yields ``(key, result, stats)`` in input order as each picture completes; a picture
        that failed yields ``result`` None with ``stats.error`` saying why, and the stream
        goes on. ``on_tile(key, done, total)`` is called as each tile of a picture lands."""
        queue: list[tuple[_Job, Tile, int]] = []  # (job, tile, plane index)
        jobs: list[_Job] = []
        for key, pic in items:
            job = self._start(key, pic)
            job.on_tile = on_tile
            jobs.append(job)
            queue += self._tiles_of(job)
            while len(queue) >= self.batch:
                queue = self._drain_or_shrink(queue, jobs, full_only=True)
                yield from self._finished(jobs)
        while queue:
            queue = self._drain_or_shrink(queue, jobs, full_only=False)
        yield from self._finished(jobs)

    @staticmethod
    def _tiles_of(job: _Job) -> list[tuple[_Job, Tile, int]]:
        return [(job, t, i) for i in range(len(job.planes)) for t in job.tiles]

    def _drain_or_shrink(self, queue, jobs: list[_Job], full_only: bool):
        try:
            return self._drain(queue, full_only)
        except _TileTooLarge:
            smallest = 2 * self.overlap + 16
            current = self.tile or max((max(j.planes[0].shape[:2]) for j in jobs if j.planes),
                                       default=0)
            if self.backend.fixed_shape is not None or current // 2 < smallest:
                raise UserError("out of memory even for one tile; lower --tile or --batch, "
                                "or use a smaller model") from None
            self.tile = current // 2
            msg = f"out of memory: tile halved to {self.tile} and the image restarted"
            log.warning("%s", msg)
            queue = []
            for k, job in enumerate(jobs):
                if job.stats.error:  # its tiles left with the old queue
                    job.pending = 0
                    continue
                fresh = self._start(job.key, job.pic)
                fresh.on_tile = job.on_tile
                fresh.stats.oom_retries = job.stats.oom_retries + 1
                fresh.stats.warnings = [*job.stats.warnings, msg]
                jobs[k] = fresh
                queue += self._tiles_of(fresh)
            return queue

    def describe(self) -> str:
        why = f" ({self.backend.choice})" if self.backend.choice else ""
        mem = ""
        if self._footprint is not None:
            if isinstance(self.max_memory, int):
                budget = f"{_mib(float(self.max_memory))} MiB"
            elif self.tile_explicit:
                budget = "the available memory (an explicit tile)"
            else:
                budget = "output + 512 MiB" if self.max_memory == "auto" else "default"
            mem = (f", memory {budget}: {self._footprint.per_pixel / 1024:.1f} KiB per tile "
                   "pixel measured")
        overlap = ("measured when an image needs tiles" if self.profile.overlap is None
                   else self.profile.overlap)
        return (f"{self.backend.describe()}{why}, x{self.scale}, tile {self.tile or 'whole'}, "
                f"overlap {overlap}, batch {self.batch}{mem}")

    def memory_tile(self, width: int, height: int, bits: int = 8) -> tuple[int, str | None]:
        """The tile side for an input of this size under the memory budget, and why the image
        cannot fit at all (or None). Without a measured footprint, the requested tile.

        Budgets for the backend's activations (:mod:`srgan_runtime.memory`): with an explicit
        ``max_memory`` size, that size for the whole process; with an explicit tile (``0``
        included), the memory the machine has available (the tile is kept unless that is
        short); with the default tile, the auto budget (512 MiB beyond the output picture, for
        what the run adds: activations, input, encoder; the library's default: a fixed 320 MiB),
        capped by the available memory too."""
        fp = self._footprint
        if fp is None:
            return self.tile, None

        # A tile as large as the image is the whole image: ask for no more than that.
        requested = min(self.tile or max(width, height), max(width, height))
        px = (2 if bits == 16 else 1) * 4
        picture = width * height * (self.scale**2 + 1) * px  # output canvas and input
        free = available_memory()
        room = None if free is None else tile_budget(picture, free)
        explicit = isinstance(self.max_memory, int) and self.max_memory > 0
        if explicit:  # the whole process: earlier pictures still being written count too
            held = fp.bytes(self._held_side, self.batch) if self._held_side else 0.0
            rss = max(self._rss_start, (current_rss() or 0) - held)
            budget = tile_budget(rss + picture, float(self.max_memory))
            why = f"--max-memory {_mib(float(self.max_memory))} MiB"
        elif self.tile_explicit:
            if room is None:
                return self.tile, None
            budget, why = room, f"the {_mib(free or 0)} MiB of memory available"
        else:
            own = (ACTIVATION_BUDGET if self.max_memory is None
                   else tile_budget(width * height * px, HEADROOM))
            budget = own if room is None else min(own, room)
            why = ("the auto memory budget (output + 512 MiB)" if budget == own
                   else f"the {_mib(free or 0)} MiB of memory available")
        side = fp.largest_side(budget, self.batch) // 8 * 8
        while side < requested and self.batch > 1:  # fewer tiles a call before smaller tiles
            self.batch //= 2
            log.info("batch %d to stay within %s", self.batch, why)
            side = fp.largest_side(budget, self.batch) // 8 * 8
        if side >= requested:
            side = self.tile
        elif side < (smallest := 2 * self.overlap + 16):  # tiles: the overlap matters now
            if explicit:
                return 0, (f"needs more than --max-memory {_mib(self.max_memory)} MiB: "
                           f"{_mib(rss)} MiB in use, {_mib(picture)} MiB for the picture, "
                           f"{_mib(fp.bytes(smallest, self.batch))} MiB for the smallest tile")
            side = smallest
        if side != self.tile:
            want = "whole-image tile" if requested == max(width, height) else \
                f"{requested}-pixel tile"
            self._tell(f"tile {side}: a {want} needs ~{_mib(fp.bytes(requested, self.batch))} "
                       f"MiB for the model's activations, and {why} leaves ~"
                       f"{_mib(max(budget, 0))} MiB for them (--max-memory SIZE or off to change "
                       "it)")
        self._held_side = max(self._held_side, side or requested)
        return side, None

    def _tell(self, message: str) -> None:
        """Log a memory decision once per run, not once per image."""
        if message not in self._told:
            self._told.add(message)
            log.info("%s", message)

    # --- internals ----------------------------------------------------------------------------
    def _start(self, key: Any, pic: Picture) -> _Job:
        problem = self.size_problem(pic.width, pic.height, pic.bits)
        if problem is None:
            try:
                return self._plan(key, pic)
            except MemoryError:
                problem = "out of memory for its output canvas"
        return _Job(key, pic, [], [], [], self.tile, 0, UpscaleStats(error=problem))

    def _plan(self, key: Any, pic: Picture) -> _Job:
        colour = pic.colour if not pic.grey else np.repeat(pic.colour[..., None], 3, axis=2)
        planes = [colour]
        if pic.alpha is not None and self.alpha == "model":
            planes.append(np.repeat(pic.alpha[..., None], 3, axis=2))
        tile, _ = self.memory_tile(pic.width, pic.height, pic.bits)
        fixed = self.backend.fixed_shape
        if fixed is not None:
            # Static engines see exactly tile x tile: pad small images (reflect), crop back.
            planes = [pad_to(p, max(p.shape[0], tile), max(p.shape[1], tile)) for p in planes]
        m = self.backend.info.input_multiple
        if m > 1:
            # Window attention: pad the image as the network would, and start every tile on
            # the image's window grid, so that tiles partition windows as the whole image does.
            planes = [pad_to(p, -(-p.shape[0] // m) * m, -(-p.shape[1] // m) * m)
                      for p in planes]
        h, w = planes[0].shape[:2]
        if tile == 0 or (h <= tile and w <= tile):  # one tile: no overlap to know
            tiles = plan_tiles(h, w, 0, 0)
        else:
            if m > 1:
                tile = aligned_tile(tile, self.overlap, m)
            tiles = plan_tiles(h, w, tile, self.overlap, even=fixed is None, align=m)
        s = self.scale
        canvases = [np.empty((h * s, w * s, 3), dtype=pic.colour.dtype) for _ in planes]
        return _Job(key, pic, planes, canvases, tiles, tile, len(tiles) * len(planes),
                    UpscaleStats(tiles=len(tiles) * len(planes)))

    def _drain(self, queue, full_only: bool):
        """Run batches of same-shaped tiles from the front of the queue; tiles of images that
        already failed are dropped, not computed."""
        while queue and (not full_only or len(queue) >= self.batch):
            t0 = queue[0][1]
            shape = (t0.y.size, t0.x.size)
            group = []
            for item in queue:
                if (item[1].y.size, item[1].x.size) != shape or len(group) == self.batch:
                    break
                group.append(item)
            if full_only and len(group) < self.batch and len(group) == len(queue):
                break
            queue = queue[len(group):]
            self._run_group(group)
            if any(job.stats.error for job, _, _ in group):  # only a run can fail a queued job
                queue = _drop_failed(queue)
        return queue

    def _inputs(self, group) -> np.ndarray:
        batch = np.concatenate([to_nchw(extract(job.planes[i], t)) for job, t, i in group])
        fixed = self.backend.fixed_shape
        if fixed is not None and batch.shape[0] < fixed[0]:  # pad the last batch
            extra = np.repeat(batch[-1:], fixed[0] - batch.shape[0], axis=0)
            batch = np.concatenate([batch, extra])
        return batch

    def _run_group(self, group) -> None:
        bits = 16 if group[0][0].pic.bits == 16 else 8
        if any((job.pic.bits == 16) != (bits == 16) for job, _, _ in group):
            for item in group:  # mixed bit depths: one at a time
                self._run_group([item])
            return
        try:
            out = self.backend.run(self._inputs(group), bits)
        except Exception as exc:
            if not is_oom(exc):
                raise
            self._release_cuda()
            if len(group) > 1:  # halve the batch first, then the tile
                half = len(group) // 2
                group[0][0].stats.oom_retries += 1
                self._run_group(group[:half])
                self._run_group(group[half:])
                return
            raise _TileTooLarge() from exc
        want = (group[0][1].y.size * self.scale, group[0][1].x.size * self.scale)
        if out.pixels.shape[1:3] != want or out.pixels.shape[3] != 3:
            raise UserError(
                f"engine returned {out.pixels.shape[2]}x{out.pixels.shape[1]}x"
                f"{out.pixels.shape[3]} for a {group[0][1].x.size}x{group[0][1].y.size} RGB "
                f"tile: it is not an x{self.scale} RGB model"
            )
        bad = [k for k in range(len(group)) if not out.finite[k]]
        pixels = out.pixels
        if bad:
            pixels = self._recompute_fp32(group, bad, bits, pixels)
        for k, (job, t, i) in enumerate(group):
            paste(job.canvases[i], pixels[k], t, self.scale)
            job.pending -= 1
            if job.on_tile is not None:
                job.on_tile(job.key, job.stats.tiles - job.pending, job.stats.tiles)

    def _recompute_fp32(self, group, bad: list[int], bits: int, pixels: np.ndarray):
        """Recompute tiles that came out NaN/Inf in fp32; where there is no fp32 fallback, or
        it is not finite either, the image fails: NaN would be written as black."""
        with self._fallback_lock:
            if self._fallback is None:
                self._fallback = self.backend.fp32_fallback()
        if self._fallback is None:
            for k in bad:
                group[k][0].stats.error = (
                    f"the model's output holds NaN/Inf in {self.backend.precision} (no fp32 "
                    "fallback to recompute it): broken weights, or an input it cannot handle")
            return pixels
        sub = [group[k] for k in bad]
        redo = self._fallback.run(self._inputs(sub), bits)
        pixels = pixels.copy()
        for j, k in enumerate(bad):
            job = group[k][0]
            if not redo.finite[j]:
                job.stats.error = ("the model's output holds NaN/Inf, in fp32 too: broken "
                                   "weights, or an input it cannot handle")
                continue
            pixels[k] = redo.pixels[j]
            job.stats.fp32_tiles += 1
        for job in {id(g[0]): g[0] for g in sub}.values():
            if job.stats.error:
                continue
            msg = (f"{job.stats.fp32_tiles} tile(s) had NaN/Inf in {self.backend.precision}; "
                   "recomputed in fp32")
            job.stats.warnings = [w for w in job.stats.warnings if "recomputed" not in w] + [msg]
            log.warning("%s", msg)
        return pixels

    def _release_cuda(self) -> None:
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass

    def _finished(self, jobs: list[_Job]) -> Iterator[tuple[Any, Picture | None, UpscaleStats]]:
        while jobs and jobs[0].pending == 0:
            job = jobs.pop(0)
            if job.stats.error:
                yield job.key, None, job.stats
                continue
            try:
                result = self._finish(job)
            except MemoryError:
                job.stats.error = "out of memory while finishing its output"
                result = None
            job.canvases.clear()  # the result holds what is needed; free the canvas now
            yield job.key, result, job.stats

    def _finish(self, job: _Job) -> Picture:
        alpha = job.canvases[1] if len(job.canvases) > 1 else None
        return finish_picture(job.pic, job.canvases[0], self.scale,
                              self.output_size(job.pic.width, job.pic.height), alpha)


def _drop_failed(queue: list) -> list:
    """The queue without the tiles of images that failed (their count settled)."""
    kept = []
    for item in queue:
        if item[0].stats.error:
            item[0].pending -= 1
        else:
            kept.append(item)
    return kept


def estimate_bytes(width: int, height: int, scale: int, out_size: tuple[int, int],
                   bits: int = 8) -> int:
    """Rough peak memory for one image's output: the model-scale canvas, the final image and
    one encoder copy of it (RGB plus alpha)."""
    per_px = 4 * (2 if bits == 16 else 1)
    final = out_size[0] * out_size[1] * per_px
    return width * height * scale * scale * per_px + 2 * final


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``), or None where
    unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _mib(n: float) -> int:
    return round(n / 2**20)


class _TileTooLarge(RuntimeError):
    """Even one tile ran out of memory."""
