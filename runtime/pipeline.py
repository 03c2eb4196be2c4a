"""Folder jobs: collect inputs, decode ahead in a thread, upscale with cross-image tile batches,
encode and write in another thread (bounded queues), and report per file. A bad file never
stops the job."""

from __future__ import annotations

import glob
import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from srgan_train.errors import ImageError, UserError
from srgan_train.images import IMAGE_SUFFIXES, atomic_write

from .imageio import FORMATS, PNG_LEVEL, Picture, load_image, save_image
from .upscaler import Upscaler

log = logging.getLogger(__name__)


@dataclass
class FileResult:
    """One input's outcome, as written to ``--report``."""

    input: str
    output: str | None
    status: str  # ok | failed | skipped
    error: str | None = None
    seconds: float = 0.0
    in_size: list[int] | None = None
    out_size: list[int] | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class JobSummary:
    results: list[FileResult]
    seconds: float
    megapixels_out: float

    @property
    def failed(self) -> int:
        return sum(r.status == "failed" for r in self.results)

    @property
    def skipped(self) -> int:
        return sum(r.status == "skipped" for r in self.results)

    @property
    def ok(self) -> int:
        return sum(r.status == "ok" for r in self.results)

    def line(self) -> str:
        rate = self.megapixels_out / self.seconds if self.seconds > 0 else 0.0
        return (f"upscaled {self.ok} image(s), {self.megapixels_out:.2f} MP out in "
                f"{self.seconds:.1f} s ({rate:.2f} MP/s); {self.failed} failed, "
                f"{self.skipped} skipped")


def collect_inputs(inputs: list[str], recursive: bool = False) -> list[tuple[Path, Path]]:
    """``(file, base)`` pairs from files, folders and globs; ``base`` keeps sub-folder layout
    for recursive folder inputs. Non-image files inside folders are ignored; a named file is
    always tried (and fails clearly if it is not an image)."""
    out: list[tuple[Path, Path]] = []
    for spec in inputs:
        p = Path(spec)
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(f for f in p.glob(pattern)
                           if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                           and not f.name.startswith("."))
            out += [(f, p) for f in files]
        elif p.exists():
            out.append((p, p.parent))
        else:
            matches = sorted(Path(m) for m in glob.glob(spec, recursive=recursive))
            if not matches:
                raise UserError(f"{spec}: no such file, folder or matching files")
            out += [(m, m.parent) for m in matches if m.is_file()]
    if not out:
        raise UserError("no input images found")
    return out


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


def run_job(upscaler: Upscaler, inputs: list[tuple[Path, Path]], out: Path, *,
            fmt: str | None = None, quality: int = 95, png_level: int = PNG_LEVEL,
            overwrite: bool = False,
            skip_existing: bool = False, max_pixels: int | None = None,
            progress: bool = True, prefetch: int = 2) -> JobSummary:
    """Upscale every input to its output path; never stops for one bad file."""
    single = len(inputs) == 1
    scale = upscaler.outscale or upscaler.scale
    label = f"{scale:g}"
    results: dict[int, FileResult] = {}
    todo: list[tuple[int, Path, Path]] = []
    seen_outputs: set[Path] = set()
    for k, (src, base) in enumerate(inputs):
        dst = output_path(src, base, out, single, label, fmt)
        res = FileResult(str(src), str(dst), "ok")
        results[k] = res
        if dst.resolve() == src.resolve():
            res.status, res.error = "failed", "output path is the input file"
        elif dst in seen_outputs:
            res.status, res.error = "failed", f"another input also writes {dst}"
        elif dst.exists() and skip_existing:
            res.status = "skipped"
        elif dst.exists() and not overwrite:
            res.status, res.error = "failed", f"{dst} exists (use --overwrite or --skip-existing)"
        else:
            todo.append((k, src, dst))
        seen_outputs.add(dst)
        if res.status == "failed":
            log.error("%s: %s", src, res.error)

    t0 = time.perf_counter()
    mp_out = 0.0
    starts: dict[int, float] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="img", dynamic_ncols=True)

    decoded: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    _END = object()

    def reader() -> None:  # decode ahead of the model
        for k, src, dst in todo:
            starts[k] = time.perf_counter()
            try:
                decoded.put((k, dst, load_image(src, max_pixels)))
            except ImageError as exc:
                decoded.put((k, dst, exc))
            except Exception as exc:  # a decoder bug must not kill the job
                decoded.put((k, dst, ImageError(src, f"{type(exc).__name__}: {exc}")))
        decoded.put(_END)

    def pictures() -> Iterator[tuple[tuple[int, Path], Picture]]:
        while True:
            item = decoded.get()
            if item is _END:
                return
            k, dst, pic = item
            if isinstance(pic, ImageError):
                fail(k, pic.reason)
                continue
            results[k].in_size = [pic.width, pic.height]
            yield (k, dst), pic

    def fail(k: int, reason: str) -> None:
        results[k].status, results[k].error = "failed", reason
        log.error("%s: %s", results[k].input, reason)
        if bar is not None:
            bar.update(1)

    writes: list[tuple[int, Future]] = []

    def write(pic: Picture, dst: Path) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        save_image(pic, dst, fmt or dst.suffix.lstrip("."), quality, overwrite=True,
                   png_level=png_level)

    thread = threading.Thread(target=reader, name="srrun-decode", daemon=True)
    thread.start()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="srrun-encode") as pool:
        try:
            for (k, dst), pic, stats in upscaler.upscale_many(pictures()):
                results[k].out_size = [pic.width, pic.height]
                results[k].warnings = list(stats.warnings)
                mp_out += pic.width * pic.height / 1e6
                writes.append((k, pool.submit(write, pic, dst)))
                while len(writes) > prefetch:  # bound the encode queue
                    _settle(writes.pop(0), results, starts, bar)
        finally:
            while writes:
                _settle(writes.pop(0), results, starts, bar)
    thread.join()
    if bar is not None:
        bar.close()
    return JobSummary([results[k] for k in sorted(results)], time.perf_counter() - t0, mp_out)


def _settle(item: tuple[int, Future], results: dict[int, FileResult], starts: dict[int, float],
            bar) -> None:
    k, fut = item
    try:
        fut.result()
    except (OSError, ValueError) as exc:
        results[k].status = "failed"
        results[k].error = f"cannot write: {exc}"
        log.error("%s: %s", results[k].output, results[k].error)
    results[k].seconds = round(time.perf_counter() - starts.get(k, time.perf_counter()), 4)
    if bar is not None:
        bar.update(1)


def write_report(summary: JobSummary, path: Path, extra: dict) -> None:
    doc = {**extra, "seconds": round(summary.seconds, 3),
           "megapixels_out": round(summary.megapixels_out, 4),
           "ok": summary.ok, "failed": summary.failed, "skipped": summary.skipped,
           "files": [asdict(r) for r in summary.results]}
    text = json.dumps(doc, indent=2)
    atomic_write(Path(path), lambda tmp: tmp.write_text(text))
