"""Folder jobs: collect inputs, check every output before any compute, decode ahead in a
thread, upscale with cross-image tile batches, encode and write in another thread (bounded
queues), and report per file. A bad file never stops the job; Ctrl-C stops it with a report."""

from __future__ import annotations

import fnmatch
import glob
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

from srgan_runtime.core.errors import ImageError, SkippedImage, UserError
from srgan_runtime.core.files import (
    IMAGE_SUFFIXES,
    atomic_write,
    check_output_file,
    exists_message,
    folder_problem,
)

from .core.imageio import (
    FORMATS,
    Picture,
    load_image,
    output_notes,
    output_problem,
    save_image,
)
from .core.modelinfo import default_model, describe, resolve_model
from .settings import UpscaleSettings, WriteOptions
from .upscaler import Upscaler

log = logging.getLogger(__name__)


@dataclass
class FileResult:
    """One input's outcome, as written to ``--report``."""

    input: str
    output: str | None
    status: str  # ok | failed | skipped | interrupted
    error: str | None = None
    seconds: float = 0.0
    in_size: list[int] | None = None
    out_size: list[int] | None = None
    warnings: list[str] = field(default_factory=list)
    tiles: int = 0
    fp32_tiles: int = 0
    oom_retries: int = 0
    worker: str | None = None  # host:pid of the Ray worker that did it (--ray)


@dataclass
class JobSummary:
    results: list[FileResult]
    seconds: float
    megapixels_out: float
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def ok(self) -> int:
        return self.count("ok")

    def line(self) -> str:
        rate = self.megapixels_out / self.seconds if self.seconds > 0 else 0.0
        text = (f"upscaled {self.ok} image(s), {self.megapixels_out:.2f} MP out in "
                f"{self.seconds:.1f} s ({rate:.2f} MP/s); {self.failed} failed, "
                f"{self.skipped} skipped")
        if self.interrupted:
            text += f"; interrupted, {self.count('interrupted')} not done"
        return text


# --- inputs -------------------------------------------------------------------------------------

