"""``srbench``: export a generator to every format the machine can run, check quality and parity,
time it, and print one table (the Ultralytics ``benchmark`` idea, for super-resolution).

Each row is one backend x precision. A row that fails carries on to the next; its status says
why. Timings: warm-up, then at least ``repeats`` runs and ``min_seconds`` of them; the median is
reported with the interquartile range and the number of outliers (beyond 1.5 IQR) kept visible.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import numpy as np

from srgan_export import OnnxExportOptions, export_onnx
from srgan_export.parity import Gate
from srgan_export.trt_engine import BuildOptions, build_engine, compute_profile
from srgan_runtime.backends import PRECISIONS, backend_names, installed, open_backend
from srgan_runtime.backends.pytorch import load_network
from srgan_runtime.backends.registry import backend_spec
from srgan_runtime.backends.support import support_problem
from srgan_runtime.core import __version__
from srgan_runtime.core.cli import FiniteFloat, one_line_errors, setup_logging
from srgan_runtime.core.errors import UserError, first_line
from srgan_runtime.core.files import atomic_write, check_output_file
from srgan_runtime.core.fitting import fit_batch
from srgan_runtime.core.generator import (
    generator_config,
    macs_per_lr_pixel,
    read_generator_metadata,
)
from srgan_runtime.core.imageio import downscale
from srgan_runtime.core.machine import machine_info
from srgan_runtime.core.metrics import psnr
from srgan_runtime.core.modelinfo import ModelInfo, default_model, describe, resolve_weights
from srgan_runtime.core.options import click_options, take
from srgan_runtime.core.synth import texture
from srgan_runtime.core.table import text_table
from srgan_runtime.settings import UpscaleSettings
from srgan_runtime.upscaler import Upscaler
from srgan_train.evaluate import EvalPair, evaluate, load_eval_set

log = logging.getLogger("srgan_export.bench")

# Compiled per precision, tile and batch (about 40 s each for the default model on 2 cores):
# timed only when asked for with --backends.
OPT_IN = ("aoti",)


def _kind(backend: str, precision: str) -> str:
    """The file a backend is timed on (the support table's model axis): the format it runs;
    an ONNX backend runs fp16 and int8 from files stored in that precision."""
    runs = backend_spec(backend).runs
    if runs == "onnx" and precision in ("fp16", "int8"):
        return f"onnx-{precision}"
    return runs


@dataclass
class Row:
    backend: str
    precision: str
    status: str = "ok"  # ok | failed gate | failed | skipped
    reason: str = ""
    tile: int = 0
    batch: int = 0
    size_mb: float | None = None
    psnr: float | None = None
    ssim: float | None = None
    parity_db: float | None = None
    ms_per_tile: float | None = None
    ms_iqr: float | None = None
    outliers: int | None = None
    mp_per_s: float | None = None
    gflops: float | None = None
    pct_of_peak: float | None = None
    peak_mem_mb: float | None = None
    peak_vram_mb: float | None = None
    probe_pct: float | None = None  # matmul rate just before the row, % of the run's best
    under_load: bool = False  # the probe says the machine was busy: timings are suspect


# --- limits -------------------------------------------------------------------------------------

def _best_time(fn, repeats: int, warmup: int = 1) -> float:
    """The fastest of ``repeats`` runs: a peak is what the machine can do, and other work on
    it only ever slows a run down (a median taken under load made a 70x too low peak)."""
    for _ in range(warmup):
        fn()
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


# A row whose matmul probe ran below this share of the run's best was measured under load.
LOAD_FRACTION = 0.75
_CPU_DTYPES = ("fp32", "bf16")


class PeakTracker:
    """The CPU's matmul peak per precision as the best rate seen over the whole run: measured
    at the start and probed again before every row, so that load during any one measurement
    can neither inflate "% of peak" nor go unnoticed (each row keeps its probe's share)."""

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads
        self.size: dict[str, int] = {}  # the matmul side each precision is measured at
        self.best: dict[str, float] = {}  # GFLOP/s

    def measure(self, name: str, repeats: int = 5) -> float:
        """Time ``name``'s matmul (choosing its size on first use) and keep the best rate."""
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[name]
        sizes = (self.size[name],) if name in self.size else (512, 2048)
        rate = 0.0
        for n in sizes:
            a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
            secs = _best_time(lambda a=a, b=b: a @ b, repeats=3 if n == 512 else repeats)
            rate, self.size[name] = 2 * n**3 / secs / 1e9, n
            # A small probe first: CPUs without native bf16 emulate it about 100x slower,
            # and 2048^3 products would then take minutes.
            if 2 * 2048**3 / (rate * 1e9) > 2.0:
                break
        self.observe(name, rate)
        return rate

    def observe(self, name: str, rate: float) -> None:
        self.best[name] = max(self.best.get(name, 0.0), rate)

    def share(self, name: str, rate: float) -> float:
        """``rate`` as a percentage of the best seen."""
        best = self.best.get(name, 0.0)
        return 100.0 * rate / best if best else 100.0


def measure_limits(threads: int, device: str, peaks: PeakTracker | None = None) -> dict:
    """Matmul peaks (fp32, bf16; fp16 on CUDA) and memory bandwidth of this machine; the CPU
    peaks are kept in ``peaks`` (probed again between rows by :func:`_run_rows`)."""
    import torch

    limits: dict = {}
    if threads:
        torch.set_num_threads(threads)
    peaks = peaks if peaks is not None else PeakTracker(threads)
    for name in _CPU_DTYPES:
        peaks.measure(name, repeats=7)
        limits[f"cpu_matmul_{name}_gflops"] = round(peaks.best[name], 1)
    src = np.ones(32 << 20, dtype=np.float64)  # 256 MiB
    dst = np.empty_like(src)
    secs = _best_time(lambda: np.copyto(dst, src), repeats=5)
    limits["cpu_copy_gb_per_s"] = round(2 * src.nbytes / secs / 1e9, 2)  # read + write
    if device == "cuda" and torch.cuda.is_available():
        n = 8192
        for name, dt in (("fp32", torch.float32), ("fp16", torch.float16),
                         ("bf16", torch.bfloat16)):
            a = torch.randn(n, n, dtype=dt, device="cuda")
            b = torch.randn(n, n, dtype=dt, device="cuda")

            def mm(a=a, b=b):
                a @ b
                torch.cuda.synchronize()

            limits[f"gpu_matmul_{name}_tflops"] = round(
                2 * n**3 / _best_time(mm, repeats=5, warmup=2) / 1e12, 1)
        x = torch.empty(1 << 28, dtype=torch.uint8, device="cuda")
        y = torch.empty_like(x)

        def copy():
            y.copy_(x)
            torch.cuda.synchronize()

        limits["gpu_copy_gb_per_s"] = round(2 * x.numel() / _best_time(copy, 5, 2) / 1e9, 1)
    return limits


def _reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# --- one row ------------------------------------------------------------------------------------

def _time_tiles(backend, tile: int, batch: int, repeats: int, min_seconds: float):
    x = np.random.default_rng(0).random((batch, 3, tile, tile), dtype=np.float32)
    for _ in range(2):
        backend.run(x)
    ts: list[float] = []
    start = time.perf_counter()
    while len(ts) < repeats or (time.perf_counter() - start < min_seconds and len(ts) < 200):
        t = time.perf_counter()
        backend.run(x)
        ts.append(time.perf_counter() - t)
    arr = np.array(ts) / batch
    q1, med, q3 = np.percentile(arr, [25, 50, 75])
    iqr = q3 - q1
    outliers = int(((arr < q1 - 1.5 * iqr) | (arr > q3 + 1.5 * iqr)).sum())
    return float(med), float(iqr), outliers


def run_row(row: Row, engine: Path, *, eval_pairs, reference_outputs, device: str,
            threads: int, repeats: int, min_seconds: float, macs_per_px: float,
            limits: dict) -> Row:
    _reset_peak_rss()
    vram = None
    try:
        import torch

        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
    except ImportError:  # pragma: no cover
        torch = None  # type: ignore[assignment]
    backend = open_backend(engine, row.backend, device, row.precision, threads)
    # Seamless: the parity column measures the backend and precision, not the overlap.
    up = Upscaler(backend=backend, tile=row.tile, batch=row.batch, seamless=True)
    outputs: list[np.ndarray] = []

    def upscale(lr: np.ndarray) -> np.ndarray:
        out = up.upscale(lr)
        outputs.append(out)
        return out

    report = evaluate(eval_pairs, backend.scale, upscale)
    mean = report.mean()
    row.psnr, row.ssim = mean["psnr"], mean["ssim"]
    parity = [psnr(o, r) for o, r in zip(outputs, reference_outputs, strict=True)]
    row.parity_db = min(parity) if parity else None
    med, iqr, outliers = _time_tiles(backend, row.tile, row.batch, repeats, min_seconds)
    row.ms_per_tile, row.ms_iqr, row.outliers = med * 1e3, iqr * 1e3, outliers
    row.mp_per_s = (row.tile * backend.scale) ** 2 / med / 1e6
    row.gflops = 2 * macs_per_px * row.tile**2 / med / 1e9
    set_pct_of_peak(row, device, limits)
    row.peak_mem_mb = _peak_rss_mb()
    if device == "cuda" and torch is not None:
        vram = torch.cuda.max_memory_allocated() / 2**20
    row.peak_vram_mb = vram
    gate = Gate.for_precision(row.precision)
    if row.parity_db is None or row.parity_db < gate.min_psnr:
        row.status = "failed gate"
        row.reason = f"parity {row.parity_db:.1f} dB < {gate.min_psnr:g} dB"
    return row


def set_pct_of_peak(row: Row, device: str, limits: dict) -> None:
    """The row's GFLOP/s as a percentage of the machine's matmul peak for its precision
    (none for int8: no int8 peak is measured, and no percentage beats a wrong one)."""
    if row.gflops is None:
        return
    if device == "cuda":
        key = {"fp32": "gpu_matmul_fp32_tflops", "fp16": "gpu_matmul_fp16_tflops",
               "bf16": "gpu_matmul_bf16_tflops"}.get(row.precision, "")
        peak = limits.get(key, 0) * 1e3
    elif row.precision == "int8":
        peak = 0
    else:
        peak = limits.get("cpu_matmul_fp32_gflops" if row.precision == "fp32"
                          else "cpu_matmul_bf16_gflops", 0)
    row.pct_of_peak = 100 * row.gflops / peak if peak else None


def settle_peaks(rows: list[Row], peaks: PeakTracker, probes: dict[int, float],
                 limits: dict, device: str) -> None:
    """After the run: the peaks are the best rates seen (start and probes), each row's "% of
    peak" is taken against them, and a row whose probe ran below ``LOAD_FRACTION`` of the best
    is flagged as measured under load (its timing is suspect, its percentage too)."""
    for name in _CPU_DTYPES:
        if name in peaks.best:
            limits[f"cpu_matmul_{name}_gflops"] = round(peaks.best[name], 1)
    for k, row in enumerate(rows):
        set_pct_of_peak(row, device, limits)
        if k not in probes:
            continue
        row.probe_pct = round(peaks.share("fp32", probes[k]), 1)
        row.under_load = row.probe_pct < 100 * LOAD_FRACTION
        if row.under_load and row.status == "ok":
            row.reason = (f"measured under load: a matmul just before ran at {row.probe_pct:.0f}% "
                          "of the run's best; rerun on an idle machine")


# --- the whole run ------------------------------------------------------------------------------

_COLUMNS = [("backend", "<12"), ("prec", "<5"), ("status", "<12"), ("MB", ">6.2f"),
            ("PSNR", ">7.3f"), ("SSIM", ">7.4f"), ("parity dB", ">9.1f"), ("ms/tile", ">9.1f"),
            ("+-IQR", ">6.1f"), ("MP/s", ">6.3f"), ("GFLOP/s", ">8.1f"), ("%peak", ">6.1f"),
            ("RSS MB", ">7.0f"), ("", "")]


def format_table(machine: dict, limits: dict, rows: list[Row]) -> str:
    gpu = f", GPU {machine['gpu']}" if "gpu" in machine else ", no GPU"
    first = (f"srbench on {machine['cpu']} ({machine['cores']} cores{gpu}); torch "
             f"{machine.get('torch', '-')}; limits: "
             + ", ".join(f"{k} {v}" for k, v in limits.items()))
    body = [(r.backend, r.precision, r.status, r.size_mb, r.psnr, r.ssim, r.parity_db,
             r.ms_per_tile, r.ms_iqr, r.mp_per_s, r.gflops, r.pct_of_peak, r.peak_mem_mb,
             f" {r.reason}" if r.reason else "") for r in rows]
    return "\n".join([first, *(ln.rstrip() for ln in text_table(_COLUMNS, body))])


def _eval_set(data: Path | None, scale: int):
    root = data if data is not None else Path(os.environ.get("SR_DATA_DIR",
                                                              "../shared/data")) / "Set5"
    if Path(root).is_dir():
        pairs, _ = load_eval_set(Path(root), scale)
        return pairs, str(root)
    if data is not None:
        raise UserError(f"{data}: evaluation folder does not exist")
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(3):
        hr = texture(rng, 96, 128)
        pairs.append(EvalPair(f"texture{i}", downscale(hr, scale), hr))
    return pairs, "generated textures (Set5 not found)"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("ckpt", required=False)
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Evaluation folder [default: $SR_DATA_DIR/Set5 or ../shared/data/Set5].")
@click_options(UpscaleSettings, only=("tile", "batch"), defaults={"tile": 128, "batch": 1})
@click.option("--backends", default=None,
              help="Comma-separated subset, e.g. torch,openvino (default: all available).")
@click.option("--precisions", default=None,
              help="Comma-separated subset, e.g. fp32,int8 (default: all).")
@click_options(UpscaleSettings, only=("device", "threads"))
@click.option("--repeats", type=click.IntRange(1), default=7, show_default=True)
@click.option("--min-seconds", type=FiniteFloat(0), default=2.0, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None)
@click.option("--min-psnr", type=FiniteFloat(), default=None,
              help="Exit 1 when any row's PSNR against HR is below this (CI gate).")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option("-v", "--verbose", is_flag=True, help="More log output.")
@click.version_option(__version__, prog_name="srbench")
def bench_cmd(ckpt: str | None, data: Path | None, backends: str | None,
              precisions: str | None, repeats: int, min_seconds: float,
              json_path: Path | None, min_psnr: float | None, debug: bool,
              verbose: bool, **options) -> None:
    """Export, check and time a generator (or another project's checkpoint) on every backend
    the support table lists for this device; print one table."""
    ctx = click.get_current_context()
    ctx.obj = {"debug": debug}
    setup_logging(verbose, "srgan_runtime", "srgan_export", "srgan_train")
    with one_line_errors(ctx, "srbench"):
        s = take(UpscaleSettings, options)
        if json_path is not None:
            check_output_file(json_path, "results file")
        code = _bench(ckpt, data, s.tile, s.batch, backends, s.device, s.threads, repeats,
                      min_seconds, json_path, min_psnr, precisions)
    ctx.exit(code)


@dataclass
class _Plan:
    """Everything a run needs, prepared before any row is timed."""

    gen: Path
    info: ModelInfo
    device: str
    pairs: list
    source: str
    rows: list[Row]
    macs: float = 0.0  # per LR pixel, counted


def plan_rows(device: str, wanted: set[str] | None = None,
              precisions: set[str] | None = None) -> list[Row]:
    """One row per backend x precision the support table has for some device; rows this
    device cannot run are kept as skipped, with the table's reason."""

    rows = []
    for backend in backend_names():
        if backend not in (wanted if wanted is not None else set(backend_names()) - set(OPT_IN)):
            continue
        for precision in PRECISIONS:
            if precisions is not None and precision not in precisions:
                continue
            kind = _kind(backend, precision)
            problems = {d: support_problem(backend, d, precision, kind) for d in ("cpu", "cuda")}
            if all(problems.values()):
                continue  # no device runs it: not a row
            row = Row(backend, precision)
            if problems[device]:
                row.status, row.reason = "skipped", problems[device]
            elif not installed(backend):
                row.status, row.reason = "skipped", f"{backend} is not installed"
            rows.append(row)
    return rows


def _prepare(ckpt, data, tile, batch, backends, device, threads, precisions=None) -> _Plan:
    if tile < 8 or batch < 1:
        raise UserError("--tile must be >= 8 and --batch >= 1")
    UpscaleSettings(tile=tile, batch=batch, threads=threads, device=device)
    if not installed("torch"):
        raise UserError("srbench exports and checks a generator against PyTorch: pip install "
                        "'srgan-toolkit[torch]'")
    import torch

    gen = resolve_weights(ckpt) if ckpt else default_model()
    info = describe(gen)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if threads:
        torch.set_num_threads(threads)
    wanted = None if backends is None else {b.strip() for b in backends.split(",")}
    unknown = (wanted or set()) - set(backend_names())
    if unknown:
        raise UserError(f"unknown backends {sorted(unknown)} (choose from "
                        f"{', '.join(backend_names())})")
    pairs, source = _eval_set(data, info.scale)

    chosen = None if precisions is None else {p.strip() for p in precisions.split(",")}
    if chosen is not None and chosen - set(PRECISIONS):
        raise UserError(f"unknown precisions {sorted(chosen - set(PRECISIONS))} (choose from "
                        f"{', '.join(PRECISIONS)})")
    rows = plan_rows("cuda" if device.startswith("cuda") else "cpu", wanted, chosen)
    for row in rows:
        row.tile, row.batch = tile, batch
    return _Plan(gen, info, device, pairs, source, rows, counted_macs_per_lr_pixel(info))


class _Exports:
    """The model files rows need, made once each in a temporary folder."""

    def __init__(self, gen: Path, tmp: Path, device: str = "cpu") -> None:
        self.gen, self.tmp, self.device = gen, tmp, device
        self.done: dict[str, Path | Exception] = {}

    def file(self, kind: str) -> Path:
        if kind == "generator":
            return self.gen
        if kind not in self.done:
            try:
                self.done[kind] = self._make(kind)
            except UserError as exc:
                self.done[kind] = exc
        got = self.done[kind]
        if isinstance(got, Exception):
            raise got
        return got

    def _make(self, kind: str) -> Path:
        if kind == "tensorrt":
            return _trt_engine(self.file("onnx-fp16"), self.tmp)
        if kind.startswith("aoti-"):
            from srgan_export.aoti import AotiOptions, export_aoti

            _, precision, shape = kind.split("-")
            batch, tile = map(int, shape.split("x"))
            path = self.tmp / f"model-{kind}.pt2"
            export_aoti(self.gen, path, AotiOptions(device=self.device, precision=precision,
                                                    tile=tile, batch=batch, verify=False))
            return path
        path = self.tmp / f"model-{kind}.onnx"
        # INT8 calibrates on <data root>/T91/HR (training images), like 'srexport onnx --int8'.
        export_onnx(self.gen, path, OnnxExportOptions(fp16=kind == "onnx-fp16",
                                                      int8=kind == "onnx-int8", verify=False))
        return path


def _run_rows(plan: _Plan, threads, repeats, min_seconds, limits,
              peaks: PeakTracker | None = None) -> None:
    ref = Upscaler(backend=open_backend(plan.gen, "torch", "cpu", "fp32", threads), tile=0)
    reference_outputs = [ref.upscale(p.lr) for p in plan.pairs]
    macs = plan.macs
    probes: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="srbench-") as tmp:
        exports = _Exports(plan.gen, Path(tmp), plan.device)
        for row in plan.rows:
            if row.status == "skipped":
                continue
            kind = _kind(row.backend, row.precision)
            if kind == "aoti":  # one package per precision and shape
                kind = f"aoti-{row.precision}-{row.batch}x{row.tile}"
            if peaks is not None and plan.device == "cpu":  # the machine's state right now
                probes[id(row)] = peaks.measure("fp32", repeats=3)
                if row.precision == "bf16":
                    peaks.measure("bf16", repeats=3)
            try:
                engine = exports.file(kind)
                row.size_mb = round(engine.stat().st_size / 2**20, 3)
                run_row(row, engine, eval_pairs=plan.pairs, reference_outputs=reference_outputs,
                        device=plan.device, threads=threads, repeats=repeats,
                        min_seconds=min_seconds, macs_per_px=macs, limits=limits)
            except UserError as exc:
                row.status, row.reason = "failed", str(exc)
            except Exception as exc:  # one row's crash must not lose the others
                row.status, row.reason = "failed", f"{type(exc).__name__}: {first_line(exc)}"
            log.info("%s %s: %s %s", row.backend, row.precision, row.status, row.reason)
    if peaks is not None:
        settle_peaks(plan.rows, peaks, {k: probes[id(r)] for k, r in enumerate(plan.rows)
                                        if id(r) in probes}, limits, plan.device)


def _write_json(path: Path, plan: _Plan, machine: dict, limits: dict, threads: int) -> None:
    macs = plan.macs
    row0 = plan.rows[0] if plan.rows else Row("", "")
    doc = {"machine": machine, "limits": limits,
           "settings": {"engine": str(plan.gen), "eval": plan.source, "tile": row0.tile,
                        "batch": row0.batch, "device": plan.device, "threads": threads,
                        "macs_per_lr_pixel": macs},
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "rows": [_row_dict(r) for r in plan.rows]}
    text = json.dumps(doc, indent=2)
    atomic_write(path, lambda p: p.write_text(text))


def counted_macs_per_lr_pixel(info: ModelInfo) -> float:
    """Multiply-accumulates per LR pixel: this toolkit's generator counted layer by layer from
    its config; another project's network counted by torch's FLOP counter (convolutions and
    matrix products, attention included) on a 64-pixel input."""

    if info.format == "generator":
        path = Path(info.path)
        return macs_per_lr_pixel(generator_config(path, read_generator_metadata(path)))
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x, _ = fit_batch(np.zeros((1, 3, 64, 64), np.float32), info.channels, info.min_input_size,
                     info.input_multiple, info.square_only)
    net = load_network(info, "cpu")
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(torch.from_numpy(x))
    return counter.get_total_flops() / 2 / (64 * 64)


def _gate(rows: list[Row], min_psnr: float | None) -> int:
    if min_psnr is None:
        return 0
    low = [r for r in rows if r.status == "ok" and (r.psnr or 0) < min_psnr]
    bad = [r for r in rows if r.status in ("failed", "failed gate")]
    if low or bad:
        click.echo(f"srbench: {len(low)} row(s) below --min-psnr {min_psnr}, {len(bad)} "
                   "failed", err=True)
        return 1
    return 0


def _bench(ckpt, data, tile, batch, backends, device, threads, repeats, min_seconds,
           json_path, min_psnr, precisions=None) -> int:
    """Prepare, measure the machine's limits, run every row, print, save, gate."""

    plan = _prepare(ckpt, data, tile, batch, backends, device, threads, precisions)
    click.echo(f"srbench: {plan.gen} ({plan.info.preset} x{plan.info.scale}), eval on "
               f"{plan.source}, tile {tile}, batch {batch}, device {plan.device}", err=True)
    machine = machine_info()
    peaks = PeakTracker(threads)
    limits = measure_limits(threads, plan.device, peaks)
    _run_rows(plan, threads, repeats, min_seconds, limits, peaks)
    click.echo(format_table(machine, limits, plan.rows))
    if json_path is not None:
        _write_json(json_path, plan, machine, limits, threads)
    return _gate(plan.rows, min_psnr)


def _row_dict(r: Row) -> dict:
    d = asdict(r)
    keys = ["backend", "precision", "status", "reason", "tile", "batch", "size_mb", "psnr",
            "ssim", "parity_db", "ms_per_tile", "mp_per_s", "gflops", "pct_of_peak",
            "peak_mem_mb"]
    out = {k: d[k] for k in keys}
    out.update(ms_iqr=d["ms_iqr"], outliers=d["outliers"], peak_vram_mb=d["peak_vram_mb"],
               probe_pct=d["probe_pct"], under_load=d["under_load"])
    for k, v in out.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[k] = str(v)
    return out


def _trt_engine(onnx_path: Path, tmp: Path) -> Path:
    info = describe(onnx_path)
    out = tmp / "model.plan"
    build_engine(onnx_path, out, info, compute_profile(info), BuildOptions(fp16=True),
                 cache_dir=tmp / "cache")
    return out


def main() -> None:
    bench_cmd(prog_name="srbench")



if __name__ == "__main__":
    main()