def collect_inputs(inputs: list[str], recursive: bool = False) -> list[tuple[Path, Path]]:
    """``(file, base)`` pairs from files, folders and globs; ``base`` keeps sub-folder layout
    for recursive folder inputs. Non-image files inside folders are ignored; a named file is
    always tried (and fails clearly if it is not an image). Recursion never follows symbolic
    links to folders (no loops), and a file reached twice (by two specs, or through a link) is
    taken once."""
    out: list[tuple[Path, Path]] = []
    for spec in inputs:
        p = Path(spec)
        if p.is_dir():
            files = _walk(p, ("**", "*") if recursive else ("*",))
            out += [(f, p) for f in files
                    if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
        elif p.exists():
            out.append((p, p.parent))
        else:
            matches = _glob(spec, recursive)
            if not matches:
                raise UserError(f"{spec}: no such file, folder or matching files")
            out += [(m, m.parent) for m in matches if m.is_file()]
    unique = _dedupe(out)
    if len(unique) < len(out):
        log.info("%d input(s) named twice (or through a link) are taken once",
                 len(out) - len(unique))
    if not unique:
        raise UserError("no input images found")
    return unique


def _dedupe(items: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    seen: set[str] = set()
    unique = []
    for f, base in items:
        real = os.path.realpath(f)
        if real not in seen:
            seen.add(real)
            unique.append((f, base))
    return unique


def _glob(spec: str, recursive: bool) -> list[Path]:
    """Files matching a glob. Without ``recursive``, ``**`` is ``*`` (as in :mod:`glob`). With
    it, ``**`` spans folders, walked without following links to folders: Python's own
    ``glob(recursive=True)`` follows them and loops."""
    if not recursive:
        return sorted(Path(m) for m in glob.glob(spec))
    parts = Path(spec).parts
    i = next((k for k, part in enumerate(parts) if glob.has_magic(part)), None)
    if i is None:
        return []
    root = Path(*parts[:i]) if i else Path()
    return _walk(root, parts[i:])


def _walk(root: Path, pattern: tuple[str, ...]) -> list[Path]:
    """Files under ``root`` whose relative path matches ``pattern`` (segments, ``**`` for any
    number of folders), hidden names skipped unless the pattern names them, links to folders
    not followed, sorted."""
    want_hidden = any(seg.startswith(".") for seg in pattern)
    deep = "**" in pattern
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel = Path(dirpath).relative_to(root).parts
        if not deep:
            dirnames[:] = [d for d in dirnames if len(rel) + 1 < len(pattern)]
        dirnames[:] = sorted(d for d in dirnames if want_hidden or not d.startswith("."))
        for name in filenames:
            if _matches((*rel, name), pattern):
                found.append(Path(dirpath, name))
    return sorted(found)


def _matches(segments: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    @cache
    def match(i: int, j: int) -> bool:
        if j == len(pattern):
            return i == len(segments)
        if pattern[j] == "**":
            return any(match(k, j + 1) for k in range(i, len(segments) + 1))
        if i == len(segments):
            return False
        seg, pat = segments[i], pattern[j]
        if seg.startswith(".") and not pat.startswith("."):
            return False
        return fnmatch.fnmatchcase(seg, pat) and match(i + 1, j + 1)

    return match(0, 0)


# --- outputs ------------------------------------------------------------------------------------

def output_path(src: Path, base: Path, out: Path, single: bool, scale_label: str,
                fmt: str | None) -> Path:
    """``OUT`` itself for a single input written to a file name, else
    ``OUT/<relative dirs>/<stem>_x<scale>.<ext>``."""
    if single and out.suffix.lower().lstrip(".") in FORMATS:
        return out
    ext = fmt or src.suffix.lower().lstrip(".")
    if ext not in FORMATS:
        ext = "png"
    rel = src.parent.relative_to(base) if src.is_relative_to(base) else Path()
    return out / rel / f"{src.stem}_x{scale_label}.{ext}"


def check_output_option(out: Path, n_inputs: int, fmt: str | None,
                        folder_meant: bool = False) -> None:
    """Refuse an ``-o`` that cannot do what it says, before any work: a name with an
    extension that is not a format this writes (unless it is an existing folder, or
    ``folder_meant``: the name ended with a slash), a name whose extension contradicts
    ``--format``, a file name (or an existing file) for several inputs."""
    from PIL import Image

    ext = out.suffix.lower()
    writable = ", ".join(sorted(FORMATS))
    if ext and ext.lstrip(".") not in FORMATS and not out.is_dir() and not folder_meant:
        if ext in Image.registered_extensions():
            raise UserError(f"{out}: cannot write {ext} images (choose one of: {writable})")
        raise UserError(f"{out}: {ext} is not an image format this writes ({writable}); for "
                        f"a folder of that name, end it with '/' ({out}/)")
    if n_inputs > 1:
        if ext.lstrip(".") in FORMATS and not out.is_dir():
            raise UserError(f"{out}: several inputs need an output folder, not a file name")
        if out.exists() and not out.is_dir():
            raise UserError(f"{out}: is a file; several inputs need an output folder")
    elif fmt and ext.lstrip(".") in FORMATS and FORMATS[ext.lstrip(".")] != FORMATS[fmt] \
            and not out.is_dir():
        raise UserError(f"{out}: the name says {ext.lstrip('.')} but --format is {fmt}; "
                        "drop one, or make them agree")


def scale_label(scale: int, outscale: float | None) -> str:
    """The ``x<label>`` of output names: the output's scale."""
    return f"{outscale or scale:g}"


@dataclass(frozen=True)
class FileTask:
    """One input and the output it is written to."""

    src: Path
    dst: Path


@dataclass(frozen=True)
class PlannedJob:
    """A job checked before the model is opened: the model file, every input with its base
    folder, the output, and the settings."""

    model: Path
    files: list[tuple[Path, Path]]
    out: Path
    settings: UpscaleSettings
    write: WriteOptions


def plan_job(inputs: list[str], out_arg: str, engine: str | None, settings: UpscaleSettings,
             write: WriteOptions, recursive: bool = False, report: Path | None = None
             ) -> PlannedJob:
    """Everything a job needs, checked without the model: the report file, the inputs, the
    ``-o`` name, and every output path (the model's scale names them: metadata only)."""
    if report is not None:
        check_output_file(report, "report file")
    files = collect_inputs(inputs, recursive)
    out = Path(out_arg)
    check_output_option(out, len(files), write.fmt,
                        folder_meant=out_arg.endswith(("/", os.sep)))
    path = resolve_model(engine) if engine else default_model(settings.scale)
    label = scale_label(describe(path, settings.scale).scale, settings.outscale)
    check_outputs(label, files, out, write.fmt, write.overwrite, write.skip_existing)
    return PlannedJob(path, files, out, settings, write)


def decode(task: FileTask, write: WriteOptions, size_problem) -> tuple[Picture, list[str]]:
    """Decode one input for its output (checked against the size and the output format
    before any compute), with what writing it as that format loses; raises
    :class:`ImageError`."""
    pic = load_image(task.src, write.max_pixels, check_size=size_problem)
    out_fmt = write.fmt or task.dst.suffix.lstrip(".")
    problem = output_problem(pic, out_fmt)
    if problem:
        raise ImageError(task.src, problem)
    return pic, [*pic.notes, *output_notes(pic, out_fmt)]


def encode(pic: Picture, task: FileTask, write: WriteOptions) -> None:
    """Write one result (atomically; its folder made where missing)."""
    task.dst.parent.mkdir(parents=True, exist_ok=True)
    save_image(pic, task.dst, write.fmt or task.dst.suffix.lstrip("."), write.quality,
               overwrite=True, png_level=write.png_level)


def file_failure(exc: Exception, stage: str = "read") -> tuple[str, str]:
    """The one exception policy of a job: what ``exc``, raised while one file was read and
    upscaled (``stage`` ``"read"``) or written (``"write"``), makes of that file (``skipped``
    or ``failed``, and why). Whatever it is, the job goes on; only a :class:`UserError` that
    is not about the file (a model that cannot run at all) is raised again, as it would fail
    every file."""
    if isinstance(exc, SkippedImage):
        return "skipped", exc.reason
    if isinstance(exc, ImageError):
        return "failed", exc.reason
    if isinstance(exc, UserError):
        raise exc
    if stage == "write" and isinstance(exc, OSError | ValueError):
        return "failed", f"cannot write: {exc}"
    return "failed", f"{type(exc).__name__}: {exc}"


def record_stats(res: FileResult, stats) -> None:
    res.warnings += stats.warnings
    res.tiles, res.fp32_tiles, res.oom_retries = stats.tiles, stats.fp32_tiles, stats.oom_retries


def process_file(upscaler: Upscaler, task: FileTask, write: WriteOptions) -> FileResult:
    """Decode, upscale and write one file (the Ray worker's unit of work); a bad file is a
    result, never an exception (:func:`file_failure`)."""
    t0 = time.perf_counter()
    res = FileResult(str(task.src), str(task.dst), "ok")
    stage = "read"
    try:
        pic, notes = decode(task, write, upscaler.size_problem)
        res.warnings += notes
        res.in_size = [pic.width, pic.height]
        ((_, out, stats),) = list(upscaler.upscale_many([(task.src, pic)]))
        record_stats(res, stats)
        if out is None:
            res.status, res.error = "failed", stats.error
        else:
            stage = "write"
            encode(out, task, write)
            res.out_size = [out.width, out.height]
    except Exception as exc:
        res.status, res.error = file_failure(exc, stage)
    res.seconds = round(time.perf_counter() - t0, 4)
    return res


def check_outputs(label: str, inputs: list[tuple[Path, Path]], out: Path, fmt: str | None,
                  overwrite: bool, skip_existing: bool) -> None:
    """Refuse the whole job, before any model is opened, when an output could not be written
    (it exists without ``--overwrite``/``--skip-existing``, is an input, is written twice, or
    its folder is not writable): one line for one such output, a line each and a summary for
    several."""
    results, _ = _plan(label, inputs, out, fmt, overwrite, skip_existing, log_failures=False)
    bad = [r for r in results.values() if r.status == "failed"]
    if not bad:
        return
    if len(bad) == 1:
        raise UserError(_refusal(bad[0]))
    for r in bad:
        log.error("%s", _refusal(r))
    raise UserError(f"{len(bad)} of {len(inputs)} outputs cannot be written (above); nothing "
                    "was done")


def _refusal(res: FileResult) -> str:
    """A refused output in one line, naming the file the message does not already name."""
    error = res.error or "refused"
    return error if error.startswith(str(res.output)) else f"{res.output}: {error}"


def _plan(label: str, inputs: list[tuple[Path, Path]], out: Path, fmt: str | None,
          overwrite: bool, skip_existing: bool, log_failures: bool = True
          ) -> tuple[dict[int, FileResult], list[tuple[int, Path, Path]]]:
    """Output path and pre-flight verdict of every input: nothing computed for a file whose
    result could not be written."""
    single = len(inputs) == 1
    results: dict[int, FileResult] = {}
    todo: list[tuple[int, Path, Path]] = []
    seen_outputs: set[Path] = set()
    folder_verdicts: dict[Path, str | None] = {}
    for k, (src, base) in enumerate(inputs):
        dst = output_path(src, base, out, single, label, fmt)
        res = results[k] = FileResult(str(src), str(dst), "ok")
        if dst.parent not in folder_verdicts:
            folder_verdicts[dst.parent] = folder_problem(dst.parent)
        if dst.resolve() == src.resolve():
            res.status, res.error = "failed", "output path is the input file"
        elif dst in seen_outputs:
            res.status, res.error = "failed", f"another input also writes {dst}"
        elif folder_verdicts[dst.parent]:
            res.status, res.error = "failed", folder_verdicts[dst.parent]
        elif dst.is_dir():
            res.status, res.error = "failed", f"{dst} is a folder"
        elif dst.exists() and skip_existing:
            res.status = "skipped"
        elif dst.exists() and not overwrite:
            res.status, res.error = "failed", exists_message(dst, skip_hint=True)
        else:
            todo.append((k, src, dst))
        seen_outputs.add(dst)
        if res.status == "failed" and log_failures:
            log.error("%s: %s", src, res.error)
    return results, todo


# --- the job ------------------------------------------------------------------------------------

class _FolderJob:
    """State shared by the decode thread, the model loop and the encode pool."""

    def __init__(self, upscaler: Upscaler, results: dict[int, FileResult],
                 todo: list[tuple[int, Path, Path]], write: WriteOptions,
                 progress: bool, prefetch: int) -> None:
        self.upscaler, self.results, self.todo = upscaler, results, todo
        self.write, self.prefetch = write, max(1, prefetch)
        self.decoded: queue.Queue = queue.Queue(maxsize=self.prefetch)
        self.stop = threading.Event()
        self.starts: dict[int, float] = {}
        self.done: set[int] = set()
        self.mp_out = 0.0
        self.bar = None
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=len(todo), unit="img", dynamic_ncols=True)

    _END = object()

    def _put(self, item) -> bool:
        while not self.stop.is_set():  # never block forever once the consumer has stopped
            try:
                self.decoded.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read(self) -> None:
        """Decode ahead of the model (its own thread); failures become per-file results."""
        for k, src, dst in self.todo:
            if self.stop.is_set():
                return
            self.starts[k] = time.perf_counter()
            try:
                pic, notes = decode(FileTask(src, dst), self.write, self.upscaler.size_problem)
                for note in notes:
                    log.warning("%s: %s", src, note)
                self.results[k].warnings += notes
                item = (k, dst, pic)
            except Exception as exc:  # a decoder bug must not kill the job either
                item = (k, dst, exc)
            if not self._put(item):
                return
        self._put(self._END)

    def pictures(self) -> Iterator[tuple[tuple[int, Path], Picture]]:
        while True:
            item = self.decoded.get()
            if item is self._END:
                return
            k, dst, pic = item
            if isinstance(pic, Exception):
                self.finish(k, *file_failure(pic))
                continue
            self.results[k].in_size = [pic.width, pic.height]
            yield (k, dst), pic

    def finish(self, k: int, status: str, reason: str | None = None) -> None:
        res = self.results[k]
        res.status, res.error = status, reason
        res.seconds = round(time.perf_counter() - self.starts.get(k, time.perf_counter()), 4)
        if status == "failed":
            log.error("%s: %s", res.input, reason)
        elif status == "skipped":
            log.warning("%s: skipped: %s", res.input, reason)
        self.done.add(k)
        if self.bar is not None:
            self.bar.update(1)

    def settle(self, k: int, fut: Future, pic: Picture) -> None:
        try:
            fut.result()
        except Exception as exc:
            self.finish(k, *file_failure(exc, "write"))
            return
        self.mp_out += pic.width * pic.height / 1e6  # only what reached the disk counts
        self.finish(k, "ok")


def run_job(upscaler: Upscaler, inputs: list[tuple[Path, Path]], out: Path,
            write: WriteOptions | None = None, *, progress: bool = True,
            prefetch: int = 2) -> JobSummary:
    """Upscale every input to its output path; never stops for one bad file. Ctrl-C ends the
    job after the writes in flight, with the files not done marked ``interrupted``."""
    write = write or WriteOptions()
    results, todo = _plan(scale_label(upscaler.scale, upscaler.outscale), inputs, out,
                          write.fmt, write.overwrite, write.skip_existing)
    t0 = time.perf_counter()
    job = _FolderJob(upscaler, results, todo, write, progress, prefetch)

    interrupted = False
    writes: list[tuple[int, Future, Picture]] = []
    thread = threading.Thread(target=job.read, name="srrun-decode", daemon=True)
    thread.start()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="srrun-encode") as pool:
        try:
            for (k, dst), pic, stats in upscaler.upscale_many(job.pictures()):
                res = results[k]
                record_stats(res, stats)
                if pic is None:
                    job.finish(k, "failed", stats.error)
                    continue
                res.out_size = [pic.width, pic.height]
                task = FileTask(Path(res.input), dst)
                writes.append((k, pool.submit(encode, pic, task, write), pic))
                while len(writes) > job.prefetch:  # bound the encode queue
                    job.settle(*writes.pop(0))
        except KeyboardInterrupt:
            interrupted = True
            log.warning("interrupted: finishing the writes in flight")
        finally:
            job.stop.set()
            while writes:
                job.settle(*writes.pop(0))
    thread.join(timeout=5)
    for k, _, _ in todo:
        if k not in job.done:
            results[k].status, results[k].error = "interrupted", "not done: the job was stopped"
    if job.bar is not None:
        job.bar.close()
    return JobSummary([results[k] for k in sorted(results)], time.perf_counter() - t0,
                      job.mp_out, interrupted)


def write_report(summary: JobSummary, path: Path, extra: dict) -> None:
    doc = {**extra, "seconds": round(summary.seconds, 3),
           "megapixels_out": round(summary.megapixels_out, 4),
           "ok": summary.ok, "failed": summary.failed, "skipped": summary.skipped,
           "interrupted": summary.interrupted,
           "files": [asdict(r) for r in summary.results]}
    text = json.dumps(doc, indent=2)
    atomic_write(Path(path), lambda tmp: tmp.write_text(text))
